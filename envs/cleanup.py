"""Cleanup: a public-goods sequential social dilemma (Hughes et al., 2018).

Apples grow in an orchard only while the river is clean; cleaning the river
pays nothing, eating apples pays +1. Whoever cleans works for everyone.

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | `agent_0` ... `agent_{A-1}` (A = 2, 3 or 5 by map; `num_agents`)        |
| actions      | Discrete(6): 0 left, 1 right, 2 up, 3 down, 4 stay, 5 clean;            |
|              | Discrete(7) with `punishment`: 6 punish                                 |
| observation  | Box(0, 1, (4, V, V), float32): a V x V window centred on the agent     |
|              | (`view_size`), channels wall, apple, waste, other agent; cells outside |
|              | the map read as wall                                                   |
| reward       | +1 per apple eaten; with `punishment`: -1 for firing, -50 per hit taken |
| episode      | `episode_length` steps, then `terminated` (the game's horizon) and an  |
|              | automatic reset                                                        |

Maps (`map`; `#` wall, `H` waste at reset, `R` river that can hold waste,
`S` stream, walkable, never waste, `B` apple cell, empty at reset, `P` spawn
point; rows and columns count from 0 at the top left):

| map         | size    | A  | window | p_apple | threshold | p_waste | steps | punishment | spawn  |
| ----------- | ------- | -- | ------ | ------- | --------- | ------- | ----- | ---------- | ------ |
| `lio_7x7`   | 7 x 7   | 2  | 9      | 0.5     | 0.6       | 0.5     | 50    | off        | fixed  |
| `lio_10x10` | 10 x 10 | 3  | 15     | 0.3     | 0.4       | 0.5     | 50    | off        | fixed  |
| `original`  | 25 x 18 | 5  | 15     | 0.05    | 0.4       | 0.5     | 1000  | on         | random |

```
lio_7x7      lio_10x10
#######      ##########
#H  PB#      #HH   P B#
#H   B#      #RR    BB#
#    B#      #HH     B#
#    B#      #RR    BB#
# P  B#      #HH P   B#
#######      #RR    BB#
             #HH     B#
             #RRP   BB#
             ##########
```

- `lio_7x7` is LIO's `cleanup_small_sym` exactly as in `REFERENCES.md`:
  agent 0 at row 5, column 2 (river side), agent 1 at row 1, column 4
  (apple side). d = full waste cells / 2, so at reset d = 1 and nothing
  grows until someone cleans. Waste is clearable from columns 1-2 only.
- `lio_10x10`: rather than design a new map, this is LIO's own
  `cleanup_10x10_sym` as published in its code (Yang et al. 2020):
  alternating `HH`/`RR` river rows in columns 1-2 (16 waste-able cells, 8
  full at reset, so d = 0.5 >= 0.4 and nothing grows until someone cleans),
  an orchard of 12 cells in columns 7-8, spawn points (1,6), (5,4), (8,3).
  Choice: agents are numbered from the bottom spawn point up, as in the
  7 x 7 map (agent 0 at (8,3), nearest the river); the 15 x 15 window is
  LIO's and shows the whole interior from anywhere. Waste is clearable from
  columns 1-3.
- `original` is the reference code's `CLEANUP_MAP` (Vinitsky et al.),
  25 rows x 18 columns, 119 waste-able cells (56 full at reset: d = 0.47, so
  here too nothing grows until someone cleans), 103 apple cells, 12 stream
  cells, 10 spawn points of which A are drawn at random (distinct) at every
  reset. Simplification: no rotation; moves are absolute and both beams
  always fire up (toward row 0), the 15 x 15 window is not rotated, and
  observations are the four binary planes, not RGB.

Procedural levels (`levels: {train: "0-999", test: "10000-10099"}`; default
None, the map's own layout): every instance runs its own layout of the
chosen map, generated from an integer level id (`incentive.envs.grid_levels`:
the river band's and the orchard's widths, where the waste-able, apple and
spawn cells lie; always solvable). Task `level` (per instance, adopted at
its next reset; a test level is refused); without a task each reset draws a
training level from the instance's own stream (one extra draw per step).
`level_difficulty`: the mean column distance from waste-able to apple cells.

Rules within a step, in this order:

1. Moves (`incentive.envs.gridworld.resolve_moves`): a move into a wall is a
   stay; agents wanting the same cell: a random one (a fresh random key per
   agent per step) tries it, the others stay; moving into an agent that
   stays is blocked; swaps are blocked; chains of followers move. Agents may
   stand on river and waste cells.
2. Eating: an agent on an apple eats it (+1) and the apple is removed.
3. Cleaning beams, agent 0 first (a beam sees the waste earlier beams of
   the step removed): three upward lines of `beam_length` (5) cells, the
   middle one starting above the agent, the side ones in the neighbouring
   columns level with the agent. A line stops at a wall, at an agent, or at
   the first waste cell, which it turns back into river. Cleaning is free.
4. Punishment beams (`punishment` on): same geometry, stopped by walls and
   agents only; firing costs 1, every line that stops at an agent costs that
   agent 50 (a hit agent is not removed from the game, as in the reference
   code). Lines use the positions after the moves.
5. Spawning, with waste density d = waste cells / waste-able cells after the
   beams: if d >= `depletion_threshold` nothing spawns; otherwise every
   apple cell without apple or agent grows an apple with probability
   `apple_respawn_prob` * (1 - d / `depletion_threshold`), and the waste-able
   cells without waste are tried in a random order, each with probability
   `waste_spawn_prob`, until one receives waste (at most one per step; waste
   may appear under an agent).

Randomness: every step draws, per instance and whatever happens, one 64-bit
number per apple cell and per waste-able cell (its top 24 bits the spawning
uniform; a waste cell's low 40 bits also its place in the random order), one
conflict key per agent and (random-spawn maps) one key per spawn point for a
possible reset; `reset` draws the spawn keys once more. So a batch of E
instances reset with seed s steps exactly like E lone instances reset with
seeds s, ..., s + E - 1.

State (`state_keys`, instance last for speed, see `incentive.envs.gridworld`):
`pos` [A, E] flat cell indices into the padded map (`grid.index(row, col)`),
`apple` [K, E] per apple cell (`apple_cells`), `waste` [K_w, E] per
waste-able cell (`waste_cells`), `t` [E] steps into the episode.

Designer metrics (per finished episode, averaged over the batch of
episodes): `apples_eaten`, `cleaning_actions` and `cleaning_actions_<agent>`
(clean actions chosen, hit or miss), `waste_cleared` and `waste_cleared_<agent>`
(waste cells cleaned, in all and by each agent's beams),
`punishments` (punishment beams fired) and `sustainability` (Perolat et al.
2017: the mean step, 1 ... T, at which the batch's apples were eaten; 0 when
none was). Collective return and equality are computed by the framework.

Sources: Hughes et al. 2018 (Inequity aversion improves cooperation in
intertemporal social dilemmas); Vinitsky et al., sequential_social_dilemma_games
(reference rules and the original map); Yang et al. 2020 (LIO: the small
maps, no rotation, no punishment).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from incentive.envs.base import EnvParams, TimeStep
from incentive.envs.grid_levels import CleanupLayouts, cleanup_layouts
from incentive.envs.gridworld import GridGame, GridMap, GridParams, split_draws, uniform

__all__ = ["CLEANUP_MAPS", "Cleanup", "CleanupMap", "CleanupParams"]

#: Action index of the cleaning beam and of the punishment beam.
CLEAN, PUNISH = 5, 6
#: Observation channels (bit c of a cell's code is channel c).
WALL, APPLE, WASTE, OTHER = 0, 1, 2, 3
CHANNELS = 4
_KEY_MASK = (1 << 40) - 1  # the bits of a draw below its uniform's 24
#: Cell codes of the cleaning beams' byte map: a line stops at its first nonzero byte and
#: cleans it when that byte's lowest set bit is the waste bit (waste under an agent included).
_CODE = {"waste": 1, "wall": 2, "agent": 4}
_WASTE_BITS = 0x0101010101010101  # the waste bit of each byte of a word


@dataclass(frozen=True, kw_only=True)
class CleanupMap(GridMap):
    """A Cleanup map: the shared `GridMap` fields and Cleanup's own defaults."""

    apple_respawn_prob: float
    waste_spawn_prob: float
    depletion_threshold: float


CLEANUP_MAPS: dict[str, CleanupMap] = {
    "lio_7x7": CleanupMap(
        rows=(
            "#######",
            "#H  PB#",
            "#H   B#",
            "#    B#",
            "#    B#",
            "# P  B#",
            "#######",
        ),
        spawn=((5, 2), (1, 4)),
        num_agents=2,
        episode_length=50,
        view_size=9,
        apple_respawn_prob=0.5,
        waste_spawn_prob=0.5,
        depletion_threshold=0.6,
        punishment=False,
    ),
    "lio_10x10": CleanupMap(
        rows=(
            "##########",
            "#HH   P B#",
            "#RR    BB#",
            "#HH     B#",
            "#RR    BB#",
            "#HH P   B#",
            "#RR    BB#",
            "#HH     B#",
            "#RRP   BB#",
            "##########",
        ),
        spawn=((8, 3), (5, 4), (1, 6)),
        num_agents=3,
        episode_length=50,
        view_size=15,
        apple_respawn_prob=0.3,
        waste_spawn_prob=0.5,
        depletion_threshold=0.4,
        punishment=False,
    ),
    "original": CleanupMap(
        rows=(
            "##################",
            "#RRRRRR     BBBBB#",
            "#HHHHHH      BBBB#",
            "#RRRRRR     BBBBB#",
            "#RRRRR  P    BBBB#",
            "#RRRRR    P BBBBB#",
            "#HHHHH       BBBB#",
            "#RRRRR      BBBBB#",
            "#HHHHHHSSSSSSBBBB#",
            "#HHHHHHSSSSSSBBBB#",
            "#RRRRR   P P BBBB#",
            "#HHHHH   P  BBBBB#",
            "#RRRRRR    P BBBB#",
            "#HHHHHH P   BBBBB#",
            "#RRRRR       BBBB#",
            "#HHHH    P  BBBBB#",
            "#RRRRR       BBBB#",
            "#HHHHH  P P BBBBB#",
            "#RRRRR       BBBB#",
            "#HHHH       BBBBB#",
            "#RRRRR       BBBB#",
            "#HHHHH      BBBBB#",
            "#RRRRR       BBBB#",
            "#HHHH       BBBBB#",
            "##################",
        ),
        spawn=None,
        num_agents=5,
        episode_length=1000,
        view_size=15,
        apple_respawn_prob=0.05,
        waste_spawn_prob=0.5,
        depletion_threshold=0.4,
        punishment=True,
    ),
}


class CleanupParams(GridParams):
    """Parameters of Cleanup; None takes the map's value (module docstring table)."""

    maps: ClassVar[dict[str, Any]] = CLEANUP_MAPS
    map: Literal["lio_7x7", "lio_10x10", "original"] = Field(
        "lio_7x7", description="Map: 'lio_7x7', 'lio_10x10' or 'original' (25 x 18)."
    )
    apple_respawn_prob: float | None = Field(
        None, ge=0, le=1, description="Apple growth probability on a clean river; None: map's."
    )
    waste_spawn_prob: float | None = Field(
        None, ge=0, le=1, description="Probability a tried free river cell gets waste; None: map's."
    )
    depletion_threshold: float | None = Field(
        None, gt=0, le=1, description="Waste density at which nothing spawns; None: the map's."
    )


class Cleanup(GridGame):
    """Cleanup, a public-goods dilemma: apples grow only while someone cleans the river.

    E instances stepped as tensor operations; see the module docstring.
    """

    Params: ClassVar[type[EnvParams]] = CleanupParams
    channels, wall_channel, agent_channel = CHANNELS, WALL, OTHER
    apple_symbol, punish = "B", PUNISH
    #: Per-step counters; `cleaning_actions_<agent>` are added per instance (they depend on A).
    info_keys: ClassVar[tuple[str, ...]] = (
        "apples_eaten",
        "apple_eat_time",
        "cleaning_actions",
        "waste_cleared",
        "punishments",
    )
    metric_names: ClassVar[tuple[str, ...]] = (
        "apples_eaten",
        "sustainability",
        "cleaning_actions",
        "waste_cleared",
        "punishments",
    )
    state_keys: ClassVar[tuple[str, ...]] = ("pos", "apple", "waste", "t")

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        spec, grid, agents = self.spec, self.grid, self.num_agents
        per_agent = tuple(f"cleaning_actions_{a}" for a in self.possible_agents)
        cleared = tuple(f"waste_cleared_{a}" for a in self.possible_agents)
        self.info_keys = (*type(self).info_keys, *per_agent, *cleared)
        self.metric_names = (*type(self).metric_names, *per_agent, *cleared)

        # static layout
        if sys.byteorder != "little":
            raise RuntimeError(
                "Cleanup's cleaning beams read bytes as little-endian words; this CPU is big-endian"
            )
        device = self.device
        self.waste_cells = grid.cells("HR")
        self._num_waste = num_waste = len(self.waste_cells)
        # cleaning beams read a byte per cell of each instance's padded map (`_CODE`): the
        # cells of the three lines from every cell, each line padded with walls to whole
        # 8-byte words (cells past its end then stop it without cleaning), and a last row
        # N of walls only, the "lines" of an agent that does not clean
        words = -(-spec.beam_length // 8)
        line_cells = torch.zeros(grid.size + 1, 3, 8 * words, dtype=torch.long, device=device)  # 0: wall
        line_cells[:-1, :, : spec.beam_length] = self._beams.cells
        self._line_cells = line_cells.flatten(1)  # [N + 1, 3 * 8 words]
        self._line_words = words
        self._wall_codes = grid.wall.to(torch.uint8) * _CODE["wall"]
        self._agent_codes = torch.full((1, agents), _CODE["agent"], dtype=torch.uint8, device=device)
        self._initial_waste = torch.isin(self.waste_cells, grid.cells("H"))[:, None]
        if self.levels_on:  # a level's first waste slots are the ones full at reset
            full = int(self._initial_waste.sum())
            self._initial_waste = (torch.arange(num_waste, device=device) < full)[:, None]
        self._waste_index = torch.arange(num_waste, device=device)[:, None]
        # spawning by the number n of waste cells: d = n / K; at or above the threshold
        # nothing spawns, below it apples grow with p_apple (1 - d / threshold)
        below = [n / num_waste < spec.depletion_threshold for n in range(num_waste + 1)]
        self._apple_prob = torch.tensor(
            [
                spec.apple_respawn_prob * (1 - n / num_waste / spec.depletion_threshold) if ok else 0.0
                for n, ok in enumerate(below)
            ],
            device=device,
        )
        self._waste_prob = torch.tensor([spec.waste_spawn_prob if ok else 0.0 for ok in below], device=device)
        self._windows = self._windows_of(
            torch.cat([self.apple_cells, self.waste_cells]),
            torch.tensor([APPLE] * len(self.apple_cells) + [WASTE] * num_waste, device=device),
        )
        # one draw per apple and waste-able cell (a waste cell's low 40 bits are its order
        # key), one per agent, one per spawn point on random-spawn maps, one for the next level
        self._draw_layout = (
            ("cells", len(self.apple_cells) + num_waste),
            ("move_key", agents),
            ("spawn_key", len(self._spawn_cells) if self._random_spawn else 0),
            ("level_key", 1 if self.levels_on else 0),
        )
        self._num_draws = sum(n for _, n in self._draw_layout)

        # state, instance last (`pos` [A, E] and `t` [E] come from GridGame): apples [K, E]
        # and waste [K_w, E] per apple / waste-able cell
        self.apple = torch.zeros(len(self.apple_cells), num_envs, dtype=torch.bool, device=device)
        self.waste = self._initial_waste.expand(-1, num_envs).clone()
        # procedural levels: each instance's waste-able cells [K_w, E] and item cells [K + K_w, E]
        self.waste_at = self.waste_cells[:, None].expand(-1, num_envs).clone()
        self._items_at = torch.cat([self.apple_at, self.waste_at]) if self.levels_on else None

    # --- procedural levels -------------------------------------------------

    def _generate(self, levels: torch.Tensor) -> CleanupLayouts:
        return cleanup_layouts(
            levels.to(self.device),
            self.interior,
            waste_cells=self._num_waste,
            full_cells=int(self._initial_waste.sum()),
            apple_cells=len(self.apple_cells),
            spawns=len(self._spawn_cells),
        )

    def _place_game(self, index: torch.Tensor, layouts: CleanupLayouts) -> None:
        self.waste_at[:, index] = layouts.waste.t()
        self._items_at = torch.cat([self.apple_at, self.waste_at])

    def level_difficulty(self, levels: torch.Tensor) -> torch.Tensor:
        """[K] float64: the mean column distance from a level's waste-able cells to its apple cells."""
        layouts = self._generate(levels)
        col = self.grid.col_of
        return (col[layouts.apples].double().mean(1) - col[layouts.waste].double().mean(1)).cpu()

    # --- randomness ------------------------------------------------------

    def _draw(self) -> dict[str, torch.Tensor]:
        """Draw the step's random numbers: the same count per instance every step.

        Returns:
            name -> [n, E]: `apple` and `waste` uniforms (one per cell), `waste_key`
            (40-bit order keys, the low bits of the waste draws), `move_key` and
            `spawn_key` (raw 64-bit keys).

        """
        draws = split_draws(self.rng.bits(self._num_draws, instance_last=True), self._draw_layout)
        cells = draws.pop("cells")
        draws["apple"], draws["waste"] = uniform(cells).split([len(self.apple_cells), self._num_waste])
        draws["waste_key"] = cells[len(self.apple_cells) :] & _KEY_MASK
        return draws

    def _clean(
        self, pos: torch.Tensor, waste: torch.Tensor, cleaning: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fire the cleaning beams, agent 0 first; returns the new waste and the cells each cleared.

        Every instance gets a byte map of its padded grid (`_CODE`: waste, walls, agents).
        A line's bytes, read as little-endian 8-byte words, stop at the lowest set bit; a
        waste bit there (byte j: the word's bit 8 j) is the cell the line cleans, and
        subtracting that bit from the word and writing the line back cleans it, so each
        agent's beam updates the map before the next agent fires.
        """
        num_envs = self.num_envs
        codes = self._wall_codes.expand(num_envs, -1).clone()  # [E, N]
        if self.levels_on:
            waste_at = self.waste_at.t()  # [E, K_w]
            codes.scatter_(1, waste_at, waste.view(torch.uint8).t())
        else:
            codes.index_copy_(1, self.waste_cells, waste.view(torch.uint8).t())
        codes.scatter_add_(1, pos.t(), self._agent_codes.expand(num_envs, -1))
        shooters = torch.where(cleaning, pos, len(self._line_cells) - 1)
        hits = []
        for a in range(self.num_agents):
            cells = self._line_cells.index_select(0, shooters[a])  # [E, 3 * 8 words]
            word = codes.gather(1, cells).view(torch.int64)  # [E, 3 * words]
            first = word & -word  # the lowest set bit: the first stop of each line
            if self._line_words > 1:  # only the first word of a line with a stop counts
                stopped = (first != 0).view(num_envs, 3, -1)
                earlier = (stopped.cumsum(2) - stopped.long() > 0).view(num_envs, -1)
                first = torch.where(earlier, 0, first)
            hit = first & _WASTE_BITS
            codes.scatter_(1, cells, (word - hit).view(torch.uint8))
            hits.append(hit)
        cleared_by = (torch.stack(hits) != 0).sum(2, dtype=torch.float32)
        if self.levels_on:
            waste = codes.gather(1, waste_at) & _CODE["waste"]
        else:
            waste = codes.index_select(1, self.waste_cells) & _CODE["waste"]
        return waste.t().contiguous().view(torch.bool), cleared_by

    # --- the interface ---------------------------------------------------

    def _reset(self) -> TimeStep:
        self._reset_agents()
        self.apple = torch.zeros_like(self.apple)
        self.waste = self._initial_waste.expand(-1, self.num_envs).clone()
        return self._first_step(self._observe(), acting=self._acting)

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Advance every instance by one step (rules in the module docstring)."""
        num_envs = self.num_envs
        actions = actions.to(device=self.device, dtype=torch.long).t().contiguous()  # [A, E]
        draws = self._draw()

        # 1. moves, 2. eating
        eaten, apple, blocked = self._move_and_eat(actions, self.apple, draws["move_key"])
        apple = apple[:-1]
        reward = eaten.to(torch.float32)

        # 3. cleaning beams, agent 0 first (instance-first here: the lines are short rows)
        cleaning = actions == CLEAN
        waste = self.waste
        if cleaning.any():
            waste, cleared_by = self._clean(self.pos, waste, cleaning)
        else:
            cleared_by = torch.zeros(self.num_agents, num_envs, device=self.device)
        waste_count = waste.sum(0)

        # 4. punishment beams
        reward, fired = self._punish(reward, actions)

        # 5. spawning
        p_apple = self._apple_prob.take(waste_count)
        self.apple = apple | (~blocked & (draws["apple"] < p_apple))
        tries = ~waste & (draws["waste"] < self._waste_prob.take(waste_count))
        # the first cell in a random order that succeeds: the largest key among the tries
        # (argmax along the contiguous last dimension: ~10x faster than along the short first one)
        first = torch.where(tries, draws["waste_key"], -1).t().contiguous().argmax(1)
        self.waste = waste | ((self._waste_index == first) & tries.any(0))

        self.t = self.t + 1
        terminated = self.t >= self.spec.episode_length
        counts = torch.stack([eaten, cleaning, fired]).sum(1, dtype=torch.float32)  # [3, E]
        cleaning_by = cleaning.to(torch.float32)
        info = {
            "apples_eaten": counts[0],
            "apple_eat_time": counts[0] * self.t,
            "cleaning_actions": counts[1],
            "waste_cleared": cleared_by.sum(0),
            "punishments": counts[2],
        }
        for i, name in enumerate(self.possible_agents):
            info[f"cleaning_actions_{name}"] = cleaning_by[i]
            info[f"waste_cleared_{name}"] = cleared_by[i]

        return self._finish(reward, terminated, info, draws["spawn_key"], draws["level_key"])

    def _restart(self, done: torch.Tensor) -> None:
        """Put the apples and waste of the finished instances back in their reset state."""
        self.apple = self.apple & ~done
        self.waste = torch.where(done, self._initial_waste, self.waste)

    def _observe(self) -> dict[str, torch.Tensor]:
        present = torch.cat([self.apple, self.waste])
        windows = self._windows(self.pos, present, self._items_at)
        return dict(zip(self.possible_agents, windows, strict=True))
