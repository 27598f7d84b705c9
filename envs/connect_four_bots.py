"""Scripted Connect Four players, batched over instances: fixed opponents and evaluators.

Each bot is a frozen `Policy` (`incentive.types.Policy`): `act(obs, action_mask,
seats)` returns actions [E, 2] for the `ConnectFour` env, and only the entries
where `seats` is True are meant to be used. A bot reads the board from the
observation planes of the seat it plays (plane 0 its own pieces, plane 1 the
opponent's), so it needs nothing but what a learner sees. Where it plays a
seat that is not to move (player_0 moves when both have as many pieces,
player_1 when it has one fewer), its action is 0 and the env ignores it.

| id        | plays                                                                   |
| --------- | ----------------------------------------------------------------------- |
| `random`  | a uniformly random legal column                                         |
| `one_ply` | a winning move if it has one; else a column that blocks an immediate   |
|           | win of the opponent (a random one if there are several threats); else  |
|           | a random legal column                                                   |
| `minimax` | full-width negamax to `depth` plies (all 7**depth move sequences as     |
|           | tensors), the best root move, ties broken uniformly at random           |

Minimax values, from the view of the player to move at a node:

- a move that makes four in a row at ply d (counted from the root, the root's
  own moves being ply 1) is worth `WIN - d` to its mover, so a nearer win is
  better and a later loss less bad; a full board is worth 0;
- a position at the depth limit is worth the heuristic h = sum over the 69
  lines of four cells of `THREE` (5) for each line holding three of the
  mover's pieces and an empty cell, `TWO` (2) for each with two of the
  mover's and two empty cells, minus the same counts for the opponent;
- any other position is worth the maximum over its legal moves of minus the
  value of the position after the move.

With `depth` >= 1 it takes an immediate win whenever it has one; with
`depth` >= 2 it also never leaves the opponent a win on the next move when
some move avoids that (the heuristic is bounded by 69 * THREE < WIN - depth,
so no leaf outweighs a win or a loss). The tree is expanded without
pruning, so its cost grows as 7**depth per instance (depth 4: 2401 leaves);
instances are evaluated in chunks of at most `leaf_budget` leaves to bound
memory. Randomness (the random moves and the tie-breaks) comes only from the
`torch.Generator` given to the bot: the same generator state and the same
inputs give the same actions.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from incentive.envs.connect_four import (
    CELLS,
    COLUMNS,
    LINE_SHIFTS,
    ROWS,
    STRIDE,
    board_from_planes,
    drop_bits,
    has_four,
)

__all__ = [
    "BOTS",
    "LINE_STARTS",
    "THREE",
    "TWO",
    "WIN",
    "MinimaxBot",
    "OnePlyBot",
    "RandomBot",
    "heuristic",
    "immediate_wins",
    "make_bot",
    "movers",
    "popcount",
    "root_values",
]

WIN = 1000.0
THREE = 5.0
TWO = 2.0


def _line_starts() -> torch.Tensor:
    """[4] int64: for each shift of `LINE_SHIFTS`, the bits where a line of four along it starts."""
    steps = ((0, 1), (1, -1), (1, 0), (1, 1))  # (columns, rows up) per step of shift 1, 6, 7, 8
    starts = [0] * len(steps)
    for column in range(COLUMNS):
        for height in range(ROWS):
            for i, (d_column, d_height) in enumerate(steps):
                if 0 <= column + 3 * d_column < COLUMNS and 0 <= height + 3 * d_height < ROWS:
                    starts[i] |= 1 << (column * STRIDE + height)
    return torch.tensor(starts, dtype=torch.int64)


#: Start bits of the 69 lines of four (21 vertical, 12 per diagonal, 24 horizontal), per shift.
LINE_STARTS = _line_starts()
_SHIFTS = torch.tensor(LINE_SHIFTS, dtype=torch.int64)


def popcount(x: torch.Tensor) -> torch.Tensor:
    """Set bits of each int64 in `x` (values in [0, 2**56)), as int64 of the same shape."""
    x = x - ((x >> 1) & 0x0055555555555555)
    x = (x & 0x0033333333333333) + ((x >> 2) & 0x0033333333333333)
    x = (x + (x >> 4)) & 0x000F0F0F0F0F0F0F  # each byte now holds its own count (<= 8)
    x = x + (x >> 8)  # fold the bytes onto the lowest one; no sum exceeds 56, so none carries
    x = x + (x >> 16)
    x = x + (x >> 32)
    return x & 0x7F


def _two_and_three(board: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Line starts [N, 4] (one bitboard per shift) whose cells hold exactly 2, exactly 3, any pieces.

    The count of pieces in the four cells is added bit-parallel, one adder per line start.
    """
    shifts = _SHIFTS.to(board.device)
    a = board[:, None].expand(-1, len(LINE_SHIFTS))
    b, c, d = a >> shifts, a >> (2 * shifts), a >> (3 * shifts)
    low_ab, high_ab, low_cd, high_cd = a ^ b, a & b, c ^ d, c & d  # a + b and c + d in two bits
    ones = low_ab ^ low_cd  # bit 0 of the count
    carry = low_ab & low_cd
    twos = high_ab ^ high_cd ^ carry  # bit 1 of the count
    fours = (high_ab & high_cd) | ((high_ab ^ high_cd) & carry)  # bit 2 (all four cells)
    return ~ones & twos & ~fours, ones & twos & ~fours, a | b | c | d


def heuristic(own: torch.Tensor, opponent: torch.Tensor) -> torch.Tensor:
    """[N] float32 value of positions [N] for the player owning `own` (see the module docstring)."""
    starts = LINE_STARTS.to(own.device)
    own_two, own_three, own_any = _two_and_three(own)
    opp_two, opp_three, opp_any = _two_and_three(opponent)
    own_alone, opp_alone = starts & ~opp_any, starts & ~own_any  # lines the other side is not in
    lines = torch.stack(
        [own_three & own_alone, own_two & own_alone, opp_three & opp_alone, opp_two & opp_alone]
    )
    counts = popcount(lines).sum(-1).to(torch.float32)  # [4, N]
    return THREE * (counts[0] - counts[2]) + TWO * (counts[1] - counts[3])


def _pick(candidates: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[N] a uniformly random True column of each row of candidates [N, 7] (0 for an empty row)."""
    keys = torch.rand(candidates.shape, generator=generator, device=candidates.device)
    return keys.masked_fill(~candidates, -1.0).argmax(1)


def movers(
    obs: dict[str, torch.Tensor], action_mask: dict[str, torch.Tensor] | None, seats: torch.Tensor
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(seat, rows, own, opponent, legal) for each seat with rows in `seats` [E, 2] that are to move.

    `rows` [N] are the instances where that seat moves, `own` and `opponent` [N] the mover's
    bitboards there, `legal` [N, 7] its legal columns (the board's, and `action_mask`'s if given).
    """
    for seat, agent in enumerate(obs):
        planes = obs[agent]
        pieces = planes.reshape(planes.shape[0], CELLS, 2).sum(1)  # [E, 2]: own, opponent's
        to_move = seats[:, seat] & (pieces[:, 1] - pieces[:, 0] == seat)
        rows = to_move.nonzero().flatten()
        if len(rows) == 0:
            continue
        own, opponent = board_from_planes(planes.index_select(0, rows))
        legal = drop_bits(own | opponent) != 0
        if action_mask is not None and agent in action_mask:
            legal &= action_mask[agent].index_select(0, rows).bool()
        yield seat, rows, own, opponent, legal


def immediate_wins(
    own: torch.Tensor, opponent: torch.Tensor, legal: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, 7] each: the legal columns that win for the mover now, and those that would for the opponent."""
    drops = drop_bits(own | opponent)  # [N, 7]: the cell a piece lands on in each column
    return has_four(own[:, None] | drops) & legal, has_four(opponent[:, None] | drops) & legal


class _Bot:
    """Common `act`: find the seats to move, read their boards, choose for those rows only."""

    name = ""

    def __init__(self, *, generator: torch.Generator) -> None:
        self.generator = generator

    def act(
        self,
        obs: dict[str, torch.Tensor],
        action_mask: dict[str, torch.Tensor] | None,
        seats: torch.Tensor,
    ) -> torch.Tensor:
        """Actions [E, 2] long for the seats in `seats` [E, 2] that are to move (0 elsewhere).

        Args:
            obs: `player_0`, `player_1` -> [E, 6, 7, 2] planes, in seat order.
            action_mask: agent -> [E, 7] legal columns, or None (then the board decides alone).
            seats: [E, 2] bool, the seats this bot plays.
        """
        actions = torch.zeros(seats.shape, dtype=torch.long, device=seats.device)
        for seat, rows, own, opponent, legal in movers(obs, action_mask, seats):
            actions[rows, seat] = self.choose(own, opponent, legal)
        return actions

    def choose(self, own: torch.Tensor, opponent: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        """[N] columns for the mover's boards `own`, `opponent` [N] and legal columns [N, 7]."""
        raise NotImplementedError


class RandomBot(_Bot):
    """A uniformly random legal column."""

    name = "random"

    def choose(self, own: torch.Tensor, opponent: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        """A random legal column of each row."""
        return _pick(legal, self.generator)


class OnePlyBot(_Bot):
    """Win now if possible, else block the opponent's immediate win, else play at random."""

    name = "one_ply"

    def choose(self, own: torch.Tensor, opponent: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        """A winning column, else a blocking one, else a random legal one."""
        wins, threats = immediate_wins(own, opponent, legal)
        candidates = torch.where(
            wins.any(1, keepdim=True), wins, torch.where(threats.any(1, keepdim=True), threats, legal)
        )
        return _pick(candidates, self.generator)


class MinimaxBot(_Bot):
    """Full-width negamax to `depth` plies with the line-count heuristic at the leaves.

    Args:
        generator: randomness for tie-breaks.
        depth: plies searched (>= 1).
        leaf_budget: most leaves evaluated at once (memory bound); more instances go in chunks.
    """

    name = "minimax"

    def __init__(self, *, generator: torch.Generator, depth: int = 2, leaf_budget: int = 1 << 16) -> None:
        super().__init__(generator=generator)
        if depth < 1:
            raise ValueError(f"minimax depth must be at least 1, got {depth}")
        if leaf_budget < 1:
            raise ValueError(f"minimax leaf_budget must be at least 1, got {leaf_budget}")
        self.depth = depth
        self.chunk = max(1, leaf_budget // COLUMNS**depth)

    def choose(self, own: torch.Tensor, opponent: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        """The best column of each row by negamax; ties broken at random."""
        values = torch.cat(
            [
                root_values(
                    own[i : i + self.chunk],
                    opponent[i : i + self.chunk],
                    legal[i : i + self.chunk],
                    self.depth,
                )
                for i in range(0, len(own), self.chunk)
            ]
        )
        best = values == values.max(1, keepdim=True).values
        return _pick(best & legal, self.generator)


def root_values(own: torch.Tensor, opponent: torch.Tensor, legal: torch.Tensor, depth: int) -> torch.Tensor:
    """[N, 7] negamax value of each root move for the mover (-inf for illegal moves).

    Args:
        own: [N] bitboards of the player to move at the roots.
        opponent: [N] bitboards of the other player.
        legal: [N, 7] the moves allowed at the roots.
        depth: plies to search (>= 1).
    """
    n = len(own)
    pieces = popcount(own | opponent)  # [N]
    # expand: level d holds N * 7**d positions, position i's children at 7i .. 7i + 6
    to_move, waiting = own, opponent
    playable = torch.ones(n, dtype=torch.bool, device=own.device)  # reached by legal moves, not ended
    levels = []  # per level d >= 1: (valid [M], ended [M], value if ended [M]) from the to-move view
    for ply in range(1, depth + 1):
        drops = drop_bits(to_move | waiting)  # [M, 7]
        moved = to_move[:, None] | drops
        valid = playable[:, None] & (drops != 0)
        if ply == 1:
            valid &= legal
        won = has_four(moved) & valid
        full = (pieces + ply == CELLS)[:, None].expand(n, COLUMNS ** (ply - 1)).reshape(-1, 1)
        ended = won | (full & valid)
        ended_value = torch.where(won, -(WIN - ply), 0.0)  # the player to move there has lost
        levels.append((valid.reshape(-1), ended.reshape(-1), ended_value.reshape(-1)))
        playable = (valid & ~ended).reshape(-1)
        to_move, waiting = waiting[:, None].expand_as(moved).reshape(-1), moved.reshape(-1)
    # back up from the leaves: a node's value is minus its best child's value
    value = heuristic(to_move, waiting)
    for ply in range(depth, 0, -1):
        valid, ended, ended_value = levels[ply - 1]
        value = torch.where(ended, ended_value, value)
        child = torch.where(valid, -value, float("-inf")).view(-1, COLUMNS)
        if ply == 1:
            return child
        value = child.max(1).values
    raise AssertionError("unreachable: depth >= 1")


BOTS: dict[str, type[_Bot]] = {"random": RandomBot, "one_ply": OnePlyBot, "minimax": MinimaxBot}


def make_bot(name: str, *, generator: torch.Generator, **params: int) -> _Bot:
    """The bot registered as `name` (`random`, `one_ply`, `minimax`), built with `params`.

    Raises:
        ValueError: no bot has that name, or its parameters are wrong.
    """
    if name not in BOTS:
        raise ValueError(f"unknown Connect Four bot {name!r}; available: {', '.join(BOTS)}")
    try:
        return BOTS[name](generator=generator, **params)
    except TypeError as exc:
        raise ValueError(f"Connect Four bot {name!r}: bad parameters {params} ({exc})") from None
