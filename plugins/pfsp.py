"""Prioritised fictitious self-play (AlphaStar, Vinyals et al. 2019).

Opponent B is drawn with probability

    P(B) = f(x_B) / sum_C f(x_C),   x_B = (wins_B + 0.5 draws_B) / games_B

the learner's win rate against B on decayed counts (`decay`), over every
member of the population (snapshots and `bots`):

| weighting       | f(x)            | favours                              |
| --------------- | --------------- | ------------------------------------ |
| `hard`          | (1 - x)^p       | the opponents the learner loses to   |
| `variance`      | x (1 - x)       | opponents of about its own strength  |
| `linear`        | 1 - x           | a milder `hard`                      |
| `linear_capped` | min(0.5, 1 - x) | everyone it does not beat reliably   |

A member without games yet counts as x = 0.5; when every f is 0 (or there
are no members with games) the draw is uniform. With probability
`self_play_share` an instance is a mirror match instead (AlphaStar's main
agents: 35%). Parameters: `weighting`, `p`, `self_play_share`, plus those of
`incentive.population.PopulationParams`.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from incentive import hookimpl
from incentive.population import PopulationParams, PopulationSampler, pfsp_weights

__all__ = ["PFSP"]


class PFSPParams(PopulationParams):
    """The weighting function and the mirror share."""

    weighting: Literal["hard", "variance", "linear", "linear_capped"] = Field(
        "hard", description="f(x) of the win rate x (see the plugin's documentation)."
    )
    p: float = Field(2.0, gt=0, description="Exponent of the `hard` weighting.")
    self_play_share: float = Field(
        0.0, ge=0, le=1, description="Probability that an instance is the learner against itself."
    )


class _PFSPSampler(PopulationSampler):
    """The pfsp distribution over the population."""

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """(self_play_share, PFSP weights over the members)."""
        pop = self.population
        if not pop.members:
            return 1.0, torch.zeros(0, dtype=torch.float64)
        return self.params.self_play_share, pfsp_weights(pop.win_rate(), self.params.weighting, self.params.p)


class PFSP:
    """Samples opponents by the learner's win rate against them."""

    name = "pfsp"
    Params = PFSPParams

    def __init__(self, params: PFSPParams) -> None:
        self.params = params
        self.sampler = _PFSPSampler(params, name=self.name)
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
