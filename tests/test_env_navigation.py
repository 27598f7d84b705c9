"""Navigation: layouts from level seeds, per-instance levels at reset, held-out test levels."""

from __future__ import annotations

from collections import deque

import pytest
import torch
from pettingzoo.test import parallel_api_test
from pydantic import ValidationError

from incentive.envs import ParallelView
from incentive.envs.levels import MAX_LEVEL, LevelRanges, parse_levels
from incentive.envs.navigation import Navigation, NavigationParams, generate_layouts


def make(num_envs: int = 4, **params) -> Navigation:
    return Navigation(num_envs=num_envs, params=NavigationParams(**params))


def reachable(walls: torch.Tensor, start: tuple[int, int]) -> set[tuple[int, int]]:
    """Cells reachable from `start` by 4-moves through free cells (plain breadth-first search)."""
    free = ~walls
    seen, todo = {start}, deque([start])
    while todo:
        r, c = todo.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nxt = (r + dr, c + dc)
            if free[nxt].item() and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_a_level_is_the_same_layout_everywhere_and_levels_differ():
    params = NavigationParams()
    levels = torch.arange(200)
    once = generate_layouts(levels, torch.zeros(200, dtype=torch.long), params)
    again = generate_layouts(levels.flip(0), torch.zeros(200, dtype=torch.long), params)
    assert torch.equal(once.walls, again.walls.flip(0)) and torch.equal(once.goals, again.goals.flip(0))
    distinct = {
        (tuple(w.flatten().tolist()), tuple(g.flatten().tolist()))
        for w, g in zip(once.walls, once.goals, strict=True)
    }
    assert len(distinct) > 150


def test_layouts_respect_the_size_bounds_and_every_goal_is_reachable():
    params = NavigationParams(num_agents=3, min_size=5, max_size=11)
    levels = torch.arange(300)
    layouts = generate_layouts(levels, torch.zeros(300, dtype=torch.long), params)
    sizes = (~layouts.walls).any(2).sum(1)  # rows holding a free cell
    assert sizes.min() >= 5 and sizes.max() <= 11 and len(set(sizes.tolist())) == 7
    assert layouts.num_walls.max() >= 3  # rooms and doors do appear
    for k in range(0, 300, 7):
        walls = layouts.walls[k]
        for r, c in layouts.spawns[k].tolist():
            assert not walls[r, c]
            region = reachable(walls, (r, c))
            assert all(tuple(g) in region for g in layouts.goals[k].tolist()), k
        # goals sit right of every wall, spawns left of every wall: each door is on the way
        n = int(sizes[k])
        inner = [c for c in range(1, n + 1) if walls[1 : n + 1, c].sum() == n - 1]
        assert len(inner) == int(layouts.num_walls[k])
        if inner:
            assert layouts.spawns[k][:, 1].max() < min(inner) <= max(inner) < layouts.goals[k][:, 1].min()


def test_wall_density_is_the_chance_that_a_candidate_column_is_a_wall():
    levels = torch.arange(2000)
    zeros = torch.zeros(2000, dtype=torch.long)

    def walls_and_sizes(density):
        params = NavigationParams(min_size=5, max_size=9, wall_density=density)
        layouts = generate_layouts(levels, zeros, params)
        return layouts.num_walls, (~layouts.walls).any(2).sum(1)

    # candidate columns 3, 5, 7 inside an n x n room when they are <= n - 2: 1, 1, 2, 2, 3 for n = 5..9
    candidates = {5: 1, 6: 1, 7: 2, 8: 2, 9: 3}
    walls, sizes = walls_and_sizes(1.0)
    assert walls.tolist() == [candidates[n] for n in sizes.tolist()]
    walls, _ = walls_and_sizes(0.0)
    assert int(walls.sum()) == 0
    walls, sizes = walls_and_sizes(0.5)
    share = walls.sum().item() / sum(candidates[n] for n in sizes.tolist())
    assert 0.45 < share < 0.55, share  # about 3000 candidate columns: sd 0.01
    for n in candidates:  # walls are drawn, not fixed by the size (a sign bug once made every one a wall)
        assert set(walls[sizes == n].tolist()) == set(range(candidates[n] + 1)), n


def test_the_task_size_overrides_the_level_size():
    params = NavigationParams(min_size=5, max_size=9)
    layouts = generate_layouts(torch.arange(10), torch.full((10,), 6), params)
    assert ((~layouts.walls).any(2).sum(1) == 6).all()


def test_a_size_task_is_rounded_and_zero_means_the_level_size():
    env = make(3, max_steps=1)
    env.reset(seed=0)
    env.set_task({"level": torch.tensor([4, 4, 4]), "size": torch.tensor([6.4, 0.0, 8.5])})
    env.step(torch.zeros(3, 2, dtype=torch.long))
    own = int(
        (~generate_layouts(torch.tensor([4]), torch.zeros(1, dtype=torch.long), env.params).walls[0])
        .any(1)
        .sum()
    )
    assert (~env.walls).any(2).sum(1).tolist() == [6, own, 8]


def test_success_pays_every_agent_and_ends_the_episode():
    env = make(1, num_agents=2)
    env.reset(seed=0)
    goals = env.goals[0]
    env.pos[0, 0] = goals[0]
    env.pos[0, 1] = (
        goals[1] - torch.tensor([0, 1]) if not env.walls[0, goals[1][0], goals[1][1] - 1] else goals[1]
    )
    move = 0 if torch.equal(env.pos[0, 1], goals[1]) else 4  # step right onto the second goal
    ts = env.step(torch.tensor([[0, move]]))
    assert ts.reward.tolist() == [[1.0, 1.0]]
    assert ts.terminated.tolist() == [True] and ts.truncated.tolist() == [False]
    assert ts.info["success"].tolist() == [1.0]


def test_time_penalty_pays_less_for_a_later_success():
    # MiniGrid's reward: success on step t = 3 of at most 10 pays 1 - 0.9 * 3 / 10 = 0.73
    env = make(1, num_agents=2, max_steps=10, time_penalty=0.9)
    env.reset(seed=0)
    away = torch.tensor([[1, 1], [1, 1]])  # the top-left cell: not both goals at once
    assert not (env.goals[0] == away).all(-1).all()
    for _ in range(2):
        env.pos[0] = away
        ts = env.step(torch.zeros(1, 2, dtype=torch.long))
        assert ts.reward.tolist() == [[0.0, 0.0]] and not ts.terminated.any()
    env.pos[0] = env.goals[0]
    ts = env.step(torch.zeros(1, 2, dtype=torch.long))
    assert ts.terminated.tolist() == [True]
    assert ts.reward.tolist() == [[pytest.approx(0.73), pytest.approx(0.73)]]
    assert ts.reward.dtype == torch.float32


def test_time_limit_truncates():
    env = make(2, max_steps=3)
    env.reset(seed=0)
    for _ in range(2):
        ts = env.step(torch.zeros(2, 2, dtype=torch.long))
        assert not ts.truncated.any()
    ts = env.step(torch.zeros(2, 2, dtype=torch.long))
    assert ts.truncated.all() and not ts.terminated.any() and ts.reward.sum() == 0


def stay_off_the_goals(env: Navigation, steps: int) -> list:
    """`steps` steps with both agents held on one cell (two goal cells: never a success); the TimeSteps."""
    out = []
    for _ in range(steps):
        env.pos[:] = torch.tensor([1, 1])
        out.append(env.step(torch.zeros(env.num_envs, 2, dtype=torch.long)))
        assert not out[-1].terminated.any()
    return out


def test_a_max_steps_task_truncates_each_instance_at_its_own_length():
    env = make(3, max_steps=5)
    env.set_task({"max_steps": torch.tensor([3, 0, 4])})  # 0: the param's 5
    env.reset(seed=0)
    assert env.max_steps.tolist() == [3, 5, 4]
    truncated = [ts.truncated.tolist() for ts in stay_off_the_goals(env, 9)]
    # instance 0 ends at steps 3, 6, 9; instance 1 at 5; instance 2 at 4 and 8 (the task persists)
    assert [step for step, row in enumerate(truncated, 1) if row[0]] == [3, 6, 9]
    assert [step for step, row in enumerate(truncated, 1) if row[1]] == [5]
    assert [step for step, row in enumerate(truncated, 1) if row[2]] == [4, 8]


def test_a_max_steps_task_is_adopted_at_the_next_reset_never_mid_episode():
    env = make(2, max_steps=4)
    env.reset(seed=0)
    stay_off_the_goals(env, 1)
    env.set_task({"max_steps": torch.tensor([2, 6])})  # mid-episode: the running episodes keep 4
    assert env.max_steps.tolist() == [4, 4]
    truncated = [ts.truncated.tolist() for ts in stay_off_the_goals(env, 9)]
    # both first episodes end at step 4 (instance 0 not at 2); then 4 + 2 = 6, 8, 10 and 4 + 6 = 10
    assert [step for step, row in enumerate(truncated, 2) if row[0]] == [4, 6, 8, 10]
    assert [step for step, row in enumerate(truncated, 2) if row[1]] == [4, 10]
    assert env.max_steps.tolist() == [2, 6]


def test_a_max_steps_task_is_rounded_and_zero_means_the_param():
    env = make(4, max_steps=7)
    env.set_task({"max_steps": torch.tensor([2.5, 3.5, 0.0, 119.6], dtype=torch.float64)})
    env.reset(seed=0)
    assert env.max_steps.tolist() == [2, 4, 7, 120]  # half to even, as a linear schedule's values


def test_time_penalty_divides_by_each_instance_own_length():
    # success on step 3: 1 - 0.9 * 3 / 20 = 0.865 with a 20-step task, 1 - 0.9 * 3 / 10 = 0.73 with the param
    env = make(2, num_agents=2, max_steps=10, time_penalty=0.9)
    env.set_task({"max_steps": torch.tensor([20, 0])})
    env.reset(seed=0)
    stay_off_the_goals(env, 2)
    env.pos[:] = env.goals
    ts = env.step(torch.zeros(2, 2, dtype=torch.long))
    assert ts.terminated.tolist() == [True, True]
    assert ts.reward.tolist() == [[pytest.approx(0.865)] * 2, [pytest.approx(0.73)] * 2]


def test_state_dict_keeps_each_instance_length_running_and_pending():
    env, twin = make(3, max_steps=6), make(3, max_steps=6)
    env.set_task({"max_steps": torch.tensor([3, 0, 5])})
    ts = env.reset(seed=1)
    twin.reset(seed=8)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        ts = env.step(torch.randint(0, 5, (3, 2), generator=generator))
    env.set_task({"max_steps": torch.tensor([9, 2, 0])})  # pending: adopted after the checkpoint
    twin.load_state_dict(env.state_dict())
    lengths = set()
    for _ in range(40):
        actions = torch.randint(0, 5, (3, 2), generator=generator)
        ts, other = env.step(actions), twin.step(actions)
        for field in ("reward", "terminated", "truncated"):
            assert torch.equal(getattr(ts, field), getattr(other, field)), field
        assert torch.equal(ts.obs["agent_0"], other.obs["agent_0"])
        lengths.add(tuple(env.max_steps.tolist()))
    assert (9, 2, 6) in lengths  # the pending lengths did arrive


# level 5 at size 7 (min_size 4, max_size 7): walls at columns 3 (door at row 7) and 5 (door at row
# 5), so rooms at columns 1-2, 4 and 6-7; the goals at (1, 7) and (2, 7), in the rightmost room
#   #########
#   #..#.#..#
#   #..#.#..#
#   #..#.#..#
#   #..#.#..#
#   #..#....#
#   #..#.#..#
#   #....#..#
#   #########
TWO_WALLS = dict(min_size=4, max_size=7)


def spawns_of(level: int, doors: list[int], **params) -> list[list[list[int]]]:
    """The spawn cells of one 7 x 7 level, one layout per spawn_doors value."""
    k = len(doors)
    layouts = generate_layouts(
        torch.full((k,), level), torch.full((k,), 7), NavigationParams(**params), torch.tensor(doors)
    )
    return layouts.spawns.tolist()


def test_spawn_doors_puts_the_agents_that_many_doors_before_the_goal_room():
    layouts = generate_layouts(torch.tensor([5]), torch.tensor([7]), NavigationParams(**TWO_WALLS))
    walls = layouts.walls[0]
    assert [c for c in range(1, 8) if walls[1:8, c].sum() == 6] == [3, 5]
    assert not walls[7, 3] and not walls[5, 5] and layouts.goals[0].tolist() == [[1, 7], [2, 7]]
    # the same draws in every room: rows 5 and 4, columns first + draw % width; the leftmost room
    # (1-2) gives columns 1, 2, so the draws are odd and even: 6, 7 in the goal's room (6-7) and 4, 4
    # in the one-column middle room; 2 doors (and -1, the default) is the leftmost room
    assert spawns_of(5, [0, 1, 2, -1], **TWO_WALLS) == [
        [[5, 6], [4, 7]],
        [[5, 4], [4, 4]],
        [[5, 1], [4, 2]],
        [[5, 1], [4, 2]],
    ]
    # max_size 9 allows 3 doors: a level with 2 walls clamps 3 to its leftmost room
    assert spawns_of(5, [3], min_size=4, max_size=9) == spawns_of(5, [2], min_size=4, max_size=9)


def test_spawn_doors_on_a_level_without_walls_is_the_one_room():
    # level 1 at size 7: no wall, a single room; every value draws the same cells
    assert (
        int(generate_layouts(torch.tensor([1]), torch.tensor([7]), NavigationParams(**TWO_WALLS)).num_walls)
        == 0
    )
    assert spawns_of(1, [0, 1, 2, -1], **TWO_WALLS) == [[[6, 7], [5, 7]]] * 4


def test_spawn_cells_fill_the_spawn_room_and_stay_inside_it():
    params = NavigationParams(num_agents=3, min_size=5, max_size=11)
    levels = torch.arange(3000)
    sizes = torch.zeros(3000, dtype=torch.long)
    for doors in range(5):
        layouts = generate_layouts(levels, sizes, params, torch.full((3000,), doors))
        cells = {0: set(), 1: set()}  # (row, column offset in the room) seen, by room width 1 or more
        for k in range(3000):
            walls = layouts.walls[k]
            n = int((~walls).any(1).sum())
            inner = [c for c in range(1, n + 1) if walls[1 : n + 1, c].sum() == n - 1]
            bounds = [0, *inner, n + 1]
            room = max(len(inner) - doors, 0)
            first, last = bounds[room] + 1, bounds[room + 1] - 1
            for r, c in layouts.spawns[k].tolist():
                assert 1 <= r <= n and first <= c <= last, (doors, k)
                if n == 11 and last - first == 1:
                    cells[1].add((r, c - first))
        # every row and both columns of the two-column rooms of 11 x 11 levels are drawn
        assert cells[1] == {(r, c) for r in range(1, 12) for c in range(2)}, doors


def test_spawn_doors_minus_one_leaves_every_layout_as_it_was():
    params = NavigationParams(min_size=4, max_size=9)
    levels = torch.arange(500)
    for sizes in (torch.zeros(500, dtype=torch.long), torch.full((500,), 9)):
        default = generate_layouts(levels, sizes, params)
        leftmost = generate_layouts(levels, sizes, params, torch.full((500,), -1))
        assert all(torch.equal(a, b) for a, b in zip(default, leftmost, strict=True))
    env, twin = make(8, max_steps=5), make(8, max_steps=5)
    twin.set_task({"spawn_doors": torch.full((8,), -1)})
    generator = torch.Generator().manual_seed(0)
    ts, other = env.reset(seed=2), twin.reset(seed=2)
    for _ in range(30):
        actions = torch.randint(0, 5, (8, 2), generator=generator)
        ts, other = env.step(actions), twin.step(actions)
        assert torch.equal(ts.obs["agent_0"], other.obs["agent_0"]) and torch.equal(ts.reward, other.reward)


def test_a_spawn_doors_task_is_adopted_at_the_next_reset_and_rounded():
    env = make(4, max_steps=2, **TWO_WALLS)
    env.set_task({"level": torch.full((4,), 5), "size": torch.full((4,), 7)})
    env.reset(seed=0)
    assert env.pos.tolist() == [[[5, 1], [4, 2]]] * 4  # the leftmost room
    env.set_task({"spawn_doors": torch.tensor([0.4, 0.5, 1.4, 1.5], dtype=torch.float64)})
    assert env.next_spawn_doors.tolist() == [0, 0, 1, 2]  # half to even, as a linear schedule's values
    env.pos[:] = torch.tensor([1, 1])
    env.step(torch.zeros(4, 2, dtype=torch.long))
    assert env.pos.tolist() == [[[1, 1], [1, 1]]] * 4  # mid-episode: no one moved
    env.step(torch.zeros(4, 2, dtype=torch.long))  # the time limit ends every episode
    goal_room, middle, leftmost = [[5, 6], [4, 7]], [[5, 4], [4, 4]], [[5, 1], [4, 2]]
    assert env.pos.tolist() == [goal_room, goal_room, middle, leftmost]


def test_state_dict_keeps_the_pending_spawn_doors():
    env, twin = make(3, max_steps=4, **TWO_WALLS), make(3, max_steps=4, **TWO_WALLS)
    env.set_task({"size": torch.full((3,), 7)})
    ts = env.reset(seed=1)
    twin.reset(seed=8)
    generator = torch.Generator().manual_seed(0)
    env.step(torch.randint(0, 5, (3, 2), generator=generator))
    env.set_task({"spawn_doors": torch.tensor([0, 1, 2])})  # pending: adopted after the checkpoint
    twin.load_state_dict(env.state_dict())
    assert twin.next_spawn_doors.tolist() == [0, 1, 2]
    for _ in range(12):
        actions = torch.randint(0, 5, (3, 2), generator=generator)
        ts, other = env.step(actions), twin.step(actions)
        for field in ("reward", "terminated", "truncated"):
            assert torch.equal(getattr(ts, field), getattr(other, field)), field
        assert torch.equal(ts.obs["agent_0"], other.obs["agent_0"])


def test_walls_block_moves():
    env = make(1)
    env.reset(seed=0)
    env.pos[0, 0] = torch.tensor([1, 1])  # top-left interior corner: up and left are walls
    env.step(torch.tensor([[1, 0]]))
    assert env.pos[0, 0].tolist() == [1, 1]
    env.step(torch.tensor([[3, 0]]))
    assert env.pos[0, 0].tolist() == [1, 1]
    env.step(torch.tensor([[2, 0]]))
    assert env.pos[0, 0].tolist() == [2, 1]


def test_a_level_task_applies_at_each_instance_next_reset():
    env = make(2, max_steps=2)
    env.reset(seed=0)
    before = env.level.clone()
    env.set_task({"level": torch.tensor([7, 8])})
    env.step(torch.zeros(2, 2, dtype=torch.long))
    assert torch.equal(env.level, before)  # mid-episode: unchanged
    env.step(torch.zeros(2, 2, dtype=torch.long))  # the time limit ends both episodes
    assert env.level.tolist() == [7, 8]
    expected = generate_layouts(torch.tensor([7, 8]), torch.zeros(2, dtype=torch.long), env.params)
    assert torch.equal(env.walls, expected.walls) and torch.equal(env.pos, expected.spawns)


def test_without_a_task_each_reset_draws_a_training_level():
    env = make(64, levels={"train": "100-104"})
    env.reset(seed=3)
    assert set(env.level.tolist()) == {100, 101, 102, 103, 104}
    assert torch.equal(
        env.level_difficulty(torch.tensor([100])),
        generate_layouts(
            torch.tensor([100]), torch.zeros(1, dtype=torch.long), env.params
        ).num_walls.double(),
    )


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"level": torch.tensor([-1, 3])}, r"task 'level': level ids must lie in 0\.\.2147483647"),
        ({"level": torch.tensor([MAX_LEVEL + 1, 3])}, "must lie in"),
        (
            {"level": torch.tensor([5, 10005])},
            r"level 10005 is a held-out test level \(env.params.levels.test\)",
        ),
        ({"level": torch.tensor([1.5, 2.0])}, "whole numbers"),
        ({"size": torch.tensor([4, 5])}, r"task 'size': sizes must lie in 5\.\.9"),
        ({"size": torch.tensor([float("nan"), 5.0])}, r"task 'size': expected finite numbers"),
        (
            {"max_steps": torch.tensor([-1, 5])},
            r"task 'max_steps': episode lengths must lie in 1\.\.1000000000, "
            r"or be 0 \(env\.params\.max_steps, 40\)",
        ),
        ({"max_steps": torch.tensor([10**9 + 1, 5])}, r"task 'max_steps': episode lengths must lie in"),
        ({"max_steps": torch.tensor([float("inf"), 5.0])}, r"task 'max_steps': expected finite numbers"),
        ({"max_steps": torch.tensor([[30], [30]])}, r"task 'max_steps': expected shape \(E,\)"),
        (
            {"spawn_doors": torch.tensor([-2, 0])},
            r"task 'spawn_doors': door counts must lie in 0\.\.3 \(the most walls a level of max_size 9 "
            r"can have\), or be -1 \(the leftmost room\), got \[-2, 0\]",
        ),
        ({"spawn_doors": torch.tensor([4, 0])}, r"task 'spawn_doors': door counts must lie in 0\.\.3"),
        ({"spawn_doors": torch.tensor([-1.6, 0.0])}, r"task 'spawn_doors': door counts .* got \[-2, 0\]"),
        ({"spawn_doors": torch.tensor([float("nan"), 0.0])}, r"task 'spawn_doors': expected finite numbers"),
        ({"wall_density": torch.tensor([0.1, 0.2])}, r"no task parameter\(s\) \['wall_density'\]"),
    ],
)
def test_bad_tasks_are_errors_naming_the_key(task, message):
    env = make(2, levels={"train": "0-999", "test": "10000-10099"})
    with pytest.raises(ValueError, match=message):
        env.set_task(task)


def test_level_ranges_parse_and_keep_test_levels_apart():
    assert parse_levels("3-6", field="f").tolist() == [3, 4, 5, 6]
    assert parse_levels("9", field="f").tolist() == [9]
    assert parse_levels([5, 1, 5], field="f").tolist() == [1, 5]
    ranges = LevelRanges(train="0-999", test="10000-10099")
    assert len(ranges.train_ids()) == 1000 and ranges.test_ids()[0] == 10000
    with pytest.raises(
        ValidationError, match=r"levels.train .* and levels.test .* overlap in 100 level\(s\), e.g. 900"
    ):
        LevelRanges(train="0-999", test="900-1099")
    with pytest.raises(ValidationError, match=r"levels.test: level ids must lie in 0\.\.2147483647"):
        LevelRanges(train="0-9", test=[2**31])
    with pytest.raises(ValidationError, match=r"levels.train: expected 'first-last'"):
        LevelRanges(train="zero-nine")
    with pytest.raises(ValidationError, match="empty"):
        LevelRanges(train="9-3")


def test_params_check_sizes():
    with pytest.raises(ValidationError, match="min_size"):
        NavigationParams(min_size=8, max_size=6)
    with pytest.raises(ValidationError, match="max_steps"):
        NavigationParams(max_steps=10**9 + 1)


def test_the_image_observation_holds_the_four_planes_channels_last():
    # 4 x 4 rooms on a 6 x 6 canvas, no candidate wall column: only the border is wall
    env = make(1, num_agents=3, min_size=4, max_size=4, observation="image")
    assert env.observation_spaces["agent_0"].shape == (6, 6, 4)
    env.reset(seed=0)
    env.goals[0] = torch.tensor([[2, 4], [3, 4], [4, 4]])
    env.pos[0] = torch.tensor([[1, 1], [2, 3], [2, 3]])  # agents 1 and 2 share a cell
    obs = env.step(torch.zeros(1, 3, dtype=torch.long)).obs  # everyone stays
    border = torch.tensor(
        [
            [1, 1, 1, 1, 1, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.float32,
    )

    def plane(*cells):
        out = torch.zeros(6, 6)
        for r, c in cells:
            out[r, c] = 1.0
        return out

    goals = plane((2, 4), (3, 4), (4, 4))
    expected = {
        "agent_0": [border, goals, plane((1, 1)), plane((2, 3))],  # two others in one cell: clipped to 1
        "agent_1": [border, goals, plane((2, 3)), plane((1, 1), (2, 3))],  # agent 2 shares its cell
        "agent_2": [border, goals, plane((2, 3)), plane((1, 1), (2, 3))],
    }
    for agent, planes in expected.items():
        image = obs[agent][0]
        assert image.shape == (6, 6, 4) and image.dtype == torch.float32
        for channel, want in enumerate(planes):
            assert torch.equal(image[:, :, channel], want), (agent, channel)


def test_the_image_observation_is_the_flat_one_rearranged():
    # same seed, same actions: flat index p * S * S + r * S + c holds image[r, c, p], step after step
    flat_env, image_env = make(3), make(3, observation="image")
    s = flat_env.canvas
    assert flat_env.observation_spaces["agent_0"].shape == (4 * s * s,)
    flat_ts, image_ts = flat_env.reset(seed=2), image_env.reset(seed=2)
    generator = torch.Generator().manual_seed(0)
    finished = 0
    for _ in range(60):
        for agent in flat_env.possible_agents:
            flat, image = flat_ts.obs[agent], image_ts.obs[agent]
            for p in range(4):
                for r in range(s):
                    for c in range(s):
                        assert torch.equal(flat[:, p * s * s + r * s + c], image[:, r, c, p])
        actions = torch.randint(0, 5, (3, 2), generator=generator)
        flat_ts, image_ts = flat_env.step(actions), image_env.step(actions)
        assert torch.equal(flat_ts.reward, image_ts.reward)
        if flat_ts.final_obs is not None:
            finished += 1
            for agent in flat_env.possible_agents:
                rearranged = flat_ts.final_obs[agent].reshape(3, 4, s, s).permute(0, 2, 3, 1)
                assert torch.equal(rearranged, image_ts.final_obs[agent])
    assert finished > 0  # the episodes' last observations were compared too


def test_the_image_observation_passes_pettingzoo_api_test():
    parallel_api_test(ParallelView(make(1, observation="image")), num_cycles=100)


def test_an_unknown_observation_is_refused():
    with pytest.raises(ValidationError, match=r"observation\n.*'flat' or 'image'"):
        NavigationParams(observation="pixels")
