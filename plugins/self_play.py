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

from incentive.population import PopulationParams, PopulationSampler

__all__ = ["SelfPlay"]


class SelfPlayParams(PopulationParams):
    """Self-play takes no snapshots unless asked to."""

    snapshot_every: int | None = Field(
        None, ge=1, description="Freeze a snapshot every this many iterations (null: never)."
    )


class SelfPlay(PopulationSampler):
    """Fills every seat with the live learner."""

    name = "self_play"
    Params = SelfPlayParams

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """Mirror share 1: the learner in every seat."""
        return 1.0, torch.zeros(len(self.population.members), dtype=torch.float64)

    def mixture_weights(self) -> torch.Tensor:
        """The snapshots, uniformly (only for `mixture_exploitability` when snapshots are taken)."""
        return torch.ones(len(self.population.members), dtype=torch.float64)
