"""Connect Four, batched: E boards played at once with bitboards in torch.

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | `player_0` (moves first), `player_1`                                   |
| actions      | Discrete(7): drop a piece into column 0..6 (left to right); the piece  |
|              | falls to the lowest free cell of the column                            |
| observation  | Box(0, 1, (6, 7, 2), int8) from the agent's own view: plane 0 holds    |
|              | the agent's pieces, plane 1 the opponent's; row 0 is the top row       |
|              | (PettingZoo `connect_four_v3`'s layout and dtype)                      |
| action mask  | the acting agent's legal columns (not full); the other agent's row is  |
|              | all True (it does not act)                                             |
| acting       | exactly one agent per instance: the player to move                     |
| reward       | at the end, for both seats: +1 to the winner and -1 to the loser, 0    |
|              | and 0 for a draw; 0 on every other step                                |
| episode      | ends (terminated) at four in a row (horizontal, vertical or either     |
|              | diagonal) by the player who just moved, or a full board (a draw), at   |
|              | most 42 moves; never truncated                                         |

The rules and the observation match PettingZoo's `connect_four_v3` move for
move (`tests/test_env_connect_four.py` plays random games against it through
`AECView`). The first player wins with perfect play.

Illegal moves. A masked sampler never plays a full column. If the acting
agent plays one anyway, the env does what PettingZoo's `connect_four_v3`
does (its `TerminateIllegalWrapper` with `illegal_reward=-1`): the board is
left as it was, the mover gets -1, the other player 0, and the episode ends
(reported as terminated; the `illegal_moves` counter records it). An action
outside 0..6 for the acting agent is a ValueError; actions of the agent that
does not act are ignored whatever they are.

Random openings (`random_opening: K`, default 0: every game starts on the
empty board). A diversity device for self-play training: with K > 0 every
game, at every reset (`reset` and each automatic reset in `step`), starts
with k plies of uniformly random moves, k uniform on 0..K and drawn per game,
played alternately from player_0 on; the agents first see the position after
them, and whoever's turn it is moves (player_0 when k is even). The opening
plies are nobody's actions: no reward and no counter (`moves` counts the
agents' moves only, so `episode_length` is the agents' part of the game; the
board's piece count, which decides a full board, includes the opening). K is
at most 6: before each of its plies at most 5 pieces are on the board, so no
column is full (a uniform column is a uniform legal move), and with at most
3 pieces each nobody has four in a row, so every opening leaves a game on.
Each game's opening comes from its instance's own stream (`self.rng`: K + 1
draws per game, and only the instances that start a game draw), so instance
e of a batch plays exactly like a lone instance seeded with seed + e, and a
checkpoint's `rng` resumes the openings bit for bit. The field is marked
training-only: evaluation games (`evaluation_params`) start from the empty
board. An `AECView` of an env with openings is still a valid AEC env (its
games start from the opening); it no longer plays like PettingZoo's
`connect_four_v3`, which has no openings.

Per-step `info` counters ([E] float): `player_0_wins`, `player_1_wins` (1 on
the move that makes four in a row), `draws` (1 on the move that fills the
board without a winner), `illegal_moves` (1 when the mover played a full
column) and `moves` (1 on every agent's move, an illegal last move included:
its episode total is the episode's length, opening plies not counted).

Designer metrics over the finished episodes: `win_rate/player_0`,
`win_rate/player_1`, `draw_rate`, `illegal_move_rate` (each the fraction of
episodes that ended that way) and `episode_length` (mean moves per episode).

Implementation: each board is two 64-bit integers (one per seat). Bit
7 * column + height holds the cell `height` rows above the bottom of
`column`; bit 7 * column + 6 is an always-empty guard, so shifting a board
by 1 (vertical), 7 (horizontal), 6 and 8 (the diagonals) never wraps a line
from one column into the next. A board b has four in a row along shift s
exactly when m & (m >> 2s) != 0 with m = b & (b >> s). The free cell of a
column is ((both boards) + (bottom bit of the column)) & (the column's six
cells), which is 0 when the column is full (`drop_bits`, used by the bots).
The env also keeps the column heights, a bit set of full columns, and both
seats' observation planes, updated piece by piece; small lookup tables turn
(how the move ended, who moved) into rewards, counters and masks with one
gather each. The observation tensors handed out are never written again (the
next step writes a copy), so they stay valid; do not modify them in place.
The game has no randomness; the random openings are the env's only draws.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium
import torch
from pydantic import Field

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep

__all__ = [
    "COLUMNS",
    "ROWS",
    "ConnectFour",
    "ConnectFourParams",
    "board_from_planes",
    "drop_bits",
    "has_four",
]

ROWS, COLUMNS = 6, 7
CELLS = ROWS * COLUMNS
#: Bits per column in a bitboard: six cells and the guard bit.
STRIDE = ROWS + 1
#: Shifts that move a piece one step along a line: vertical, diagonal /, horizontal, diagonal \.
LINE_SHIFTS = (1, STRIDE - 1, STRIDE, STRIDE + 1)

_COLUMN_INDEX = torch.arange(COLUMNS, dtype=torch.int64)
#: Bottom cell's bit of each column.
BOTTOM = torch.ones(COLUMNS, dtype=torch.int64) << (_COLUMN_INDEX * STRIDE)
#: The six cells' bits of each column (no guard bit).
COLUMN_CELLS = ((1 << ROWS) - 1) << (_COLUMN_INDEX * STRIDE)
#: Bit number of observation cell (row r from the top, column c), flattened row-major: 7c + 5 - r.
CELL_BIT = (
    _COLUMN_INDEX[None, :] * STRIDE + (ROWS - 1 - torch.arange(ROWS, dtype=torch.int64))[:, None]
).reshape(CELLS)
_SHIFTS = torch.tensor(LINE_SHIFTS, dtype=torch.int64)

# How a move ends, from the flags (won, board full, illegal): 0 the game goes on, 1 the mover won,
# 2 a draw, 3 an illegal move. A move can fill the board and win: that is a win.
ON, WON, DRAWN, ILLEGAL = 0, 1, 2, 3


def has_four(board: torch.Tensor) -> torch.Tensor:
    """Bool tensor shaped like `board` (int64 bitboards): four in a row anywhere."""
    shifts = _SHIFTS.to(board.device)
    b = board[..., None]  # all four directions at once: few large ops beat many small ones
    pairs = b & (b >> shifts)
    return ((pairs & (pairs >> (2 * shifts))) != 0).any(-1)


def drop_bits(occupied: torch.Tensor) -> torch.Tensor:
    """[..., 7] int64: the bit a piece dropped into each column lands on (0 where the column is full).

    Args:
        occupied: int64 bitboards of all pieces (both players), any shape.
    """
    bottom = BOTTOM.to(occupied.device)
    cells = COLUMN_CELLS.to(occupied.device)
    return (occupied[..., None] + bottom) & cells


def board_from_planes(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bitboards (own, opponent), each [N] int64, of [N, 6, 7, 2] observation planes."""
    weights = torch.ones(CELLS, dtype=torch.int64, device=planes.device) << CELL_BIT.to(planes.device)
    cells = planes.reshape(-1, CELLS, 2).to(torch.int64)
    own = (cells[:, :, 0] * weights).sum(1)
    opponent = (cells[:, :, 1] * weights).sum(1)
    return own, opponent


def _tables(device: torch.device) -> dict[str, torch.Tensor]:
    """Lookup tables that turn the step's few per-instance numbers into its outputs in one gather each.

    - `plane_cell[(7c + h) * 2 + s, v]`: offset, within one instance's 84 observation numbers, of
      the piece seat s drops at height h of column c, in viewer v's planes (plane 0 if v == s).
    - `outcome[key]`, key = 4 won + 2 full + illegal: how the move ended (ON, WON, DRAWN, ILLEGAL).
    - `reward[o * 2 + s]`: both seats' rewards [2] when the move by seat s ended as o.
    - `counters[:, o * 2 + s]`: the `info_keys` counters [5] for the same.
    - `masks[f * 2 + s]`: both seats' action masks [2, 7] when seat s is to move and bit c of f marks
      full column c (the seat that does not move gets all True).
    """
    plane_cell = torch.zeros(COLUMNS * STRIDE * 2, 2, dtype=torch.int64)
    for column in range(COLUMNS):
        for height in range(STRIDE):  # height 6: an illegal move, which adds nothing anywhere
            row = ROWS - 1 - min(height, ROWS - 1)
            for seat in range(2):
                for viewer in range(2):
                    plane = int(seat != viewer)
                    plane_cell[(column * STRIDE + height) * 2 + seat, viewer] = (
                        row * COLUMNS + column
                    ) * 2 + plane
    outcome = torch.tensor([ON, ILLEGAL, DRAWN, ILLEGAL, WON, WON, WON, WON], dtype=torch.int64)
    reward = torch.zeros(8, 2)
    counters = torch.zeros(5, 8)  # player_0_wins, player_1_wins, draws, illegal_moves, moves
    for seat in range(2):
        reward[WON * 2 + seat, seat], reward[WON * 2 + seat, 1 - seat] = 1.0, -1.0
        reward[ILLEGAL * 2 + seat, seat] = -1.0
        counters[seat, WON * 2 + seat] = 1.0
        counters[2, DRAWN * 2 + seat] = 1.0
        counters[3, ILLEGAL * 2 + seat] = 1.0
    counters[4] = 1.0
    full = (torch.arange(1 << COLUMNS)[:, None] >> _COLUMN_INDEX) & 1  # [128, 7]
    masks = torch.ones(1 << COLUMNS, 2, 2, COLUMNS, dtype=torch.bool)  # [full, mover, seat, column]
    for seat in range(2):
        masks[:, seat, seat] = full == 0
    tables = {
        "plane_cell": plane_cell,
        "outcome": outcome,
        "reward": reward,
        "counters": counters,
        "masks": masks.reshape(-1, 2 * COLUMNS),
        "acting": torch.eye(2, dtype=torch.bool),
    }
    return {name: table.to(device) for name, table in tables.items()}


#: The most opening plies: with at most 6 pieces no column is full and nobody has four in a row.
MAX_OPENING = 6


class ConnectFourParams(EnvParams):
    """Connect Four on the standard 6 x 7 board; games may start with random opening plies."""

    random_opening: int = Field(
        0,
        ge=0,
        le=MAX_OPENING,
        description=(
            "Most random plies each training game starts with (k uniform on 0..K per game; 0: the empty "
            "board). At most 6, so nobody can have four. Training only: evaluation games start empty."
        ),
        json_schema_extra={"training_only": True},
    )


class ConnectFour(BatchedEnv):
    """E games of Connect Four stepped as tensor operations (no loop over instances)."""

    Params: ClassVar[type[EnvParams]] = ConnectFourParams
    info_keys = ("player_0_wins", "player_1_wins", "draws", "illegal_moves", "moves")
    metric_names = (
        "win_rate/player_0",
        "win_rate/player_1",
        "draw_rate",
        "illegal_move_rate",
        "episode_length",
    )
    state_keys = ("boards", "heights", "full", "turn", "moves", "planes")
    #: The seats' rewards always sum to zero (population meta-solvers may use an exact Nash LP).
    zero_sum: ClassVar[bool] = True

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        self.possible_agents = ["player_0", "player_1"]
        obs_space = gymnasium.spaces.Box(0, 1, (ROWS, COLUMNS, 2), dtype="int8")
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        action_space = gymnasium.spaces.Discrete(COLUMNS)
        self.action_spaces = {a: action_space for a in self.possible_agents}
        e = num_envs
        # boards[e, s]: seat s's pieces as a bitboard (for judging lines); heights[e, c]: pieces in
        # column c; full[e]: bit c set when column c is full; turn[e]: the seat to move; moves[e]:
        # pieces on the board
        self.boards = torch.zeros(e, 2, dtype=torch.int64, device=self.device)
        self.heights = torch.zeros(e, COLUMNS, dtype=torch.int64, device=self.device)
        self.full = torch.zeros(e, dtype=torch.int64, device=self.device)
        self.turn = torch.zeros(e, dtype=torch.int64, device=self.device)
        self.moves = torch.zeros(e, dtype=torch.int64, device=self.device)
        # planes[v]: seat v's observations [E, 6, 7, 2], kept up to date piece by piece (rebuilding
        # them from the bitboards every step would cost more than the rest of the step)
        self.planes = torch.zeros(2, e, ROWS, COLUMNS, 2, dtype=torch.int8, device=self.device)
        self._tables = _tables(self.device)
        # flat index of (viewer, instance) in `planes`
        self._plane_base = torch.arange(2 * e, device=self.device).view(2, e) * (CELLS * 2)
        # random openings: K; the bounds of the K + 1 draws per game (plies, then K columns); the ply
        # numbers; earlier[j, i]: ply i comes before ply j
        self._opening = params.random_opening
        k = self._opening
        self._opening_high = torch.tensor([[k + 1] + [COLUMNS] * k], device=self.device)
        self._ply = torch.arange(k, device=self.device)
        self._earlier = self._ply[None, :] < self._ply[:, None]

    # --- views of the state ------------------------------------------------

    def _observe(self) -> dict[str, torch.Tensor]:
        """Observations: views of `planes`, which is replaced, never written, once handed out."""
        return {agent: self.planes[i] for i, agent in enumerate(self.possible_agents)}

    def _acting_and_masks(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        acting = self._tables["acting"].index_select(0, self.turn)
        masks = self._tables["masks"].index_select(0, self.full * 2 + self.turn).view(-1, 2, COLUMNS)
        return acting, {agent: masks[:, i] for i, agent in enumerate(self.possible_agents)}

    # --- the interface -----------------------------------------------------

    def _play_openings(self, rows: torch.Tensor) -> None:
        """The random opening plies of the games that start now in the instances `rows` ([m] long).

        Their boards must be empty. Each of them draws K + 1 numbers from its own stream, its number
        of plies k and K columns, of which the first k are played; the other instances' streams and
        boards stay as they are. All plies are placed at once: a ply's piece lands at the height of
        the earlier plies in its column. Only the m rows are computed (a few per step in training).
        It writes the state tensors in place: the reset that emptied the boards made them anew, so
        no observation handed out shares them.
        """
        draws = self.rng.integers(self._opening_high, self._opening + 1, streams=rows)
        plies, column = draws[:, 0], draws[:, 1:]  # [m], [m, K]
        played = self._ply < plies[:, None]  # [m, K]
        below = (column[:, :, None] == column[:, None, :]) & played[:, None, :] & self._earlier
        slot = column * STRIDE + below.sum(2)  # [m, K] bit numbers of the pieces
        pieces = played.long() << slot
        # player_0 plays the even plies, player_1 the odd ones; distinct bits, so a sum is their union
        self.boards[rows] = torch.stack([pieces[:, 0::2].sum(1), pieces[:, 1::2].sum(1)], 1)
        heights = torch.zeros(len(rows), COLUMNS, dtype=torch.int64, device=self.device)
        heights = heights.scatter_add(1, column, played.long())
        self.heights[rows] = heights
        self.full[rows] = ((heights == ROWS).long() << _COLUMN_INDEX.to(self.device)).sum(1)
        self.moves[rows] = plies
        self.turn[rows] = plies & 1
        cell = self._tables["plane_cell"][slot * 2 + self._ply % 2]  # [m, K, 2 viewers]
        index = (self._plane_base[:, rows].T[:, None, :] + cell).reshape(-1)
        placed = played[:, :, None].expand(-1, -1, 2).reshape(-1).to(torch.int8)
        self.planes.view(-1).index_put_((index,), placed, accumulate=True)

    def _reset(self) -> TimeStep:
        for key in self.state_keys:
            setattr(self, key, torch.zeros_like(getattr(self, key)))
        if self._opening:
            self._play_openings(torch.arange(self.num_envs, device=self.device))
        acting, masks = self._acting_and_masks()
        ts = self._first_step(self._observe(), acting)
        ts.action_mask = masks
        return ts

    def _mover_columns(self, actions: torch.Tensor) -> torch.Tensor:
        """[E] column chosen by the agent to move, or ValueError for a column outside 0..6."""
        expected = (self.num_envs, 2)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must have shape {expected}, got {tuple(actions.shape)}")
        if actions.dtype != torch.long or actions.device != self.device:
            actions = actions.to(self.device, torch.long)
        column = actions.gather(1, self.turn[:, None])[:, 0]
        low, high = torch.aminmax(column)
        if int(low) < 0 or int(high) >= COLUMNS:
            e = int(((column < 0) | (column >= COLUMNS)).nonzero()[0, 0])
            raise ValueError(
                f"actions of the agent to move must be columns 0..{COLUMNS - 1}; instance {e} "
                f"(player_{int(self.turn[e])} to move) got {int(column[e])}"
            )
        return column

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Drop the mover's piece, judge the board, pay the end, reset finished games.

        Args:
            actions: [E, 2] long; only the column of the agent to move is read.

        Returns:
            The `TimeStep`; finished games already start again (after their random opening, if any).

        Raises:
            ValueError: the agent to move chose a column outside 0..6.

        """
        tables = self._tables
        column = self._mover_columns(actions)
        turn = self.turn
        height = self.heights.gather(1, column[:, None])[:, 0]
        legal = height < ROWS
        placed = legal.long()
        slot = column * STRIDE + height  # the landing cell's bit number (a guard bit if illegal)

        # drop the piece: bitboard, column height, full columns, both seats' observation planes
        mover_board = self.boards.gather(1, turn[:, None])[:, 0] | (placed << slot)
        self.boards = self.boards.scatter(1, turn[:, None], mover_board[:, None])
        self.heights = self.heights.scatter_add(1, column[:, None], placed[:, None])
        self.full = self.full | ((height == ROWS - 1).long() << column)
        self.moves = self.moves + placed
        cell = tables["plane_cell"].index_select(0, slot * 2 + turn).T  # [2 viewers, E]
        self.planes = self.planes.clone()  # the old planes were handed out as observations
        self.planes.view(-1).index_put_((self._plane_base + cell,), legal.to(torch.int8), accumulate=True)

        # judge: four in a row by the mover, a full board (a draw), an illegal move (the mover loses)
        won = has_four(mover_board)
        key = won.long() * 4 + (self.moves == CELLS).long() * 2 + (1 - placed)
        code = tables["outcome"].index_select(0, key) * 2 + turn
        terminated = code >= 2
        reward = tables["reward"].index_select(0, code)
        info = dict(zip(self.info_keys, tables["counters"].index_select(1, code).unbind(0), strict=True))

        final_obs = None
        if bool(terminated.any()):
            final_obs = self._observe()
            keep = (~terminated).long()
            self.boards = self.boards * keep[:, None]
            self.heights = self.heights * keep[:, None]
            self.full = self.full * keep
            self.moves = self.moves * keep
            self.planes = self.planes * keep.to(torch.int8).view(1, -1, 1, 1, 1)
            self.turn = (1 - turn) * keep
            if self._opening:
                self._play_openings(terminated.nonzero()[:, 0])
        else:
            self.turn = 1 - turn
        acting, masks = self._acting_and_masks()
        return TimeStep(
            obs=self._observe(),
            reward=reward,
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
            acting=acting,
            action_mask=masks,
            info=info,
            final_obs=final_obs,
        )

    def final_action_mask(self, final_obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Legal columns (not full) on the final boards, for views that show the last position.

        PettingZoo's `connect_four_v3` still shows the mask of the final board
        to the agent whose turn it would be; `AECView` asks for it here.
        """
        return {agent: planes[:, 0].sum(-1) == 0 for agent, planes in final_obs.items()}

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Win, draw and illegal-move rates and mean length over the finished episodes."""
        episodes = len(totals["moves"])
        if episodes == 0:
            return {name: float("nan") for name in self.metric_names}
        rate = {key: float(totals[key].sum()) / episodes for key in self.info_keys}
        return {
            "win_rate/player_0": rate["player_0_wins"],
            "win_rate/player_1": rate["player_1_wins"],
            "draw_rate": rate["draws"],
            "illegal_move_rate": rate["illegal_moves"],
            "episode_length": rate["moves"],
        }
