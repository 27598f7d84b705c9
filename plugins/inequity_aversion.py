"""Inequity aversion (Hughes et al., 2018; after Fehr & Schmidt, 1999).

Source: Hughes et al., "Inequity aversion improves cooperation in
intertemporal social dilemmas", NeurIPS 2018.

Each agent is penalised for being behind the others (envy, weight alpha) and
for being ahead of them (guilt, weight beta), measured on temporally smoothed
rewards. Every step, for every env instance:

    e_j <- gamma * lambda * e_j + r_j                       (all agents j)
    u_i = r_i - alpha/(N-1) * sum_{j != i} max(e_j - e_i, 0)
              - beta/(N-1)  * sum_{j != i} max(e_i - e_j, 0)

The plugin adds two terms, so the logs show them apart:

- `envy`  = -alpha/(N-1) * sum_{j != i} max(e_j - e_i, 0)   (<= 0, being behind)
- `guilt` = -beta/(N-1)  * sum_{j != i} max(e_i - e_j, 0)   (<= 0, being ahead)

Choices made:

- The smoothed rewards are updated before the step's terms are computed, so
  e includes the current reward, as in the paper (e^t = gamma*lambda*e^{t-1} + r^t).
- Both terms are penalties: being ahead is penalised by beta. One widely used
  public implementation flips the sign of the beta term (and uses
  instantaneous rewards); this plugin follows the paper.
- e starts at 0 and is reset to 0 where an episode ends, after it has been
  used for that episode's last step. e is checkpointed, so a resumed run
  continues bit for bit.
- Every agent's reward enters e, whether or not it acted this step
  (turn-based games) and whoever plays the seat (learner or opponent).

Parameters:

- `alpha` (default 5): weight on disadvantageous inequity (envy).
- `beta` (default 0.05): weight on advantageous inequity (guilt).
- `gamma` (default 0.99) and `lam` (default 0.975): the smoothing factor is
  gamma * lam. Hughes et al. use lambda of about 0.95-0.975 and gamma 0.99.
  These are the paper's own constants, independent of the learner's gamma.

Per-instance values: `alpha` and `beta` may vary by env instance (curriculum
tasks `incentives.<i>.params.alpha`/`beta`, adopted at each instance's next
reset); the terms stay one batched call.

Needs at least two agents.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from incentive import hookimpl
from incentive.shaping import smooth_rewards
from incentive.tasks import instance_param

__all__ = ["InequityAversion"]


def pairwise_gaps(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed gaps to the others: (behind, ahead), each [E, A].

    behind_i = sum_{j != i} max(e_j - e_i, 0), ahead_i = sum_{j != i} max(e_i - e_j, 0).

    Args:
        e: [E, A] smoothed rewards.

    Returns:
        The two [E, A] sums (the j = i terms are 0).

    """
    diff = e.unsqueeze(1) - e.unsqueeze(2)  # [E, i, j] = e_j - e_i
    return diff.clamp(min=0).sum(2), (-diff).clamp(min=0).sum(2)


class InequityAversion:
    """Adds envy and guilt penalties on smoothed rewards to every agent's incentive."""

    name = "inequity_aversion"
    task_params = ("alpha", "beta")

    class Params(BaseModel):
        """Parameters of inequity aversion."""

        model_config = ConfigDict(extra="forbid")
        alpha: float = Field(5.0, ge=0.0, description="Weight on disadvantageous inequity (envy).")
        beta: float = Field(0.05, ge=0.0, description="Weight on advantageous inequity (guilt).")
        gamma: float = Field(0.99, ge=0.0, le=1.0, description="Discount in the smoothing factor gamma*lam.")
        lam: float = Field(0.975, ge=0.0, le=1.0, description="Lambda in the smoothing factor gamma*lam.")

    def __init__(self, params: Params) -> None:
        self.params = params
        self.smoothed: torch.Tensor | None = None
        self.tasks = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Create the smoothed rewards e [E, A] at 0.

        Raises:
            ValueError: the env has fewer than two agents.

        """
        agents = len(run.agents)
        if agents < 2:
            raise ValueError(f"inequity aversion needs at least two agents, the env has {agents}")
        self.smoothed = torch.zeros(run.num_envs, agents)
        self.tasks = getattr(run, "tasks", None)

    @hookimpl
    def incentive_shape_reward(self, step) -> dict[str, torch.Tensor]:
        """The `envy` and `guilt` terms of every agent; resets e where episodes end."""
        p = self.params
        if self.smoothed is None:
            raise RuntimeError("inequity_aversion: incentive_setup was not called")
        e, self.smoothed = smooth_rewards(self.smoothed, step.reward, step.done, decay=p.gamma * p.lam)
        behind, ahead = pairwise_gaps(e)
        envs, others = e.shape[0], e.shape[1] - 1
        alpha = instance_param(self.tasks, self, "alpha", num_envs=envs)
        beta = instance_param(self.tasks, self, "beta", num_envs=envs)
        envy = (-alpha / others).to(e.dtype)[:, None] * behind
        guilt = (-beta / others).to(e.dtype)[:, None] * ahead
        return {"envy": envy, "guilt": guilt}

    @hookimpl
    def incentive_state_dict(self) -> dict[str, Any]:
        """The smoothed rewards."""
        return {"smoothed": self.smoothed.clone()}

    @hookimpl
    def incentive_load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the smoothed rewards."""
        self.smoothed = state["smoothed"].clone()
