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
agents: 35%).

`bot_share` (default 0, AlphaStar's rule) anchors the learner to the fixed
bots: the draws that are not mirror matches take P'(B) = (1 - bot_share)
P(B) + bot_share / n_bots for each of the n_bots `bots`, and (1 - bot_share)
P(B) for every snapshot. Under `hard` weighting a bot the learner beats
95% of the time gets almost no games, so the learner stops seeing the
positions such a bot creates (Connect Four: random play), and its last 5%
against it never closes.

Parameters: `weighting`, `p`, `self_play_share`, `bot_share`, plus those of
`incentive.population.PopulationParams`.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from incentive.errors import RecipeError
from incentive.population import PopulationParams, PopulationSampler, pfsp_weights
from incentive.types import RunContext

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
    bot_share: float = Field(
        0.0, ge=0, le=1, description="Share of the other draws spread uniformly over the fixed `bots`."
    )


class PFSP(PopulationSampler):
    """Samples opponents by the learner's win rate against them."""

    name = "pfsp"
    Params = PFSPParams

    def check(self, run: RunContext) -> None:
        """`bot_share` needs bots to spread over."""
        if self.params.bot_share > 0 and not self.params.bots:
            raise RecipeError(
                f"{run.recipe.source}: field 'opponents.params.bot_share': {self.params.bot_share} of the "
                "draws should go to the fixed bots, but 'opponents.params.bots' lists none"
            )

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """(self_play_share, PFSP weights over the members)."""
        pop = self.population
        if not pop.members:
            return 1.0, torch.zeros(0, dtype=torch.float64)
        probs = pfsp_weights(pop.win_rate(), self.params.weighting, self.params.p)
        if self.params.bot_share > 0:  # `check` made sure there are bots
            bots = torch.tensor([m.kind == "bot" for m in pop.members], dtype=torch.float64)
            probs = (1.0 - self.params.bot_share) * probs + self.params.bot_share * bots / bots.sum()
        return self.params.self_play_share, probs
