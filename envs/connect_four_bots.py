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

With `depth` >= 1 it takes any immediate win; with `depth` >= 2 it also sees
every immediate threat of the opponent and never allows a win in one move
that it could stop by blocking a single threat. The tree is expanded without
pruning, so its cost grows as 7**depth per instance (depth 4: 2401 leaves);
instances are evaluated in chunks of at most `leaf_budget` leaves to bound
memory. Randomness (the random moves and the tie-breaks) comes only from the
`torch.Generator` given to the bot: the same generator state and the same
inputs give the same actions.
"""

from __future__ import annotations

import torch

from incentive.envs.connect_four import (
    CELL_BIT,
    CELLS,
    COLUMNS,
    board_from_planes,
    drop_bits,
    has_four,
)

__all__ = ["BOTS", "THREE", "TWO", "WIN", "MinimaxBot", "OnePlyBot", "RandomBot", "heuristic", "make_bot"]

WIN = 1000.0
THREE = 5.0
TWO = 2.0


def _lines() -> torch.Tensor:
    """[69, 42] 0/1: the cells (row-major observation order) of every line of four."""
    lines = []
    for row in range(6):
        for column in range(COLUMNS):
            for d_row, d_column in ((0, 1), (1, 0), (1, 1), (1, -1)):
                cells = [(row + k * d_row, column + k * d_column) for k in range(4)]
                if all(0 <= r < 6 and 0 <= c < COLUMNS for r, c in cells):
                    line = torch.zeros(CELLS)
                    for r, c in cells:
                        line[r * COLUMNS + c] = 1.0
                    lines.append(line)
    return torch.stack(lines)


LINES = _lines()
# score of one line by (own pieces, opponent's pieces) in it: only lines one side alone holds count
_LINE_SCORE = torch.zeros(5, 5)
_LINE_SCORE[3, 0], _LINE_SCORE[2, 0] = THREE, TWO
_LINE_SCORE[0, 3], _LINE_SCORE[0, 2] = -THREE, -TWO


def _cells(board: torch.Tensor) -> torch.Tensor:
    """[N, 42] float32 0/1 occupancy of [N] bitboards, in observation order."""
    return ((board[:, None] >> CELL_BIT.to(board.device)) & 1).to(torch.float32)


def heuristic(own: torch.Tensor, opponent: torch.Tensor) -> torch.Tensor:
    """[N] float32 value of positions [N] for the player owning `own` (see the module docstring)."""
    lines = LINES.to(own.device).T  # [42, 69]
    own_count = (_cells(own) @ lines).long()
    opponent_count = (_cells(opponent) @ lines).long()
    score = _LINE_SCORE.to(own.device).view(-1)
    return score.index_select(0, (own_count * 5 + opponent_count).view(-1)).view(own_count.shape).sum(1)


def _pick(candidates: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[N] a uniformly random True column of each row of candidates [N, 7] (0 for an empty row)."""
    keys = torch.rand(candidates.shape, generator=generator, device=candidates.device)
    return keys.masked_fill(~candidates, -1.0).argmax(1)


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
        drops = drop_bits(own | opponent)  # [N, 7]: the cell a piece lands on in each column
        wins = has_four(own[:, None] | drops) & legal
        threats = has_four(opponent[:, None] | drops) & legal
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
    pieces = _cells(own | opponent).sum(1).long()  # [N]
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
