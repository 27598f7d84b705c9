"""Repeated two-player matrix games with memory-1 observations.

| property     | value                                                                |
| ------------ | -------------------------------------------------------------------- |
| agents       | `player_0` (row), `player_1` (column)                                |
| actions      | Discrete(2): 0 = cooperate (stag, swerve), 1 = defect (hare, straight) |
| observation  | Box(0, 1, (5,)): one-hot of the previous joint action seen from the  |
|              | agent's own seat (own, other) in the order CC, CD, DC, DD, then a    |
|              | "first step" symbol                                                  |
| reward       | payoff[own action, other action] of the agent's seat                 |
| episode      | `episode_length` steps (the game's horizon: reported as terminated)  |
| task         | `payoffs` [E, 2, 2, 2]: a payoff table per instance (curriculum)     |

Payoff tables (row, column), from `REFERENCES.md`:

| game                          | CC     | CD     | DC     | DD       |
| ----------------------------- | ------ | ------ | ------ | -------- |
| prisoners_dilemma (LOLA 2018) | -1, -1 | -3, 0  | 0, -3  | -2, -2   |
| stag_hunt                     | 5, 5   | -5, 1  | 1, -5  | 1, 1     |
| chicken                       | 0, 0   | -1, 1  | 1, -1  | -10, -10 |

`matrix_game` takes any table through `payoffs`. Observations are from each
agent's own seat so that a shared policy sees both seats alike.

Designer metrics: `mutual_cooperation` and `mutual_defection` (fraction of
steps with that joint action) and `cooperation` (fraction of agent-steps
that cooperate).
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium
import torch
from pydantic import Field, field_validator

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep

__all__ = ["Chicken", "MatrixGame", "PrisonersDilemma", "StagHunt"]

PayoffTable = list[list[list[float]]]

PRISONERS_DILEMMA: PayoffTable = [[[-1, -1], [-3, 0]], [[0, -3], [-2, -2]]]
STAG_HUNT: PayoffTable = [[[5, 5], [-5, 1]], [[1, -5], [1, 1]]]
CHICKEN: PayoffTable = [[[0, 0], [-1, 1]], [[1, -1], [-10, -10]]]

OBS_SIZE = 5
FIRST_STEP = 4


class MatrixGameParams(EnvParams):
    """Parameters of a repeated matrix game."""

    payoffs: PayoffTable = Field(
        PRISONERS_DILEMMA,
        description="payoffs[a_row][a_col] = [row reward, column reward]; action 0 cooperates.",
    )
    episode_length: int = Field(100, ge=1, le=10**9, description="Steps per episode.")

    @field_validator("payoffs")
    @classmethod
    def _two_by_two(cls, table: PayoffTable) -> PayoffTable:
        shape_ok = len(table) == 2 and all(
            len(row) == 2 and all(len(cell) == 2 for cell in row) for row in table
        )
        if not shape_ok:
            raise ValueError("payoffs must be a 2 x 2 table of [row, column] reward pairs")
        return table


class MatrixGame(BatchedEnv):
    """Any repeated 2 x 2 game, by its payoff table (`payoffs`): action 0 = cooperate, 1 = defect.

    E instances, stepped as one tensor operation; see the module docstring.
    """

    Params: ClassVar[type[EnvParams]] = MatrixGameParams
    info_keys = ("mutual_cooperation", "mutual_defection", "cooperation")
    metric_names = info_keys
    task_keys = ("payoffs",)
    state_keys = ("prev_joint", "t", "payoffs", "next_payoffs")

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        self.possible_agents = ["player_0", "player_1"]
        obs_space = gymnasium.spaces.Box(0.0, 1.0, (OBS_SIZE,), dtype="float32")
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: gymnasium.spaces.Discrete(2) for a in self.possible_agents}
        table = torch.tensor(params.payoffs, dtype=torch.float32, device=self.device)
        # payoffs[e, a_row, a_col, seat]; next_payoffs is adopted at each instance's reset.
        self.payoffs = table.expand(num_envs, 2, 2, 2).clone()
        self.next_payoffs = self.payoffs.clone()
        self.prev_joint = torch.full((num_envs,), FIRST_STEP, dtype=torch.long, device=self.device)
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        # own-seat view of a joint action: for player_1, CD and DC swap.
        self._swap_view = torch.tensor([0, 2, 1, 3, FIRST_STEP], device=self.device)
        self._eye = torch.eye(OBS_SIZE, device=self.device)

    def set_task(self, task: dict[str, torch.Tensor]) -> None:
        """Per-instance payoff tables [E, 2, 2, 2], adopted at each instance's next reset."""
        super().set_task(task)
        self.next_payoffs = self._pending_task["payoffs"].to(torch.float32).clone()

    def _observe(self) -> dict[str, torch.Tensor]:
        return {
            "player_0": self._eye[self.prev_joint],
            "player_1": self._eye[self._swap_view[self.prev_joint]],
        }

    def _reset(self) -> TimeStep:
        self.prev_joint.fill_(FIRST_STEP)
        self.t.zero_()
        self.payoffs = self.next_payoffs.clone()
        return self._first_step(self._observe())

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Play one round in every instance; see the module docstring."""
        a_row, a_col = actions[:, 0].long(), actions[:, 1].long()
        env_index = torch.arange(self.num_envs, device=self.device)
        reward = self.payoffs[env_index, a_row, a_col]
        self.prev_joint = a_row * 2 + a_col
        self.t += 1
        terminated = self.t >= self.params.episode_length
        info = {
            "mutual_cooperation": ((a_row == 0) & (a_col == 0)).float(),
            "mutual_defection": ((a_row == 1) & (a_col == 1)).float(),
            "cooperation": ((a_row == 0).float() + (a_col == 0).float()) / 2,
        }
        final_obs = None
        if terminated.any():
            final_obs = self._observe()
            self.prev_joint = torch.where(terminated, FIRST_STEP, self.prev_joint)
            self.t = torch.where(terminated, 0, self.t)
            self.payoffs = torch.where(terminated[:, None, None, None], self.next_payoffs, self.payoffs)
        return TimeStep(
            obs=self._observe(),
            reward=reward,
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
            acting=torch.ones(self.num_envs, 2, dtype=torch.bool, device=self.device),
            info=info,
            final_obs=final_obs,
        )

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Fractions of steps over the finished episodes."""
        steps = self.params.episode_length * len(totals["cooperation"])
        return {key: float(totals[key].sum()) / steps for key in self.info_keys}


class StagHuntParams(MatrixGameParams):
    """Stag hunt defaults."""

    payoffs: PayoffTable = Field(STAG_HUNT, description="Payoff table; action 0 hunts stag.")


class ChickenParams(MatrixGameParams):
    """Chicken defaults."""

    payoffs: PayoffTable = Field(CHICKEN, description="Payoff table; action 0 swerves.")


class PrisonersDilemma(MatrixGame):
    """Iterated prisoner's dilemma with LOLA's payoffs: action 0 = cooperate, 1 = defect."""


class StagHunt(MatrixGame):
    """Repeated stag hunt: action 0 = hunt stag (cooperate), 1 = hunt hare (defect)."""

    Params = StagHuntParams


class Chicken(MatrixGame):
    """Repeated chicken: action 0 = swerve (cooperate), 1 = go straight (defect)."""

    Params = ChickenParams
