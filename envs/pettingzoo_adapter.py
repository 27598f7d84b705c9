"""Any PettingZoo env behind the `BatchedEnv` interface, as E independent copies.

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | the env's `possible_agents`                                            |
| actions      | the env's Discrete spaces (a Discrete with `start` s takes index i as  |
|              | action s + i); any other action space is an error                      |
| observation  | per agent, the env's observation flattened (`gymnasium.spaces.flatten`)|
|              | to a float32 Box; a Dict observation's `action_mask` entry is taken    |
|              | out and becomes the action mask. Agents keep their own sizes (the      |
|              | loop pads heterogeneous observations)                                  |
| reward       | what the env pays each agent on the step it pays it                    |
| episode      | the env's; an instance resets itself once all its agents are done      |

Recipe: `env: {id: pettingzoo, params: {module: pettingzoo.classic.rps_v2}}`.
`module` is the dotted path of a module that provides a PettingZoo env the
way PettingZoo's own do, as `parallel_env()` and/or `env()`
(`pettingzoo.classic.rps_v2`, `mpe2.simple_spread_v3`); `kwargs` go to that
function (MPE and other continuous-control envs need `continuous_actions:
false`). With `api: auto` a module's `parallel_env` is used when it has one,
else its `env` (AEC); `parallel` and `aec` force one API (through
PettingZoo's own conversions where the module only offers the other). What
the function builds must be a PettingZoo `ParallelEnv` or `AECEnv`, else the
run stops with an error naming the module.

Trust: building the env imports `module` and calls its function, which runs
that module's code, as a Hydra `_target_` does. Run recipes from people you
trust, as you would their scripts. `incentive validate` never builds this
env (it checks the params only), and nothing else is imported or called:
the params take a module path, not an arbitrary `module:callable`.

Parallel envs are stepped with every live agent's action; `acting` marks the
live agents. AEC (turn-based) envs are stepped once per batched step, by the
agent in `agent_selection`: `acting` has exactly one True per instance (the
agent that moves on the *next* step, as the loop reads it). Terminated agents
are passed over with the `None` steps AEC requires.

Rewards in AEC envs. `last()` hands an agent its `_cumulative_rewards`: all it
earned since it last acted, then the agent's next step consumes it. Reading
that total at each agent's turn would pay the loser of a game nothing (it never
moves again), and reading it at every step would pay the same reward many
times. The adapter instead reports, on every batched step and for every agent,
the *change* of `_cumulative_rewards` over that step, after consuming (zeroing)
the acting agent's total itself as its step is about to do. Each reward is
thus reported exactly once, on the step it was earned, whether or not the env
zeroes totals itself and whether or not it clears its `rewards` dict; the sum
over an episode equals the sum of what `last()` would have handed out. In
tic-tac-toe the loser's -1 arrives on the step the winner moves.

Action masks come from `obs["action_mask"]` (classic envs) or, failing that,
`infos[agent]["action_mask"]`; `action_mask` is None until an env has shown
one. Only the acting agents' masks are the env's: the rows of agents that do
not act next are all True (they are ignored, and an all-False row would make a
masked softmax undefined).

Agents that leave before the end of an episode (a parallel env's `agents`
shrinks): the step they leave on still carries their reward and last
observation; after it they get zero reward, zero observation and `acting`
False until their instance resets. The interface's `terminated`/`truncated`
are per instance: an instance is done when all its agents are, `terminated`
if any agent's episode ended by termination on that step, `truncated`
otherwise.

Seeding: `reset(seed)` resets instance e with `seed + e` (the first reset
without a seed uses 0, like `BatchedEnv`). Every automatic reset afterwards
passes a new seed drawn from instance e's own stream (`self.rng`, seeded with
`seed + e`), so instance e behaves exactly like a lone copy seeded with
`seed + e`, and each episode of a copy is a function of its reset seed and
the actions it was given since.

Speed: a third-party env is a Python object, so this adapter loops over the E
copies in Python on every step (unavoidable). It keeps the rest lean: one
preallocated float32 buffer holds observations, masks, `acting`, rewards and
flags of all instances, and becomes tensors through a single
`torch.from_numpy` per step. The framework's own envs are batched and much
faster.

Checkpoints hold no pickled objects (a checkpoint is plain data, read with
`torch.load(weights_only=True)`, so a crafted file cannot run code). A
third-party env's internal state is arbitrary Python objects that plain data
cannot capture in general, so the adapter stores what reconstructs it
instead: for each copy, the seed of its current episode's reset and the
actions it has been given since (an [n, A] int64 tensor, n at most the
episode length). Restoring resets each copy with that seed and replays those
actions, which rebuilds the game exactly for any env whose `reset(seed)`
makes it reproducible, as PettingZoo's API asks (its seed test checks it).
The cost: a resume replays at most one episode per copy. There are no
designer metrics specific to this env.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import gymnasium
import numpy as np
import torch
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.conversions import aec_to_parallel, parallel_to_aec
from pydantic import Field

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep

__all__ = ["PettingZooAdapter", "PettingZooAdapterParams"]

Api = Literal["auto", "parallel", "aec"]


class PettingZooAdapterParams(EnvParams):
    """Which PettingZoo env to run and how."""

    module: str = Field(
        ...,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        max_length=200,
        description="Dotted path of a module that provides parallel_env() and/or env(), as PettingZoo's "
        "own do (e.g. pettingzoo.classic.rps_v2). Building the env imports it and calls that function.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to parallel_env()/env()."
    )
    api: Api = Field(
        "auto", description="auto: parallel_env if the module has it, else env (AEC); or force one."
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _make_factory(module_name: str, kwargs: dict[str, Any], api: Api) -> Callable[[], Any]:
    """A function that builds one copy of the env (ParallelEnv or AECEnv, per `api`).

    Raises:
        ValueError: the module does not import or does not provide a PettingZoo env.

    """
    where = f"module {module_name!r}"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"{where} does not import: {_one_line(exc)}") from exc

    names = {"auto": ("parallel_env", "env"), "parallel": ("parallel_env", "env")}
    names["aec"] = ("env", "parallel_env")
    found = [n for n in names[api] if callable(getattr(module, n, None))]
    if not found:
        raise ValueError(
            f"{where} is not a PettingZoo env module: it has neither a `parallel_env` nor an `env` "
            "function (a module that provides a PettingZoo env, as pettingzoo.classic.rps_v2 does)"
        )
    constructor = getattr(module, found[0])

    def build() -> Any:
        try:
            env = constructor(**kwargs)
        except Exception as exc:
            raise ValueError(
                f"{where}: building the env with kwargs {kwargs} failed: {_one_line(exc)}"
            ) from exc
        try:
            if api == "parallel" and isinstance(env, AECEnv):
                env = aec_to_parallel(env)
            elif api == "aec" and isinstance(env, ParallelEnv):
                env = parallel_to_aec(env)
        except Exception as exc:
            raise ValueError(f"{where}: cannot run it with api={api!r}: {_one_line(exc)}") from exc
        if not isinstance(env, ParallelEnv | AECEnv):
            raise ValueError(
                f"{where} is not a PettingZoo env module: its {found[0]}() built a "
                f"{type(env).__module__}.{type(env).__name__}, not a pettingzoo ParallelEnv or AECEnv"
            )
        return env

    return build


class _AgentSpec:
    """How one agent's observations and actions map onto the buffer."""

    def __init__(self, agent: str, obs_space: gymnasium.Space, act_space: gymnasium.Space, where: str):
        if not isinstance(act_space, gymnasium.spaces.Discrete):
            raise ValueError(
                f"{where}: agent {agent!r} has action space {act_space}; "
                "only Discrete action spaces are supported (MPE-style envs take "
                "kwargs {continuous_actions: false})"
            )
        self.num_actions = int(act_space.n)
        self.action_start = int(act_space.start)
        # A Dict observation with an action mask: the mask is not part of the observation.
        self.mask_in_obs = isinstance(obs_space, gymnasium.spaces.Dict) and "action_mask" in obs_space.spaces
        data_space = obs_space
        if self.mask_in_obs:
            rest = {k: v for k, v in obs_space.spaces.items() if k != "action_mask"}
            data_space = rest["observation"] if list(rest) == ["observation"] else gymnasium.spaces.Dict(rest)
        self.data_space = data_space
        try:
            flat = gymnasium.spaces.flatten_space(data_space)
        except Exception as exc:
            raise ValueError(
                f"{where}: agent {agent!r} has observation space {obs_space}, which cannot be "
                f"flattened to a Box: {_one_line(exc)}"
            ) from exc
        self.obs_dim = int(np.prod(flat.shape))
        self.space = gymnasium.spaces.Box(
            flat.low.astype(np.float32).reshape(-1),
            flat.high.astype(np.float32).reshape(-1),
            (self.obs_dim,),
            dtype=np.float32,
        )
        if isinstance(data_space, gymnasium.spaces.Box):
            self.kind = "box"
        elif isinstance(data_space, gymnasium.spaces.Discrete):
            self.kind = "discrete"
        else:
            self.kind = "other"

    def split(self, observation: Any) -> tuple[Any, Any]:
        """(data, mask or None) of one raw observation."""
        if self.mask_in_obs and observation is not None:
            mask = observation["action_mask"]
            if isinstance(self.data_space, gymnasium.spaces.Dict):
                data = {k: v for k, v in observation.items() if k != "action_mask"}
            else:
                data = observation["observation"]
            return data, mask
        return observation, None

    def write(self, out: np.ndarray, data: Any) -> None:
        """Flatten `data` into the zeroed float32 slice `out` (None stays zeros)."""
        if data is None:
            return
        if self.kind == "box":
            out[:] = np.asarray(data).reshape(-1)
        elif self.kind == "discrete":
            out[int(data) - int(self.data_space.start)] = 1.0
        else:
            out[:] = gymnasium.spaces.flatten(self.data_space, data)


class PettingZooAdapter(BatchedEnv):
    """Any PettingZoo env as E copies; needs `params.module` (e.g. pettingzoo.classic.rps_v2).

    See the module docstring for agents, actions, observations and rewards.
    """

    Params: ClassVar[type[EnvParams]] = PettingZooAdapterParams
    runs_user_code: ClassVar[bool] = True

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        where = f"module {params.module!r}"
        build = _make_factory(params.module, dict(params.kwargs), params.api)
        self._envs = [build() for _ in range(num_envs)]
        # what rebuilds each copy's game on a resume: its episode's reset seed and actions since
        self._episode_seeds = [0] * num_envs
        self._episode_actions: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        first = self._envs[0]
        self.is_parallel = isinstance(first, ParallelEnv)
        self.possible_agents = list(first.possible_agents)
        if not self.possible_agents:
            raise ValueError(f"{where}: the env has no possible_agents")
        self._specs = {
            a: _AgentSpec(a, first.observation_space(a), first.action_space(a), where)
            for a in self.possible_agents
        }
        self.observation_spaces = {a: s.space for a, s in self._specs.items()}
        self.action_spaces = {a: gymnasium.spaces.Discrete(s.num_actions) for a, s in self._specs.items()}
        self._index = {a: i for i, a in enumerate(self.possible_agents)}

        # One float32 row per instance: [obs | masks | acting | reward | terminated, truncated].
        num_agents = len(self.possible_agents)
        self._obs_cols: dict[str, slice] = {}
        self._mask_cols: dict[str, slice] = {}
        col = 0
        for a, s in self._specs.items():
            self._obs_cols[a] = slice(col, col + s.obs_dim)
            col += s.obs_dim
        self._obs_width = col
        for a, s in self._specs.items():
            self._mask_cols[a] = slice(col, col + s.num_actions)
            col += s.num_actions
        self._masks = slice(self._obs_width, col)
        self._acting_col = {a: col + i for i, a in enumerate(self.possible_agents)}
        self._acting = slice(col, col + num_agents)
        col += num_agents
        self._reward_col = {a: col + i for i, a in enumerate(self.possible_agents)}
        self._reward = slice(col, col + num_agents)
        col += num_agents
        self._terminated_col, self._truncated_col = col, col + 1
        self._buf = np.zeros((num_envs, col + 2), dtype=np.float32)
        self._final = np.zeros((num_envs, self._obs_width), dtype=np.float32)
        self._has_masks = any(s.mask_in_obs for s in self._specs.values())
        self._seeded = False

    # --- the interface -----------------------------------------------------

    def reset(self, seed: int | None = None) -> TimeStep:
        """Reset every copy; copy e gets `seed + e` (0 + e on a first reset without seed)."""
        if seed is None and not self._seeded:
            seed = 0
        self._seeded = True
        self._reset_seed = seed
        return super().reset(seed)

    def _reset(self) -> TimeStep:
        buf = self._buf
        self._clear(buf)
        seed = self._reset_seed
        for e in range(self.num_envs):
            self._new_episode(e, buf[e], self.rng.draw_one(e) if seed is None else seed + e)
        return self._timestep(done=None, info=None)

    def _new_episode(self, e: int, row: np.ndarray, seed: int) -> None:
        self._episode_seeds[e] = seed
        self._episode_actions[e] = []
        self._reset_one(self._envs[e], row, seed)

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Step every copy with its live agents' actions; see the module docstring.

        Args:
            actions: [E, A] long action indices (ignored for agents that do not act).

        Returns:
            The `TimeStep`; finished copies are already reset.

        """
        if not self._seeded:
            raise RuntimeError("PettingZooAdapter.step() was called before reset()")
        buf = self._buf
        self._clear(buf)
        acts = actions.detach().to("cpu", torch.long).numpy()
        step_one = self._step_parallel if self.is_parallel else self._step_aec
        for e in range(self.num_envs):
            self._episode_actions[e].append(acts[e].copy())
        done = [e for e, env in enumerate(self._envs) if step_one(env, buf[e], acts[e])]
        for e in done:
            self._final[e] = buf[e, : self._obs_width]
            self._new_episode(e, buf[e], self.rng.draw_one(e))
        return self._timestep(done=done, info={})

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """No designer metrics specific to a third-party env."""
        return {}

    def close(self) -> None:
        """Close every copy."""
        for env in self._envs:
            env.close()

    # --- checkpoints ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain data that rebuilds every copy: its episode's reset seed and the actions since."""
        state = super().state_dict()
        width = self.num_agents
        state["episode_seeds"] = torch.tensor(self._episode_seeds, dtype=torch.int64)
        state["episode_actions"] = [
            torch.from_numpy(np.array(actions, dtype=np.int64).reshape(len(actions), width))
            for actions in self._episode_actions
        ]
        state["adapter"] = {"has_masks": self._has_masks, "seeded": self._seeded}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild every copy's game from `state_dict`: reset with its seed, replay its actions.

        Raises:
            ValueError: the state does not fit this env (another number of copies or agents).

        """
        seeds, actions = state["episode_seeds"], state["episode_actions"]
        if len(seeds) != self.num_envs or len(actions) != self.num_envs:
            raise ValueError(f"the checkpoint holds {len(seeds)} copies, this env has {self.num_envs}")
        if any(a.dim() != 2 or a.shape[1] != self.num_agents for a in actions):
            raise ValueError(f"the checkpoint's actions are not [n, {self.num_agents}] per copy")
        super().load_state_dict(state)
        scratch = np.zeros_like(self._buf[0])
        step_one = self._step_parallel if self.is_parallel else self._step_aec
        for e in range(self.num_envs):
            self._clear(scratch[None])
            self._new_episode(e, scratch, int(seeds[e]))
            for row in actions[e].numpy():
                self._clear(scratch[None])
                step_one(self._envs[e], scratch, row)
                self._episode_actions[e].append(row.copy())
        self._has_masks = bool(state["adapter"]["has_masks"])
        self._seeded = bool(state["adapter"]["seeded"])

    # --- one copy ---------------------------------------------------------------

    def _clear(self, buf: np.ndarray) -> None:
        buf.fill(0.0)
        buf[:, self._masks] = 1.0

    def _clear_row(self, row: np.ndarray) -> None:
        """Zero one row's observations and acting, all-True masks; keep reward and flags."""
        row[: self._obs_width] = 0.0
        row[self._masks] = 1.0
        row[self._acting] = 0.0

    def _write_mask(self, row: np.ndarray, agent: str, mask: Any) -> None:
        if mask is not None:
            row[self._mask_cols[agent]] = np.asarray(mask).reshape(-1) != 0
            self._has_masks = True

    def _reset_one(self, env: Any, row: np.ndarray, seed: int | None) -> None:
        self._clear_row(row)
        if self.is_parallel:
            out = env.reset(seed=seed)
            observations, infos = out if isinstance(out, tuple) else (out, {})
            self._observe_parallel(env, row, observations, infos)
        else:
            env.reset(seed=seed)
            self._skip_dead(env, row)
            self._observe_aec(env, row)

    def _observe_parallel(self, env: Any, row: np.ndarray, observations: dict, infos: dict) -> None:
        specs = self._specs
        for agent, observation in observations.items():
            data, _ = specs[agent].split(observation)
            specs[agent].write(row[self._obs_cols[agent]], data)
        for agent in env.agents:
            row[self._acting_col[agent]] = 1.0
            data, mask = specs[agent].split(observations.get(agent))
            if mask is None:
                mask = (infos.get(agent) or {}).get("action_mask")
            self._write_mask(row, agent, mask)

    def _step_parallel(self, env: Any, row: np.ndarray, acts: np.ndarray) -> bool:
        """Step one parallel copy; True when it finished (its row then holds the final obs)."""
        live = list(env.agents)
        specs, index = self._specs, self._index
        joint = {a: specs[a].action_start + int(acts[index[a]]) for a in live}
        observations, rewards, terminations, truncations, infos = env.step(joint)
        for agent in live:
            row[self._reward_col[agent]] = rewards.get(agent, 0.0)
        finished = not env.agents or all(
            terminations.get(a, False) or truncations.get(a, False) for a in env.agents
        )
        if finished:
            for agent, observation in observations.items():
                data, _ = specs[agent].split(observation)
                specs[agent].write(row[self._obs_cols[agent]], data)
            self._flag_end(row, any(terminations.values()))
            return True
        self._observe_parallel(env, row, observations, infos)
        return False

    def _observe_aec(self, env: Any, row: np.ndarray, acting: bool = True) -> None:
        specs = self._specs
        selected = env.agent_selection if acting else None
        for agent in env.agents:
            data, mask = specs[agent].split(env.observe(agent))
            specs[agent].write(row[self._obs_cols[agent]], data)
            if agent == selected:
                row[self._acting_col[agent]] = 1.0
                if mask is None:
                    mask = (env.infos.get(agent) or {}).get("action_mask")
                self._write_mask(row, agent, mask)

    @staticmethod
    def _aec_finished(env: Any) -> bool:
        return not env.agents or all(env.terminations[a] or env.truncations[a] for a in env.agents)

    def _add_reward_changes(self, row: np.ndarray, before: dict[str, float], after: dict) -> None:
        for agent, total in after.items():
            change = total - before.get(agent, 0.0)
            if change:
                row[self._reward_col[agent]] += change

    def _skip_dead(self, env: Any, row: np.ndarray) -> None:
        """Take the `None` steps AEC requires of terminated agents while others play on."""
        while not self._aec_finished(env) and (
            env.terminations[env.agent_selection] or env.truncations[env.agent_selection]
        ):
            before = dict(env._cumulative_rewards)
            env.step(None)
            self._add_reward_changes(row, before, env._cumulative_rewards)

    def _step_aec(self, env: Any, row: np.ndarray, acts: np.ndarray) -> bool:
        """Step one AEC copy by its selected agent; True when it finished."""
        agent = env.agent_selection
        totals = env._cumulative_rewards
        totals[agent] = 0  # consumed by this step, as last() + step() would
        before = dict(totals)
        env.step(self._specs[agent].action_start + int(acts[self._index[agent]]))
        self._add_reward_changes(row, before, env._cumulative_rewards)
        if not self._aec_finished(env):
            self._skip_dead(env, row)
        if self._aec_finished(env):
            self._observe_aec(env, row, acting=False)
            terminated = not env.agents or any(env.terminations[a] for a in env.agents)
            self._flag_end(row, terminated)
            return True
        self._observe_aec(env, row)
        return False

    def _flag_end(self, row: np.ndarray, terminated: bool) -> None:
        row[self._terminated_col if terminated else self._truncated_col] = 1.0

    # --- tensors ------------------------------------------------------------------

    def _timestep(self, done: list[int] | None, info: dict[str, torch.Tensor] | None) -> TimeStep:
        device = self.device
        table = torch.from_numpy(self._buf)

        def cols(part: slice) -> torch.Tensor:
            return table[:, part].clone(memory_format=torch.contiguous_format).to(device)

        obs = {a: cols(self._obs_cols[a]) for a in self.possible_agents}
        action_mask = None
        if self._has_masks:
            action_mask = {a: (table[:, self._mask_cols[a]] > 0.5).to(device) for a in self.possible_agents}
        final_obs = None
        if done:
            # Instances that did not finish carry their current observation.
            finished = np.zeros(self.num_envs, dtype=bool)
            finished[done] = True
            final = np.where(finished[:, None], self._final, self._buf[:, : self._obs_width])
            final_table = torch.from_numpy(final).to(device)
            final_obs = {a: final_table[:, self._obs_cols[a]].contiguous() for a in self.possible_agents}
        return TimeStep(
            obs=obs,
            reward=cols(self._reward),
            terminated=(table[:, self._terminated_col] > 0.5).to(device),
            truncated=(table[:, self._truncated_col] > 0.5).to(device),
            acting=(table[:, self._acting] > 0.5).to(device),
            action_mask=action_mask,
            info=info,
            final_obs=final_obs,
        )
