"""Leduc hold'em (Southey et al., 2005), with OpenSpiel's `leduc_poker` betting rules.

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | `player_0` (acts first in both rounds), `player_1`                     |
| deck         | 6 cards, two suits of J, Q, K: card c has rank c // 2 (0 = J .. 2 = K) |
| actions      | Discrete(3), as OpenSpiel: 0 = fold, 1 = call/check, 2 = raise;       |
|              | fold is legal only facing a raise, raise only below two raises this    |
|              | round (masked; an illegal action is played as call/check)              |
| observation  | Box(0, 1, (38,)) float32: seat one-hot (2), own card one-hot (6),      |
|              | public card one-hot once revealed (6, zeros in round one), betting    |
|              | history: 2 rounds x 4 slots x one-hot action (fold, call, raise)       |
| reward       | both seats at the hand's end: net chips, zero-sum (at most 13)         |
| episode      | one hand: round one, the public card, round two; `acting` marks who    |
|              | moves                                                                  |

Rules (REFERENCES.md, OpenSpiel): antes 1; raises add 2 in round one and 4 in
round two, at most two raises per round; a round ends when a raise is called
or both check; after round one a public card is dealt; at the showdown a
private card that pairs the public card wins, else the higher private rank
wins, equal ranks split the pot (net 0). 936 information states (6 x 6 in
round one, 30 x 6 x 5 in round two), which `incentive.exploitability`
enumerates to compute the exact exploitability of any policy. The tables and
the batched stepping are shared with Kuhn poker in `incentive.envs.poker`.

Designer metrics, per hand: `player_0_chips`, `showdown_rate`, `fold_rate`,
`raises_per_hand`, `mean_pot` (chips both seats put in).
"""

from __future__ import annotations

from typing import ClassVar

from incentive.envs.base import EnvParams
from incentive.envs.poker import PokerEnv

__all__ = ["LeducPoker", "LeducPokerParams"]


class LeducPokerParams(EnvParams):
    """Leduc poker has no parameters: the rules are fixed."""


class LeducPoker(PokerEnv):
    """E hands of Leduc poker, stepped as tensors."""

    Params: ClassVar[type[EnvParams]] = LeducPokerParams
    game_name = "leduc_poker"
