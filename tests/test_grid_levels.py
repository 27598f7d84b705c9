"""Procedural Cleanup and Harvest levels: determinism, bounds, solvability, train/test, per instance."""

from __future__ import annotations

import math

import pytest
import torch
from grid_reference import assert_instance_equal
from pydantic import ValidationError

from incentive.envs.cleanup import Cleanup
from incentive.envs.grid_levels import band_bounds, patch_bounds
from incentive.envs.gridworld import Windows
from incentive.envs.harvest import Harvest
from incentive.envs.levels import MAX_LEVEL

CLEAN, STAY = 5, 4
LEVELS = {"train": "0-99", "test": "1000-1009"}
MAPS = [
    (Cleanup, "lio_7x7"),
    (Cleanup, "lio_10x10"),
    (Cleanup, "original"),
    (Harvest, "small"),
    (Harvest, "original"),
]
IDS = [f"{cls.__name__.lower()}-{name}" for cls, name in MAPS]


def make(cls, map_name, num_envs=1, seed=0, levels=LEVELS, **params):
    env = cls(num_envs=num_envs, params=cls.Params(map=map_name, levels=levels, **params))
    env.reset(seed=seed)
    return env


def generate(env, levels):
    return env._generate(torch.as_tensor(levels))


def cells_in_rows(env, cells):
    """(row, col) map coordinates of flat cells."""
    return [env.grid.coords(int(c)) for c in cells]


# --- determinism ------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "map_name"), MAPS, ids=IDS)
def test_a_layout_is_a_pure_function_of_its_level(cls, map_name):
    env = make(cls, map_name)
    levels = torch.tensor([0, 5, 5, 123_456, MAX_LEVEL])
    first, again = generate(env, levels), generate(make(cls, map_name, seed=9), levels)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(first.apples[1], first.apples[2])  # the same level twice: the same layout
    # one level alone gives what it gives in a batch (no dependence on the other levels)
    alone = generate(env, levels[3:4])
    assert torch.equal(alone.apples[0], first.apples[3]) and torch.equal(alone.spawns[0], first.spawns[3])
    # different levels differ (20 levels, 20 distinct layouts)
    many = generate(env, torch.arange(20))
    cells = torch.cat([many.apples.sort(1).values, many.spawns] + ([many.waste] if cls is Cleanup else []), 1)
    assert len({tuple(row.tolist()) for row in cells}) == 20


# --- bounds -----------------------------------------------------------------------


@pytest.mark.parametrize("map_name", ["lio_7x7", "lio_10x10", "original"])
def test_cleanup_layouts_stay_within_their_bounds(map_name):
    env = make(Cleanup, map_name)
    interior = env.interior
    layouts = generate(env, torch.arange(300))
    k_w, k_a = env._num_waste, len(env.apple_cells)
    river_low, widest = band_bounds(interior, k_w)
    orchard_low, _ = band_bounds(interior, k_a)
    assert widest == (interior.width - 1) // 2
    assert river_low == math.ceil(k_w / interior.height) and orchard_low == math.ceil(k_a / interior.height)
    assert set(layouts.river_cols.tolist()) == set(range(river_low, widest + 1))  # every width is met
    assert set(layouts.orchard_cols.tolist()) == set(range(orchard_low, widest + 1))
    col = env.grid.col_of  # map column: the interior starts at column 1
    assert ((col[layouts.waste] - 1) < layouts.river_cols[:, None]).all()
    assert ((col[layouts.apples] - 1) >= interior.width - layouts.orchard_cols[:, None]).all()
    for level in range(300):
        waste, apples, spawns = (
            set(x[level].tolist()) for x in (layouts.waste, layouts.apples, layouts.spawns)
        )
        assert len(waste) == k_w and len(apples) == k_a and len(spawns) == len(env._spawn_cells)
        assert not (waste & apples) and not (spawns & (waste | apples))
        assert not env.grid.wall[list(waste | apples | spawns)].any()
    # the map's share of waste is full at reset: on every map, nothing grows until someone cleans
    full = int(env._initial_waste.sum())
    assert full == int(torch.isin(env.waste_cells, env.grid.cells("H")).sum())
    assert full / k_w >= env.spec.depletion_threshold


@pytest.mark.parametrize("map_name", ["small", "original"])
def test_harvest_layouts_stay_within_their_bounds(map_name):
    env = make(Harvest, map_name)
    layouts = generate(env, torch.arange(300))
    k_a = len(env.apple_cells)
    low, high = patch_bounds(k_a)
    assert (low, high) == (max(1, k_a // 9), max(1, k_a // 5))
    assert set(layouts.patches.tolist()) == set(range(low, high + 1))
    for level in range(300):
        apples, spawns = set(layouts.apples[level].tolist()), set(layouts.spawns[level].tolist())
        assert len(apples) == k_a and len(spawns) == len(env._spawn_cells) and not (apples & spawns)
        assert not env.grid.wall[list(apples | spawns)].any()


def test_patch_and_band_bounds_by_hand():
    env = make(Cleanup, "lio_7x7")  # interior 5 x 5: bands of 1 or 2 columns
    assert band_bounds(env.interior, 2) == (1, 2) and band_bounds(env.interior, 5) == (1, 2)
    assert band_bounds(env.interior, 6) == (2, 2)
    assert patch_bounds(20) == (2, 4) and patch_bounds(155) == (17, 31) and patch_bounds(3) == (1, 1)


# --- solvability ------------------------------------------------------------------


@pytest.mark.parametrize("map_name", ["lio_7x7", "lio_10x10"])
def test_every_cleanup_waste_cell_is_cleared_from_the_cell_to_its_right(map_name):
    levels = torch.arange(40)
    env = make(Cleanup, map_name, num_envs=len(levels))
    env.set_task({"level": levels})
    env.reset(seed=0)
    assert env.level.tolist() == levels.tolist()
    k_w, agents = env._num_waste, env.num_agents
    env._waste_prob = torch.zeros_like(env._waste_prob)  # no new waste: what is gone was cleaned
    for slot in range(k_w):
        env.waste = torch.ones_like(env.waste)  # every waste-able cell full
        pos = env.pos.clone()
        pos[0] = env.waste_at[slot] + 1  # agent 0 right of this slot's cell, in every instance
        # the other agents out of the way: somewhere in the orchard's last column, not on that cell
        pos[1:] = env.apple_at[:1].expand(agents - 1, -1)
        env.pos = pos
        actions = torch.full((len(levels), agents), STAY)
        actions[:, 0] = CLEAN
        env.step(actions)
        assert not env.waste[slot].any(), f"slot {slot} not cleared in some level"


@pytest.mark.parametrize("map_name", ["small", "original"])
def test_every_harvest_apple_cell_has_an_apple_cell_in_its_block_and_can_regrow(map_name):
    env = make(Harvest, map_name)
    layouts = generate(env, torch.arange(300))
    width = env.grid.padded_width
    block = torch.tensor([dr * width + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)])
    around = layouts.apples[:, :, None] + block  # [levels, K, 8]
    has_neighbour = (around[..., None] == layouts.apples[:, None, None, :]).any(-1).any(-1)
    assert has_neighbour.all()


@pytest.mark.parametrize(("cls", "map_name"), MAPS, ids=IDS)
def test_every_apple_cell_is_reachable_from_every_spawn_point(cls, map_name):
    env = make(cls, map_name)
    layouts = generate(env, torch.arange(20))
    grid, width = env.grid, env.grid.padded_width
    for level in range(20):
        seen, frontier = {int(layouts.spawns[level, 0])}, [int(layouts.spawns[level, 0])]
        while frontier:
            cell = frontier.pop()
            for step in (-1, 1, -width, width):
                if not grid.wall[cell + step] and cell + step not in seen:
                    seen.add(cell + step)
                    frontier.append(cell + step)
        assert set(layouts.apples[level].tolist()) <= seen and set(layouts.spawns[level].tolist()) <= seen


# --- per instance, train and test -------------------------------------------------------


def test_each_instance_adopts_its_level_at_its_own_next_reset_never_mid_episode():
    env = make(Cleanup, "lio_7x7", num_envs=2, episode_length=6)
    before = env.apple_at.clone()
    env.step(torch.full((2, 2), STAY))
    env.set_task({"level": torch.tensor([7, 8])})
    for _ in range(4):
        env.step(torch.full((2, 2), STAY))
        assert torch.equal(env.apple_at, before)  # mid-episode: the old layouts
    ts = env.step(torch.full((2, 2), STAY))  # step 6 ends both episodes
    assert ts.terminated.all() and env.level.tolist() == [7, 8]
    expected = generate(env, [7, 8])
    assert torch.equal(env.apple_at, expected.apples.t()) and torch.equal(env.waste_at, expected.waste.t())
    assert torch.equal(env.pos, expected.spawns.t()[: env.num_agents])
    assert torch.equal(env.waste, env._initial_waste.expand(-1, 2))


def test_without_a_task_every_reset_draws_a_training_level():
    env = make(Cleanup, "lio_7x7", num_envs=64, episode_length=2)
    drawn = set(env.level.tolist())
    for _ in range(20):
        env.step(torch.full((64, 2), STAY))
        drawn |= set(env.level.tolist())
    assert drawn <= set(range(100)) and len(drawn) > 60  # many levels, only training ones


@pytest.mark.parametrize(("cls", "map_name"), MAPS, ids=IDS)
def test_batched_instances_on_levels_match_lone_instances(cls, map_name):
    num_envs, seed = 3, 11
    params = {"episode_length": 40}
    batched = make(cls, map_name, num_envs=num_envs, seed=seed, **params)
    singles = [make(cls, map_name, seed=seed + e, **params) for e in range(num_envs)]
    n = batched.action_spaces["agent_0"].n
    generator = torch.Generator().manual_seed(0)
    for step in range(130):  # levels drawn at the first two resets, then given by a task
        if step == 90:
            batched.set_task({"level": torch.tensor([3, 4, 5])})
            for e, single in enumerate(singles):
                single.set_task({"level": torch.tensor([3 + e])})
        actions = torch.randint(0, n, (num_envs, batched.num_agents), generator=generator)
        ts = batched.step(actions)
        for e, single in enumerate(singles):
            assert_instance_equal(ts, single.step(actions[e : e + 1]), e)
        if step == 79:
            drawn = batched.level.tolist()
    assert batched.level.tolist() == [3, 4, 5] and drawn != [3, 4, 5]


@pytest.mark.parametrize(("cls", "map_name"), [(Cleanup, "lio_7x7"), (Harvest, "small")])
def test_a_checkpoint_restores_every_instance_on_its_level(cls, map_name):
    env = make(cls, map_name, num_envs=3, seed=2, episode_length=10)
    n = env.action_spaces["agent_0"].n
    generator = torch.Generator().manual_seed(1)
    for _ in range(14):
        env.step(torch.randint(0, n, (3, env.num_agents), generator=generator))
    state = env.state_dict()
    other = make(cls, map_name, num_envs=3, seed=99, episode_length=10)
    other.load_state_dict(state)
    assert torch.equal(other.apple_at, env.apple_at) and torch.equal(other.spawn_at, env.spawn_at)
    for _ in range(25):
        actions = torch.randint(0, n, (3, env.num_agents), generator=generator)
        a, b = env.step(actions), other.step(actions)
        for e in range(3):
            assert_instance_equal(a, _slice(b, e), e)


def _slice(ts, e):
    from types import SimpleNamespace

    part = slice(e, e + 1)
    return SimpleNamespace(
        reward=ts.reward[part],
        terminated=ts.terminated[part],
        obs={k: v[part] for k, v in ts.obs.items()},
        final_obs=None if ts.final_obs is None else {k: v[part] for k, v in ts.final_obs.items()},
        info={k: v[part] for k, v in ts.info.items()},
    )


def test_windows_per_instance_cells_draw_what_the_static_cells_draw():
    env = Cleanup(num_envs=5, params=Cleanup.Params(map="lio_10x10"))
    env.reset(seed=3)
    n = env.action_spaces["agent_0"].n
    generator = torch.Generator().manual_seed(2)
    for _ in range(30):
        env.step(torch.randint(0, n, (5, env.num_agents), generator=generator))
    windows: Windows = env._windows
    present = torch.cat([env.apple, env.waste])
    cells = torch.cat([env.apple_cells, env.waste_cells])[:, None].expand(-1, 5)
    static, per_instance = windows(env.pos, present), windows(env.pos, present, cells)
    assert any(bool(w[:, 1:3].any()) for w in static)  # apples or waste in view
    for a, b in zip(static, per_instance, strict=True):
        assert torch.equal(a, b)


def test_the_observation_shows_each_instance_its_own_layout():
    env = make(Cleanup, "lio_7x7", num_envs=2)
    env.set_task({"level": torch.tensor([1, 2])})
    env.reset(seed=0)
    env.apple = torch.ones_like(env.apple)
    obs = env._observe()["agent_0"]  # [E, C, 9, 9], the 9 x 9 window shows the whole map
    for e in range(2):
        row, col = env.grid.coords(int(env.pos[0, e]))
        for slot, cell in enumerate(env.apple_at[:, e].tolist()):
            r, c = env.grid.coords(cell)
            assert obs[e, 1, 4 + r - row, 4 + c - col] == 1.0, (e, slot)
        for cell, full in zip(env.waste_at[:, e].tolist(), env.waste[:, e].tolist(), strict=True):
            r, c = env.grid.coords(cell)
            assert obs[e, 2, 4 + r - row, 4 + c - col] == float(full)
        assert int(obs[e, 1].sum()) == len(env.apple_cells)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "map_name"), [(Cleanup, "lio_7x7"), (Harvest, "small")])
def test_bad_level_tasks_are_clear_errors(cls, map_name):
    env = make(cls, map_name, num_envs=2)
    with pytest.raises(ValueError, match=r"task 'level': level ids must lie in 0\.\.2147483647"):
        env.set_task({"level": torch.tensor([0, -1])})
    with pytest.raises(ValueError, match=r"task 'level': level ids must lie in"):
        env.set_task({"level": torch.tensor([0, MAX_LEVEL + 1])})
    with pytest.raises(ValueError, match=r"level 1003 is a held-out test level"):
        env.set_task({"level": torch.tensor([1003, 0])})
    with pytest.raises(ValueError, match="expected whole numbers"):
        env.set_task({"level": torch.tensor([0.5, 1.0])})
    env.allow_test_levels = True  # the evaluator's own copy
    env.set_task({"level": torch.tensor([1003, 1004])})
    plain = cls(num_envs=2, params=cls.Params(map=map_name))
    with pytest.raises(ValueError, match=r"runs the map's own layout; set env\.params\.levels"):
        plain.set_task({"level": torch.tensor([0, 1])})


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ({"train": "0-99", "test": "50-150"}, r"levels\.train .* and levels\.test .* overlap in 50 level"),
        ({"train": "0-2147483648"}, r"levels\.train: level ids must lie in 0\.\.2147483647"),
        ({"train": "-5-3"}, r"levels\.train: expected 'first-last'"),
    ],
)
def test_bad_level_ranges_name_the_field(levels, message):
    with pytest.raises(ValidationError, match=message):
        Cleanup.Params(map="lio_7x7", levels=levels)


def test_through_the_loop_plr_trains_on_cleanup_levels_and_evaluates_the_test_levels(tmp_path):
    import json

    from conftest import tiny_recipe_data

    from incentive.recipe import validate_recipe
    from incentive.runner import start_run

    data = tiny_recipe_data(
        tmp_path / "runs",
        env={
            "id": "cleanup",
            "num_envs": 8,
            "params": {"map": "lio_7x7", "episode_length": 8, "levels": LEVELS},
        },
        incentives=[],
        curriculum={"plugin": "prioritized_level_replay", "params": {"min_seen_fraction": 0.0}},
        evaluate={"every": 1},
    )
    run_dir, _ = start_run(validate_recipe(data, source="test"), run_id="levels")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "designer/test/collective_return" in lines[-1]
    assert 0 < lines[-1]["curriculum/plr/seen_fraction"] <= 1
    assert "curriculum/level_difficulty" in lines[-1]


def test_a_map_with_walls_inside_cannot_have_procedural_levels():
    from incentive.envs.grid_levels import Interior
    from incentive.envs.gridworld import Grid

    open_map = Interior(Grid(["#####", "#   #", "#   #", "#####"], pad=1, device="cpu"), "Cleanup")
    assert (open_map.height, open_map.width, len(open_map), open_map.band) == (2, 3, 6, 1)
    with pytest.raises(ValueError, match="procedural Cleanup levels need a map without walls inside"):
        Interior(Grid(["#####", "# # #", "#   #", "#####"], pad=1, device="cpu"), "Cleanup")


@pytest.mark.parametrize(("cls", "map_name"), [(Cleanup, "lio_7x7"), (Harvest, "small")])
def test_pettingzoo_api_and_seed_tests_with_levels(cls, map_name):
    from pettingzoo.test import parallel_api_test, parallel_seed_test

    from incentive.envs import ParallelView

    params = cls.Params(map=map_name, episode_length=30, levels=LEVELS)
    parallel_api_test(ParallelView(cls(num_envs=1, params=params)), num_cycles=70)
    parallel_seed_test(lambda: ParallelView(cls(num_envs=1, params=params)))
