"""The batched multi-agent environment interface the training loop speaks.

A `BatchedEnv` runs E instances of one game at once, as tensors. Every step
takes actions for all E instances and A agents and returns a `TimeStep`:

| field          | shape              | meaning                                                 |
| -------------- | ------------------ | ------------------------------------------------------- |
| obs            | agent -> [E, *obs] | observation after the step (next episode's first one     |
|                |                    | where an instance finished: finished instances reset    |
|                |                    | themselves)                                             |
| reward         | [E, A] float32     | extrinsic reward of every agent, including agents that  |
|                |                    | did not act this step (turn-based games)                |
| terminated     | [E] bool           | the episode ended by the game's rules (or its horizon)  |
| truncated      | [E] bool           | the episode was cut short (no terminal state reached)   |
| acting         | [E, A] bool        | which agents choose an action on this `obs` (all, in    |
|                |                    | simultaneous games; the agent to move in turn-based)    |
| action_mask    | agent -> [E, n]    | legal actions on this `obs`, or None (all legal); rows  |
|                |                    | of agents that are not acting are all True              |
| info           | name -> [E]        | per-step counters the designer's metrics are built from |
| final_obs      | agent -> [E, *obs] | observation before the reset where an instance finished |
|                |                    | (equal to obs elsewhere); None when none finished       |

Design points the rest of the framework relies on:

- Heterogeneous agents: `observation_spaces` and `action_spaces` are per agent
  and may differ. Actions are Discrete; observations are Box-like arrays.
- Turn-based games: `acting` says who moves; `action_mask` marks legal moves.
- Curriculum: `set_task(task)` hands each of the E instances its own task
  parameters (a dict of tensors with leading dimension E); an instance adopts
  its new task at its next reset, never mid-episode. Envs with procedural
  levels accept the task key `level` and list `train_levels` and
  `test_levels` (held out, for evaluation only).
- Designer metrics: `info` holds per-step counters; the loop sums them over
  each episode and `episode_metrics` turns a batch of episode totals into the
  env's designer metrics (a ratio of sums, not a mean of per-step ratios).
- Evaluation: a `Params` field whose `Field(..., json_schema_extra=
  {"training_only": True})` marks it as a training device (Connect Four's
  `random_opening`) is back at its default in `evaluation_params()`, the
  params the framework builds its evaluation envs with.
- Determinism and resume: all randomness comes from `self.rng`, one stream
  per instance (`incentive.envs.random`), seeded with `seed + e` for instance
  e, so instance e of a batch behaves exactly like a lone instance seeded
  with `seed + e`. `state_dict`/`load_state_dict` capture everything.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium
import torch
from pydantic import BaseModel, ConfigDict

from incentive.envs.random import InstanceRandom

__all__ = ["BatchedEnv", "EnvParams", "TimeStep"]


def _copy(value: Any) -> Any:
    """A copy of a state entry, so saved states never alias live, in-place-updated tensors."""
    return value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


class EnvParams(BaseModel):
    """Base of every env's `Params` model: unknown keys are errors, numbers are finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass
class TimeStep:
    """What `reset` and `step` return; see the module docstring for shapes."""

    obs: dict[str, torch.Tensor]
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    acting: torch.Tensor
    action_mask: dict[str, torch.Tensor] | None = None
    info: dict[str, torch.Tensor] | None = None
    final_obs: dict[str, torch.Tensor] | None = None

    @property
    def done(self) -> torch.Tensor:
        """[E] bool: the instance finished an episode this step."""
        return self.terminated | self.truncated


class BatchedEnv:
    """E instances of a multi-agent game stepped together as tensors.

    Subclasses set `possible_agents`, `observation_spaces`, `action_spaces`
    in `__init__` and implement `_reset`, `step`, and (if they have state
    beyond the attributes listed in `state_keys`) the state methods.

    Args:
        num_envs: E, the number of instances.
        params: the env's validated `Params`.
        device: where tensors live.

    """

    Params: ClassVar[type[EnvParams]] = EnvParams
    #: Names of per-step `info` counters; `episode_metrics` reads their episode totals.
    info_keys: ClassVar[tuple[str, ...]] = ()
    #: Names of the designer metrics `episode_metrics` returns (validated against objectives).
    metric_names: ClassVar[tuple[str, ...]] = ()
    #: Task parameters `set_task` accepts (empty: the env has no tasks).
    task_keys: ClassVar[tuple[str, ...]] = ()
    #: Attribute names of tensors that make up the env's state, for checkpoints.
    state_keys: ClassVar[tuple[str, ...]] = ()
    #: Level ids to train on ([N] long), for envs with procedural levels (task key `level`); else None.
    train_levels: torch.Tensor | None = None
    #: Held-out level ids for evaluation only, never trained on; else None.
    test_levels: torch.Tensor | None = None
    #: Whether `set_task` accepts test levels: set only on the evaluator's own copy of the env.
    allow_test_levels: bool = False
    #: True for an env that imports and calls code its params name (the PettingZoo adapter):
    #: `incentive validate` then checks its params only and never builds it.
    runs_user_code: ClassVar[bool] = False

    possible_agents: list[str]
    observation_spaces: dict[str, gymnasium.spaces.Box]
    action_spaces: dict[str, gymnasium.spaces.Discrete]

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.num_envs = num_envs
        self.params = params
        self.device = torch.device(device)
        self.rng = InstanceRandom(num_envs, self.device)
        self.rng.seed(torch.arange(num_envs))

    @property
    def num_agents(self) -> int:
        """A, the number of seats."""
        return len(self.possible_agents)

    # --- the interface ---------------------------------------------------

    def reset(self, seed: int | None = None) -> TimeStep:
        """Reset every instance; `seed` reseeds instance e's stream with `seed + e`."""
        if seed is not None:
            self.rng.seed(seed + torch.arange(self.num_envs))
        return self._reset()

    def _reset(self) -> TimeStep:
        raise NotImplementedError

    def _first_step(self, obs: dict[str, torch.Tensor], acting: torch.Tensor | None = None) -> TimeStep:
        """The `TimeStep` of freshly reset instances: no reward, nothing ended.

        Args:
            obs: the first observations.
            acting: [E, A] who acts first (default: every agent).
        """
        e, a = self.num_envs, self.num_agents
        ended = torch.zeros(e, dtype=torch.bool, device=self.device)
        if acting is None:
            acting = torch.ones(e, a, dtype=torch.bool, device=self.device)
        return TimeStep(
            obs=obs,
            reward=torch.zeros(e, a, device=self.device),
            terminated=ended,
            truncated=ended.clone(),
            acting=acting,
        )

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Advance every instance by one step.

        Args:
            actions: [E, A] long, one action per agent (ignored for agents
                that are not acting).

        Returns:
            The `TimeStep` after the step; finished instances are already reset.

        """
        raise NotImplementedError

    def set_task(self, task: dict[str, torch.Tensor]) -> None:
        """Give each instance new task parameters, adopted at its next reset."""
        unknown = sorted(set(task) - set(self.task_keys))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no task parameter(s) {unknown}; "
                f"it accepts {list(self.task_keys) or 'none'}"
            )
        for key, value in task.items():
            if value.shape[0] != self.num_envs:
                raise ValueError(
                    f"task parameter {key!r} must have leading dimension {self.num_envs}, "
                    f"got shape {tuple(value.shape)}"
                )
        self._pending_task = {k: v.to(self.device) for k, v in task.items()}

    def evaluation_params(self) -> EnvParams:
        """The env's params for evaluation games: every training-only field back at its default.

        Evaluation measures the game itself, while a training device such as Connect Four's random
        openings changes the games played. The env's `Params` declares which fields are training-only
        (`json_schema_extra={"training_only": True}`), next to their description, so every place that
        builds an evaluation env (bot matches and the minimax ladder, held-out levels) drops them with
        one call and no knowledge of any env, and the field's doc says so where a user reads it.
        """
        reset = {
            name: field.get_default(call_default_factory=True)
            for name, field in type(self.params).model_fields.items()
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("training_only")
        }
        return self.params.model_copy(update=reset)

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Designer metrics from the `info` totals of a batch of finished episodes.

        Args:
            totals: counter name -> [N] totals over each of N finished episodes.

        Returns:
            metric name -> value (the loop logs it as `designer/<name>`).

        """
        return {}

    # --- checkpoints -----------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the env is now."""
        state = {key: _copy(getattr(self, key)) for key in self.state_keys}
        state["rng"] = self.rng.state.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        for key in self.state_keys:
            setattr(self, key, _copy(state[key]))
        self.rng.state = state["rng"].clone()
