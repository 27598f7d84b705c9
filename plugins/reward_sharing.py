"""Reward sharing: agents are rewarded for what the others get.

Three forms, one of which a recipe picks:

- prosocial weight s (default; Peysakhovich & Lerer 2018, Hughes et al. 2018):
      u_i = r_i + s * mean_{j != i} r_j      (aggregate: mean)
      u_i = r_i + s * sum_{j != i} r_j       (aggregate: sum)
- team spirit tau (OpenAI Five, 2019):
      u_i = (1 - tau) * r_i + tau * mean_j r_j       (the mean includes i)
- a sharing matrix W (A x A):
      u = W r, i.e. u_i = sum_j W[i][j] * r_j

The plugin adds one term, `shared` = u - r, so the logs show how much of each
agent's incentive came from the others. With s = 1 and mean over two agents,
each agent maximises the sum of both rewards.

Per-instance values: `s` and `team_spirit` may vary by env instance (a
curriculum task such as `incentives.0.params.s`, adopted at each instance's
next reset), so half the instances can run s = 1 and half s = 0 in one call.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from incentive import hookimpl
from incentive.tasks import instance_param

__all__ = ["RewardSharing"]


class RewardSharing:
    """Adds a share of the other agents' extrinsic rewards to each agent's incentive."""

    name = "reward_sharing"
    task_params = ("s", "team_spirit")

    class Params(BaseModel):
        """Parameters: give `s`, or `team_spirit`, or `matrix`."""

        model_config = ConfigDict(extra="forbid")
        s: float = Field(0.0, description="Weight on the others' rewards (0 is selfish).")
        aggregate: Literal["mean", "sum"] = Field(
            "mean", description="Combine the others' rewards by mean or by sum (with `s`)."
        )
        team_spirit: float | None = Field(
            None, ge=0.0, le=1.0, description="OpenAI Five's tau: u_i = (1-tau) r_i + tau mean_j r_j."
        )
        matrix: list[list[float]] | None = Field(None, description="Sharing matrix W (A x A): u = W r.")

        @model_validator(mode="after")
        def _one_form(self) -> RewardSharing.Params:
            forms = [self.s != 0.0, self.team_spirit is not None, self.matrix is not None]
            if sum(forms) > 1:
                raise ValueError("give only one of s, team_spirit and matrix")
            if self.matrix is not None:
                size = len(self.matrix)
                if size == 0 or any(len(row) != size for row in self.matrix):
                    raise ValueError("matrix must be square (A x A)")
            return self

    def __init__(self, params: Params) -> None:
        self.params = params
        self.matrix = None if params.matrix is None else torch.tensor(params.matrix, dtype=torch.float32)
        self.tasks = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Check that a sharing matrix fits the env's agents."""
        agents = len(run.agents)
        if self.matrix is not None and self.matrix.shape[0] != agents:
            raise ValueError(
                f"matrix is {self.matrix.shape[0]} x {self.matrix.shape[0]} but the env has {agents} agents"
            )
        if agents < 2 and self.matrix is None:
            raise ValueError("reward sharing needs at least two agents")
        self.tasks = getattr(run, "tasks", None)

    @hookimpl
    def incentive_shape_reward(self, step) -> dict[str, torch.Tensor]:
        """The `shared` term u - r of every agent."""
        r = step.reward
        p = self.params
        if self.matrix is not None:
            return {"shared": r @ self.matrix.T - r}
        envs, agents = r.shape
        others = r.sum(1, keepdim=True) - r
        if p.team_spirit is not None:
            mean_all = r.mean(1, keepdim=True)
            tau = instance_param(self.tasks, self, "team_spirit", num_envs=envs).to(r.dtype)
            return {"shared": tau[:, None] * (mean_all - r)}
        if p.aggregate == "mean":
            others = others / (agents - 1)
        s = instance_param(self.tasks, self, "s", num_envs=envs).to(r.dtype)
        return {"shared": s[:, None] * others}
