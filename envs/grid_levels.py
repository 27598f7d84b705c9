"""Procedural Cleanup and Harvest layouts: one layout per integer level seed, on the map's canvas.

A level keeps what the chosen `map` fixes (its size and walls, its numbers of
waste-able cells K_w, apple cells K_a, waste cells full at reset and spawn
points S, and every rate) and redraws where those cells lie inside the map's
interior (the H x W cells inside its border; procedural levels need an
interior without walls, which every built-in map has). A layout is a pure
function of the level id (0 to 2^31 - 1) and the map, the same in every
instance and every run. Interior columns count 0 ... W - 1 from the left;
B = (W - 1) // 2 is the widest a band may be.

Cleanup (`cleanup_layouts`):

- the river is the leftmost b_r columns, the orchard the rightmost b_a
  columns, with b_r drawn uniformly from [ceil(K_w / H), B] and b_a from
  [ceil(K_a / H), B] (these are the size bounds; the bands never touch, a
  column of grass at least lies between them);
- the K_w waste-able cells are K_w random cells of the river band, the first
  ones drawn (as many as the map's `H` cells) full at reset, so the waste
  density at reset is the map's and nothing grows until someone cleans
  (on all three maps); the K_a apple cells are random cells of the orchard
  band; the S spawn points are random cells outside both sets (agent i
  starts at spawn point i on fixed-spawn maps).
- Solvable: every waste-able cell has a walkable cell to its right (the
  river is at most B < W columns wide), from where the side line of a
  cleaning beam, which starts level with the agent, clears it at once; the
  interior has no walls, so every apple cell can be reached.

Harvest (`harvest_layouts`):

- P patch centres, P drawn uniformly from [max(1, K_a // 9), max(1, K_a // 5)]
  (the size bound: few large patches or many small ones), at random interior
  cells; the K_a apple cells are the interior cells nearest to a centre
  (squared distance, ties broken at random), so patches are round blobs; the
  S spawn points are random cells without an apple cell.
- Solvable: P <= K_a / 5 puts every cell within distance 1 of a centre among
  the apple cells, and every other apple cell has a neighbour one step closer
  to its centre, so every apple cell has an apple cell in its 3 x 3 block and
  can regrow; the interior has no walls, so every apple is reachable.

Cells are flat indices into the padded map (`incentive.envs.gridworld.Grid`).
Everything is vectorised over the K levels generated at once (no loop over
levels): the env calls it for the instances being reset.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from incentive.envs.random import InstanceRandom

__all__ = ["CleanupLayouts", "HarvestLayouts", "Interior", "cleanup_layouts", "harvest_layouts"]

LEVEL_SALT = 0x6C65_7665  # keeps level streams apart from instance streams seeded with the same integer
_TOP = 1 << 62  # above every 62-bit key: marks cells that may not be chosen


class Interior:
    """The walkable interior of a map: its H x W cells inside the border, as flat indices.

    Args:
        grid: the padded map (`Grid`).
        what: the game, for the error message.

    Raises:
        ValueError: the map has walls inside its border (layouts need an open interior).

    """

    def __init__(self, grid, what: str) -> None:
        self.height, self.width = grid.height - 2, grid.width - 2
        rows = torch.arange(1, grid.height - 1).repeat_interleave(self.width)
        cols = torch.arange(1, grid.width - 1).repeat(self.height)
        #: [C] flat cells in reading order; [C] their interior column.
        self.cells = (rows + grid.pad) * grid.padded_width + cols + grid.pad
        self.cells = self.cells.to(grid.device)
        self.col = (cols - 1).to(grid.device)
        self.row = (rows - 1).to(grid.device)
        if bool(grid.wall[self.cells].any()):
            raise ValueError(f"procedural {what} levels need a map without walls inside its border")
        #: B, the widest band.
        self.band = (self.width - 1) // 2

    def __len__(self) -> int:
        return len(self.cells)


class CleanupLayouts(NamedTuple):
    """K Cleanup layouts.

    Flat cells [K, K_w] (waste-able), [K, K_a] (apple), [K, S] (spawn points);
    [K, K_w] bool waste at reset; the band widths [K] (river, orchard).
    """

    waste: torch.Tensor
    initial_waste: torch.Tensor
    apples: torch.Tensor
    spawns: torch.Tensor
    river_cols: torch.Tensor
    orchard_cols: torch.Tensor


class HarvestLayouts(NamedTuple):
    """K Harvest layouts: flat cells [K, K_a] (apple), [K, S] (spawn points); patches [K]."""

    apples: torch.Tensor
    spawns: torch.Tensor
    patches: torch.Tensor


def _streams(levels: torch.Tensor, n: int) -> torch.Tensor:
    """[K, n] non-negative 62-bit numbers from each level's own stream."""
    rng = InstanceRandom(len(levels), levels.device)
    rng.seed(levels.long() * 2 + LEVEL_SALT)
    return (rng.bits(n) >> 2) & (_TOP - 1)


def _smallest(keys: torch.Tensor, allowed: torch.Tensor, count: int) -> torch.Tensor:
    """[K, count] positions of the `count` smallest keys among the allowed ones, smallest first."""
    return torch.where(allowed, keys, _TOP).argsort(dim=1, stable=True)[:, :count]


def band_bounds(interior: Interior, cells: int) -> tuple[int, int]:
    """(narrowest, widest) band of full-height columns that holds `cells` cells."""
    return -(-cells // interior.height), interior.band


def cleanup_layouts(
    levels: torch.Tensor,
    interior: Interior,
    *,
    waste_cells: int,
    full_cells: int,
    apple_cells: int,
    spawns: int,
) -> CleanupLayouts:
    """The Cleanup layouts of K levels (module docstring), vectorised over levels.

    Args:
        levels: [K] level ids.
        interior: the map's interior.
        waste_cells: K_w, the waste-able cells.
        full_cells: how many of them are full at reset.
        apple_cells: K_a, the apple cells.
        spawns: S, the spawn points.

    """
    c = len(interior)
    draws = _streams(levels, 2 + 2 * c)
    r_low, r_high = band_bounds(interior, waste_cells)
    a_low, a_high = band_bounds(interior, apple_cells)
    river = r_low + draws[:, 0] % (r_high - r_low + 1)  # [K]
    orchard = a_low + draws[:, 1] % (a_high - a_low + 1)
    place, spawn_key = draws[:, 2 : 2 + c], draws[:, 2 + c :]
    col = interior.col[None]
    waste = _smallest(place, col < river[:, None], waste_cells)
    apples = _smallest(place, col >= interior.width - orchard[:, None], apple_cells)
    taken = torch.zeros(len(levels), c, dtype=torch.bool, device=levels.device)
    taken.scatter_(1, waste, True).scatter_(1, apples, True)
    spawn = _smallest(spawn_key, ~taken, spawns)
    initial = torch.arange(waste_cells, device=levels.device) < full_cells
    return CleanupLayouts(
        waste=interior.cells[waste],
        initial_waste=initial.expand(len(levels), -1).clone(),
        apples=interior.cells[apples],
        spawns=interior.cells[spawn],
        river_cols=river,
        orchard_cols=orchard,
    )


def patch_bounds(apple_cells: int) -> tuple[int, int]:
    """(fewest, most) patches a Harvest level of K_a apple cells may have."""
    return max(1, apple_cells // 9), max(1, apple_cells // 5)


def harvest_layouts(
    levels: torch.Tensor, interior: Interior, *, apple_cells: int, spawns: int
) -> HarvestLayouts:
    """The Harvest layouts of K levels (module docstring), vectorised over levels.

    Args:
        levels: [K] level ids.
        interior: the map's interior.
        apple_cells: K_a, the apple cells.
        spawns: S, the spawn points.

    """
    c = len(interior)
    low, high = patch_bounds(apple_cells)
    draws = _streams(levels, 1 + high + 2 * c)
    patches = low + draws[:, 0] % (high - low + 1)  # [K]
    centre = draws[:, 1 : 1 + high] % c  # [K, high]; only the first `patches` count
    used = torch.arange(high, device=levels.device)[None] < patches[:, None]
    d_row = interior.row[None, None] - interior.row[centre][..., None]  # [K, high, C]
    d_col = interior.col[None, None] - interior.col[centre][..., None]
    dist = torch.where(used[..., None], d_row * d_row + d_col * d_col, _TOP).min(1).values  # [K, C]
    tie = draws[:, 1 + high : 1 + high + c] >> 42  # 20 random bits
    apples = (dist * (1 << 20) + tie).argsort(dim=1, stable=True)[:, :apple_cells]
    taken = torch.zeros(len(levels), c, dtype=torch.bool, device=levels.device).scatter_(1, apples, True)
    spawn = _smallest(draws[:, 1 + high + c :], ~taken, spawns)
    return HarvestLayouts(apples=interior.cells[apples], spawns=interior.cells[spawn], patches=patches)
