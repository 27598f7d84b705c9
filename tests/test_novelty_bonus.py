"""NoveltyBonus: beta / sqrt(N(s)) over hashed observations, counted per agent or shared."""

import math
from types import SimpleNamespace

import pytest
import torch
from plugin_checks import close
from pydantic import ValidationError

from incentive.plugins.novelty_bonus import PRIME, NoveltyBonus, hash_observations, hash_weights

X, Y, Z = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
R2, R3 = 1 / math.sqrt(2), 1 / math.sqrt(3)


def run_with(agents=2, shape=(3,)):
    names = [f"agent_{i}" for i in range(agents)]
    return SimpleNamespace(
        agents=names,
        num_envs=1,
        env=SimpleNamespace(observation_spaces={a: SimpleNamespace(shape=shape) for a in names}),
    )


def make(run=None, **params):
    run = run or run_with()
    plugin = NoveltyBonus(NoveltyBonus.Params(**params))
    plugin.incentive_setup(run)
    return plugin, run


def novelty(plugin, run, *per_agent, done=None):
    """per_agent: one [E, *obs] list per agent."""
    obs = {agent: torch.tensor(rows) for agent, rows in zip(run.agents, per_agent, strict=True)}
    e = len(per_agent[0])
    done = torch.zeros(e, dtype=torch.bool) if done is None else torch.tensor(done)
    step = SimpleNamespace(obs=obs, done=done, reward=torch.zeros(e, len(run.agents)))
    out = plugin.incentive_shape_reward(run, step)
    assert set(out) == {"novelty"}
    return out["novelty"]


def test_repeated_observation_pays_one_over_sqrt_count():
    # beta = 1: the k-th visit of the same observation pays 1/sqrt(k): 1, 0.7071, 0.5774, 0.5
    plugin, run = make(beta=1.0)
    for k in (1, 2, 3, 4):
        close(novelty(plugin, run, [X], [Y]), [[1 / math.sqrt(k)] * 2])


def test_default_beta():
    plugin, run = make()
    close(novelty(plugin, run, [X], [Y]), [[0.1, 0.1]])  # 0.1 / sqrt(1)
    close(novelty(plugin, run, [X], [Y]), [[0.1 * R2, 0.1 * R2]])


def test_separate_tables_per_agent():
    # agent 0 sees X twice; then agent 1 sees X for the first time: a new observation for agent 1
    plugin, run = make(beta=1.0)
    close(novelty(plugin, run, [X], [Y]), [[1.0, 1.0]])
    close(novelty(plugin, run, [X], [Z]), [[R2, 1.0]])
    close(novelty(plugin, run, [Y], [X]), [[1.0, 1.0]])  # agent 0's first Y, agent 1's first X


def test_shared_table():
    # one table for both agents: step 1 X, Y -> counts X 1, Y 1; step 2 X, X -> X 3 for both
    # step 3 Y, Z -> Y 2, Z 1
    plugin, run = make(beta=1.0, per_agent=False)
    close(novelty(plugin, run, [X], [Y]), [[1.0, 1.0]])
    close(novelty(plugin, run, [X], [X]), [[R3, R3]])
    close(novelty(plugin, run, [Y], [Z]), [[R2, 1.0]])


def test_visits_in_one_step_count_together_and_counts_survive_episode_ends():
    # three instances, agent 0 sees X in two of them: both get 1/sqrt(2); the third sees Y: 1
    plugin, run = make(run_with(agents=1), beta=1.0)
    close(novelty(plugin, run, [X, X, Y], done=[True, True, True]), [[R2], [R2], [1.0]])
    # the episodes ended, yet the counts persist: X now 3, Y 2
    close(novelty(plugin, run, [X, Z, Y]), [[R3], [1.0], [R2]])


def test_resolution():
    # 0.001 and 0.002 round to the same multiple of 0.01 (0) but not of 0.001
    coarse, run = make(run_with(agents=1), beta=1.0)
    novelty(coarse, run, [[0.001, 0.0, 0.0]])
    close(novelty(coarse, run, [[0.002, 0.0, 0.0]]), [[R2]])
    fine, run = make(run_with(agents=1), beta=1.0, resolution=0.001)
    novelty(fine, run, [[0.001, 0.0, 0.0]])
    close(novelty(fine, run, [[0.002, 0.0, 0.0]]), [[1.0]])


def test_multidimensional_observations():
    # coin-game-like [E, 2, 2, 2] planes; two different grids, then the first again
    run = run_with(agents=1, shape=(2, 2, 2))
    plugin, run = make(run, beta=1.0)
    a = torch.zeros(2, 2, 2)
    b = a.clone()
    b[1, 0, 1] = 1.0
    close(novelty(plugin, run, [a.tolist(), b.tolist()]), [[1.0], [1.0]])
    close(novelty(plugin, run, [a.tolist()]), [[R2]])


def test_hash_is_fixed_and_spreads_distinct_observations():
    # all 2**9 binary 3 x 3 grids plus negative and fractional values land in distinct cells
    grids = torch.tensor([[(n >> k) & 1 for k in range(9)] for n in range(2**9)], dtype=torch.float32)
    extra = torch.tensor([[-1.0] + [0.0] * 8, [0.5] + [0.0] * 8, [-0.5] + [0.0] * 8])
    cells = hash_observations(torch.cat([grids, extra]), hash_weights(9), resolution=0.01, table_size=2**20)
    assert cells.unique().numel() == 2**9 + 3
    assert int(cells.min()) >= 0 and int(cells.max()) < 2**20
    # the same observation always hashes to the same cell (fixed weights, no run randomness)
    again = hash_observations(torch.cat([grids, extra]), hash_weights(9), resolution=0.01, table_size=2**20)
    assert torch.equal(cells, again)
    w = hash_weights(9)
    assert int(w.min()) >= 1 and int(w.max()) < PRIME


def test_state_dict_round_trip():
    first, run = make(beta=1.0)
    novelty(first, run, [X], [Y])
    novelty(first, run, [X], [Y])
    state = first.incentive_state_dict()
    second, _ = make(beta=1.0)
    second.incentive_load_state_dict(state)
    # third visit of X for agent 0 and of Y for agent 1, in both
    close(novelty(second, run, [X], [Y]), [[R3, R3]])
    close(novelty(first, run, [X], [Y]), [[R3, R3]])
    assert int(state["counts"].sum()) == 4  # a copy: 2 steps x 2 agents, untouched by later steps


def test_table_shapes():
    plugin, _ = make(table_size=8)
    assert plugin.counts.shape == (2, 8)
    shared, _ = make(table_size=8, per_agent=False)
    assert shared.counts.shape == (1, 8)


@pytest.mark.parametrize(
    "params", [{"beta": -0.1}, {"table_size": 0}, {"table_size": 2**30}, {"resolution": 0.0}]
)
def test_params_reject_out_of_range(params):
    with pytest.raises(ValidationError, match=next(iter(params))):
        NoveltyBonus.Params(**params)


def test_params_reject_unknown_key():
    with pytest.raises(ValidationError, match="shared"):
        NoveltyBonus.Params(shared=True)
