"""Fictitious self-play (Heinrich, Lanctot & Silver 2015): opponents drawn uniformly from the past.

Each instance's opponent is a member drawn uniformly from the population
(frozen snapshots of the learner, plus any listed `bots`); with probability
`latest_share` the instance is a mirror match of the learner against itself:

    P(mirror) = latest_share,   P(B) = (1 - latest_share) / K  for each of K members

Parameters: `latest_share`, plus those of `incentive.population.PopulationParams`
(snapshot schedule and cap, bots, designer metrics).
"""

from __future__ import annotations

import torch
from pydantic import Field

from incentive.population import PopulationParams, PopulationSampler

__all__ = ["FictitiousSelfPlay"]


class FictitiousSelfPlayParams(PopulationParams):
    """Uniform sampling over the members."""

    latest_share: float = Field(
        0.0, ge=0, le=1, description="Probability that an instance is the learner against itself."
    )


class FictitiousSelfPlay(PopulationSampler):
    """Uniform over the population, with an optional share of the latest learner."""

    name = "fictitious_self_play"
    Params = FictitiousSelfPlayParams

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """(latest_share, uniform over the members)."""
        k = len(self.population.members)
        if k == 0:
            return 1.0, torch.zeros(0, dtype=torch.float64)
        return self.params.latest_share, torch.full((k,), 1.0 / k, dtype=torch.float64)
