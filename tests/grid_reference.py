"""Plain-Python grid-game mechanics of one instance, to check the batched Cleanup and Harvest against.

Written from the rules in `incentive.envs.gridworld`'s docstring, sequentially and cell by cell,
sharing no code with the envs. Cells are (row, col) tuples.
"""

from __future__ import annotations

import torch

from incentive.envs.gridworld import MOVE_DELTAS

WALL_SYMBOLS = "#@"
FIRE_COST, HIT_PENALTY = 1, 50


def load(env, picture: list[str], instance: int | None = None) -> None:
    """Set agents (digits), apples (`A`) and, in Cleanup, waste (`H`) of one instance (or all)."""
    grid = env.grid
    apple_cells = env.apple_cells.tolist()
    waste_cells = env.waste_cells.tolist() if hasattr(env, "waste_cells") else []
    rows = slice(None) if instance is None else instance
    assert len(picture) == grid.height
    for r, line in enumerate(picture):
        for c, symbol in enumerate(line):
            assert (symbol == "#") == (grid.rows[r][c] in WALL_SYMBOLS), (r, c)
            cell = grid.index(r, c)
            if symbol.isdigit():
                env.pos[int(symbol), rows] = cell
            if cell in apple_cells:
                env.apple[apple_cells.index(cell), rows] = symbol == "A"
            if cell in waste_cells:
                env.waste[waste_cells.index(cell), rows] = symbol == "H"


def where(env, agent: int, instance: int = 0) -> tuple[int, int]:
    """(row, col) of an agent."""
    return env.grid.coords(int(env.pos[agent, instance]))


def apples_at(env, instance: int = 0) -> set[tuple[int, int]]:
    """The cells holding an apple."""
    return {env.grid.coords(c) for c in env.apple_cells[env.apple[:, instance]].tolist()}


def waste_at(env, instance: int = 0) -> set[tuple[int, int]]:
    """The cells holding waste (Cleanup)."""
    return {env.grid.coords(c) for c in env.waste_cells[env.waste[:, instance]].tolist()}


def assert_instance_equal(batched, single, e: int) -> None:
    """Instance e of a batched TimeStep equals a single-instance TimeStep exactly."""
    part = slice(e, e + 1)
    assert torch.equal(batched.reward[part], single.reward)
    assert torch.equal(batched.terminated[part], single.terminated)
    for name in single.obs:
        assert torch.equal(batched.obs[name][part], single.obs[name])
    assert (batched.final_obs is None) == (single.final_obs is None)
    for name in single.final_obs or {}:
        assert torch.equal(batched.final_obs[name][part], single.final_obs[name])
    for key in single.info or {}:
        assert torch.equal(batched.info[key][part], single.info[key])


def record_draws(env) -> dict:
    """Make `env` keep each step's random draws in the returned dict (name -> [n, E])."""
    recorded = {}
    real = env._draw

    def draw():
        recorded.update(real())
        return recorded

    env._draw = draw
    return recorded


def is_wall(rows, r: int, c: int) -> bool:
    """Outside the map or a wall symbol."""
    return not (0 <= r < len(rows) and 0 <= c < len(rows[0])) or rows[r][c] in WALL_SYMBOLS


def move(rows, pos: list, actions: list[int], keys: list[int]) -> list:
    """Simultaneous moves: walls, contests (smallest (key, index) wins), blocked chains and swaps."""
    n = len(pos)
    want = []
    for i, a in enumerate(actions):
        dr, dc = MOVE_DELTAS[a] if a < 5 else (0, 0)
        cell = (pos[i][0] + dr, pos[i][1] + dc)
        want.append(pos[i] if is_wall(rows, *cell) else cell)
    moving = [want[i] != pos[i] for i in range(n)]
    lost = [
        any(moving[j] and want[j] == want[i] and (keys[j], j) < (keys[i], i) for j in range(n) if j != i)
        for i in range(n)
    ]
    moving = [m and not lo for m, lo in zip(moving, lost, strict=True)]
    changed = True
    while changed:
        changed = False
        for i in range(n):
            for j in range(n):
                if moving[i] and j != i and pos[j] == want[i] and (not moving[j] or want[j] == pos[i]):
                    moving[i], changed = False, True
    return [want[i] if moving[i] else pos[i] for i in range(n)]


def eat(pos: list, apples: set) -> list[float]:
    """Every agent on an apple eats it (+1); `apples` loses them."""
    reward = [0.0] * len(pos)
    for i, cell in enumerate(pos):
        if cell in apples:
            apples.remove(cell)
            reward[i] += 1
    return reward


def beam_lines(r: int, c: int, length: int) -> list[list[tuple[int, int]]]:
    """The three upward lines of a beam fired from (r, c): middle from the cell above, sides level."""
    return [
        [(r - 1 - k, c) for k in range(length)],
        [(r - k, c - 1) for k in range(length)],
        [(r - k, c + 1) for k in range(length)],
    ]


def punish(rows, pos: list, actions: list[int], punish_action: int, reward: list[float], length: int) -> None:
    """Punishment beams: firing costs 1, each line stopping at an agent (not a wall) costs it 50."""
    for i, a in enumerate(actions):
        if a == punish_action:
            reward[i] -= FIRE_COST
            for line in beam_lines(*pos[i], length):
                for cell in line:
                    if is_wall(rows, *cell):
                        break
                    if cell in pos:
                        reward[pos.index(cell)] -= HIT_PENALTY
                        break


def reference_window(
    rows: list[str] | tuple[str, ...],
    view_size: int,
    observer: tuple[int, int],
    others: list[tuple[int, int]],
    items: dict[int, set[tuple[int, int]]],
    wall_channel: int,
    agent_channel: int,
    channels: int,
) -> list[list[list[float]]]:
    """[C][V][V] 0/1 planes seen from `observer`: walls (and outside the map), items, the other agents."""
    radius = view_size // 2
    planes = [[[0.0] * view_size for _ in range(view_size)] for _ in range(channels)]
    for i in range(view_size):
        for j in range(view_size):
            cell = (observer[0] + i - radius, observer[1] + j - radius)
            if is_wall(rows, *cell):
                planes[wall_channel][i][j] = 1.0
            for channel, cells in items.items():
                if cell in cells:
                    planes[channel][i][j] = 1.0
            if cell in others:
                planes[agent_channel][i][j] = 1.0
    return planes


def check_windows(env, ts, instance: int, pos: list[tuple[int, int]], items: dict[int, set], channels: tuple):
    """Assert every agent's observation of `instance` equals the reference window."""
    wall, agent, count = channels
    for a, name in enumerate(env.possible_agents):
        others = [p for b, p in enumerate(pos) if b != a]
        spec = env.spec
        expected = reference_window(spec.rows, spec.view_size, pos[a], others, items, wall, agent, count)
        assert ts.obs[name][instance].tolist() == expected, (name, instance)
