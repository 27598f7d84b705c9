"""Harvest: a common-pool resource sequential social dilemma.

Apples regrow only near other apples (Perolat et al. 2017; Hughes et al.
2018): eat a patch bare and it never comes back. Restraint pays the group,
greed pays the individual.

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | `agent_0` ... `agent_{A-1}` (A = 3 or 5 by map; `num_agents`)           |
| actions      | Discrete(5): 0 left, 1 right, 2 up, 3 down, 4 stay;                     |
|              | Discrete(6) with `punishment`: 5 punish                                 |
| observation  | Box(0, 1, (3, V, V), float32): a V x V window centred on the agent     |
|              | (`view_size`), channels wall, apple, other agent; cells outside the    |
|              | map read as wall                                                       |
| reward       | +1 per apple eaten; with `punishment`: -1 for firing, -50 per hit taken |
| episode      | `episode_length` steps, then `terminated` (the game's horizon) and an  |
|              | automatic reset                                                        |

Maps (`map`; `#` wall, `A` apple cell, an apple on it at reset, `P` spawn
point):

| map        | size    | A | window | steps | punishment | spawn                | apple cells |
| ---------- | ------- | - | ------ | ----- | ---------- | -------------------- | ----------- |
| `small`    | 10 x 10 | 3 | 15     | 100   | off        | fixed, 4 points      | 20          |
| `original` | 16 x 38 | 5 | 15     | 1000  | on         | random, of 20 points | 155         |

- `small` (designed here): four plus-shaped patches of five apples around a
  central 2 x 2 spawn square; agents 0-3 start at (4,4), (4,5), (5,4),
  (5,5) (reading order; at most 4 agents). A patch's centre has 4 apple
  neighbours, its arms 3 each, so an untouched patch regrows at the top
  rate, a patch with one apple left at 0.005, and an eaten-out patch never.
  The 15 x 15 window shows the whole interior from anywhere.

```
##########
# A    A #
#AAA  AAA#
# A    A #
#   PP   #
#   PP   #
# A    A #
#AAA  AAA#
# A    A #
##########
```

- `original` is the reference code's `HARVEST_MAP` (Vinitsky et al.),
  16 rows x 38 columns, A spawn points drawn at random (distinct) from its
  `P` cells at every reset. Simplification: no rotation; moves are absolute,
  the punishment beam always fires up (toward row 0), the 15 x 15 window is
  not rotated, and observations are binary planes, not RGB.

Procedural levels (`levels: {train: "0-999", test: "10000-10099"}`; default
None, the map's own layout): every instance runs its own layout of the
chosen map, generated from an integer level id (`incentive.envs.grid_levels`:
round patches of apple cells, each able to regrow, and the spawn points).
Task `level` (per instance, adopted at its next reset; a test level is
refused); without a task each reset draws a training level from the
instance's own stream (one extra draw per step). `level_difficulty`: the
number of patches.

Rules within a step, in this order:

1. Moves (`incentive.envs.gridworld.resolve_moves`): a move into a wall is a
   stay; agents wanting the same cell: a random one tries it, the others
   stay; moving into an agent that stays is blocked; swaps are blocked.
2. Eating: an agent on an apple eats it (+1) and the apple is removed.
3. Punishment beams (`punishment` on): three upward lines of `beam_length`
   (5) cells, the middle one starting above the agent, the side ones in the
   neighbouring columns level with the agent, each stopped by a wall or an
   agent; firing costs 1, every line that stops at an agent costs that agent
   50 (the agent stays in the game, as in the reference code).
4. Regrowth: every apple cell without apple or agent grows an apple with
   probability `regrowth_probs`[min(n, 3)], n = apples in the 3 x 3 block
   around it (the reference code's neighbourhood: its radius-2 test
   j^2 + k^2 <= 2 is the 3 x 3 block, not a radius-2 disk), counted after
   eating. Default 0, 0.005, 0.02, 0.05.

Randomness: every step draws, per instance and whatever happens, one uniform
per apple cell, one conflict key per agent and (random-spawn maps) one key
per spawn point for a possible reset; `reset` draws the spawn keys once more.
A batch of E instances reset with seed s steps exactly like E lone instances
reset with seeds s, ..., s + E - 1.

State (`state_keys`, instance last for speed, see `incentive.envs.gridworld`):
`pos` [A, E] flat cell indices into the padded map (`grid.index(row, col)`),
`apple` [K, E] per apple cell (`apple_cells`), `t` [E] steps into the episode.

Designer metrics (per finished episode, averaged over the batch of
episodes): `apples_eaten`, `punishments` (beams fired), `final_apple_stock`
(apples on the map at the last step, before the reset; its info counter is
nonzero only on that step) and `sustainability` (Perolat et al. 2017: the
mean step, 1 ... T, at which the batch's apples were eaten; 0 when none
was). Collective return and equality are computed by the framework.

Sources: Perolat et al. 2017 (A multi-agent reinforcement learning model of
common-pool resource appropriation); Hughes et al. 2018; Vinitsky et al.,
sequential_social_dilemma_games (reference rules and the original map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field

from incentive.envs.base import EnvParams, TimeStep
from incentive.envs.grid_levels import HarvestLayouts, harvest_layouts
from incentive.envs.gridworld import GridGame, GridMap, GridParams, split_draws, uniform

__all__ = ["HARVEST_MAPS", "Harvest", "HarvestMap", "HarvestParams"]

#: Action index of the punishment beam.
PUNISH = 5
#: Observation channels.
WALL, APPLE, OTHER = 0, 1, 2
CHANNELS = 3
REGROWTH = (0.0, 0.005, 0.02, 0.05)


@dataclass(frozen=True, kw_only=True)
class HarvestMap(GridMap):
    """A Harvest map: the shared `GridMap` fields and Harvest's own defaults."""

    regrowth_probs: tuple[float, float, float, float] = REGROWTH


HARVEST_MAPS: dict[str, HarvestMap] = {
    "small": HarvestMap(
        rows=(
            "##########",
            "# A    A #",
            "#AAA  AAA#",
            "# A    A #",
            "#   PP   #",
            "#   PP   #",
            "# A    A #",
            "#AAA  AAA#",
            "# A    A #",
            "##########",
        ),
        spawn=((4, 4), (4, 5), (5, 4), (5, 5)),
        num_agents=3,
        episode_length=100,
        view_size=15,
        punishment=False,
    ),
    "original": HarvestMap(
        rows=(
            "######################################",
            "# P   P      A    P AAAAA    P  A P  #",
            "#  P     A P AA    P    AAA    A  A  #",
            "#     A AAA  AAA    A    A AA AAAA   #",
            "# A  AAA A    A  A AAA  A  A   A A   #",
            "#AAA  A A    A  AAA A  AAA        A P#",
            "# A A  AAA  AAA  A A    A AA   AA AA #",
            "#  A A  AAA    A A  AAA    AAA  A    #",
            "#   AAA  A      AAA  A    AAAA       #",
            "# P  A       A  A AAA    A  A      P #",
            "#A  AAA  A  A  AAA A    AAAA     P   #",
            "#    A A   AAA  A A      A AA   A  P #",
            "#     AAA   A A  AAA      AA   AAA P #",
            "# A    A     AAA  A  P          A    #",
            "#       P     A         P  P P     P #",
            "######################################",
        ),
        spawn=None,
        num_agents=5,
        episode_length=1000,
        view_size=15,
        punishment=True,
    ),
}

Probability = Annotated[float, Field(ge=0, le=1)]


class HarvestParams(GridParams):
    """Parameters of Harvest; None takes the map's value (module docstring table)."""

    maps: ClassVar[dict[str, Any]] = HARVEST_MAPS
    map: Literal["small", "original"] = Field(
        "small", description="Map: 'small' (10 x 10, 3 agents) or 'original' (16 x 38)."
    )
    regrowth_probs: tuple[Probability, Probability, Probability, Probability] = Field(
        REGROWTH, description="Regrowth probability for 0, 1, 2, >=3 apples in the 3 x 3 block."
    )


class Harvest(GridGame):
    """Harvest, a common-pool resource: apples regrow only near other apples.

    E instances stepped as tensor operations; see the module docstring.
    """

    Params: ClassVar[type[EnvParams]] = HarvestParams
    channels, wall_channel, agent_channel = CHANNELS, WALL, OTHER
    apple_symbol, punish = "A", PUNISH
    info_keys: ClassVar[tuple[str, ...]] = (
        "apples_eaten",
        "apple_eat_time",
        "punishments",
        "final_apple_stock",
    )
    metric_names: ClassVar[tuple[str, ...]] = (
        "apples_eaten",
        "sustainability",
        "punishments",
        "final_apple_stock",
    )
    state_keys: ClassVar[tuple[str, ...]] = ("pos", "apple", "t")

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        device = self.device
        # [8 * K]: the slots of the 3 x 3 block around each apple cell (spare slot K), by
        # neighbour first so that the count is a sum over the leading dim
        self._neighbours = self.grid.neighbour_slots(self.apple_cells).t().flatten()
        self._regrowth = torch.tensor(self.spec.regrowth_probs, device=device)
        self._windows = self._windows_of(
            self.apple_cells, torch.full((len(self.apple_cells),), APPLE, device=device)
        )
        self._draw_layout = (
            ("apple", len(self.apple_cells)),
            ("move_key", self.num_agents),
            ("spawn_key", len(self._spawn_cells) if self._random_spawn else 0),
            ("level_key", 1 if self.levels_on else 0),
        )
        self._num_draws = sum(n for _, n in self._draw_layout)

        # state, instance last (`pos` [A, E] and `t` [E] come from GridGame): an apple per
        # apple cell [K, E]
        self.apple = torch.ones(len(self.apple_cells), num_envs, dtype=torch.bool, device=device)
        # procedural levels: each instance's neighbour slots [8 * K, E] (neighbour first)
        self._neighbours_at = (
            self._neighbours[:, None].expand(-1, num_envs).clone() if self.levels_on else None
        )
        span = torch.arange(-1, 2, device=device)
        block = (span[:, None] * self.grid.padded_width + span[None, :]).flatten()
        self._block = block[block != 0]  # [8] flat offsets of the 3 x 3 block, centre left out

    # --- procedural levels -------------------------------------------------

    def _generate(self, levels: torch.Tensor) -> HarvestLayouts:
        return harvest_layouts(
            levels.to(self.device),
            self.interior,
            apple_cells=len(self.apple_cells),
            spawns=len(self._spawn_cells),
        )

    def _place_game(self, index: torch.Tensor, layouts: HarvestLayouts) -> None:
        table = self._slot_table.view(self.num_envs, self.grid.size)[index]  # [k, N]
        around = layouts.apples[:, None, :] + self._block[None, :, None]  # [k, 8, K]
        slots = table.gather(1, around.flatten(1))  # [k, 8 * K], neighbour first
        self._neighbours_at[:, index] = slots.t()

    def level_difficulty(self, levels: torch.Tensor) -> torch.Tensor:
        """[K] float64: a level's number of patches (more, smaller patches are easier to eat bare)."""
        return self._generate(levels).patches.double().cpu()

    def _draw(self) -> dict[str, torch.Tensor]:
        """Draw the step's random numbers: the same count per instance every step.

        Returns:
            name -> [n, E]: `apple` uniforms (one per apple cell), `move_key` and
            `spawn_key` (raw 64-bit keys).

        """
        draws = split_draws(self.rng.bits(self._num_draws, instance_last=True), self._draw_layout)
        draws["apple"] = uniform(draws["apple"])
        return draws

    # --- the interface ---------------------------------------------------

    def _reset(self) -> TimeStep:
        self._reset_agents()
        self.apple = torch.ones_like(self.apple)
        return self._first_step(self._observe(), acting=self._acting)

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Advance every instance by one step (rules in the module docstring)."""
        num_envs = self.num_envs
        actions = actions.to(device=self.device, dtype=torch.long).t().contiguous()  # [A, E]
        draws = self._draw()

        # 1. moves, 2. eating (`apple`: [K + 1, E], the spare row stays False)
        eaten, apple, blocked = self._move_and_eat(actions, self.apple, draws["move_key"])
        reward = eaten.to(torch.float32)

        # 3. punishment beams
        reward, fired = self._punish(reward, actions)

        # 4. regrowth, from the apples in the 3 x 3 block after eating
        if self.levels_on:
            around = apple.gather(0, self._neighbours_at).view(8, -1, num_envs).sum(0)
        else:
            around = apple.index_select(0, self._neighbours).view(8, -1, num_envs).sum(0)
        p_grow = self._regrowth.take(around.clamp_(max=3))  # [K, E]
        self.apple = apple[:-1] | (~blocked & (draws["apple"] < p_grow))

        self.t = self.t + 1
        terminated = self.t >= self.spec.episode_length
        counts = torch.stack([eaten.sum(0), fired.sum(0), torch.where(terminated, self.apple.sum(0), 0)]).to(
            torch.float32
        )
        info = {
            "apples_eaten": counts[0],
            "apple_eat_time": counts[0] * self.t,
            "punishments": counts[1],
            "final_apple_stock": counts[2],
        }

        return self._finish(reward, terminated, info, draws["spawn_key"], draws["level_key"])

    def _restart(self, done: torch.Tensor) -> None:
        """Regrow every apple of the finished instances."""
        self.apple = self.apple | done

    def _observe(self) -> dict[str, torch.Tensor]:
        windows = self._windows(self.pos, self.apple, self.apple_at if self.levels_on else None)
        return dict(zip(self.possible_agents, windows, strict=True))
