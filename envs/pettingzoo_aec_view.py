"""A PettingZoo `AECEnv` view of one instance of a turn-based batched env.

Turn-based games (Connect Four, poker) are AEC games in PettingZoo: one agent
acts at a time, `agent_selection` says which. `AECView(env)` runs the batched
env with E = 1 and presents it that way, so such games can be checked with
PettingZoo's own `api_test` and played move for move against PettingZoo's
reference implementations. It works for any `BatchedEnv` whose `acting` marks
exactly one agent per step; anything else is a ValueError.

What the view shows (the conventions of PettingZoo's classic games):

- `observe(agent)` returns `{"observation": ..., "action_mask": ...}`: the
  batched env's observation of the agent (its dtype and shape), and an int8
  mask that is the env's action mask for the agent in `agent_selection` and
  all zeros for every other agent (all ones for the acting agent when the
  env has no masks).
- `step(action)` steps the batched env with the selected agent's action (the
  other agents' actions are ignored by a turn-based env). `rewards` is the
  env's reward of this step for every agent, added to `_cumulative_rewards`;
  the acting agent's cumulative reward is zeroed first, as PettingZoo's AEC
  convention asks (it was handed out by `last()` before it acted).
- When the episode ends, every agent is terminated (or truncated) as the
  env says, the observations are the env's `final_obs` (the batched env has
  already reset itself, but the view shows the end until `reset` is called),
  and `agent_selection` passes to the next agent after the one that moved
  (in `possible_agents` order), whose turn it would have been. Its mask on the
  final position comes from the env's optional `final_action_mask(final_obs)`
  (Connect Four shows the columns that are not full, as PettingZoo does);
  envs without it show all zeros: no move is legal after the end. The agents
  then leave one by one through PettingZoo's dead steps (`step(None)`).
- `reset(seed)` resets the batched env with that seed (so instance 0's stream
  is seeded with `seed`); `None` continues the stream.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from pettingzoo import AECEnv

from incentive.envs.base import BatchedEnv

__all__ = ["AECView"]


class AECView(AECEnv):
    """One instance of a turn-based `batched` env (num_envs == 1) as an AECEnv."""

    metadata: dict[str, Any] = {"render_modes": [], "is_parallelizable": False}

    def __init__(self, batched: BatchedEnv) -> None:
        super().__init__()
        if batched.num_envs != 1:
            raise ValueError(f"an AECView needs num_envs == 1, got {batched.num_envs}")
        self.batched = batched
        self.metadata = {**self.metadata, "name": type(batched).__name__}
        self.possible_agents = list(batched.possible_agents)
        self.agents: list[str] = []
        self.render_mode = None
        self.action_spaces = dict(batched.action_spaces)
        self.observation_spaces = {
            agent: gymnasium.spaces.Dict(
                {
                    "observation": batched.observation_spaces[agent],
                    "action_mask": gymnasium.spaces.Box(0, 1, (space.n,), dtype=np.int8),
                }
            )
            for agent, space in self.action_spaces.items()
        }
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self._obs: dict[str, np.ndarray] = {}
        self._masks: dict[str, np.ndarray] = {}

    def observation_space(self, agent: str) -> gymnasium.spaces.Dict:
        """The agent's observation space: the env's observation and an int8 action mask."""
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.spaces.Discrete:
        """The agent's action space."""
        return self.action_spaces[agent]

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        """The agent's observation, with its action mask if it is the one to act (else zeros)."""
        mask = self._masks[agent] if agent == self.agent_selection else np.zeros_like(self._masks[agent])
        return {"observation": self._obs[agent].copy(), "action_mask": mask.copy()}

    # --- helpers -------------------------------------------------------------

    def _acting_agent(self, acting: torch.Tensor) -> str:
        """The one agent marked in `acting` [1, A], or a ValueError naming the env."""
        movers = acting[0].nonzero().flatten().tolist()
        if len(movers) != 1:
            raise ValueError(
                f"AECView needs exactly one acting agent per step; {type(self.batched).__name__} "
                f"marks {[self.possible_agents[i] for i in movers]}"
            )
        return self.possible_agents[movers[0]]

    def _show(self, obs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None) -> None:
        """Keep the observations and masks `observe` hands out."""
        self._obs = {agent: obs[agent][0].cpu().numpy() for agent in self.possible_agents}
        self._masks = {}
        for agent in self.possible_agents:
            n = self.action_spaces[agent].n
            if masks is None or agent not in masks:
                self._masks[agent] = np.ones(n, dtype=np.int8)
            else:
                self._masks[agent] = masks[agent][0].cpu().numpy().astype(np.int8)

    # --- the AEC interface -----------------------------------------------

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        """Start a new episode; `seed` seeds the instance's random stream."""
        ts = self.batched.reset(seed=seed)
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {agent: {} for agent in self.agents}
        self._show(ts.obs, ts.action_mask)
        self.agent_selection = self._acting_agent(ts.acting)

    def step(self, action: Any) -> None:
        """Play the selected agent's action (None for an agent that is already done)."""
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        joint = torch.zeros(1, len(self.possible_agents), dtype=torch.long)
        joint[0, self._index[agent]] = int(action)
        ts = self.batched.step(joint)
        self.rewards = {a: float(ts.reward[0, self._index[a]]) for a in self.agents}
        if bool(ts.done[0]):
            self.terminations = dict.fromkeys(self.agents, bool(ts.terminated[0]))
            self.truncations = dict.fromkeys(self.agents, bool(ts.truncated[0]))
            final_obs = ts.final_obs
            final_mask = getattr(self.batched, "final_action_mask", None)
            masks = (
                final_mask(final_obs)
                if final_mask is not None
                else {a: torch.zeros(1, self.action_spaces[a].n, dtype=torch.bool) for a in final_obs}
            )
            self._show(final_obs, masks)
            following = (self._index[agent] + 1) % len(self.possible_agents)
            self.agent_selection = self.possible_agents[following]
        else:
            self._show(ts.obs, ts.action_mask)
            self.agent_selection = self._acting_agent(ts.acting)
        self._accumulate_rewards()
