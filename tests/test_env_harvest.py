"""Tests of the Harvest env.

Hand-made states are drawn as pictures of the map: `#` wall, digits the
agents, `A` an apple; every other symbol leaves the cell without apple. The
small map (rows and columns from 0):

    ##########
    # A    A #     four plus-shaped patches of 5 apple cells,
    #AAA  AAA#     centres (2,2), (2,7), (7,2), (7,7)
    # A    A #
    #   01   #     agents 0, 1, 2 start at (4,4), (4,5), (5,4)
    #   2    #
    # A    A #
    #AAA  AAA#
    # A    A #
    ##########

Actions: 0 left, 1 right, 2 up, 3 down, 4 stay, 5 punish. Regrowth counts
apples in the 3 x 3 block around an empty apple cell: 0, 1, 2, >=3 apples
give 0, 0.005, 0.02, 0.05. Every expected number is worked out by hand.
"""

from __future__ import annotations

import grid_reference
import pytest
import torch
from grid_reference import apples_at, assert_instance_equal, load, where
from pettingzoo.test import parallel_api_test, parallel_seed_test
from pydantic import ValidationError

from incentive.envs import ParallelView, load_env_class
from incentive.envs.harvest import HARVEST_MAPS, Harvest

LEFT, RIGHT, UP, DOWN, STAY, PUNISH = range(6)
WALL, APPLE, OTHER = range(3)
FULL = [
    "##########",
    "# A    A #",
    "#AAA  AAA#",
    "# A    A #",
    "#   01   #",
    "#   2    #",
    "# A    A #",
    "#AAA  AAA#",
    "# A    A #",
    "##########",
]


def make(num_envs: int = 1, seed: int = 0, **params) -> Harvest:
    env = Harvest(num_envs=num_envs, params=Harvest.Params(**params))
    env.reset(seed=seed)
    return env


def fix_uniforms(env: Harvest, value: float) -> None:
    """Make every regrowth uniform of later steps `value` (the other draws stay random)."""
    real = env._draw

    def draw():
        draws = real()
        draws["apple"] = torch.full_like(draws["apple"], value)
        return draws

    env._draw = draw


def act(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


STAY3 = [STAY, STAY, STAY]


# --- spaces and reset ------------------------------------------------------------


def test_registered_and_spaces():
    assert load_env_class("harvest") is Harvest
    env = make()
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2"]
    assert env.observation_spaces["agent_0"].shape == (3, 15, 15)
    assert env.observation_spaces["agent_0"].dtype.name == "float32"
    assert env.action_spaces["agent_0"].n == 5
    big = make(map="original")
    assert (big.grid.height, big.grid.width) == (16, 38)
    assert big.num_agents == 5 and big.action_spaces["agent_0"].n == 6
    assert len(big.apple_cells) == sum(r.count("A") for r in HARVEST_MAPS["original"].rows)


def test_reset_state():
    env = make(num_envs=2)
    assert [where(env, a) for a in range(3)] == [(4, 4), (4, 5), (5, 4)]
    assert len(apples_at(env)) == 20 and bool(env.apple.all())
    obs = env.reset(seed=1).obs["agent_0"][0]
    # agent 0 at (4,4) sits at (7,7) of its 15 x 15 window: map (r, c) is window (r + 3, c + 3)
    assert obs[APPLE].sum() == 20 and obs[APPLE, 5, 5] == 1  # the patch centre (2,2)
    assert obs[OTHER].sum() == 2 and obs[OTHER, 7, 8] == 1 and obs[OTHER, 8, 7] == 1
    assert obs[WALL].sum() == 225 - 64 and obs[WALL, 3, 3] == 1 and obs[WALL, 4, 4] == 0


# --- eating --------------------------------------------------------------------------


def test_eating_gives_one_and_removes_the_apple():
    env = make()
    fix_uniforms(env, 0.999)
    load(env, FULL)
    env.pos[0, 0] = env.grid.index(3, 3)  # next to the top-left patch
    ts = env.step(act([LEFT, STAY, STAY]))  # (3,2) is the patch's bottom arm
    assert where(env, 0) == (3, 2)
    assert ts.reward.tolist() == [[1.0, 0.0, 0.0]]
    assert (3, 2) not in apples_at(env) and len(apples_at(env)) == 19
    assert ts.info["apples_eaten"].tolist() == [1.0] and ts.info["apple_eat_time"].tolist() == [1.0]
    ts = env.step(act([UP, STAY, STAY]))
    assert ts.reward.tolist() == [[1.0, 0.0, 0.0]] and ts.info["apple_eat_time"].tolist() == [2.0]
    ts = env.step(act([STAY, STAY, STAY]))
    assert ts.reward.tolist() == [[0.0, 0.0, 0.0]]


# --- regrowth ------------------------------------------------------------------------------

# The top-left patch, cells (1,2), (2,1), (2,2), (2,3), (3,2); every other patch stays full.
# With only (1,2) and (2,1) left: the centre (2,2) has 2 apples around it, (2,3) and (3,2)
# have 1 each (the 3 x 3 block, not a radius-2 disk: (2,3) does not count (2,1)).
TWO_LEFT = [
    "##########",
    "# A    A #",
    "#A    AAA#",
    "#      A #",
    "#   01   #",
    "#   2    #",
    "# A    A #",
    "#AAA  AAA#",
    "# A    A #",
    "##########",
]


@pytest.mark.parametrize(
    ("u", "grown"),
    [
        (0.0049, {(2, 2), (2, 3), (3, 2)}),  # below 0.005: one or more neighbours grow
        (0.0051, {(2, 2)}),  # only the cell with 2 neighbours (0.02)
        (0.0199, {(2, 2)}),
        (0.0201, set()),
    ],
)
def test_regrowth_thresholds_by_neighbour_count(u, grown):
    env = make()
    load(env, TWO_LEFT)
    fix_uniforms(env, u)
    env.step(act(STAY3))
    assert apples_at(env) - {(1, 2), (2, 1)} - _other_patches() == grown


@pytest.mark.parametrize(
    ("row2", "cell"),
    [("#AA   AAA#", (2, 3)), ("#A A  AAA#", (2, 2))],
    ids=["three", "four"],
)
def test_regrowth_three_or_more_neighbours(row2, cell):
    # only `cell` is missing from the full patch: (2,3) sees (1,2), (2,2), (3,2); (2,2) sees 4
    picture = [FULL[0], FULL[1], row2, FULL[3], *FULL[4:]]
    for u, grows in [(0.0499, True), (0.0501, False)]:
        env = make()
        load(env, picture)
        fix_uniforms(env, u)
        env.step(act(STAY3))
        assert (cell in apples_at(env)) == grows, u


def test_bare_patch_never_regrows():
    env = make()
    load(env, [FULL[0], "#      A #", "#     AAA#", "#      A #", *FULL[4:]])
    fix_uniforms(env, 0.0)  # any positive probability would grow
    env.step(act(STAY3))
    assert apples_at(env) == _other_patches()


def test_no_regrowth_under_an_agent():
    env = make()
    load(env, [FULL[0], "# A    A #", "#A0   AAA#", "#      A #", "#    1   #", *FULL[5:]])
    fix_uniforms(env, 0.0)
    env.step(act(STAY3))
    assert (2, 2) not in apples_at(env) and {(2, 3), (3, 2)} <= apples_at(env)


def _other_patches() -> set[tuple[int, int]]:
    cells = set()
    for r0, c0 in [(2, 7), (7, 2), (7, 7)]:
        cells |= {(r0, c0), (r0 - 1, c0), (r0 + 1, c0), (r0, c0 - 1), (r0, c0 + 1)}
    return cells


@pytest.mark.parametrize("keep", [{(2, 2)}, {(1, 2), (2, 1)}], ids=["centre", "two_arms"])
def test_regrowth_rate_statistics(keep):
    """The top-left patch reduced to `keep`, watched over 20000 instances for one step."""
    env = make(num_envs=20000, seed=3, view_size=1)
    slot = {env.grid.coords(c): k for k, c in enumerate(env.apple_cells.tolist())}
    for cell in [(1, 2), (2, 1), (2, 2), (2, 3), (3, 2)]:
        env.apple[slot[cell]] = cell in keep
    env.step(torch.full((20000, 3), STAY))
    rate = env.apple.float().mean(1)
    # (3,2) sees one apple in both cases: (2,2), or (2,1) (the 3 x 3 block)
    assert abs(float(rate[slot[(3, 2)]]) - 0.005) < 0.0025
    if (2, 2) not in keep:  # the centre sees both arms: 0.02
        assert abs(float(rate[slot[(2, 2)]]) - 0.02) < 0.006


def test_regrowth_probs_param():
    env = make(regrowth_probs=(0.0, 1.0, 1.0, 1.0))
    load(env, TWO_LEFT)
    env.step(act(STAY3))
    # every empty cell with at least one apple around grows: the whole patch is back
    assert apples_at(env) == _other_patches() | {(1, 2), (2, 1), (2, 2), (2, 3), (3, 2)}


# --- moves and punishment ---------------------------------------------------------------------


def test_move_conflicts():
    env = make(num_envs=100, seed=4)
    env.step(torch.tensor([[RIGHT, LEFT, UP]] * 100))  # 0 and 1 swap: blocked; 2 into 0: blocked
    for e in range(100):
        assert [where(env, a, e) for a in range(3)] == [(4, 4), (4, 5), (5, 4)]
    env.step(torch.tensor([[DOWN, DOWN, RIGHT]] * 100))  # 1 and 2 both want (5,5), 0 wants (5,4)
    winners = 0
    for e in range(100):
        spots = [where(env, a, e) for a in range(3)]
        # 1 wins: 2 stays and blocks 0; 2 wins: 0 follows into (5,4)
        assert spots in ([(4, 4), (5, 5), (5, 4)], [(5, 4), (4, 5), (5, 5)])
        winners += spots[1] == (5, 5)
    assert 25 < winners < 75


def test_punishment():
    env = make(punishment=True)
    assert env.action_spaces["agent_0"].n == 6
    fix_uniforms(env, 0.999)
    ts = env.step(act([STAY, STAY, PUNISH]))
    # agent 2 at (5,4): middle line (4,4) hits agent 0, right line (5,5), (4,5) hits agent 1
    assert ts.reward.tolist() == [[-50.0, -50.0, -1.0]] and ts.info["punishments"].tolist() == [1.0]
    ts = env.step(act([PUNISH, PUNISH, PUNISH]))
    # 0 hits 1 (right line, level), 1 hits 0 (left line, level), 2 hits both again
    assert ts.reward.tolist() == [[-101.0, -101.0, -1.0]]
    assert ts.info["punishments"].tolist() == [3.0]
    ts = env.step(act([UP, STAY, STAY]))  # apples do not stop a beam; nobody fires
    assert ts.reward.tolist() == [[0.0, 0.0, 0.0]]
    off = make()
    assert off.action_spaces["agent_0"].n == 5
    assert off.step(act(STAY3)).info["punishments"].tolist() == [0.0]


def test_punishment_passes_apples_and_stops_at_walls():
    env = make(punishment=True, num_agents=2)
    fix_uniforms(env, 0.999)
    load(env, [*FULL[:4], "# 01     #", "#        #", *FULL[6:]])
    env.pos[1, 0] = env.grid.index(1, 3)  # agent 1 behind the patch, seen through apples
    ts = env.step(act([PUNISH, STAY]))  # agent 0 at (4,2): right line (4,3) ... (1,3)
    assert ts.reward.tolist() == [[-1.0, -50.0]]
    env.pos[1, 0] = env.grid.index(1, 4)
    ts = env.step(act([PUNISH, STAY]))  # nobody on the lines; the middle one ends at the wall
    assert ts.reward.tolist() == [[-1.0, 0.0]]


# --- episodes and metrics ------------------------------------------------------------------------


def test_episode_end_final_stock_and_auto_reset():
    env = make(num_envs=2, episode_length=4)
    first = env.reset(seed=2).obs
    fix_uniforms(env, 0.999)
    load(env, FULL)
    env.pos[0, :] = env.grid.index(3, 3)
    moves = [[LEFT, STAY, STAY], [UP, STAY, STAY], [STAY, STAY, STAY]]
    for step, move in enumerate(moves, start=1):
        ts = env.step(torch.tensor([move] * 2))
        assert not ts.done.any() and ts.final_obs is None
        assert ts.info["final_apple_stock"].tolist() == [0.0, 0.0], step
    ts = env.step(torch.tensor([[RIGHT, STAY, STAY]] * 2))  # (2,3): the third apple
    assert ts.terminated.tolist() == [True, True] and ts.final_obs is not None
    assert ts.info["final_apple_stock"].tolist() == [17.0, 17.0]
    assert ts.reward[:, 0].tolist() == [1.0, 1.0]
    for agent in env.possible_agents:
        assert torch.equal(ts.obs[agent], first[agent])
    assert ts.final_obs["agent_0"][0, APPLE].sum() == 17
    assert len(apples_at(env)) == 20 and env.t.tolist() == [0, 0]


def test_episode_metrics():
    env = make()
    totals = {
        "apples_eaten": torch.tensor([4.0, 0.0]),
        "apple_eat_time": torch.tensor([40.0, 0.0]),
        "punishments": torch.tensor([1.0, 3.0]),
        "final_apple_stock": torch.tensor([12.0, 20.0]),
    }
    assert set(env.info_keys) == set(totals)
    assert env.episode_metrics(totals) == {
        "apples_eaten": 2.0,
        "sustainability": 10.0,
        "punishments": 2.0,
        "final_apple_stock": 16.0,
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"map": "huge"}, "map"),
        ({"num_agents": 5}, "num_agents"),  # four spawn points
        ({"num_agents": 0}, "num_agents"),
        ({"view_size": 4}, "view_size"),
        ({"episode_length": 0}, "episode_length"),
        ({"regrowth_probs": (0.0, 0.1, 0.2)}, "regrowth_probs"),
        ({"regrowth_probs": (0.0, 0.1, 0.2, 1.2)}, "regrowth_probs"),
        ({"beam_length": 0}, "beam_length"),
        ({"apple_respawn_prob": 0.1}, "apple_respawn_prob"),
    ],
)
def test_invalid_params_name_the_field(params, field):
    with pytest.raises(ValidationError, match=field):
        Harvest.Params(**params)


def test_unknown_map_lists_the_valid_ones():
    with pytest.raises(ValidationError) as error:
        Harvest.Params(map="big")
    assert all(name in str(error.value) for name in HARVEST_MAPS)


# --- determinism, batching, checkpoints ------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "steps"),
    [({}, 300), ({"map": "original", "episode_length": 60}, 300)],
    ids=["small", "original"],
)
def test_batched_matches_single_instances(params, steps):
    num_envs, seed = 4, 31
    batched = Harvest(num_envs=num_envs, params=Harvest.Params(**params))
    singles = [Harvest(num_envs=1, params=Harvest.Params(**params)) for _ in range(num_envs)]
    first = batched.reset(seed=seed)
    for e, single in enumerate(singles):
        assert_instance_equal(first, single.reset(seed=seed + e), e)
    n = batched.action_spaces["agent_0"].n
    generator = torch.Generator().manual_seed(0)
    eaten = 0.0
    for _ in range(steps):
        actions = torch.randint(0, n, (num_envs, batched.num_agents), generator=generator)
        ts = batched.step(actions)
        eaten += float(ts.info["apples_eaten"].sum())
        for e, single in enumerate(singles):
            assert_instance_equal(ts, single.step(actions[e : e + 1]), e)
    assert eaten > 0


def test_state_dict_round_trip():
    env = make(num_envs=3, map="original", episode_length=20, seed=8)
    generator = torch.Generator().manual_seed(5)
    actions = [torch.randint(0, 6, (3, 5), generator=generator) for _ in range(30)]
    for a in actions[:12]:
        env.step(a)
    saved = env.state_dict()
    assert set(saved) == {"pos", "apple", "t", "rng"}
    first = [env.step(a) for a in actions[12:]]
    fresh = Harvest(num_envs=3, params=env.params)
    fresh.load_state_dict(saved)
    env.load_state_dict(saved)
    for a, expected in zip(actions[12:], first, strict=True):
        for other in (fresh, env):
            ts = other.step(a)
            for e in range(3):
                single = _Slice(expected, e)
                assert_instance_equal(ts, single, e)


class _Slice:
    def __init__(self, ts, e):
        part = slice(e, e + 1)
        self.reward, self.terminated = ts.reward[part], ts.terminated[part]
        self.obs = {k: v[part] for k, v in ts.obs.items()}
        self.final_obs = None if ts.final_obs is None else {k: v[part] for k, v in ts.final_obs.items()}
        self.info = {k: v[part] for k, v in ts.info.items()}


# --- an independent plain-Python version of the rules ------------------------------------------------


def _reference_step(spec, state, actions, draws):
    """One Harvest step of one instance in plain Python."""
    rows = spec.rows
    apples = set(state["apples"])
    pos = grid_reference.move(rows, list(state["pos"]), actions, draws["move_key"])
    reward = grid_reference.eat(pos, apples)
    if spec.punishment:
        grid_reference.punish(rows, pos, actions, PUNISH, reward, spec.beam_length)
    apple_cells = [(r, c) for r, row in enumerate(rows) for c, s in enumerate(row) if s == "A"]
    probs = torch.tensor(spec.regrowth_probs).tolist()  # the float32 values the env compares with
    grown = set()
    for k, (r, c) in enumerate(apple_cells):
        if (r, c) in apples or (r, c) in pos:
            continue
        around = sum((r + i, c + j) in apples for i in (-1, 0, 1) for j in (-1, 0, 1))
        if draws["apple"][k] < probs[min(around, 3)]:
            grown.add((r, c))
    return {"pos": pos, "apples": apples | grown}, reward


@pytest.mark.parametrize(
    ("params", "steps"),
    [({}, 150), ({"map": "original", "episode_length": 40}, 100)],
    ids=["small", "original"],
)
def test_matches_plain_python_rules(params, steps):
    num_envs = 6
    env = make(num_envs=num_envs, seed=29, **params)
    spec = env.spec
    recorded = grid_reference.record_draws(env)
    n = env.action_spaces["agent_0"].n
    generator = torch.Generator().manual_seed(3)
    grown_total = 0
    for _ in range(steps):
        states = [
            {"pos": [where(env, a, e) for a in range(env.num_agents)], "apples": apples_at(env, e)}
            for e in range(num_envs)
        ]
        t_before = env.t.clone()
        actions = torch.randint(0, n, (num_envs, env.num_agents), generator=generator)
        ts = env.step(actions)
        for e in range(num_envs):
            draws = {k: v[:, e].tolist() for k, v in recorded.items()}
            expected, reward = _reference_step(spec, states[e], actions[e].tolist(), draws)
            assert ts.reward[e].tolist() == reward
            if t_before[e] + 1 < spec.episode_length:
                assert [where(env, a, e) for a in range(env.num_agents)] == expected["pos"]
                assert apples_at(env, e) == expected["apples"]
                grid_reference.check_windows(
                    env, ts, e, expected["pos"], {APPLE: expected["apples"]}, (WALL, OTHER, 3)
                )
                grown_total += len(expected["apples"] - states[e]["apples"])
    assert grown_total > 0  # regrowth happened and matched


# --- PettingZoo ---------------------------------------------------------------------------------------


def test_pettingzoo_api_original():
    params = Harvest.Params(map="original", episode_length=30)
    parallel_api_test(ParallelView(Harvest(num_envs=1, params=params)), num_cycles=40)


def test_pettingzoo_api_default():
    parallel_api_test(ParallelView(Harvest(num_envs=1, params=Harvest.Params())), num_cycles=120)


def test_pettingzoo_seed():
    parallel_seed_test(lambda: ParallelView(Harvest(num_envs=1, params=Harvest.Params())))
