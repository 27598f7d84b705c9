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

from incentive import hookimpl
from incentive.population import PopulationParams, PopulationSampler

__all__ = ["FictitiousSelfPlay"]


class FictitiousSelfPlayParams(PopulationParams):
    """Uniform sampling over the members."""

    latest_share: float = Field(
        0.0, ge=0, le=1, description="Probability that an instance is the learner against itself."
    )


class _FictitiousSelfPlaySampler(PopulationSampler):
    """The fictitious_self_play distribution over the population."""

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """(latest_share, uniform over the members)."""
        k = len(self.population.members)
        if k == 0:
            return 1.0, torch.zeros(0, dtype=torch.float64)
        return self.params.latest_share, torch.full((k,), 1.0 / k, dtype=torch.float64)


class FictitiousSelfPlay:
    """Uniform over the population, with an optional share of the latest learner."""

    name = "fictitious_self_play"
    Params = FictitiousSelfPlayParams

    def __init__(self, params: FictitiousSelfPlayParams) -> None:
        self.params = params
        self.sampler = _FictitiousSelfPlaySampler(params, name=self.name)
        self.designer_metrics = self.sampler.designer_metrics

    @hookimpl
    def incentive_setup(self, run):
        """Check the recipe against the env; build the population."""
        self.sampler.setup(run)

    @hookimpl
    def incentive_pick_opponents(self, run, iteration):
        """Sample each instance's learner seat and opponents."""
        return self.sampler.pick_opponents(run, iteration)

    @hookimpl
    def incentive_collect_metrics(self, run, rollout):
        """`population/...` metrics; designer metrics when due."""
        return self.sampler.collect_metrics(run, rollout)

    @hookimpl
    def incentive_update_population(self, results):
        """Keep the iteration's finished episodes."""
        self.sampler.update_population(results)

    @hookimpl
    def incentive_iteration_end(self, iteration):
        """Count the games, update ratings, snapshot when due."""
        self.sampler.iteration_end(iteration)

    @hookimpl
    def incentive_state_dict(self):
        """The whole population and the sampler's state."""
        return self.sampler.state_dict()

    @hookimpl
    def incentive_load_state_dict(self, run, state):
        """Restore the population (names the file of a broken snapshot)."""
        self.sampler.load_state_dict(run, state)
