"""A plain-Python egocentric window, to check the batched grid games' observations cell by cell."""

from __future__ import annotations

WALL_SYMBOLS = "#@"


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
            r, c = cell
            outside = not (0 <= r < len(rows) and 0 <= c < len(rows[0]))
            if outside or rows[r][c] in WALL_SYMBOLS:
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
