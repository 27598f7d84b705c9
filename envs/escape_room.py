"""Escape Room ER(N, M) (Yang et al., 2020, "Learning to Incentivize Other Learning Agents").

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | `agent_0` ... `agent_{N-1}`                                             |
| positions    | 0 = lever, 1 = start, 2 = door; everyone is at start after a reset     |
| actions      | Discrete(3): go to (or stay at) 0 = lever, 1 = start, 2 = door          |
| observation  | Box(0, 1, (3N,)) float32: one-hot of the agent's own position, then    |
|              | one-hot positions of the other agents in index order                   |
| reward       | +10 for ending the step at the door while the door is open; otherwise  |
|              | 0 for staying where you are and -1 for moving                          |
| door         | open on a step when at least M agents end that step at the lever       |
| episode      | terminated once the door is open and an agent is at it, or after       |
|              | `max_steps` steps (the game's horizon, also reported as terminated)   |

Rules follow LIO's public code (`lio/env/room_symmetric.py`): the door's status
is judged on the positions *after* this step's moves (the number of agents whose
action is "lever"), the +10 replaces the move penalty (walking to the open door
pays +10, not +9), and "staying" compares the action with the position before
the step. Hence the optimal collective returns: ER(2, 1) = 9 (one agent walks
to the lever, -1, while the other walks through the door, +10, in the first
step) and ER(3, 2) = 8 (two walk to the lever, one walks through the door).
Independent learners tend to learn that nobody pulls the lever (return ~0).

The observation is LIO's without its last N - 1 entries (the incentives each
agent has given so far): those belong to the LIO algorithm, not the game, and
an incentive plugin that needs them keeps them itself. It is egocentric (own
position first), so one shared policy serves every seat.

The game has no randomness. The episode horizon is part of the game (LIO ends
the episode there, and time is not observed), so it is reported as
`terminated`, as the matrix games do; `truncated` is always False.

Designer metrics, from the per-step `info` counters:

- `door_opened`: the fraction of episodes in which the door opened at least
  once (counter: 1 on the first step of an episode on which the door is open).
- `lever_pulls`: lever pulls per episode, counting one pull for every agent
  that ends a step at the lever (holding the lever for two steps is two pulls,
  as each step's door status needs the lever held on that step).
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium
import torch
from pydantic import Field, model_validator

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep

__all__ = ["EscapeRoom", "EscapeRoomParams"]

LEVER, START, DOOR = 0, 1, 2
NUM_POSITIONS = 3
DOOR_REWARD = 10.0
MOVE_PENALTY = -1.0


class EscapeRoomParams(EnvParams):
    """Parameters of Escape Room ER(N, M)."""

    num_agents: int = Field(2, ge=2, le=1024, description="N, the number of agents (at least 2).")
    min_at_lever: int = Field(
        1, ge=1, description="M, agents needed at the lever to open the door (1 <= M < N)."
    )
    max_steps: int = Field(5, ge=1, le=10**9, description="Steps per episode at most (LIO uses 5).")

    @model_validator(mode="after")
    def _lever_below_agents(self) -> EscapeRoomParams:
        if self.min_at_lever >= self.num_agents:
            raise ValueError(
                f"min_at_lever must be less than num_agents ({self.num_agents}), "
                f"got {self.min_at_lever}: someone must be free to walk through the door"
            )
        return self


class EscapeRoom(BatchedEnv):
    """Escape Room ER(N, M): the door opens only while M of the N agents stand at the lever (LIO).

    E instances, stepped as tensor operations (no loop over instances).
    """

    Params: ClassVar[type[EnvParams]] = EscapeRoomParams
    info_keys = ("door_opened", "lever_pulls")
    metric_names = info_keys
    state_keys = ("pos", "t", "door_was_open")

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        n = params.num_agents
        self.possible_agents = [f"agent_{i}" for i in range(n)]
        obs_space = gymnasium.spaces.Box(0.0, 1.0, (NUM_POSITIONS * n,), dtype="float32")
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        action_space = gymnasium.spaces.Discrete(NUM_POSITIONS)
        self.action_spaces = {a: action_space for a in self.possible_agents}
        # pos[e, i]: position of agent i; t[e]: steps taken; door_was_open[e]: for the metric.
        self.pos = torch.full((num_envs, n), START, dtype=torch.long, device=self.device)
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.door_was_open = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        # _order[i] = [i, the others in index order]: agent i's egocentric view of the seats.
        self._order = torch.tensor(
            [[i, *(j for j in range(n) if j != i)] for i in range(n)], device=self.device
        )
        self._eye = torch.eye(NUM_POSITIONS, device=self.device)

    def _observe(self) -> dict[str, torch.Tensor]:
        # [E, N (viewer), N (seat in the viewer's order), 3] -> [E, N, 3N]
        views = self._eye[self.pos[:, self._order]].flatten(2)
        return {agent: views[:, i] for i, agent in enumerate(self.possible_agents)}

    def _all_acting(self) -> torch.Tensor:
        return torch.ones(self.num_envs, self.num_agents, dtype=torch.bool, device=self.device)

    def _reset(self) -> TimeStep:
        self.pos = torch.full_like(self.pos, START)
        self.t = torch.zeros_like(self.t)
        self.door_was_open = torch.zeros_like(self.door_was_open)
        return self._first_step(self._observe())

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Move every agent, open the door, pay rewards; see the module docstring.

        Args:
            actions: [E, N] long in {0 = lever, 1 = start, 2 = door}.

        Returns:
            The `TimeStep`; finished instances are already back at the start.

        """
        new_pos = actions.to(self.device, torch.long)
        at_lever = new_pos == LEVER
        door_open = at_lever.sum(1) >= self.params.min_at_lever
        at_door = new_pos == DOOR
        stayed_reward = torch.where(new_pos == self.pos, 0.0, MOVE_PENALTY)
        reward = torch.where(door_open[:, None] & at_door, DOOR_REWARD, stayed_reward)
        info = {
            "door_opened": (door_open & ~self.door_was_open).float(),
            "lever_pulls": at_lever.sum(1).float(),
        }
        self.pos = new_pos
        self.t = self.t + 1
        self.door_was_open = self.door_was_open | door_open
        terminated = (door_open & at_door.any(1)) | (self.t >= self.params.max_steps)
        final_obs = None
        if terminated.any():
            final_obs = self._observe()
            self.pos = torch.where(terminated[:, None], START, self.pos)
            self.t = torch.where(terminated, 0, self.t)
            self.door_was_open = self.door_was_open & ~terminated
        return TimeStep(
            obs=self._observe(),
            reward=reward,
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
            acting=self._all_acting(),
            info=info,
            final_obs=final_obs,
        )

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Door-opening rate and lever pulls per episode over the finished episodes."""
        episodes = len(totals["door_opened"])
        if episodes == 0:
            return {key: float("nan") for key in self.info_keys}
        return {key: float(totals[key].sum()) / episodes for key in self.info_keys}
