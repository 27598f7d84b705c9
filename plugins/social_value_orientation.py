"""Social value orientation (McKee et al., 2020).

Source: McKee et al., "Social diversity and social preferences in
mixed-motive reinforcement learning", AAMAS 2020.

Each agent has a target angle in the plane (own reward, others' reward) and
is penalised for how far the actual reward distribution's angle is from it.
With smoothed rewards e (updated exactly as in inequity aversion):

    e_j <- gamma * lambda * e_j + r_j                       (all agents j)
    theta_i(R) = atan2(mean_{j != i} e_j, e_i)
    u_i = r_i - w * |theta_target_i - theta_i(R)|

The plugin adds one term, `svo` = -w * |theta_target_i - theta_i(R)| (<= 0).
A target of 0 degrees is individualistic (only the own reward should grow),
45 degrees prosocial (own and others' rewards equal and growing), 90 degrees
altruistic.

Choices made:

- Angles are given in degrees (`angle_degrees`) and converted to radians:
  the penalty is w times the angle gap in radians (a gap of 45 degrees costs
  w * pi/4 = 0.785 w).
- `angle_degrees` is one angle for everyone, or a list with one angle per
  agent in the env's agent order (heterogeneous populations); the list's
  length is checked against the env's agents at setup.
- The gap is the plain absolute difference of the paper's formula, with no
  wrap-around: theta(R) lies in (-180, 180] degrees, so a prosocial agent
  whose own smoothed reward is negative and whose partners' reward sits just
  above or just below 0 sees theta jump between about 180 and -180 degrees.
- At R = (0, 0) (own and others' smoothed rewards both exactly 0, as at the
  start of an episode with no reward yet) theta(R) = atan2(0, 0) = 0: the
  distribution counts as individualistic, so a prosocial (45 degree) agent
  pays w * pi/4 there. This holds for signed zeros too (atan2(0, -0) would be
  180 degrees in IEEE arithmetic; the plugin maps every (0, 0) to 0).
- The smoothed rewards include the current reward (updated before the term
  is computed), start at 0, and are reset to 0 where an episode ends, after
  that step's term. They are checkpointed, so a resumed run continues bit for
  bit. Every agent's reward enters e, acting or not, learner or opponent.

Parameters:

- `w` (default 0.1, our choice): weight of the angle penalty (per radian).
- `angle_degrees` (default 45, prosocial): target angle(s) in degrees.
- `gamma` (default 0.99) and `lam` (default 0.975): smoothing factor gamma * lam,
  as in inequity aversion (Hughes et al., 2018), which McKee et al. build on.

Per-instance values: `w` and (when it is one angle for everyone)
`angle_degrees` may vary by env instance (curriculum tasks
`incentives.<i>.params.w`, adopted at each instance's next reset).

Needs at least two agents.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from incentive import hookimpl
from incentive.shaping import smooth_rewards
from incentive.tasks import instance_param

__all__ = ["SocialValueOrientation", "reward_angle"]

Degrees = Annotated[float, Field(ge=-180.0, le=180.0)]


def reward_angle(e: torch.Tensor) -> torch.Tensor:
    """theta_i = atan2(mean of the others' e, own e) in radians, [E, A]; 0 at (0, 0).

    Args:
        e: [E, A] smoothed rewards, A >= 2.

    Returns:
        [E, A] angles in (-pi, pi].

    """
    others = (e.sum(1, keepdim=True) - e) / (e.shape[1] - 1)
    theta = torch.atan2(others, e)
    return torch.where((others == 0) & (e == 0), torch.zeros_like(theta), theta)


class SocialValueOrientation:
    """Penalises each agent for the gap between its target SVO angle and the reward angle."""

    name = "social_value_orientation"
    task_params = ("w", "angle_degrees")

    class Params(BaseModel):
        """Parameters of social value orientation."""

        model_config = ConfigDict(extra="forbid")
        w: float = Field(0.1, ge=0.0, description="Weight of the angle penalty, per radian of gap.")
        angle_degrees: Degrees | list[Degrees] = Field(
            45.0,
            description="Target angle in degrees (0 individualistic, 45 prosocial), or one per agent.",
        )
        gamma: float = Field(0.99, ge=0.0, le=1.0, description="Discount in the smoothing factor gamma*lam.")
        lam: float = Field(0.975, ge=0.0, le=1.0, description="Lambda in the smoothing factor gamma*lam.")

    def __init__(self, params: Params) -> None:
        self.params = params
        self.smoothed: torch.Tensor | None = None
        self.target: torch.Tensor | None = None
        self.tasks = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Create the smoothed rewards [E, A] and the per-agent target angles.

        Raises:
            ValueError: fewer than two agents, or a list of angles whose length
                is not the number of agents.

        """
        agents = len(run.agents)
        if agents < 2:
            raise ValueError(f"social value orientation needs at least two agents, the env has {agents}")
        angles = self.params.angle_degrees
        if isinstance(angles, list):
            if len(angles) != agents:
                raise ValueError(
                    f"angle_degrees lists {len(angles)} angles but the env has {agents} agents "
                    f"({', '.join(run.agents)}): give one angle per agent, or a single number"
                )
        else:
            angles = [angles] * agents
        self.target = torch.tensor([math.radians(a) for a in angles])
        self.smoothed = torch.zeros(run.num_envs, agents)
        self.tasks = getattr(run, "tasks", None)

    @hookimpl
    def incentive_shape_reward(self, step) -> dict[str, torch.Tensor]:
        """The `svo` term of every agent; resets the smoothed rewards where episodes end."""
        p = self.params
        if self.smoothed is None:
            raise RuntimeError("social_value_orientation: incentive_setup was not called")
        e, self.smoothed = smooth_rewards(self.smoothed, step.reward, step.done, decay=p.gamma * p.lam)
        envs = e.shape[0]
        target = self.target
        if self.tasks is not None and self.tasks.plugin_value(self, "angle_degrees") is not None:
            degrees = instance_param(self.tasks, self, "angle_degrees", num_envs=envs)
            target = (degrees * (math.pi / 180.0)).to(e.dtype)[:, None]
        w = instance_param(self.tasks, self, "w", num_envs=envs).to(e.dtype)[:, None]
        svo = -w * (target - reward_angle(e)).abs()
        return {"svo": svo}

    @hookimpl
    def incentive_state_dict(self) -> dict[str, Any]:
        """The smoothed rewards."""
        return {"smoothed": self.smoothed.clone()}

    @hookimpl
    def incentive_load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the smoothed rewards."""
        self.smoothed = state["smoothed"].clone()
