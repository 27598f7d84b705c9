"""Kuhn poker (Kuhn, 1950): three cards, one betting round, one chip to bet.

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | `player_0` (acts first), `player_1`                                    |
| deck         | 3 cards: 0 = J, 1 = Q, 2 = K; each seat gets one, one stays unseen     |
| actions      | Discrete(2), as OpenSpiel: 0 = pass (check, or fold facing a bet),     |
|              | 1 = bet (or call facing a bet); both are always legal                  |
| observation  | Box(0, 1, (11,)) float32: seat one-hot (2), own card one-hot (3),      |
|              | betting history: 3 slots x one-hot action (pass, bet)                  |
| reward       | both seats at the hand's end: net chips (+-1 after a fold or a         |
|              | check-check showdown, +-2 after a called bet), zero-sum                |
| episode      | one hand, 2 or 3 actions; `acting` marks the seat to move              |

Rules: both ante 1; player_0 passes or bets 1; player_1 answers; after
pass-bet player_0 calls or folds; the higher card wins the showdown. The
tables, the encoding and the batched stepping are shared with Leduc poker in
`incentive.envs.poker`. At equilibrium player_0 expects -1/18 chip per hand;
exact exploitability of any policy is `incentive.exploitability`.

Designer metrics, per hand: `player_0_chips` (player_0's mean winnings; -1/18
at equilibrium), `showdown_rate`, `fold_rate`, `raises_per_hand` (bets),
`mean_pot` (chips both seats put in).
"""

from __future__ import annotations

from typing import ClassVar

from incentive.envs.base import EnvParams
from incentive.envs.poker import PokerEnv

__all__ = ["KuhnPoker", "KuhnPokerParams"]


class KuhnPokerParams(EnvParams):
    """Kuhn poker has no parameters: the rules are fixed."""


class KuhnPoker(PokerEnv):
    """E hands of Kuhn poker, stepped as tensors."""

    Params: ClassVar[type[EnvParams]] = KuhnPokerParams
    game_name = "kuhn_poker"
