"""Connect Four, batched: E boards played at once with bitboards in torch.

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | `player_0` (moves first), `player_1`                                   |
| actions      | Discrete(7): drop a piece into column 0..6 (left to right); the piece  |
|              | falls to the lowest free cell of the column                            |
| observation  | Box(0, 1, (6, 7, 2), float32) from the agent's own view: plane 0 holds |
|              | the agent's pieces, plane 1 the opponent's; row 0 is the top row       |
|              | (PettingZoo `connect_four_v3`'s layout, as float32 instead of int8)    |
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

Per-step `info` counters ([E] float): `player_0_wins`, `player_1_wins` (1 on
the move that makes four in a row), `draws` (1 on the move that fills the
board without a winner), `illegal_moves` (1 when the mover played a full
column) and `moves` (1 on every step: its episode total is the episode's
length).

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
cells), which is 0 when the column is full. The game has no randomness.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium
import torch

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep

__all__ = [
    "COLUMNS",
    "ROWS",
    "ConnectFour",
    "ConnectFourParams",
    "board_from_planes",
    "drop_bits",
    "has_four",
    "planes_from_boards",
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
#: Top cell's bit number of each column (the column is full when it is set).
TOP_BIT = _COLUMN_INDEX * STRIDE + ROWS - 1
#: Bit number of observation cell (row r from the top, column c), flattened row-major: 7c + 5 - r.
CELL_BIT = (
    _COLUMN_INDEX[None, :] * STRIDE + (ROWS - 1 - torch.arange(ROWS, dtype=torch.int64))[:, None]
).reshape(CELLS)


def has_four(board: torch.Tensor) -> torch.Tensor:
    """Bool tensor shaped like `board` (int64 bitboards): four in a row anywhere."""
    found = torch.zeros(board.shape, dtype=torch.bool, device=board.device)
    for shift in LINE_SHIFTS:
        pairs = board & (board >> shift)
        found |= (pairs & (pairs >> (2 * shift))) != 0
    return found


def drop_bits(occupied: torch.Tensor) -> torch.Tensor:
    """[..., 7] int64: the bit a piece dropped into each column lands on (0 where the column is full).

    Args:
        occupied: int64 bitboards of all pieces (both players), any shape.
    """
    bottom = BOTTOM.to(occupied.device)
    cells = COLUMN_CELLS.to(occupied.device)
    return (occupied[..., None] + bottom) & cells


def planes_from_boards(own: torch.Tensor, opponent: torch.Tensor) -> torch.Tensor:
    """[N, 6, 7, 2] float32 observation planes (own, opponent) of [N] bitboards."""
    boards = torch.stack([own, opponent], dim=1)  # [N, 2]
    bits = (boards[:, :, None] >> CELL_BIT.to(boards.device)) & 1  # [N, 2, 42]
    return bits.transpose(1, 2).reshape(-1, ROWS, COLUMNS, 2).to(torch.float32)


def board_from_planes(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bitboards (own, opponent), each [N] int64, of [N, 6, 7, 2] observation planes."""
    weights = torch.ones(CELLS, dtype=torch.int64, device=planes.device) << CELL_BIT.to(planes.device)
    cells = planes.reshape(-1, CELLS, 2).to(torch.int64)
    own = (cells[:, :, 0] * weights).sum(1)
    opponent = (cells[:, :, 1] * weights).sum(1)
    return own, opponent


class ConnectFourParams(EnvParams):
    """Connect Four has no parameters: the board is the standard 6 x 7."""


class ConnectFour(BatchedEnv):
    """E games of Connect Four stepped as tensor operations (no loop over instances)."""

    Params: ClassVar[type[EnvParams]] = ConnectFourParams
    info_keys = ("player_0_wins", "player_1_wins", "draws", "illegal_moves", "moves")
    metric_names = ("win_rate/player_0", "win_rate/player_1", "draw_rate", "illegal_move_rate", "episode_length")
    state_keys = ("boards", "turn", "moves")

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        self.possible_agents = ["player_0", "player_1"]
        obs_space = gymnasium.spaces.Box(0.0, 1.0, (ROWS, COLUMNS, 2), dtype="float32")
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        action_space = gymnasium.spaces.Discrete(COLUMNS)
        self.action_spaces = {a: action_space for a in self.possible_agents}
        # boards[e, i]: seat i's pieces as a bitboard; turn[e]: the seat to move; moves[e]: pieces played.
        self.boards = torch.zeros(num_envs, 2, dtype=torch.int64, device=self.device)
        self.turn = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.moves = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._seats = torch.arange(2, device=self.device)
        self._bottom = BOTTOM.to(self.device)
        self._cells = COLUMN_CELLS.to(self.device)
        self._top_bit = TOP_BIT.to(self.device)
        self._cell_bit = CELL_BIT.to(self.device)
        # _views[i] = (seat i, the other seat): the plane order of seat i's observation
        self._views = torch.tensor([[0, 1], [1, 0]], device=self.device)

    # --- views of the state ------------------------------------------------

    def _observe(self) -> dict[str, torch.Tensor]:
        boards = self.boards[:, self._views]  # [E, viewer, plane]
        bits = (boards[..., None] >> self._cell_bit) & 1  # [E, viewer, plane, 42]
        planes = bits.transpose(2, 3).to(torch.float32).reshape(self.num_envs, 2, ROWS, COLUMNS, 2)
        return {agent: planes[:, i] for i, agent in enumerate(self.possible_agents)}

    def _acting(self) -> torch.Tensor:
        return self.turn[:, None] == self._seats

    def _masks(self, acting: torch.Tensor) -> dict[str, torch.Tensor]:
        occupied = self.boards[:, 0] | self.boards[:, 1]
        legal = ((occupied[:, None] >> self._top_bit) & 1) == 0  # [E, 7]
        return {agent: legal | ~acting[:, i, None] for i, agent in enumerate(self.possible_agents)}

    # --- the interface -----------------------------------------------------

    def _reset(self) -> TimeStep:
        self.boards = torch.zeros_like(self.boards)
        self.turn = torch.zeros_like(self.turn)
        self.moves = torch.zeros_like(self.moves)
        acting = self._acting()
        ts = self._first_step(self._observe(), acting)
        ts.action_mask = self._masks(acting)
        return ts

    def _mover_columns(self, actions: torch.Tensor) -> torch.Tensor:
        """[E] column chosen by the agent to move, or ValueError for a column outside 0..6."""
        expected = (self.num_envs, 2)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must have shape {expected}, got {tuple(actions.shape)}")
        column = actions.to(self.device, torch.long).gather(1, self.turn[:, None])[:, 0]
        outside = (column < 0) | (column >= COLUMNS)
        if bool(outside.any()):
            e = int(outside.nonzero()[0, 0])
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
            The `TimeStep`; finished games are already back at the empty board.

        Raises:
            ValueError: the agent to move chose a column outside 0..6.

        """
        column = self._mover_columns(actions)
        acting = self._acting()
        occupied = self.boards[:, 0] | self.boards[:, 1]
        bit = (occupied + self._bottom[column]) & self._cells[column]  # 0: the column is full
        illegal = bit == 0
        self.boards = self.boards | torch.where(acting, bit[:, None], 0)
        mover_board = (self.boards * acting).sum(1)
        won = has_four(mover_board)
        self.moves = self.moves + (~illegal).long()
        drawn = ~won & (self.moves == CELLS)
        terminated = won | drawn | illegal

        # the winner +1 and the loser -1 (both seats, on the last move); an illegal move: mover -1
        mover_sign = torch.where(acting, 1.0, -1.0)  # [E, 2]: +1 for the mover's seat
        reward = won[:, None] * mover_sign - illegal[:, None] * acting.float()
        info = {
            "player_0_wins": (won & (self.turn == 0)).float(),
            "player_1_wins": (won & (self.turn == 1)).float(),
            "draws": drawn.float(),
            "illegal_moves": illegal.float(),
            "moves": torch.ones(self.num_envs, device=self.device),
        }

        final_obs = None
        if bool(terminated.any()):
            final_obs = self._observe()
            self.boards = torch.where(terminated[:, None], 0, self.boards)
            self.moves = torch.where(terminated, 0, self.moves)
        self.turn = torch.where(terminated, 0, 1 - self.turn)
        acting = self._acting()
        return TimeStep(
            obs=self._observe(),
            reward=reward,
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
            acting=acting,
            action_mask=self._masks(acting),
            info=info,
            final_obs=final_obs,
        )

    def final_action_mask(self, final_obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Legal columns (not full) on the final boards, for views that show the last position.

        PettingZoo's `connect_four_v3` still shows the mask of the final board
        to the agent whose turn it would be; `AECView` asks for it here.
        """
        masks = {}
        for agent, planes in final_obs.items():
            top_row = planes[:, 0, :, :].sum(-1)  # [E, 7]: pieces in each column's top cell
            masks[agent] = top_row == 0
        return masks

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
