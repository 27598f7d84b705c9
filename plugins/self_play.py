"""Self-play: the latest learner in every seat (the mirror match).

Every instance is the learner against itself; both seats produce training
data. The population holds no snapshots by default (`snapshot_every: null`),
so this is "latest-only" self-play; listed `bots` are kept for Elo anchoring
only and are never sampled. Parameters: those of
`incentive.population.PopulationParams` (snapshots, bots, designer metrics).
"""

from __future__ import annotations

import torch
from pydantic import Field

from incentive import hookimpl
from incentive.population import PopulationParams, PopulationSampler

__all__ = ["SelfPlay"]


class SelfPlayParams(PopulationParams):
    """Self-play takes no snapshots unless asked to."""

    snapshot_every: int | None = Field(
        None, ge=1, description="Freeze a snapshot every this many iterations (null: never)."
    )


class _SelfPlaySampler(PopulationSampler):
    """The self_play distribution over the population."""

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """Mirror share 1: the learner in every seat."""
        return 1.0, torch.zeros(len(self.population.members), dtype=torch.float64)

    def mixture_weights(self) -> torch.Tensor:
        """The snapshots, uniformly (only for `mixture_exploitability` when snapshots are taken)."""
        return torch.ones(len(self.population.members), dtype=torch.float64)


class SelfPlay:
    """Fills every seat with the live learner."""

    name = "self_play"
    Params = SelfPlayParams

    def __init__(self, params: SelfPlayParams) -> None:
        self.params = params
        self.sampler = _SelfPlaySampler(params, name=self.name)
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
