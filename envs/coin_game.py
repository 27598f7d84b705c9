"""The Coin Game (Lerer & Peysakhovich 2017; Foerster et al. 2018, LOLA).

Agents move on a small grid that wraps around (a torus) and pick up a coin.
Picking up any coin pays the picker; picking up a coin of another agent's
colour costs that agent more. Greedy agents grab every coin and both end up
worse off than agents that leave the other's coins alone. Defaults follow LOLA.

| property     | value                                                                  |
| ------------ | ---------------------------------------------------------------------- |
| agents       | `red` (colour 0), `blue` (colour 1); with `num_agents` = N > 2 also    |
|              | `agent_2`, ..., `agent_{N-1}`; agent i's colour is i                   |
| actions      | Discrete(4): 0 = right (column + 1), 1 = left (column - 1),            |
|              | 2 = down (row + 1), 3 = up (row - 1), all modulo `grid_size` (wrap)    |
| observation  | Box(0, 1, (4, n, n), float32), n = `grid_size`; binary planes from the |
|              | agent's own perspective: 0 = own position, 1 = other agents'          |
|              | positions, 2 = coin of the agent's own colour, 3 = coin of another    |
|              | agent's colour (exactly one of planes 2 and 3 has a 1)                |
| reward       | +1 for picking up a coin (any colour); -2 to the coin's owner for each |
|              | agent of another colour that picks it up                              |
| episode      | `episode_length` steps (150; the game's horizon: reported as           |
|              | terminated, never truncated)                                          |
| task         | none                                                                   |

Rules and choices:

- Grid cells are numbered row-major, cell = row * n + column; row 0 is the
  top plane row, so "down" increases the row index.
- Exactly one coin exists at any time. At reset the agents are placed on
  distinct cells drawn uniformly, the first coin's colour is drawn uniformly
  among the N colours (independently per instance) and the coin is placed
  uniformly on a cell no agent occupies.
- Agents may share a cell (moves are never blocked).
- An agent picks up the coin when its move ends on the coin's cell. If
  several agents land on it in the same step, every one of them gets the full
  pick-up effects, as if it had been alone: +1 each, and -2 to the owner for
  each picker of another colour (two agents: the owner can lose 2 at most; a
  non-owner and the owner landing together give +1 to the non-owner and
  +1 - 2 = -1 to the owner).
- After a pick-up, the next coin's colour is the next one in the cycle
  0, 1, ..., N-1, 0, ... (alternates red/blue for two agents) and it spawns
  uniformly on a cell not occupied by any agent after the move
  (`grid_size`**2 > `num_agents` guarantees there is one).
- Randomness: every step and every reset draws the same number of 64-bit
  values from each instance's stream (one for the default game), whether it
  needs them or not, so an instance behaves the same whatever the number of
  instances beside it. A step uses the draw for a respawn and, at the end of
  an episode, for the next episode's start (every placement's probability is
  within 2**-31 of uniform).

Per-step `info` counters ([E] float): `coins_picked` (1 when the coin was
picked up this step, however many agents landed on it) and
`own_coins_picked` (1 when the coin was picked up by its owner alone: a coin
the owner and another agent land on together is a contested coin, not an own
one, or racing selfish agents would look cooperative).

Designer metrics: `own_coin_rate` = own coins picked / coins picked over the
finished episodes (0.0 when no coin was picked; selfish learners sit near
0.5, LOLA reported about 0.8 and more) and `coins_per_episode`, the mean
number of coins picked per episode.

Source: Lerer & Peysakhovich, "Maintaining cooperation in complex social
dilemmas using deep reinforcement learning" (2017); Foerster et al.,
"Learning with Opponent-Learning Awareness" (AAMAS 2018). The defaults are
LOLA's setup: 3 x 3 grid, 150-step episodes, the four moves in the order of
LOLA's code (right, left, down, up) and its four observation planes. JaxMARL's
variant (both coins present at once, a "stay" action) is a different game.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import gymnasium
import torch
from pydantic import Field, field_validator, model_validator

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep

__all__ = ["CoinGame", "CoinGameParams", "agent_names"]

NUM_ACTIONS = 4
#: (row, column) change of each action: right, left, down, up.
MOVES = ((0, 1), (0, -1), (1, 0), (-1, 0))
NUM_PLANES = 4
PICKUP_REWARD = 1.0
OWNER_PENALTY = -2.0

#: Largest lookup tables (in elements) the fast path builds; bigger games use plain tensor ops.
MAX_TABLE_ELEMENTS = 1 << 22
#: Product of the ranges packed into one 64-bit random draw (keeps the bias below 2**-32).
_MAX_WORD_RANGE = 1 << 31
_MASK63 = (1 << 63) - 1


def agent_names(num_agents: int) -> list[str]:
    """`red`, `blue`, then `agent_2`, ..., `agent_{N-1}`."""
    return ["red", "blue"] + [f"agent_{i}" for i in range(2, num_agents)]


class CoinGameParams(EnvParams):
    """Parameters of the Coin Game."""

    grid_size: int = Field(
        3, le=256, description="Side n of the n x n grid (wraps around); n**2 must exceed num_agents."
    )
    num_agents: int = Field(
        2, le=256, description="Number of agents N; agent i's colour is i and coins cycle through them."
    )
    episode_length: int = Field(150, ge=1, le=10**9, description="Steps per episode (the game's horizon).")

    @field_validator("grid_size")
    @classmethod
    def _grid_size(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"grid_size must be at least 2, got {value}")
        return value

    @field_validator("num_agents")
    @classmethod
    def _num_agents(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"num_agents must be at least 2, got {value}")
        return value

    @field_validator("episode_length")
    @classmethod
    def _episode_length(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"episode_length must be at least 1, got {value}")
        return value

    @model_validator(mode="after")
    def _room_for_the_coin(self) -> CoinGameParams:
        if self.grid_size**2 <= self.num_agents:
            raise ValueError(
                f"grid_size {self.grid_size} leaves no cell for the coin: grid_size**2 "
                f"({self.grid_size**2}) must be greater than num_agents ({self.num_agents})"
            )
        return self


class _Rules:
    """The game's rules as batched tensor functions, for one grid size and agent count.

    Positions are flat cell indices (row * n + column). These functions are the
    reference implementation: the fast path's lookup tables are built by
    evaluating them on every possible state.
    """

    def __init__(self, n: int, num_agents: int, device: torch.device) -> None:
        self.n, self.num, self.cells, self.device = n, num_agents, n * n, device
        long = dict(dtype=torch.long, device=device)
        cell = torch.arange(self.cells, **long)
        row, col = cell // n, cell % n
        moves = torch.tensor(MOVES, **long)
        new_row = (row[:, None] + moves[:, 0]) % n
        new_col = (col[:, None] + moves[:, 1]) % n
        #: move_table[cell * 4 + action] -> the cell after the move (wrapping around).
        self.move_table = (new_row * n + new_col).reshape(-1)

        # obs_offset[i, c, j]: offset, in agent i's flat observation, of the cell of
        # slot j (agents 0..N-1, then the coin) when the coin's colour is c.
        agents = torch.arange(num_agents, **long)
        same = agents[:, None] == agents[None, :]
        offset = torch.empty(num_agents, num_agents, num_agents + 1, **long)
        offset[:, :, :num_agents] = torch.where(same, 0, 1)[:, None, :]
        offset[:, :, num_agents] = torch.where(same, 2, 3)
        self.obs_offset = offset * self.cells
        self.obs_size = NUM_PLANES * self.cells

        self.owner_onehot = torch.eye(num_agents, device=device)
        self.next_colour = (agents + 1) % num_agents
        #: Mixed-radix weights: agent code = sum_j pos_j * cells**(N-1-j), same for actions.
        self.pos_radix = self.cells ** torch.arange(num_agents - 1, -1, -1, **long)
        self.action_radix = NUM_ACTIONS ** torch.arange(num_agents - 1, -1, -1, **long)

    def move(self, pos: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """[E, N] cells after every agent's move."""
        return self.move_table[pos * NUM_ACTIONS + actions]

    def pickup(
        self, pos: torch.Tensor, coin: torch.Tensor, colour: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pick-up effects with the agents on `pos` and the coin on `coin` of `colour`.

        Returns:
            reward [E, N] float, picked [E] bool, own [E] bool (the owner
            picked it up alone), and the coin colour after any pick-up [E] long.

        """
        picked_by = pos == coin[:, None]
        pickers = picked_by.sum(1)
        owner_picked = picked_by.gather(1, colour[:, None]).squeeze(1)
        penalty = (pickers - owner_picked.long()).float() * OWNER_PENALTY
        reward = picked_by.float() * PICKUP_REWARD + self.owner_onehot[colour] * penalty[:, None]
        picked = pickers > 0
        own = owner_picked & (pickers == 1)
        return reward, picked, own, torch.where(picked, self.next_colour[colour], colour)

    def free_count(self, pos: torch.Tensor) -> torch.Tensor:
        """[E] number of cells no agent occupies."""
        free = torch.ones(pos.shape[0], self.cells, dtype=torch.bool, device=self.device)
        return free.scatter_(1, pos, False).sum(1)

    def kth_free_cell(self, pos: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """[E] the k-th (from 0, row-major) cell no agent occupies."""
        free = torch.ones(pos.shape[0], self.cells, dtype=torch.bool, device=self.device)
        free.scatter_(1, pos, False)
        return (free.cumsum(1) <= k[:, None]).sum(1)

    def start_positions(self, ranks: torch.Tensor) -> torch.Tensor:
        """[E, N] distinct cells; agent i takes free cell number ranks[:, i] < cells - i."""
        pos = torch.empty_like(ranks)
        for i in range(self.num):  # a loop over agents, not instances
            pos[:, i] = self.kth_free_cell(pos[:, :i], ranks[:, i])
        return pos

    def observe(self, pos: torch.Tensor, coin: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        """[N, E, 4 * cells] every agent's flat observation."""
        slots = torch.cat([pos, coin[:, None]], dim=1)  # [E, N + 1]
        index = self.obs_offset[:, colour] + slots  # [N, E, N + 1]
        obs = torch.zeros(self.num, pos.shape[0], self.obs_size, device=self.device)
        return obs.scatter_(2, index, 1.0)


class _Tables:
    """The rules evaluated on every state, for small games.

    Codes: agent code a = sum_j pos_j * cells**(N-1-j); joint action
    sum_j action_j * 4**(N-1-j); state code (a * cells + coin) * N + colour.
    """

    def __init__(self, rules: _Rules) -> None:
        cells, num, device = rules.cells, rules.num, rules.device
        long = dict(dtype=torch.long, device=device)
        agent_codes = torch.arange(cells**num, **long)
        self.decode = (agent_codes[:, None] // rules.pos_radix) % cells  # [C**N, N]

        joint = torch.arange(NUM_ACTIONS**num, **long)
        actions = (joint[:, None] // rules.action_radix) % NUM_ACTIONS  # [4**N, N]
        pos = self.decode.repeat_interleave(len(joint), 0)
        moved = rules.move(pos, actions.repeat(len(agent_codes), 1))
        #: jmove[agent_code * 4**N + joint_action] -> agent code after the move.
        self.jmove = moved @ rules.pos_radix

        self.free_count = rules.free_count(self.decode)
        # free_cell[agent_code * cells + k] -> the k-th free cell (k < free count).
        k = torch.arange(cells, **long).repeat(len(agent_codes))
        k = torch.minimum(k, self.free_count.repeat_interleave(cells) - 1)
        self.free_cell = rules.kth_free_cell(self.decode.repeat_interleave(cells, 0), k)

        state = torch.arange(len(agent_codes) * cells * num, **long)
        colour = state % num
        coin = (state // num) % cells
        pos = self.decode[state // (num * cells)]
        self.reward, self.picked, own, self.colour_after = rules.pickup(pos, coin, colour)
        self.picked_f = self.picked.float()
        self.own_f = own.float()
        self.obs = rules.observe(pos, coin, colour)  # [N, states, 4 * cells]

    @staticmethod
    def fits(rules: _Rules) -> bool:
        """Whether the tables stay under `MAX_TABLE_ELEMENTS`."""
        agent_codes = rules.cells**rules.num
        states = agent_codes * rules.cells * rules.num
        sizes = (
            agent_codes * NUM_ACTIONS**rules.num,
            agent_codes * rules.cells,
            states * rules.num * rules.obs_size,
        )
        return max(sizes) <= MAX_TABLE_ELEMENTS


@lru_cache(maxsize=8)
def _rules_and_tables(n: int, num_agents: int, device: str) -> tuple[_Rules, _Tables | None]:
    """Shared, read-only rules and tables (building tables costs a few milliseconds)."""
    rules = _Rules(n, num_agents, torch.device(device))
    return rules, _Tables(rules) if _Tables.fits(rules) else None


class CoinGame(BatchedEnv):
    """The Coin Game: picking up a coin of another agent's colour costs its owner 2 (LOLA's 3 x 3).

    E instances, stepped as one set of tensor operations.

    State (listed in `state_keys`; replaced, never modified in place):
    `agent_pos` [E, N] long cells, `coin_pos` [E] long cell, `coin_colour`
    [E] long (the owner's index), `t` [E] long steps taken this episode.
    Cells are row * grid_size + column.

    Small games (the default 3 x 3 with two agents, up to `MAX_TABLE_ELEMENTS`
    per table) step through lookup tables built from the plain rules; set
    `use_tables = False` to step with the plain rules (same results, slower).
    """

    Params: ClassVar[type[EnvParams]] = CoinGameParams
    info_keys = ("coins_picked", "own_coins_picked")
    metric_names = ("own_coin_rate", "coins_per_episode")
    state_keys = ("agent_pos", "coin_pos", "coin_colour", "t")

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        n, num = params.grid_size, params.num_agents
        self._rules, self._tables = _rules_and_tables(n, num, str(self.device))
        self._use_tables = self._tables is not None
        self.possible_agents = agent_names(num)
        obs_space = gymnasium.spaces.Box(0.0, 1.0, (NUM_PLANES, n, n), dtype="float32")
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: gymnasium.spaces.Discrete(NUM_ACTIONS) for a in self.possible_agents}
        self._plan_draws()
        long = dict(dtype=torch.long, device=self.device)
        self.agent_pos = torch.zeros(num_envs, num, **long)
        self.coin_pos = torch.zeros(num_envs, **long)
        self.coin_colour = torch.zeros(num_envs, **long)
        self.t = torch.zeros(num_envs, **long)
        self._start(torch.ones(num_envs, dtype=torch.bool, device=self.device))

    @property
    def use_tables(self) -> bool:
        """Whether steps go through the lookup tables (the default wherever they were built)."""
        return self._use_tables

    @use_tables.setter
    def use_tables(self, value: bool) -> None:
        if value and self._tables is None:
            raise ValueError(
                f"no lookup tables for grid_size {self._rules.n} with {self._rules.num} agents "
                f"(they would exceed {MAX_TABLE_ELEMENTS} elements)"
            )
        self._use_tables = bool(value)

    # --- randomness -------------------------------------------------------

    def _plan_draws(self) -> None:
        """Pack the start-of-episode choices into as few 64-bit draws as possible.

        A start needs agent i's rank among free cells (range cells - i), the
        coin's colour (range N) and the coin's rank among free cells (range
        cells - N). They are read as mixed-radix digits of 63-bit draws, at
        most 2**31 combinations per draw. Every step draws the same words and
        uses the top bits of the first one for a respawn (`_spawn_rank`); an
        instance never uses a respawn and a start in the same step.
        """
        cells, num = self._rules.cells, self._rules.num
        ranges = [cells - i for i in range(num)] + [num, cells - num]
        self._digits: list[tuple[int, int, int]] = []  # (word, divisor, range)
        word, divisor = 0, 1
        for size in ranges:
            if divisor * size > _MAX_WORD_RANGE:
                word, divisor = word + 1, 1
            self._digits.append((word, divisor, size))
            divisor *= size
        self._num_words = word + 1

    def _draw(self) -> torch.Tensor:
        """[E, words] non-negative 63-bit draws; the same count every step."""
        return self.rng.bits(self._num_words) & _MASK63

    @staticmethod
    def _spawn_rank(words: torch.Tensor, free_count: torch.Tensor) -> torch.Tensor:
        """[E] uniform rank below `free_count` from the top 31 bits of the first draw."""
        return ((words[:, 0] >> 32) * free_count) >> 31

    def _digit(self, words: torch.Tensor, which: int) -> torch.Tensor:
        word, divisor, size = self._digits[which]
        return torch.div(words[:, word], divisor, rounding_mode="floor") % size

    def _fresh(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start-of-episode positions, coin colour and coin cell from the draws."""
        num = self._rules.num
        ranks = torch.stack([self._digit(words, i) for i in range(num)], dim=1)
        pos = self._rules.start_positions(ranks)
        colour = self._digit(words, num)
        coin = self._rules.kth_free_cell(pos, self._digit(words, num + 1))
        return pos, colour, coin

    def _start(self, mask: torch.Tensor) -> None:
        """Draw this step's randomness and start a new episode where `mask`."""
        pos, colour, coin = self._fresh(self._draw())
        self.agent_pos = torch.where(mask[:, None], pos, self.agent_pos)
        self.coin_colour = torch.where(mask, colour, self.coin_colour)
        self.coin_pos = torch.where(mask, coin, self.coin_pos)
        self.t = torch.where(mask, 0, self.t)

    # --- observations -----------------------------------------------------

    def _observe(self) -> dict[str, torch.Tensor]:
        rules = self._rules
        shape = (self.num_envs, NUM_PLANES, rules.n, rules.n)
        if self.use_tables:
            agent_code = self.agent_pos @ rules.pos_radix
            code = torch.add(self.coin_pos, agent_code, alpha=rules.cells)
            return self._observe_code(torch.add(self.coin_colour, code, alpha=rules.num))
        obs = rules.observe(self.agent_pos, self.coin_pos, self.coin_colour)
        return {a: obs[i].view(shape) for i, a in enumerate(self.possible_agents)}

    def _observe_code(self, code: torch.Tensor) -> dict[str, torch.Tensor]:
        rules = self._rules
        shape = (self.num_envs, NUM_PLANES, rules.n, rules.n)
        table = self._tables.obs
        return {a: table[i].index_select(0, code).view(shape) for i, a in enumerate(self.possible_agents)}

    # --- the interface ----------------------------------------------------

    def _reset(self) -> TimeStep:
        self._start(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._first_step(self._observe())

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """[E, N] long actions, or ValueError (wrong actions would silently move agents)."""
        expected = (self.num_envs, self._rules.num)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must have shape {expected}, got {tuple(actions.shape)}")
        actions = actions.to(self.device, torch.long)
        low, high = int(actions.min()), int(actions.max())
        if low < 0 or high >= NUM_ACTIONS:
            raise ValueError(f"actions must be in 0..{NUM_ACTIONS - 1}, got values from {low} to {high}")
        return actions

    def step(self, actions: torch.Tensor) -> TimeStep:
        """Move every agent, pay pick-ups, respawn coins, reset finished instances."""
        actions = self._check_actions(actions)
        words = self._draw()
        rules = self._rules
        if self.use_tables:
            tables = self._tables
            agent_code = self.agent_pos @ rules.pos_radix
            joint = actions @ rules.action_radix
            move = torch.add(joint, agent_code, alpha=NUM_ACTIONS**rules.num)
            agent_code = tables.jmove.index_select(0, move)
            pos = tables.decode.index_select(0, agent_code)
            code = torch.add(self.coin_pos, agent_code, alpha=rules.cells)
            code = torch.add(self.coin_colour, code, alpha=rules.num)
            reward = tables.reward.index_select(0, code)
            picked = tables.picked.index_select(0, code)
            colour = tables.colour_after.index_select(0, code)
            info = {
                "coins_picked": tables.picked_f.index_select(0, code),
                "own_coins_picked": tables.own_f.index_select(0, code),
            }
            rank = self._spawn_rank(words, tables.free_count.index_select(0, agent_code))
            spawn = tables.free_cell.index_select(0, torch.add(rank, agent_code, alpha=rules.cells))
        else:
            pos = rules.move(self.agent_pos, actions)
            reward, picked, own, colour = rules.pickup(pos, self.coin_pos, self.coin_colour)
            info = {"coins_picked": picked.float(), "own_coins_picked": own.float()}
            spawn = rules.kth_free_cell(pos, self._spawn_rank(words, rules.free_count(pos)))
        self.agent_pos = pos
        self.coin_colour = colour
        self.coin_pos = torch.where(picked, spawn, self.coin_pos)
        self.t = self.t + 1
        terminated = self.t >= self.params.episode_length

        final_obs = None
        if terminated.any():
            final_obs = self._observe()
            fresh_pos, fresh_colour, fresh_coin = self._fresh(words)
            self.agent_pos = torch.where(terminated[:, None], fresh_pos, self.agent_pos)
            self.coin_colour = torch.where(terminated, fresh_colour, self.coin_colour)
            self.coin_pos = torch.where(terminated, fresh_coin, self.coin_pos)
            self.t = torch.where(terminated, 0, self.t)
            obs = self._observe()
        elif self.use_tables:
            code = torch.add(self.coin_pos, agent_code, alpha=rules.cells)
            obs = self._observe_code(torch.add(self.coin_colour, code, alpha=rules.num))
        else:
            obs = self._observe()
        return TimeStep(
            obs=obs,
            reward=reward,
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
            acting=torch.ones(self.num_envs, rules.num, dtype=torch.bool, device=self.device),
            info=info,
            final_obs=final_obs,
        )

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Own-coin rate (a ratio of sums) and mean coins picked per episode."""
        picked = totals["coins_picked"]
        total = float(picked.sum())
        own = float(totals["own_coins_picked"].sum())
        return {
            "own_coin_rate": own / total if total > 0 else 0.0,
            "coins_per_episode": total / len(picked) if len(picked) else 0.0,
        }
