"""Navigation: cooperative navigation through procedurally generated rooms, one layout per level seed.

| property     | value                                                                     |
| ------------ | ------------------------------------------------------------------------- |
| agents       | `agent_0` ... `agent_{N-1}` (N = `num_agents`, default 2)                 |
| map          | n x n free interior (n in [`min_size`, `max_size`]) inside a wall border, |
|              | drawn on a fixed (max_size + 2)^2 canvas (cells beyond n are wall)        |
| actions      | Discrete(5): 0 stay, 1 up, 2 down, 3 left, 4 right; a move into a wall is |
|              | a stay; agents may share a cell (no collisions)                           |
| observation  | four S x S planes, S = max_size + 2: wall, goal, self, other agents       |
|              | (count, clipped to 1), float32 in [0, 1]. `observation: flat` (default):  |
|              | Box(0, 1, (4 * S * S,)), plane after plane, each row-major;               |
|              | `observation: image`: Box(0, 1, (S, S, 4)), channels last, the same       |
|              | values (flat.reshape(4, S, S).permute(1, 2, 0)), for a conv torso         |
| reward       | 1 - `time_penalty` * t / L to every agent on the step t (1, 2, ...) on    |
|              | which every goal cell holds an agent, else 0 (default: +1); L is the      |
|              | instance's episode length                                                 |
| episode      | terminated on that success; truncated after L steps: `max_steps`, or the  |
|              | instance's `max_steps` task (time is not observed)                        |

Levels: a layout is a pure function of its integer level id (0 to 2^31 - 1)
and the map parameters, the same in every instance and every run:

- size n = min_size + (draw mod (max_size - min_size + 1)) (or the task's `size`);
- candidate walls at interior columns 3, 5, 7, ... up to n - 2; each is a wall
  with probability `wall_density`, a full column with one door (a gap) at a
  random row: rooms in a row, joined by doors, so the route zig-zags from
  door to door and distances depend on where the doors are;
- the N agents start at random cells of the leftmost room (or of the room
  the `spawn_doors` task names); the N goal cells form a vertical line at a
  random place in the rightmost room (the team succeeds when every goal cell
  is covered, which needs every agent there).

The reward is sparse: an episode pays once, on success. `time_penalty` (0 by
default) makes a faster success pay more, as MiniGrid's `1 - 0.9 * t / max_steps`
(Chevalier-Boisvert et al.; the reward of PLR's MiniGrid runs) with
`time_penalty: 0.9`: the return then says how quickly a level is solved,
not only whether, so it varies across episodes of a level the learner solves
slowly or sometimes.

`level_difficulty(levels)` rates a level by its number of walls (doors to
pass). `env.params.levels` holds the training levels (`train`) and the
held-out test levels (`test`, for evaluation only; overlap is an error).

Tasks (per instance, adopted at its next reset): `level` (a level id; a test
level is refused), `size` (n, or 0 for the level's own size), `max_steps`
(the episode length L, 1 to MAX_EPISODE_STEPS = 10^9, or 0 for the param
`max_steps`): long episodes let random exploration succeed more often, so a
schedule can shorten them toward the hard task on the same rooms; and
`spawn_doors` (d, 0 to the most walls a level can have, (max_size - 3) // 2:
the agents start in the room d doors before the goal's room, 0 the goal's
room itself, the leftmost room when the level has fewer than d walls; -1,
the default, the leftmost room): a reverse curriculum (Florensa et al. 2017)
starts the agents near the goal, then farther, on the same rooms. Fractional
sizes, lengths and door counts, as a linear schedule hands out, are rounded
to the nearest (half to even). Without a
task, each reset draws a training level uniformly from the instance's own
random stream (one draw per step, used where an episode ends, so instance e
of a batch behaves exactly as a lone instance seeded with seed + e).

The image observation is for a convolutional torso (`learner.conv_channels`,
`learner.conv_kernel`), laid out as Connect Four's board ([H, W, C], channels
last, which the torso reads): one filter then sees a door or a goal wherever
it is, where an MLP on the flat planes must learn each position apart.

Designer metrics: `success` (share of episodes that reached the goals) and
`episode_length` (steps per episode).
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import gymnasium
import torch
from pydantic import Field, model_validator

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep
from incentive.envs.levels import LevelRanges, level_task, whole_numbers
from incentive.envs.random import InstanceRandom

__all__ = ["MAX_EPISODE_STEPS", "Layouts", "Navigation", "NavigationParams", "generate_layouts"]

MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])
LEVEL_SALT = 0x5EED  # keeps level streams apart from instance streams seeded with the same integer
MAX_EPISODE_STEPS = 10**9
"""The longest episode, as a param or a task (the other envs' horizons share the bound)."""


class NavigationParams(EnvParams):
    """Parameters of the navigation gridworld."""

    num_agents: int = Field(2, ge=1, le=4, description="N, agents (and goal cells); at most min_size.")
    min_size: int = Field(5, ge=4, description="Smallest interior side n a level may have.")
    max_size: int = Field(9, ge=4, le=25, description="Largest interior side n a level may have.")
    wall_density: float = Field(0.5, ge=0, le=1, description="Chance that a candidate column is a wall.")
    max_steps: int = Field(
        40,
        ge=1,
        le=MAX_EPISODE_STEPS,
        description="Steps before an episode is truncated (task: per instance).",
    )
    time_penalty: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Success on step t pays 1 - time_penalty * t / L, L the episode length (MiniGrid 0.9).",
    )
    levels: LevelRanges = Field(default_factory=LevelRanges, description="Training and held-out test levels.")
    observation: Literal["flat", "image"] = Field(
        "flat", description="flat: Box(4 * S * S,); image: Box(S, S, 4), channels last, for a conv torso."
    )

    @model_validator(mode="after")
    def _sizes(self) -> NavigationParams:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size ({self.min_size}) must not exceed max_size ({self.max_size})")
        return self


class Layouts(NamedTuple):
    """K layouts: walls [K, S, S] bool, goal and spawn cells [K, N, 2] (row, col), walls per level [K]."""

    walls: torch.Tensor
    goals: torch.Tensor
    spawns: torch.Tensor
    num_walls: torch.Tensor


def wall_candidates(max_size: int) -> torch.Tensor:
    """The interior columns that may hold a wall: 3, 5, 7, ... up to max_size - 2 ((max_size - 3) // 2)."""
    return torch.arange(3, max_size - 1, 2)


def room_columns(
    is_wall: torch.Tensor, candidates: torch.Tensor, n: torch.Tensor, room: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """[K] first and last interior column of each level's room `room` (0: the leftmost), between its walls.

    Args:
        is_wall: [K, W] which candidate columns are walls.
        candidates: [W] the candidate columns, ascending.
        n: [K] interior sides.
        room: [K] room index, 0 to the level's number of walls (the rightmost room).

    """
    k = len(n)
    rank = is_wall.cumsum(1)  # [K, W]: walls at or left of each candidate
    before = torch.where(is_wall & (rank <= room[:, None]), candidates, 0)  # walls left of the room
    after = torch.where(is_wall & (rank > room[:, None]), candidates, n[:, None] + 1)  # walls right of it
    first = 1 + torch.cat([before, torch.zeros(k, 1, dtype=torch.long)], 1).max(1).values
    last = torch.cat([after, n[:, None] + 1], 1).min(1).values - 1
    return first, last


def generate_layouts(
    levels: torch.Tensor,
    sizes: torch.Tensor,
    params: NavigationParams,
    spawn_doors: torch.Tensor | None = None,
) -> Layouts:
    """The layouts of K levels, vectorised (no loop over levels).

    Args:
        levels: [K] level ids.
        sizes: [K] interior sides n, or 0 for each level's own size.
        params: the map parameters.
        spawn_doors: [K] doors from the agents' room to the goal's room (0: the goal's room; more
            than the level has: the leftmost room), or -1 or None for the leftmost room.

    """
    k, n_agents = len(levels), params.num_agents
    canvas = params.max_size + 2
    candidates = wall_candidates(params.max_size)
    w = len(candidates)
    rng = InstanceRandom(k)
    rng.seed(levels.long() * 2 + LEVEL_SALT)
    # non-negative 63-bit numbers: the sign bit cleared (torch's `>>` is arithmetic, so `>> 1` kept
    # negative draws negative, and every wall test below came out true)
    draws = rng.bits(3 + 2 * w + 2 * n_agents) & ((1 << 63) - 1)
    span = params.max_size - params.min_size + 1
    n = torch.where(sizes > 0, sizes.long(), params.min_size + draws[:, 0] % span)  # [K]
    density = torch.tensor(params.wall_density, dtype=torch.float64)
    is_wall = ((draws[:, 1 : 1 + w] >> 10).double() * 2.0**-53 < density) & (candidates <= n[:, None] - 2)
    doors = 1 + draws[:, 1 + w : 1 + 2 * w] % n[:, None]  # [K, W] door row of each candidate
    rows = torch.arange(canvas)
    inside = (rows >= 1) & (rows[None] <= n[:, None])  # [K, S]
    walls = ~(inside[:, :, None] & inside[:, None, :])
    wall_cols = torch.zeros(k, canvas, dtype=torch.bool)
    door_row = torch.zeros(k, canvas, dtype=torch.long)
    if w:
        wall_cols[:, candidates] = is_wall
        door_row[:, candidates] = doors
    walls |= wall_cols[:, None, :] & inside[:, :, None] & (rows[None, :, None] != door_row[:, None, :])
    # rooms 0 (leftmost) .. num_walls (rightmost, the goal's); the spawn room is spawn_doors walls to
    # the goal's left, clamped to room 0, which it is by default (the same draws for every room)
    num_walls = is_wall.sum(1)
    doors_back = torch.full((k,), -1) if spawn_doors is None else spawn_doors.long()
    spawn_room = torch.where(doors_back >= 0, (num_walls - doors_back).clamp(min=0), 0)
    spawn_first, spawn_last = room_columns(is_wall, candidates, n, spawn_room)
    goal_first, goal_last = room_columns(is_wall, candidates, n, num_walls)
    base = 3 + 2 * w
    spawn_rows = 1 + draws[:, base : base + n_agents] % n[:, None]
    spawn_width = spawn_last - spawn_first + 1
    spawn_cols = spawn_first[:, None] + draws[:, base + n_agents : base + 2 * n_agents] % spawn_width[:, None]
    goal_col = goal_first + draws[:, 1 + 2 * w] % (goal_last - goal_first + 1)
    goal_top = 1 + draws[:, 2 + 2 * w] % (n - n_agents + 1)
    goal_rows = goal_top[:, None] + torch.arange(n_agents)
    goals = torch.stack([goal_rows, goal_col[:, None].expand(-1, n_agents)], -1)
    spawns = torch.stack([spawn_rows, spawn_cols], -1)
    return Layouts(walls=walls, goals=goals, spawns=spawns, num_walls=num_walls)


class Navigation(BatchedEnv):
    """E instances of the navigation gridworld, each on its own level, stepped as tensor operations."""

    Params: ClassVar[type[EnvParams]] = NavigationParams
    info_keys = ("success", "episode_length")
    metric_names = info_keys
    task_keys = ("level", "size", "max_steps", "spawn_doors")
    state_keys = (
        "pos",
        "t",
        "max_steps",
        "level",
        "walls",
        "goals",
        "next_level",
        "next_size",
        "next_max_steps",
        "next_spawn_doors",
    )

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        n = params.num_agents
        self.possible_agents = [f"agent_{i}" for i in range(n)]
        self.canvas = params.max_size + 2
        s = self.canvas
        shape = (s, s, 4) if params.observation == "image" else (4 * s * s,)
        obs_space = gymnasium.spaces.Box(0.0, 1.0, shape, dtype="float32")
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: gymnasium.spaces.Discrete(len(MOVES)) for a in self.possible_agents}
        self.train_levels = params.levels.train_ids()
        self.test_levels = params.levels.test_ids()
        e = num_envs
        self.pos = torch.zeros(e, n, 2, dtype=torch.long)
        self.t = torch.zeros(e, dtype=torch.long)
        self.max_steps = torch.full((e,), params.max_steps, dtype=torch.long)  # each episode's length L
        self.level = torch.zeros(e, dtype=torch.long)
        self.walls = torch.ones(e, s, s, dtype=torch.bool)
        self.goals = torch.zeros(e, n, 2, dtype=torch.long)
        self.next_level = torch.full((e,), -1, dtype=torch.long)  # -1: draw a training level
        self.next_size = torch.zeros(e, dtype=torch.long)  # 0: the level's own size
        self.next_max_steps = torch.zeros(e, dtype=torch.long)  # 0: params.max_steps
        self.next_spawn_doors = torch.full((e,), -1, dtype=torch.long)  # -1: the leftmost room
        self.max_walls = len(wall_candidates(params.max_size))  # the most walls (doors) a level can have

    # --- tasks -------------------------------------------------------------

    def set_task(self, task: dict[str, torch.Tensor]) -> None:
        """Per-instance `level` ids, `size`s, `max_steps` and/or `spawn_doors`, adopted at each next reset.

        Raises:
            ValueError: naming the key: a level outside the generator's bounds
                or among the held-out test levels, a size outside [min_size,
                max_size], an episode length outside [1, MAX_EPISODE_STEPS],
                a door count outside [-1, (max_size - 3) // 2], or a value
                that is not a finite number.

        """
        super().set_task(task)
        p = self.params
        if "level" in task:
            self.next_level = level_task(
                task["level"], test_levels=self.test_levels, allow_test=self.allow_test_levels
            )
        if "size" in task:
            size = whole_numbers(task["size"], "size", rounded=True)  # a schedule may interpolate it
            if bool(((size != 0) & ((size < p.min_size) | (size > p.max_size))).any()):
                raise ValueError(
                    f"task 'size': sizes must lie in {p.min_size}..{p.max_size} (min_size..max_size), "
                    "or be 0 (each level's own size), "
                    f"got {sorted(set(size.tolist()))[:8]}"
                )
            self.next_size = size.clone()
        if "max_steps" in task:
            length = whole_numbers(task["max_steps"], "max_steps", rounded=True)
            if bool(((length < 0) | (length > MAX_EPISODE_STEPS)).any()):
                raise ValueError(
                    f"task 'max_steps': episode lengths must lie in 1..{MAX_EPISODE_STEPS}, "
                    f"or be 0 (env.params.max_steps, {p.max_steps}), got {sorted(set(length.tolist()))[:8]}"
                )
            self.next_max_steps = length.clone()
        if "spawn_doors" in task:
            doors = whole_numbers(task["spawn_doors"], "spawn_doors", rounded=True)
            if bool(((doors < -1) | (doors > self.max_walls)).any()):
                raise ValueError(
                    f"task 'spawn_doors': door counts must lie in 0..{self.max_walls} (the most walls a "
                    f"level of max_size {p.max_size} can have), or be -1 (the leftmost room), "
                    f"got {sorted(set(doors.tolist()))[:8]}"
                )
            self.next_spawn_doors = doors.clone()

    def level_difficulty(self, levels: torch.Tensor) -> torch.Tensor:
        """[K] float64: the number of walls (doors to pass) of each level at its own size."""
        return generate_layouts(levels, torch.zeros_like(levels), self.params).num_walls.to(torch.float64)

    # --- dynamics ------------------------------------------------------------

    def _begin(self, where: torch.Tensor, pick: torch.Tensor) -> None:
        """Start new episodes in the instances `where` ([E] bool), on their next levels."""
        index = where.nonzero()[:, 0]
        if len(index) == 0:
            return
        drawn = self.train_levels[pick[index] % len(self.train_levels)]
        levels = torch.where(self.next_level[index] >= 0, self.next_level[index], drawn)
        layouts = generate_layouts(levels, self.next_size[index], self.params, self.next_spawn_doors[index])
        self.level[index] = levels
        self.walls[index] = layouts.walls
        self.goals[index] = layouts.goals
        self.pos[index] = layouts.spawns
        self.t[index] = 0
        length = self.next_max_steps[index]
        self.max_steps[index] = torch.where(length > 0, length, self.params.max_steps)

    def _observe(self) -> dict[str, torch.Tensor]:
        e, n, s = self.num_envs, self.num_agents, self.canvas
        flat_pos = self.pos[..., 0] * s + self.pos[..., 1]  # [E, N]
        goal = torch.zeros(e, s * s).scatter_(1, self.goals[..., 0] * s + self.goals[..., 1], 1.0)
        own = torch.zeros(e, n, s * s).scatter_(2, flat_pos[..., None], 1.0)
        everyone = own.sum(1, keepdim=True)
        others = (everyone - own).clamp(max=1.0)
        walls = self.walls.reshape(e, 1, s * s).float()
        planes = [walls.expand(e, n, -1), goal[:, None].expand(e, n, -1), own, others]  # each [E, N, S * S]
        if self.params.observation == "image":
            obs = torch.stack(planes, 3).reshape(e, n, s, s, 4)  # channels last
        else:
            obs = torch.cat(planes, 2)
        return {agent: obs[:, i] for i, agent in enumerate(self.possible_agents)}

    def _reset(self) -> TimeStep:
        pick = self.rng.integers(len(self.train_levels))[:, 0]
        self._begin(torch.ones(self.num_envs, dtype=torch.bool), pick)
        return self._first_step(self._observe())

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Move every agent, check the goals, restart finished instances on their next levels.

        Args:
            actions: [E, N] long in 0..4 (stay, up, down, left, right).

        Returns:
            The `TimeStep`; finished instances already start their next episode.

        """
        e, s = self.num_envs, self.canvas
        pick = self.rng.integers(len(self.train_levels))[:, 0]  # one draw per step: the level of a restart
        target = self.pos + MOVES[actions.long()]
        blocked = self.walls.reshape(e, s * s).gather(1, target[..., 0] * s + target[..., 1])
        self.pos = torch.where(blocked[..., None], self.pos, target)
        covered = (self.goals[:, :, None] == self.pos[:, None]).all(-1).any(2)  # [E, goals]
        success = covered.all(1)
        self.t = self.t + 1
        truncated = (self.t >= self.max_steps) & ~success
        pay = 1.0 - self.params.time_penalty * self.t.double() / self.max_steps.double()
        reward = torch.where(success, pay, 0.0).float()[:, None].expand(e, self.num_agents).clone()
        info = {"success": success.float(), "episode_length": torch.ones(e)}
        done = success | truncated
        final_obs = None
        if bool(done.any()):
            final_obs = self._observe()
            self._begin(done, pick)
        return TimeStep(
            obs=self._observe(),
            reward=reward,
            terminated=success,
            truncated=truncated,
            acting=torch.ones(e, self.num_agents, dtype=torch.bool),
            info=info,
            final_obs=final_obs,
        )

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Success rate and mean episode length over the finished episodes."""
        episodes = len(totals["success"])
        if episodes == 0:
            return {key: float("nan") for key in self.info_keys}
        return {key: float(totals[key].sum()) / episodes for key in self.info_keys}
