"""Tests of the Cleanup env and of the shared grid mechanics.

Hand-made states are drawn as pictures of the map: `#` wall, digits the
agents, `A` an apple, `H` waste; every other symbol leaves the cell without
apple and waste. The LIO 7 x 7 map (rows and columns from 0):

    #######
    #H  1B#      waste-able cells (1,1), (2,1); apple cells (1..5, 5)
    #H   B#      agent 0 starts at (5,2), agent 1 at (1,4)
    #    B#
    #    B#
    # 0  B#
    #######

Actions: 0 left, 1 right, 2 up, 3 down, 4 stay, 5 clean, 6 punish. Beams go
up: the middle line starts above the agent, the side lines level with it.
Every expected number below is worked out by hand from these facts.
"""

from __future__ import annotations

import grid_reference
import pytest
import torch
from grid_reference import apples_at, assert_instance_equal, load, waste_at, where
from pettingzoo.test import parallel_api_test, parallel_seed_test
from pydantic import ValidationError

from incentive.envs import ParallelView, load_env_class
from incentive.envs.cleanup import CLEANUP_MAPS, Cleanup
from incentive.envs.gridworld import Beams, Grid, resolve_moves

LEFT, RIGHT, UP, DOWN, STAY, CLEAN, PUNISH = range(7)
WALL, APPLE, WASTE, OTHER = range(4)


def make(num_envs: int = 1, seed: int = 0, **params) -> Cleanup:
    env = Cleanup(num_envs=num_envs, params=Cleanup.Params(**params))
    env.reset(seed=seed)
    return env


def fix_uniforms(env: Cleanup, apple: float | None = None, waste: float | None = None) -> None:
    """Replace the spawning uniforms of every later step by a constant."""
    real = env._draw

    def draw():
        draws = real()
        if apple is not None:
            draws["apple"] = torch.full_like(draws["apple"], apple)
        if waste is not None:
            draws["waste"] = torch.full_like(draws["waste"], waste)
        return draws

    env._draw = draw


NO_SPAWN = 0.999  # above every spawn probability used here


def act(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


# --- spaces, registration, reset -----------------------------------------------


def test_registered_and_spaces():
    assert load_env_class("cleanup") is Cleanup
    env = make()
    assert env.possible_agents == ["agent_0", "agent_1"]
    space = env.observation_spaces["agent_0"]
    assert space.shape == (4, 9, 9) and space.dtype.name == "float32"
    assert float(space.low.min()) == 0.0 and float(space.high.max()) == 1.0
    assert env.action_spaces["agent_1"].n == 6
    assert make(map="lio_10x10").observation_spaces["agent_2"].shape == (4, 15, 15)
    big = make(map="original")
    assert big.num_agents == 5 and big.action_spaces["agent_0"].n == 7
    assert (big.grid.height, big.grid.width) == (25, 18)


def test_reset_state_lio_7x7():
    env = make(num_envs=2)
    assert where(env, 0) == (5, 2) and where(env, 1) == (1, 4)
    assert waste_at(env) == {(1, 1), (2, 1)} and apples_at(env) == set()
    ts = env.reset(seed=3)
    obs = ts.obs["agent_0"][0]
    # agent 0 at (5,2) sits at (4,4) of its window: map (r, c) is window (r - 1, c + 2)
    assert obs[WASTE, 0, 3] == 1 and obs[WASTE, 1, 3] == 1 and obs[WASTE].sum() == 2
    assert obs[OTHER, 0, 6] == 1 and obs[OTHER].sum() == 1  # agent 1 at (1,4); self not drawn
    assert obs[APPLE].sum() == 0
    assert obs[WALL, 4, 2] == 1 and obs[WALL, 4, 1] == 1  # column 0 is wall, column -1 outside
    assert obs[WALL, 4, 3] == 0 and obs[WALL, 5, 4] == 1  # row 6 is the wall below
    assert obs[WALL].sum() == 81 - 5 * 5  # everything but the 5 x 5 interior
    assert ts.reward.shape == (2, 2) and not ts.done.any() and ts.acting.all()


def test_lio_10x10_and_original_layouts():
    ten = make(map="lio_10x10")
    assert [where(ten, a) for a in range(3)] == [(8, 3), (5, 4), (1, 6)]
    assert len(ten.waste_cells) == 16 and int(ten.waste.sum()) == 8 and len(ten.apple_cells) == 12
    big = make(map="original", num_envs=8)
    assert len(big.waste_cells) == 119 and int(big.waste[:, 0].sum()) == 56
    assert len(big.apple_cells) == 103
    spawn = {big.grid.coords(c) for c in big.grid.cells("P").tolist()}
    for e in range(8):
        starts = [where(big, a, e) for a in range(5)]
        assert len(set(starts)) == 5 and set(starts) <= spawn
    assert len({tuple(big.pos[:, e].tolist()) for e in range(8)}) > 1  # random spawn


# --- eating -----------------------------------------------------------------------


def test_eating_gives_one_and_removes_the_apple():
    env = make()
    load(env, ["#######", "#H  1A#", "#H   B#", "#    B#", "#    B#", "# 0  B#", "#######"])
    ts = env.step(act([STAY, STAY]))  # waste is full: nothing spawns
    assert ts.reward.tolist() == [[0.0, 0.0]] and apples_at(env) == {(1, 5)}
    ts = env.step(act([STAY, RIGHT]))
    assert where(env, 1) == (1, 5)
    assert ts.reward.tolist() == [[0.0, 1.0]]
    assert apples_at(env) == set()
    assert ts.info["apples_eaten"].tolist() == [1.0]
    assert ts.info["apple_eat_time"].tolist() == [2.0]  # eaten at step 2
    ts = env.step(act([STAY, STAY]))
    assert ts.reward.tolist() == [[0.0, 0.0]] and ts.info["apples_eaten"].tolist() == [0.0]


def test_two_agents_eat_two_apples():
    env = make()
    load(env, ["#######", "#H   A#", "#H  1A#", "#    B#", "#    B#", "# 0  B#", "#######"])
    ts = env.step(act([UP, RIGHT]))
    assert ts.reward.tolist() == [[0.0, 1.0]] and apples_at(env) == {(1, 5)}
    ts = env.step(act([STAY, UP]))
    assert ts.reward.tolist() == [[0.0, 1.0]] and apples_at(env) == set()


# --- spawning ----------------------------------------------------------------------


def test_waste_at_or_above_threshold_stops_all_spawning():
    # uniforms of 0 spawn wherever the probability is positive
    full = make()
    fix_uniforms(full, apple=0.0, waste=0.0)
    full.step(act([STAY, STAY]))  # d = 2/2 = 1 >= 0.6
    assert apples_at(full) == set() and waste_at(full) == {(1, 1), (2, 1)}

    at = make(depletion_threshold=0.5)
    load(at, ["#######", "#H  1B#", "#    B#", "#    B#", "#    B#", "# 0  B#", "#######"])
    fix_uniforms(at, apple=0.0, waste=0.0)
    at.step(act([STAY, STAY]))  # d = 1/2 = 0.5, at the threshold: nothing, not even waste
    assert apples_at(at) == set() and waste_at(at) == {(1, 1)}

    below = make()
    load(below, ["#######", "#H  1B#", "#    B#", "#    B#", "#    B#", "# 0  B#", "#######"])
    fix_uniforms(below, apple=0.0, waste=0.0)
    below.step(act([STAY, STAY]))  # d = 0.5 < 0.6: every apple cell grows, the river refills
    assert apples_at(below) == {(r, 5) for r in range(1, 6)}
    assert waste_at(below) == {(1, 1), (2, 1)}


def test_no_apple_grows_under_an_agent():
    env = make()
    load(env, ["#######", "#H   1#", "#    B#", "#    B#", "#    B#", "# 0  B#", "#######"])
    fix_uniforms(env, apple=0.0, waste=NO_SPAWN)
    env.step(act([STAY, STAY]))
    assert apples_at(env) == {(2, 5), (3, 5), (4, 5), (5, 5)}


def test_apple_probability_just_below_and_above():
    # d = 0.5, p = 0.5 * (1 - 0.5 / 0.6) = 1/12 = 0.08333
    for u, grows in [(0.083, True), (0.084, False)]:
        env = make()
        load(env, ["#######", "#H  1B#", "#    B#", "#    B#", "#    B#", "# 0  B#", "#######"])
        fix_uniforms(env, apple=u, waste=NO_SPAWN)
        env.step(act([STAY, STAY]))
        assert len(apples_at(env)) == (5 if grows else 0)


@pytest.mark.parametrize(
    ("full", "expected"),
    [(0, 0.3), (2, 0.20625), (4, 0.1125), (6, 0.01875), (7, 0.0)],  # 0.3 * (1 - full / 16 / 0.4)
)
def test_apple_spawn_rate_scales_with_waste(full, expected):
    """lio_10x10: 16 waste-able cells, p_apple 0.3, threshold 0.4; 2500 x 12 apple cells."""
    env = make(num_envs=2500, map="lio_10x10", seed=5, view_size=1)  # small windows: fast
    env.waste[:] = False
    env.waste[:full] = True
    env.step(torch.full((2500, 3), STAY))
    rate = float(env.apple.float().mean())
    assert abs(rate - expected) < 0.012, (rate, expected)


def test_at_most_one_waste_per_step_at_the_waste_probability():
    env = make(num_envs=4000, seed=9, view_size=1)
    env.waste[:] = False  # d = 0: both cells free, each tried with p 0.5 in random order
    env.step(torch.full((4000, 2), STAY))
    count = env.waste.sum(0)
    assert int(count.max()) == 1
    assert abs(float((count == 1).float().mean()) - 0.75) < 0.03  # 1 - 0.5^2
    assert abs(float(env.waste[0].float().mean()) - 0.375) < 0.03
    env.waste[:] = False
    env.waste[0] = True  # d = 0.5 < 0.6: the one free cell fills with p 0.5
    env.step(torch.full((4000, 2), STAY))
    assert abs(float(env.waste[1].float().mean()) - 0.5) < 0.03


# --- cleaning beam --------------------------------------------------------------------


def test_cleaning_clears_the_first_waste_in_the_path():
    env = make()
    load(env, ["#######", "#H  1B#", "#H   B#", "# 0  B#", "#    B#", "#    B#", "#######"])
    fix_uniforms(env, apple=NO_SPAWN, waste=NO_SPAWN)
    ts = env.step(act([CLEAN, STAY]))
    # left line (3,1) -> (2,1) waste: cleared, the line stops; (1,1) stays
    assert waste_at(env) == {(1, 1)}
    assert ts.info["waste_cleared"].tolist() == [1.0]
    assert ts.info["cleaning_actions"].tolist() == [1.0]
    assert ts.info["cleaning_actions_agent_0"].tolist() == [1.0]
    assert ts.info["cleaning_actions_agent_1"].tolist() == [0.0]
    assert ts.reward.tolist() == [[0.0, 0.0]]  # cleaning is free
    ts = env.step(act([CLEAN, CLEAN]))
    assert waste_at(env) == set() and ts.info["waste_cleared"].tolist() == [1.0]
    assert ts.info["cleaning_actions"].tolist() == [2.0]


def test_cleaning_stops_at_an_agent():
    env = make()
    load(env, ["#######", "#H   B#", "#H   B#", "#1   B#", "# 0  B#", "#    B#", "#######"])
    fix_uniforms(env, apple=NO_SPAWN, waste=NO_SPAWN)
    ts = env.step(act([CLEAN, STAY]))  # left line: (4,1), then agent 1 at (3,1)
    assert waste_at(env) == {(1, 1), (2, 1)} and ts.info["waste_cleared"].tolist() == [0.0]


def test_later_beams_see_what_earlier_beams_cleared():
    env = make()
    load(env, ["#######", "#H   B#", "#H   B#", "# 1  B#", "# 0  B#", "#    B#", "#######"])
    fix_uniforms(env, apple=NO_SPAWN, waste=NO_SPAWN)
    ts = env.step(act([CLEAN, CLEAN]))
    # agent 0's left line clears (2,1); agent 1's then passes it and clears (1,1)
    assert waste_at(env) == set() and ts.info["waste_cleared"].tolist() == [2.0]


def test_waste_is_cleared_only_from_columns_1_and_2():
    """One instance per position of agent 0; agent 1 waits at (5,5)."""
    spots = [(r, c) for r in range(1, 6) for c in range(1, 6) if (r, c) != (5, 5)]
    env = make(num_envs=len(spots))
    fix_uniforms(env, apple=NO_SPAWN, waste=NO_SPAWN)
    for e, (r, c) in enumerate(spots):
        env.pos[0, e] = env.grid.index(r, c)
        env.pos[1, e] = env.grid.index(5, 5)
    ts = env.step(torch.tensor([[CLEAN, STAY]] * len(spots)))
    for e, (r, c) in enumerate(spots):
        # column 2: the left line reaches (2,1) or starts on (1,1); column 1: the middle
        # line, except from (1,1) itself (it starts on the wall above)
        expected = 1.0 if c == 2 or (c == 1 and r >= 2) else 0.0
        assert ts.info["waste_cleared"][e] == expected, (r, c)


@pytest.mark.parametrize(("length", "cleared"), [(3, 0.0), (4, 1.0), (5, 1.0)])
def test_beam_length(length, cleared):
    env = make(beam_length=length)  # agent 0 at (5,2): left line (5,1), (4,1), (3,1), (2,1)
    fix_uniforms(env, apple=NO_SPAWN, waste=NO_SPAWN)
    ts = env.step(act([CLEAN, STAY]))
    assert ts.info["waste_cleared"].tolist() == [cleared]


def test_beam_lines_stop_at_walls():
    grid = Grid(["#####", "#H  #", "##  #", "#   #", "#####"], pad=1, device="cpu")
    beams = Beams(grid, 5)
    assert beams.offsets[:, :2].tolist() == [[-1, -8], [-7, -14], [1, -6]]  # padded width 7
    # from (3,1): left (3,0) wall; middle (2,1) wall, so (1,1) is never reached; right (0,2)
    assert beams.first_wall[grid.index(3, 1)].tolist() == [0, 0, 3]
    assert Beams(grid, 2).first_wall[grid.index(3, 3)].tolist() == [2, 2, 0]  # 2: no wall in reach


def test_beam_hits_stop_at_walls_and_agents():
    grid = Grid(["#####", "#   #", "# # #", "#   #", "#####"], pad=1, device="cpu")
    beams = Beams(grid, 5)
    at = grid.index
    pos = torch.tensor([[at(3, 2)], [at(1, 2)], [at(3, 3)], [at(2, 3)]])  # [A, E]

    def hits(*fired):
        return beams.hits(pos, torch.tensor(fired)[:, None]).flatten().tolist()

    # agent 0: middle line hits the wall at (2,2) before agent 1; right line: agent 2 first
    assert hits(True, False, False, False) == [0, 0, 1, 0]
    # agent 2: left line hits agent 0 (level), middle line hits agent 3 above
    assert hits(False, False, True, False) == [1, 0, 0, 1]
    # agent 1 (row 1) fires at the wall; agent 3: left line (2,2) wall, right (2,4) wall
    assert hits(True, True, True, True) == [1, 0, 1, 1]


def test_cleaning_clears_waste_under_an_agent():
    env = make()
    load(env, ["#######", "#H   B#", "#1   B#", "#    B#", "#0   B#", "#    B#", "#######"])
    env.waste[:] = True  # agent 1 stands on (2,1), which holds waste
    fix_uniforms(env, apple=NO_SPAWN, waste=NO_SPAWN)
    ts = env.step(act([CLEAN, STAY]))  # middle line (3,1), (2,1): cleaned, then stopped by agent 1
    assert waste_at(env) == {(1, 1)} and ts.info["waste_cleared"].tolist() == [1.0]


# --- moves ------------------------------------------------------------------------------


def test_contested_cell_goes_to_one_random_agent():
    env = make(num_envs=200, seed=2)
    load(env, ["#######", "#H   B#", "#H   B#", "# 0 1B#", "#    B#", "#    B#", "#######"])
    env.step(torch.tensor([[RIGHT, LEFT]] * 200))
    winners = []
    for e in range(200):
        spots = {where(env, 0, e), where(env, 1, e)}
        assert spots in ({(3, 3), (3, 4)}, {(3, 2), (3, 3)})
        winners.append(0 if where(env, 0, e) == (3, 3) else 1)
    assert 60 < sum(winners) < 140  # both win about half of the time


@pytest.mark.parametrize(
    ("actions", "after"),
    [
        ([RIGHT, LEFT], [(3, 2), (3, 3)]),  # swap: blocked
        ([RIGHT, STAY], [(3, 2), (3, 3)]),  # into an agent that stays: blocked
        ([RIGHT, CLEAN], [(3, 2), (3, 3)]),  # cleaning is staying
        ([RIGHT, RIGHT], [(3, 3), (3, 4)]),  # following: both move
        ([LEFT, RIGHT], [(3, 1), (3, 4)]),
        ([UP, DOWN], [(2, 2), (4, 3)]),
    ],
)
def test_move_conflicts(actions, after):
    env = make()
    load(env, ["#######", "#H   B#", "#H   B#", "# 01 B#", "#    B#", "#    B#", "#######"])
    env.step(act(actions))
    assert [where(env, 0), where(env, 1)] == after


def test_walls_stop_moves():
    env = make()
    load(env, ["#######", "#0   B#", "#H   B#", "#    B#", "#    B#", "#   1B#", "#######"])
    env.step(act([UP, DOWN]))
    assert [where(env, 0), where(env, 1)] == [(1, 1), (5, 4)]
    env.step(act([LEFT, RIGHT]))
    assert [where(env, 0), where(env, 1)] == [(1, 1), (5, 5)]
    env.step(act([DOWN, RIGHT]))  # agents walk on waste cells; column 6 is wall
    assert [where(env, 0), where(env, 1)] == [(2, 1), (5, 5)]


def test_resolve_moves_chains_cycles_and_keys():
    grid = Grid(["#####", "#   #", "#   #", "#####"], pad=1, device="cpu")

    def moves(pos, target, keys=None):
        """One instance: lists of (row, col) per agent in, list out ([A, E] tensors inside)."""
        column = [[grid.index(*cell)] for cell in pos]
        wanted = [[grid.index(*cell)] for cell in target]
        keys = [[0] for _ in pos] if keys is None else [[k] for k in keys]
        after = resolve_moves(torch.tensor(column), torch.tensor(wanted), grid.wall, torch.tensor(keys))
        return [grid.coords(int(c)) for c in after[:, 0]]

    line = [(1, 1), (1, 2), (1, 3)]
    # a chain behind an agent that stays: nobody moves
    assert moves(line, [(1, 2), (1, 3), (1, 3)]) == line
    # the head moves away: the whole chain moves
    assert moves(line, [(1, 2), (1, 3), (2, 3)]) == [(1, 2), (1, 3), (2, 3)]
    # four agents rotating around a 2 x 2 square all move
    square = [(1, 1), (1, 2), (2, 2), (2, 1)]
    assert moves(square, square[1:] + square[:1]) == square[1:] + square[:1]
    # a swap inside the square is blocked, and so are those following the swappers
    assert moves(square, [(1, 2), (1, 1), (2, 1), (1, 1)]) == [(1, 1), (1, 2), (2, 2), (2, 1)]
    # contest for (2,2): the smallest key wins; the loser's follower is blocked
    pos, target = [(1, 2), (2, 3), (1, 3)], [(2, 2), (2, 2), (2, 3)]
    assert moves(pos, target, [5, 1, 0]) == [(1, 2), (2, 2), (2, 3)]
    assert moves(pos, target, [1, 5, 0]) == [(2, 2), (2, 3), (1, 3)]
    # equal keys: the lower index wins
    assert moves(pos, target, [3, 3, 0])[0] == (2, 2)
    # into a wall: a stay
    assert moves([(1, 1)], [(0, 1)]) == [(1, 1)]


# --- punishment ---------------------------------------------------------------------------


def test_punishment_cost_and_hit():
    env = make(punishment=True)
    assert env.action_spaces["agent_0"].n == 7
    load(env, ["#######", "#H   B#", "#H1  B#", "#    B#", "# 0  B#", "#    B#", "#######"])
    ts = env.step(act([PUNISH, STAY]))  # middle line (3,2), (2,2): agent 1
    assert ts.reward.tolist() == [[-1.0, -50.0]] and ts.info["punishments"].tolist() == [1.0]
    ts = env.step(act([PUNISH, PUNISH]))  # agent 1 fires at the wall
    assert ts.reward.tolist() == [[-1.0, -51.0]] and ts.info["punishments"].tolist() == [2.0]
    load(env, ["#######", "#H   B#", "#H   B#", "#    B#", "# 01 B#", "#    B#", "#######"])
    ts = env.step(act([PUNISH, STAY]))  # right line starts level with the shooter
    assert ts.reward.tolist() == [[-1.0, -50.0]]
    load(env, ["#######", "#H   B#", "#H   B#", "#    B#", "# 0  B#", "#  1 B#", "#######"])
    ts = env.step(act([PUNISH, STAY]))  # below the shooter: missed
    assert ts.reward.tolist() == [[-1.0, 0.0]]
    assert waste_at(env) == {(1, 1), (2, 1)}  # punishment never cleans


def test_punishment_stops_at_the_first_agent():
    env = make(map="lio_10x10", punishment=True)
    env.pos[:, 0] = torch.tensor([env.grid.index(r, c) for r, c in [(6, 4), (5, 4), (3, 4)]])
    ts = env.step(act([PUNISH, STAY, STAY]))
    assert ts.reward.tolist() == [[-1.0, -50.0, 0.0]]


def test_punishment_absent_when_off():
    env = make()
    assert env.action_spaces["agent_0"].n == 6
    assert not Cleanup.Params(map="original", punishment=False).resolve().punishment
    load(env, ["#######", "#H   B#", "#H1  B#", "#    B#", "# 0  B#", "#    B#", "#######"])
    ts = env.step(act([CLEAN, STAY]))
    assert ts.reward.tolist() == [[0.0, 0.0]] and ts.info["punishments"].tolist() == [0.0]


# --- episodes --------------------------------------------------------------------------------


def test_episode_end_and_auto_reset():
    env = make(num_envs=2)
    first = env.reset(seed=1).obs
    for step in range(1, 50):
        ts = env.step(torch.tensor([[UP, STAY]] * 2))
        assert not ts.done.any() and ts.final_obs is None, step
    assert where(env, 0) == (1, 2)
    ts = env.step(torch.tensor([[UP, STAY]] * 2))
    assert ts.terminated.tolist() == [True, True] and ts.truncated.tolist() == [False, False]
    assert ts.final_obs is not None
    assert ts.final_obs["agent_0"][0, WALL, 3, 4] == 1  # at (1,2) the wall is just above
    assert ts.obs["agent_0"][0, WALL, 3, 4] == 0  # back at (5,2)
    assert where(env, 0) == (5, 2) and env.t.tolist() == [0, 0]
    for agent in env.possible_agents:
        assert torch.equal(ts.obs[agent], first[agent])
    assert waste_at(env) == {(1, 1), (2, 1)} and apples_at(env) == set()
    ts = env.step(torch.tensor([[STAY, STAY]] * 2))
    assert not ts.done.any() and env.t.tolist() == [1, 1]


def test_episode_length_param():
    env = make(episode_length=3)
    dones = [bool(env.step(act([STAY, STAY])).terminated[0]) for _ in range(7)]
    assert dones == [False, False, True, False, False, True, False]


def test_episode_metrics():
    env = make()
    totals = {
        "apples_eaten": torch.tensor([3.0, 5.0]),
        "apple_eat_time": torch.tensor([30.0, 70.0]),
        "cleaning_actions": torch.tensor([2.0, 4.0]),
        "cleaning_actions_agent_0": torch.tensor([2.0, 1.0]),
        "cleaning_actions_agent_1": torch.tensor([0.0, 3.0]),
        "waste_cleared": torch.tensor([1.0, 2.0]),
        "waste_cleared_agent_0": torch.tensor([1.0, 0.0]),
        "waste_cleared_agent_1": torch.tensor([0.0, 2.0]),
        "punishments": torch.tensor([0.0, 0.0]),
    }
    assert set(env.info_keys) == set(totals)
    metrics = env.episode_metrics(totals)
    assert metrics == {
        "apples_eaten": 4.0,
        "sustainability": 12.5,  # (30 + 70) / (3 + 5)
        "cleaning_actions": 3.0,
        "cleaning_actions_agent_0": 1.5,
        "cleaning_actions_agent_1": 1.5,
        "waste_cleared": 1.5,
        "waste_cleared_agent_0": 0.5,
        "waste_cleared_agent_1": 1.0,
        "punishments": 0.0,
    }
    assert set(metrics) == set(env.metric_names)
    none = {k: torch.zeros(2) for k in totals}
    assert env.episode_metrics(none)["sustainability"] == 0.0


# --- params -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"map": "lio_8x8"}, "map"),
        ({"num_agents": 0}, "num_agents"),
        ({"num_agents": 3}, "num_agents"),  # lio_7x7 has two spawn points
        ({"map": "original", "num_agents": 11}, "num_agents"),
        ({"view_size": 8}, "view_size"),
        ({"view_size": 0}, "view_size"),
        ({"episode_length": 0}, "episode_length"),
        ({"apple_respawn_prob": 1.5}, "apple_respawn_prob"),
        ({"waste_spawn_prob": -0.1}, "waste_spawn_prob"),
        ({"depletion_threshold": 0.0}, "depletion_threshold"),
        ({"beam_length": 0}, "beam_length"),
        ({"rotation": True}, "rotation"),
    ],
)
def test_invalid_params_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        Cleanup.Params(**params)


def test_unknown_map_lists_the_valid_ones():
    with pytest.raises(ValidationError) as error:
        Cleanup.Params(map="big")
    assert all(name in str(error.value) for name in CLEANUP_MAPS)


def test_overrides():
    env = make(map="original", num_agents=10, view_size=5, episode_length=7, punishment=False)
    assert env.num_agents == 10 and env.observation_spaces["agent_9"].shape == (4, 5, 5)
    assert env.action_spaces["agent_0"].n == 6
    assert len({int(p) for p in env.pos[:, 0]}) == 10
    one = make(num_agents=1)
    assert where(one, 0) == (5, 2) and one.step(act([STAY])).reward.shape == (1, 1)
    assert Cleanup.Params(view_size=1).view_size == 1
    assert make(view_size=1).reset().obs["agent_0"].shape == (1, 4, 1, 1)


# --- determinism, batching, checkpoints -------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "steps"),
    [({}, 300), ({"map": "lio_10x10"}, 300), ({"map": "original", "episode_length": 60}, 300)],
    ids=["lio_7x7", "lio_10x10", "original"],
)
def test_batched_matches_single_instances(params, steps):
    num_envs, seed = 4, 17
    batched = Cleanup(num_envs=num_envs, params=Cleanup.Params(**params))
    singles = [Cleanup(num_envs=1, params=Cleanup.Params(**params)) for _ in range(num_envs)]
    first = batched.reset(seed=seed)
    for e, single in enumerate(singles):
        assert_instance_equal(first, single.reset(seed=seed + e), e)
    n = batched.action_spaces["agent_0"].n
    generator = torch.Generator().manual_seed(0)
    eaten = cleared = 0.0
    for _ in range(steps):
        actions = torch.randint(0, n, (num_envs, batched.num_agents), generator=generator)
        ts = batched.step(actions)
        eaten += float(ts.info["apples_eaten"].sum())
        cleared += float(ts.info["waste_cleared"].sum())
        for e, single in enumerate(singles):
            assert_instance_equal(ts, single.step(actions[e : e + 1]), e)
    assert cleared > 0
    assert eaten > 0 or params.get("map") == "original"  # spawning and eating were covered


def _same(a, b):
    """Two batched TimeSteps agree exactly."""
    for e in range(a.reward.shape[0]):
        assert_instance_equal(a, _Slice(b, e), e)


class _Slice:
    """One instance of a batched TimeStep, shaped like a single-instance one."""

    def __init__(self, ts, e):
        part = slice(e, e + 1)
        self.reward, self.terminated = ts.reward[part], ts.terminated[part]
        self.obs = {k: v[part] for k, v in ts.obs.items()}
        self.final_obs = None if ts.final_obs is None else {k: v[part] for k, v in ts.final_obs.items()}
        self.info = {k: v[part] for k, v in ts.info.items()}


def test_state_dict_round_trip():
    env = make(num_envs=3, map="original", episode_length=20, seed=4)
    generator = torch.Generator().manual_seed(1)
    actions = [torch.randint(0, 7, (3, 5), generator=generator) for _ in range(30)]
    for a in actions[:12]:
        env.step(a)
    saved = env.state_dict()
    assert set(saved) == {"pos", "apple", "waste", "t", "rng"}
    first = [env.step(a) for a in actions[12:]]  # crosses an episode end at step 20
    fresh = Cleanup(num_envs=3, params=env.params)
    fresh.load_state_dict(saved)
    env.load_state_dict(saved)  # the saved copy did not move on with the env
    for a, expected in zip(actions[12:], first, strict=True):
        _same(fresh.step(a), expected)
        _same(env.step(a), expected)


# --- an independent plain-Python version of the rules --------------------------------------------


def _reference_step(spec, state, actions, draws, beam_length=5):
    """One Cleanup step of one instance in plain Python, sequential like the reference code."""
    rows = spec.rows
    apples, waste = set(state["apples"]), set(state["waste"])
    pos = grid_reference.move(rows, list(state["pos"]), actions, draws["move_key"])
    reward = grid_reference.eat(pos, apples)
    for i, a in enumerate(actions):
        if a == CLEAN:
            for line in grid_reference.beam_lines(*pos[i], beam_length):
                for cell in line:
                    if grid_reference.is_wall(rows, *cell):
                        break
                    if cell in waste:
                        waste.remove(cell)
                        break
                    if cell in pos:
                        break
    if spec.punishment:
        grid_reference.punish(rows, pos, actions, PUNISH, reward, beam_length)
    apple_cells = [(r, c) for r, row in enumerate(rows) for c, s in enumerate(row) if s == "B"]
    waste_cells = [(r, c) for r, row in enumerate(rows) for c, s in enumerate(row) if s in "HR"]
    d = len(waste) / len(waste_cells)
    if d < spec.depletion_threshold:
        p = spec.apple_respawn_prob * (1 - d / spec.depletion_threshold)
        for k, cell in enumerate(apple_cells):
            if cell not in apples and cell not in pos and draws["apple"][k] < p:
                apples.add(cell)
        order = sorted(range(len(waste_cells)), key=lambda k: -draws["waste_key"][k])
        for k in order:
            cell = waste_cells[k]
            if cell not in waste and draws["waste"][k] < spec.waste_spawn_prob:
                waste.add(cell)
                break
    return {"pos": pos, "apples": apples, "waste": waste}, reward


@pytest.mark.parametrize(
    ("params", "steps"),
    [
        ({}, 150),
        ({"map": "lio_10x10", "punishment": True}, 120),
        ({"map": "original", "episode_length": 40}, 100),
        ({"map": "lio_10x10", "beam_length": 11}, 100),
    ],
    ids=["lio_7x7", "lio_10x10_punish", "original", "beam_two_words"],
)
def test_matches_plain_python_rules(params, steps):
    num_envs = 6
    env = Cleanup(num_envs=num_envs, params=Cleanup.Params(**params))
    env.reset(seed=23)
    spec = env.spec
    recorded = grid_reference.record_draws(env)
    n = env.action_spaces["agent_0"].n
    generator = torch.Generator().manual_seed(2)
    # bias toward cleaning so that apples grow on the big map too
    weights = torch.ones(n)
    weights[CLEAN] = 4.0
    for _ in range(steps):
        states = [
            {
                "pos": [where(env, a, e) for a in range(env.num_agents)],
                "apples": apples_at(env, e),
                "waste": waste_at(env, e),
            }
            for e in range(num_envs)
        ]
        t_before = env.t.clone()
        actions = torch.multinomial(weights, num_envs * env.num_agents, True, generator=generator)
        actions = actions.view(num_envs, env.num_agents)
        ts = env.step(actions)
        for e in range(num_envs):
            draws = {k: v[:, e].tolist() for k, v in recorded.items()}
            expected, reward = _reference_step(spec, states[e], actions[e].tolist(), draws, spec.beam_length)
            assert ts.reward[e].tolist() == reward
            if t_before[e] + 1 < spec.episode_length:
                assert [where(env, a, e) for a in range(env.num_agents)] == expected["pos"]
                assert apples_at(env, e) == expected["apples"]
                assert waste_at(env, e) == expected["waste"]
                items = {APPLE: expected["apples"], WASTE: expected["waste"]}
                grid_reference.check_windows(env, ts, e, expected["pos"], items, (WALL, OTHER, 4))


# --- PettingZoo -------------------------------------------------------------------------------------


@pytest.mark.parametrize("map_name", ["lio_10x10", "original"])
def test_pettingzoo_api(map_name):
    params = Cleanup.Params(map=map_name, episode_length=30)
    parallel_api_test(ParallelView(Cleanup(num_envs=1, params=params)), num_cycles=40)


def test_pettingzoo_api_default():
    parallel_api_test(ParallelView(Cleanup(num_envs=1, params=Cleanup.Params())), num_cycles=120)


def test_pettingzoo_seed():
    parallel_seed_test(lambda: ParallelView(Cleanup(num_envs=1, params=Cleanup.Params())))


def test_waste_cleared_is_counted_per_agent():
    """Per-agent counters add up to the total, and only the cleaning agent is credited."""
    from incentive.envs.cleanup import Cleanup

    env = Cleanup(num_envs=4, params=Cleanup.Params())
    ts = env.reset(seed=0)
    generator = torch.Generator().manual_seed(0)
    totals = torch.zeros(3)
    for _ in range(200):
        actions = torch.randint(0, 6, (4, 2), generator=generator)
        ts = env.step(actions)
        by_0, by_1 = ts.info["waste_cleared_agent_0"], ts.info["waste_cleared_agent_1"]
        assert torch.equal(by_0 + by_1, ts.info["waste_cleared"])
        assert (by_0[actions[:, 0] != 5] == 0).all() and (by_1[actions[:, 1] != 5] == 0).all()
        totals += torch.stack([by_0.sum(), by_1.sum(), ts.info["waste_cleared"].sum()])
    assert totals[2] > 0
