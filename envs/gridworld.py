"""Batched grid-world mechanics shared by Cleanup and Harvest.

Everything here works on E instances at once with tensor operations; nothing
loops over instances. A map is given as ASCII rows and padded on every side
with wall cells, so that a move, a beam or an observation window never leaves
the array. Cells are addressed by *flat indices* into the padded map
(`Grid.index(row, col)` converts from map coordinates). The dynamic contents
of a map (apples, waste) live in compact tensors over the K cells that can
hold them; `Grid.slots` maps a flat index to its place in such a tensor.

Layout: per-instance tensors keep the instance last ([A, E] positions,
[K, E] cell contents, [n, E] random draws). On CPU, the many small
broadcasting operations a step needs (agent against agent, agent against
cell) then run over long contiguous rows of E instead of rows of 2 to 5
elements, which makes them several times faster; reductions go over the
leading dims for the same reason.

| piece             | what it does                                                   |
| ----------------- | -------------------------------------------------------------- |
| `Grid`            | static geometry: walls, the cells showing given symbols, slot  |
|                   | tables, move deltas, relative-position tables, 3 x 3 blocks    |
| `resolve_moves`   | simultaneous moves with conflict resolution (below)            |
| `Beams`           | three-line beams: their cells, first walls, agents on them,    |
|                   | and who is hit                                                 |
| `Windows`         | egocentric (2r+1) x (2r+1) observation windows as float planes |
| `uniform`         | float32 uniforms on [0, 1) from `InstanceRandom.bits` draws    |
| `split_draws`     | one draw per step cut into named blocks of fixed sizes         |
| `spawn_positions` | fixed or random distinct start cells                           |
| `GridMap`         | the map fields every grid game shares                          |
| `GridParams`      | the parameters every grid game shares                          |
| `GridGame`        | the env base: spaces, spawning, moves and eating, punishment,  |
|                   | episode ends, metrics, checkpoints                             |

Moves (`resolve_moves`), as in the sequential social dilemma reference code
(Vinitsky et al.) and LIO's small Cleanup maps:

1. a move into a wall is a stay;
2. agents that want the same cell: the one with the smallest random key gets
   to try it, the others stay (whether or not the cell then frees up);
3. an agent moving into the cell of an agent that stays (or was blocked) is
   blocked, repeatedly, so chains of followers resolve in order;
4. two agents swapping cells are both blocked;
5. longer cycles (four agents rotating around a 2 x 2 square) all move.

Beams (`Beams`): a beam is three parallel lines fired upward (toward row 0),
the middle one starting at the cell above the shooter, the two side ones in
the neighbouring columns starting level with the shooter (the reference
code's `beam_width = 3` geometry for an agent facing up). Each line is
`length` cells long and stops at the first wall or agent, or at whatever
else the caller adds (Cleanup's cleaning beam also stops at waste).

Observation windows: a window is centred on the observer; cells outside the
map read as wall; the observer itself is not drawn in the agent channel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium
import torch
from pydantic import Field, field_validator, model_validator

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep
from incentive.envs.grid_levels import Interior
from incentive.envs.levels import LevelRanges, level_task

__all__ = [
    "DOWN",
    "LEFT",
    "MOVE_DELTAS",
    "RIGHT",
    "STAY",
    "UP",
    "Beams",
    "Grid",
    "GridGame",
    "GridMap",
    "Windows",
    "resolve_moves",
    "spawn_positions",
    "split_draws",
    "uniform",
]

#: Action indices of the absolute moves, shared by both envs.
LEFT, RIGHT, UP, DOWN, STAY = 0, 1, 2, 3, 4
#: (row, column) change of each move action.
MOVE_DELTAS = ((0, -1), (0, 1), (-1, 0), (1, 0), (0, 0))
#: Punishment beams: the firer's cost and the penalty per line that hits an agent.
FIRE_COST, HIT_PENALTY = 1.0, 50.0

WALL_SYMBOLS = "#@"


class Grid:
    """Static geometry of one ASCII map, padded with walls, on a device.

    Args:
        rows: the map, one string per row, all of equal length; `#` or `@`
            is a wall, every other symbol is walkable.
        pad: wall cells added on each side (raised to at least 1).
        device: where the static tensors live.

    Raises:
        ValueError: the rows are empty or not all of the same length.

    """

    def __init__(self, rows: Sequence[str], *, pad: int, device: torch.device | str) -> None:
        if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
            raise ValueError("a map needs at least one row and all rows of the same length")
        self.rows = tuple(rows)
        self.height, self.width = len(rows), len(rows[0])
        self.pad = max(int(pad), 1)
        self.padded_height = self.height + 2 * self.pad
        self.padded_width = self.width + 2 * self.pad
        #: N, the number of cells of the padded map.
        self.size = self.padded_height * self.padded_width
        self.device = torch.device(device)
        wall = torch.ones(self.padded_height, self.padded_width, dtype=torch.bool)
        for r, row in enumerate(rows):
            for c, symbol in enumerate(row):
                wall[r + self.pad, c + self.pad] = symbol in WALL_SYMBOLS
        #: [N] bool: walls, padding included.
        self.wall = wall.flatten().to(self.device)
        flat = torch.arange(self.size, device=self.device)
        #: [N] long: map row and column of every cell (negative or too large in the padding).
        self.row_of = flat // self.padded_width - self.pad
        self.col_of = flat % self.padded_width - self.pad
        #: [5] long: flat index change of the actions left, right, up, down, stay.
        self.move_deltas = torch.tensor(
            [dr * self.padded_width + dc for dr, dc in MOVE_DELTAS], device=self.device
        )
        # Relative positions: with S = 2W - 1, target_code[b] - observer_code[a] is
        # (row_b - row_a) * S + (col_b - col_a) + offset, a unique index in [0, (2H - 1) S)
        # for any two map cells, so one lookup in a `relative_table` answers "where is b
        # seen from a" (in a window, on a beam line) for whole batches at once.
        stride = 2 * self.width - 1
        self._rel_stride = stride
        self._rel_size = (2 * self.height - 1) * stride
        #: [N] long: relative-position codes of every cell as observer and as target.
        self.observer_code = self.row_of * stride + self.col_of
        self.target_code = self.observer_code + (self.height - 1) * stride + self.width - 1

    def index(self, row: int, col: int) -> int:
        """Flat index of map cell (row, col)."""
        return (row + self.pad) * self.padded_width + col + self.pad

    def coords(self, index: int) -> tuple[int, int]:
        """Map (row, col) of a flat index."""
        return index // self.padded_width - self.pad, index % self.padded_width - self.pad

    def cells(self, symbols: str) -> torch.Tensor:
        """[K] long: flat indices of the cells showing any of `symbols`, in reading order."""
        found = [
            self.index(r, c)
            for r, row in enumerate(self.rows)
            for c, symbol in enumerate(row)
            if symbol in symbols
        ]
        return torch.tensor(found, dtype=torch.long, device=self.device)

    def relative_table(self, value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """A lookup table over relative positions, indexed by `target_code - observer_code`.

        Args:
            value: maps [R] long tensors dr (rows down from the observer) and dc
                (columns right) to [R] values.

        Returns:
            [R] tensor, R = (2H - 1) (2W - 1): every relative position between two map cells.
        """
        k = torch.arange(self._rel_size, device=self.device)
        return value(k // self._rel_stride - (self.height - 1), k % self._rel_stride - (self.width - 1))

    def slots(self, cells: torch.Tensor) -> torch.Tensor:
        """[N] long: the position of every cell in `cells`, K (a spare slot) for the others."""
        table = torch.full((self.size,), len(cells), dtype=torch.long, device=self.device)
        table[cells] = torch.arange(len(cells), device=self.device)
        return table

    def neighbour_slots(self, cells: torch.Tensor) -> torch.Tensor:
        """[K, 8] long: slots (in `cells`) of the 3 x 3 block around each cell, centre left out.

        Neighbours that are not among `cells` get the spare slot K.
        """
        span = torch.arange(-1, 2, device=self.device)
        block = (span[:, None] * self.padded_width + span[None, :]).flatten()
        block = block[block != 0]
        return self.slots(cells)[cells[:, None] + block[None, :]]


def resolve_moves(
    pos: torch.Tensor, target: torch.Tensor, wall: torch.Tensor, key: torch.Tensor
) -> torch.Tensor:
    """Simultaneous moves of A agents in E instances, conflicts resolved.

    See the module docstring for the rules.

    Args:
        pos: [A, E] long flat positions (distinct within an instance).
        target: [A, E] long flat cells the agents want (== pos to stay).
        wall: [N] bool walls.
        key: [A, E] long random keys; among agents that want the same cell the
            smallest key wins. Their lowest bits are replaced by the agent
            index, which makes them distinct (ties go to the lower index).

    Returns:
        [A, E] long new positions (distinct within an instance).

    """
    num_agents = pos.shape[0]
    target = torch.where(wall.take(target), pos, target)
    if num_agents == 1:
        return target
    low = (1 << (num_agents - 1).bit_length()) - 1
    key = key & ~low | torch.arange(num_agents, device=pos.device)[:, None]
    moving = target != pos
    # [i, j, E] pairs. Contests: i loses when another mover j wants its cell with a smaller key
    wants_mine = (target[None, :, :] == target[:, None, :]) & moving[None, :, :]
    lost = (wants_mine & (key[None, :, :] < key[:, None, :])).any(1)
    # swaps are blocked; so is moving onto an agent that stays (or was blocked), which
    # takes up to A - 1 rounds along a chain of followers
    occupant = pos[None, :, :] == target[:, None, :]  # j stands on i's target
    swap = (occupant & (target[None, :, :] == pos[:, None, :])).any(1)
    moving = moving & ~(lost | swap)
    for _ in range(num_agents - 1):
        moving = moving & ~(occupant & ~moving[None, :, :]).any(1)
    return torch.where(moving, target, pos)


class Beams:
    """Three-line upward beams fired from any cell of a map.

    Lines are ordered left, middle, right (column offsets -1, 0, +1); the
    middle line starts at the cell above the shooter, the side lines level
    with it; each is `length` cells long. Everything that depends only on
    the shooter's cell is tabulated, and where the agents stand on each
    other's lines comes from one lookup in a relative-position table.

    Args:
        grid: the map.
        length: L, cells per line.

    """

    def __init__(self, grid: Grid, length: int) -> None:
        self.length = length
        device = grid.device
        k = torch.arange(length, device=device)
        up = -grid.padded_width
        #: [3, L] long: flat offsets of the line cells (left, middle, right).
        self.offsets = torch.stack([k * up - 1, (k + 1) * up, k * up + 1])
        #: [N, 3, L] long: the line cells fired from every cell (clamped into the array; a
        #: line always meets the wall padding before leaving it, so clamped cells never count).
        self.cells = torch.arange(grid.size, device=device)[:, None, None] + self.offsets
        self.cells = self.cells.clamp_(0, grid.size - 1)
        walls = torch.cat(
            [grid.wall[self.cells], torch.ones(grid.size, 3, 1, dtype=torch.bool, device=device)],
            dim=2,
        )
        #: [N, 3] long: index along each line of its first wall (L: none within reach).
        self.first_wall = walls.to(torch.uint8).argmax(2)  # argmax: the first of equal maxima
        self._first_wall = self.first_wall.t().flatten()  # [3 * N], line-major
        self._wall_shift = torch.arange(3, device=device)[:, None] * grid.size
        self.observer_code, self.target_code = grid.observer_code, grid.target_code

        def along(line: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
            def value(dr: torch.Tensor, dc: torch.Tensor) -> torch.Tensor:
                index = -dr - int(line == 1)  # rows above the shooter, less one on the middle line
                on = (dc == line - 1) & (index >= 0) & (index < length)
                return torch.where(on, index, length)

            return value

        # [3 * R]: for line k (block k), the index along it of a target at that relative
        # position, L when the target is not on the line within reach
        self._along = torch.cat([grid.relative_table(along(line)) for line in (0, 1, 2)])
        self._line_shift = torch.arange(3, device=device)[:, None] * (len(self._along) // 3)

    def along(self, pos: torch.Tensor) -> torch.Tensor:
        """[A (target), A (shooter), 3, E] long: each target's index along each line, L if off it.

        A shooter is never on its own lines.
        """
        code = self.target_code.take(pos)[:, None, :] - self.observer_code.take(pos)[None, :, :]
        return self._along.take(code[:, :, None, :] + self._line_shift)

    def first_agent(self, along: torch.Tensor) -> torch.Tensor:
        """[A, 3, E] long: index along each line of its first agent (L: none), from `along`."""
        # an explicit running minimum: amin/amax over int64 are very slow on CPU
        first = along[0]
        for other in along[1:]:
            first = torch.minimum(first, other)
        return first

    def first_wall_at(self, pos: torch.Tensor) -> torch.Tensor:
        """[A, 3, E] long: index along each line of its first wall, for shooters at `pos` [A, E]."""
        return self._first_wall.take(pos[:, None, :] + self._wall_shift)

    def hits(self, pos: torch.Tensor, fired: torch.Tensor) -> torch.Tensor:
        """[A, E] long: how many fired lines stop at each agent (walls and agents stop lines).

        Args:
            pos: [A, E] long flat positions after the moves.
            fired: [A, E] bool: which agents fire.

        """
        along = self.along(pos)  # [A_t, A_s, 3, E]
        stop = torch.minimum(self.first_wall_at(pos), self.first_agent(along))  # [A_s, 3, E]
        stopped = (along == stop) & (along < self.length) & fired[:, None, :]
        return stopped.flatten(1, 2).sum(1)


class Windows:
    """Egocentric observation windows built from static walls and a few dynamic items.

    Each channel is a binary plane. The wall channel comes from a table of
    every cell's surroundings; items (apples, waste: cells fixed by the map,
    present or not) and the other agents are scattered into the window, so
    the cost grows with the window and the items, not with the map.

    Args:
        grid: the map.
        radius: r; windows are (2r+1) x (2r+1). `grid.pad` must be >= r.
        channels: C, the number of planes.
        wall_channel: the plane of walls (and of everything outside the map).
        agent_channel: the plane of the other agents.
        item_cells: [K] long flat cells that may hold an item.
        item_channels: [K] long plane of each item cell (not the wall plane).

    """

    def __init__(
        self,
        grid: Grid,
        *,
        radius: int,
        channels: int,
        wall_channel: int,
        agent_channel: int,
        item_cells: torch.Tensor,
        item_channels: torch.Tensor,
    ) -> None:
        if grid.pad < radius:
            raise ValueError(f"the grid's padding {grid.pad} is smaller than the radius {radius}")
        device = grid.device
        self.radius, self.side, self.channels = radius, 2 * radius + 1, channels
        area = self.side * self.side
        span = torch.arange(-radius, radius + 1, device=device)
        offsets = (span[:, None] * grid.padded_width + span[None, :]).flatten()
        inside = (grid.row_of >= 0) & (grid.row_of < grid.height)
        inside &= (grid.col_of >= 0) & (grid.col_of < grid.width)
        centres = torch.nonzero(inside).squeeze(1)
        #: [N, C * side^2] float: the planes seen from every map cell with only the walls drawn.
        self.table = torch.zeros(grid.size, channels * area, device=device)
        walls = grid.wall[centres[:, None] + offsets].to(torch.float32)
        self.table[centres, wall_channel * area : (wall_channel + 1) * area] = walls
        side = self.side

        def window_index(dr: torch.Tensor, dc: torch.Tensor) -> torch.Tensor:
            seen = (dr.abs() <= radius) & (dc.abs() <= radius)
            return torch.where(seen, (dr + radius) * side + dc + radius, -1)

        relative = grid.relative_table(window_index)
        self.observer_code, self.target_code = grid.observer_code, grid.target_code
        # Everything is drawn by scattering 1s: whatever is out of view (or absent) is sent to
        # `trash`, the wall plane's centre, which is never a wall and is reset to 0 afterwards,
        # together with the agent plane's centre (the observer itself).
        self.trash = wall_channel * area + area // 2
        self._cleared = torch.tensor([self.trash, agent_channel * area + area // 2], device=device)
        # items: from every cell, where each item cell lands in the planes
        item_code = grid.target_code[item_cells]
        into = relative[(item_code[None, :] - grid.observer_code[:, None]).clamp_(0, len(relative) - 1)]
        into = torch.where(into >= 0, into + item_channels.to(device) * area, self.trash)
        #: [N, K] long: flat index in the planes of every item cell seen from every map cell.
        self.item_index = torch.where(inside[:, None], into, self.trash)
        #: [R] long: flat index in the agent plane of another agent at each relative position.
        self.agent_index = torch.where(relative >= 0, relative + agent_channel * area, self.trash)
        #: [R] long: window index at each relative position (-1: out of view); [K] plane offsets.
        self.relative = relative
        self.item_offset = item_channels.to(device) * area

    def __call__(
        self, pos: torch.Tensor, present: torch.Tensor, cells: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """The window of every agent.

        Args:
            pos: [A, E] long flat positions.
            present: [K, E] bool: which item cells hold their item.
            cells: [K, E] long: where each instance has its item cells (procedural
                levels), or None: at the `item_cells` given at construction.

        Returns:
            A list of A contiguous float32 tensors [E, C, side, side] of 0s and 1s.

        """
        agents, num_envs = pos.shape
        rows = pos.reshape(-1)  # agent-major: row a * E + e
        out = self.table.index_select(0, rows).view(agents, num_envs, -1)  # walls drawn
        if cells is None:
            items = self.item_index.index_select(0, rows).view(agents, num_envs, -1)
        else:  # the same lookup as for agents: relative position -> window index
            code = self.target_code.take(cells).t()[None] - self.observer_code.take(pos)[:, :, None]
            seen = self.relative.take(code)  # [A, E, K]
            items = torch.where(seen >= 0, seen + self.item_offset, self.trash)
        out.scatter_(2, torch.where(present.t(), items, self.trash), 1.0)
        # agents [A (observer), E, A (seen)], the observer itself included (cleared below)
        code = self.target_code.take(pos).t()[None] - self.observer_code.take(pos)[:, :, None]
        out.scatter_(2, self.agent_index.take(code), 1.0)
        out.index_fill_(2, self._cleared, 0.0)
        side = self.side
        return list(out.view(agents, num_envs, self.channels, side, side).unbind(0))


def uniform(bits: torch.Tensor) -> torch.Tensor:
    """Float32 uniforms on [0, 1) (multiples of 2**-24) from 64-bit draws."""
    return ((bits >> 40) & ((1 << 24) - 1)).to(torch.float32) * (2.0**-24)


def split_draws(bits: torch.Tensor, layout: Sequence[tuple[str, int]]) -> dict[str, torch.Tensor]:
    """Cut one [n, E] draw (`InstanceRandom.bits(n, instance_last=True)`) into named [n_i, E] blocks."""
    rows = bits.split([n for _, n in layout])
    return dict(zip([name for name, _ in layout], rows, strict=True))


def spawn_positions(
    cells: torch.Tensor, key: torch.Tensor | None, num_agents: int, num_envs: int
) -> torch.Tensor:
    """[A, E] start cells: `cells[:A]` in order, or (with `key` [S, E]) A distinct random ones.

    Agent a gets the spawn point with the a-th smallest key.
    """
    if key is None:
        return cells[:num_agents, None].expand(num_agents, num_envs)
    return cells[key.argsort(dim=0, stable=True)[:num_agents]].contiguous()


@dataclasses.dataclass(frozen=True, kw_only=True)
class GridMap:
    """A grid game's map and its defaults (every field but `rows`/`spawn` is a param default).

    A game subclasses it with its own fields.

    Attributes:
        rows: the ASCII map (see the game's module docstring for the symbols).
        spawn: (row, col) of the spawn points in agent order, or None: the
            `P` cells, A of them drawn at random at every reset.

    """

    rows: tuple[str, ...]
    spawn: tuple[tuple[int, int], ...] | None
    num_agents: int
    episode_length: int
    view_size: int
    punishment: bool
    beam_length: int = 5

    @property
    def spawn_points(self) -> int:
        """How many spawn points the map has (the most agents it takes)."""
        if self.spawn is not None:
            return len(self.spawn)
        return sum(row.count("P") for row in self.rows)


class GridParams(EnvParams):
    """Parameters every grid game shares; None takes the chosen map's value.

    A game subclasses it with its `maps` (name -> map dataclass), a `map`
    field listing those names, and its own extra fields.
    """

    maps: ClassVar[dict[str, Any]] = {}
    map: str
    num_agents: int | None = Field(
        None, ge=1, description="Agents, at most the map's spawn points; None: the map's number."
    )
    episode_length: int | None = Field(
        None, ge=1, le=10**9, description="Steps per episode; None: the map's."
    )
    view_size: int | None = Field(
        None, ge=1, le=255, description="Side of the odd square egocentric window; None: the map's."
    )
    punishment: bool | None = Field(
        None, description="Add the punishment beam (cost 1, hit 50); None: the map's (original)."
    )
    beam_length: int = Field(5, ge=1, le=255, description="Cells per beam line (every beam the game has).")
    levels: LevelRanges | None = Field(
        None,
        description="Procedural levels (training and held-out test ids); None: the map's own layout.",
    )

    @field_validator("view_size")
    @classmethod
    def _odd_window(cls, value: int | None) -> int | None:
        if value is not None and value % 2 == 0:
            raise ValueError(f"view_size must be odd (the agent sits at the centre), got {value}")
        return value

    @model_validator(mode="after")
    def _agents_fit_map(self) -> GridParams:
        spots = type(self).maps[self.map].spawn_points
        if self.num_agents is not None and self.num_agents > spots:
            raise ValueError(
                f"num_agents={self.num_agents} is more than the {spots} spawn points of map {self.map!r}"
            )
        return self

    def resolve(self) -> Any:
        """The map with every parameter that is not None put in."""
        chosen = type(self).maps[self.map]
        overrides = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(chosen)
            if f.name in type(self).model_fields and getattr(self, f.name) is not None
        }
        return dataclasses.replace(chosen, **overrides)


class GridGame(BatchedEnv):
    """What Cleanup and Harvest share: the map, spaces, spawning, moves, eating, punishment, ends.

    A subclass sets the class attributes below, builds its own `_windows`,
    `_draw_layout` and dynamic contents after `super().__init__`, and writes
    `step` from the shared pieces: `_move_and_eat`, `_punish` and `_finish`.
    State common to both: `pos` [A, E] flat positions and `t` [E] steps into
    the episode; `apple_cells` [K] are the cells where apples can be.

    Class attributes:
        channels: C, the observation planes.
        wall_channel, agent_channel: the planes of walls and of the other agents.
        apple_symbol: the map symbol of apple cells.
        punish: the punishment action; also the number of actions without it.
    """

    channels: ClassVar[int]
    wall_channel: ClassVar[int]
    agent_channel: ClassVar[int]
    apple_symbol: ClassVar[str]
    punish: ClassVar[int]

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        assert isinstance(params, GridParams)
        spec = self.spec = params.resolve()
        grid = self.grid = Grid(spec.rows, pad=spec.view_size // 2, device=self.device)
        agents = spec.num_agents
        self.possible_agents = [f"agent_{i}" for i in range(agents)]
        n_actions = self.punish + 1 if spec.punishment else self.punish
        obs_space = gymnasium.spaces.Box(
            0.0, 1.0, (self.channels, spec.view_size, spec.view_size), dtype="float32"
        )
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: gymnasium.spaces.Discrete(n_actions) for a in self.possible_agents}

        device = self.device
        self.apple_cells = grid.cells(self.apple_symbol)
        self._apple_slot = grid.slots(self.apple_cells)
        self._random_spawn = spec.spawn is None
        if self._random_spawn:
            self._spawn_cells = grid.cells("P")
        else:
            self._spawn_cells = torch.tensor(
                [grid.index(r, c) for r, c in spec.spawn[:agents]], device=device
            )
        # actions past the moves (beams) stay in place
        self._deltas = torch.cat(
            [grid.move_deltas, torch.zeros(n_actions - 5, dtype=torch.long, device=device)]
        )
        self._beams = Beams(grid, spec.beam_length)
        self._acting = torch.ones(num_envs, agents, dtype=torch.bool, device=device)

        # procedural levels: each instance's own apple cells and spawn points (`_place` of the
        # game adds its own cells); without levels every instance has the map's layout
        self.levels_on = params.levels is not None
        self.level = torch.full((num_envs,), -1, dtype=torch.long, device=device)
        self.next_level = torch.full((num_envs,), -1, dtype=torch.long, device=device)  # -1: draw one
        if self.levels_on:
            self.train_levels = params.levels.train_ids()
            self.test_levels = params.levels.test_ids()
            self.task_keys = ("level",)
            self.state_keys = (*type(self).state_keys, "level", "next_level")
            self.interior = Interior(grid, type(self).__name__)
        self.apple_at = self.apple_cells[:, None].expand(-1, num_envs).clone()  # [K, E]
        self.spawn_at = self._spawn_cells[:, None].expand(-1, num_envs).clone()  # [S, E]
        #: [E * N]: the slot of every cell of every instance's map (instance e at rows e * N ...)
        self._slot_table = self._apple_slot.repeat(num_envs) if self.levels_on else None
        self._slot_offset = torch.arange(num_envs, device=device) * grid.size
        self.pos = self._spawn_positions(None).clone()
        self.t = torch.zeros(num_envs, dtype=torch.long, device=device)

    def _windows_of(self, item_cells: torch.Tensor, item_channels: torch.Tensor) -> Windows:
        """The observation windows of this game's planes, with these item cells drawn."""
        return Windows(
            self.grid,
            radius=self.spec.view_size // 2,
            channels=self.channels,
            wall_channel=self.wall_channel,
            agent_channel=self.agent_channel,
            item_cells=item_cells,
            item_channels=item_channels,
        )

    def _spawn_positions(self, key: torch.Tensor | None) -> torch.Tensor:
        key = key if self._random_spawn else None
        if not self.levels_on:
            return spawn_positions(self._spawn_cells, key, self.num_agents, self.num_envs)
        if key is None:
            return self.spawn_at[: self.num_agents]
        return self.spawn_at.gather(0, key.argsort(dim=0, stable=True)[: self.num_agents])

    # --- procedural levels -------------------------------------------------

    def set_task(self, task: dict[str, torch.Tensor]) -> None:
        """Per-instance `level` ids, adopted at each instance's next reset.

        Raises:
            ValueError: the env has no procedural levels (`levels` unset), a level
                outside the generator's bounds, or a held-out test level.

        """
        if "level" in task and not self.levels_on:
            raise ValueError(
                f"task 'level': {type(self).__name__} runs the map's own layout; set "
                "env.params.levels (e.g. {train: '0-999', test: '10000-10099'}) for procedural levels"
            )
        super().set_task(task)
        if "level" in task:
            level = level_task(task["level"], test_levels=self.test_levels, allow_test=self.allow_test_levels)
            self.next_level = level.to(self.device)

    def _start_levels(self, where: torch.Tensor, key: torch.Tensor) -> None:
        """Instances `where` ([E] bool) start their next level: the task's, or a drawn training level.

        Args:
            where: the instances being reset.
            key: [E] random 64-bit draws (a training level is drawn from them).

        """
        index = where.nonzero()[:, 0]
        if len(index) == 0:
            return
        train = self.train_levels.to(self.device)
        drawn = train[((key[index] >> 1) & ((1 << 62) - 1)) % len(train)]
        levels = torch.where(self.next_level[index] >= 0, self.next_level[index], drawn)
        self.level[index] = levels
        self._place(index, levels)

    def _place(self, index: torch.Tensor, levels: torch.Tensor) -> None:
        """Lay out `levels` in the instances `index`: apple cells, spawn points, the game's own cells.

        Only the instances being reset are touched, all at once (no loop over them).
        """
        layouts = self._generate(levels)
        apples, k = layouts.apples, len(self.apple_cells)
        self.apple_at[:, index] = apples.t()
        self.spawn_at[:, index] = layouts.spawns.t()
        table = self._slot_table.view(self.num_envs, self.grid.size)
        rows = torch.full((len(index), self.grid.size), k, dtype=torch.long, device=self.device)
        rows.scatter_(1, apples, torch.arange(k, device=self.device).expand_as(apples))
        table[index] = rows
        self._place_game(index, layouts)

    def _generate(self, levels: torch.Tensor) -> Any:
        """The layouts of `levels`: `apples` [k, K] and `spawns` [k, S] (flat cells), and the game's own."""
        raise NotImplementedError

    def _place_game(self, index: torch.Tensor, layouts: Any) -> None:
        """Put a game's own per-instance cells of `layouts` in the instances `index`."""

    def load_levels(self) -> None:
        """Lay out every instance's current level again (after a checkpoint restored `level`)."""
        if self.levels_on:
            self._place(torch.arange(self.num_envs, device=self.device), self.level)

    def _reset_agents(self) -> None:
        """Agents back at their spawn points (drawing new ones on random-spawn maps), time 0.

        With procedural levels every instance first starts its next level (one draw each).
        """
        if self.levels_on:
            key = self.rng.bits(1, instance_last=True)[0]
            self._start_levels(torch.ones(self.num_envs, dtype=torch.bool, device=self.device), key)
        key = self.rng.bits(len(self._spawn_cells), instance_last=True) if self._random_spawn else None
        self.pos = self._spawn_positions(key).clone()
        self.t = torch.zeros_like(self.t)

    def _move_and_eat(
        self, actions: torch.Tensor, apple: torch.Tensor, move_key: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Moves (`resolve_moves`), then every agent on an apple eats it.

        Args:
            actions: [A, E] long actions.
            apple: [K, E] bool apples before the step.
            move_key: [A, E] the step's conflict keys.

        Returns:
            eaten [A, E] bool; the apples left, [K + 1, E] with a last spare row of False
            (slot K: not an apple cell); and `blocked` [K, E], the apple cells where
            nothing can grow this step (an apple or an agent on them). `self.pos` is moved.

        """
        target = self.pos + self._deltas.take(actions)
        pos = self.pos = resolve_moves(self.pos, target, self.grid.wall, move_key)
        if self.levels_on:
            slot = self._slot_table.take(pos + self._slot_offset)  # [A, E], each instance's own
        else:
            slot = self._apple_slot.take(pos)  # [A, E]
        apple = torch.cat([apple, apple.new_zeros(1, self.num_envs)])
        eaten = apple.gather(0, slot)
        blocked = apple.scatter(0, slot, True)[:-1]
        return eaten, apple.scatter_(0, slot, False), blocked

    def _punish(self, reward: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Punishment beams (when the game has them): returns the rewards after them and who fired."""
        fired = actions == self.punish
        if self.spec.punishment:
            hits = self._beams.hits(self.pos, fired).to(torch.float32)
            reward = reward - FIRE_COST * fired.to(torch.float32) - HIT_PENALTY * hits
        return reward, fired

    def _finish(
        self,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        info: dict,
        spawn_key: torch.Tensor,
        level_key: torch.Tensor | None = None,
    ) -> TimeStep:
        """The step's `TimeStep`, restarting the instances whose episode ended.

        Args:
            reward: [A, E] rewards (agent-major, as the grid games compute them).
            terminated: [E] episodes that reached their horizon.
            info: the step's counters.
            spawn_key: the step's random draw for new spawn positions.
            level_key: [1, E] the step's random draw for a new level (procedural levels only).
        """
        obs = self._observe()
        final_obs = None
        if terminated.any():
            final_obs = obs
            if self.levels_on:
                self._start_levels(terminated, level_key[0])
            self._restart(terminated)
            self.pos = torch.where(terminated, self._spawn_positions(spawn_key), self.pos)
            self.t = torch.where(terminated, 0, self.t)
            obs = self._observe()
        return TimeStep(
            obs=obs,
            reward=reward.t().contiguous(),
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
            acting=self._acting,
            info=info,
            final_obs=final_obs,
        )

    def _observe(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _restart(self, done: torch.Tensor) -> None:
        """Put the map contents of the finished instances back in their reset state."""
        raise NotImplementedError

    # --- metrics and checkpoints -------------------------------------------

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Per-episode means of the counters over the finished episodes, and sustainability."""
        episodes = max(len(totals["apples_eaten"]), 1)
        metrics = {
            key: float(totals[key].sum()) / episodes for key in self.metric_names if key != "sustainability"
        }
        eaten = float(totals["apples_eaten"].sum())
        metrics["sustainability"] = float(totals["apple_eat_time"].sum()) / eaten if eaten else 0.0
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Copies of the state tensors and the random streams."""
        return {key: value.clone() for key, value in super().state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore (copies of) what `state_dict` returned; with levels, lay out each instance's level."""
        super().load_state_dict({k: v.to(self.device).clone() for k, v in state.items()})
        self.load_levels()
