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


class PFSP(PopulationSampler):
    """Samples opponents by the learner's win rate against them."""

    name = "pfsp"
    Params = PFSPParams

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """(self_play_share, PFSP weights over the members)."""
        pop = self.population
        if not pop.members:
            return 1.0, torch.zeros(0, dtype=torch.float64)
        return self.params.self_play_share, pfsp_weights(pop.win_rate(), self.params.weighting, self.params.p)
