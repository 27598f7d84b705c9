"""PSRO meta-solvers on games with known equilibria, and the meta-game NashConv."""

import numpy as np
import pytest
import torch

from incentive.meta_solvers import (
    META_SOLVERS,
    _project,
    meta_game_exploitability,
    nash_conv,
    projected_replicator_dynamics,
    replicator_dynamics,
    solve,
    uniform,
    zero_sum_nash,
)

RPS = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
PENNIES = np.array([[1.0, -1.0], [-1.0, 1.0]])
# rock beats scissors by 2: skew-symmetric, so value 0 and all rows equal 0 against Nash y:
# R: -y_P + 2 y_S = 0, P: y_R - y_S = 0, S: -2 y_R + y_P = 0  ->  y = (1/4, 1/2, 1/4)
BIASED_RPS = np.array([[0.0, -1.0, 2.0], [1.0, 0.0, -1.0], [-2.0, 1.0, 0.0]])
# battle of the sexes: pure equilibria (0, 0), (1, 1); mixed x = (3/5, 2/5), y = (2/5, 3/5)
BOS_ROW = np.array([[3.0, 0.0], [0.0, 2.0]])
BOS_COL = np.array([[2.0, 0.0], [0.0, 3.0]])


def test_uniform():
    x, y = uniform(np.zeros((3, 5)))
    assert np.allclose(x, 1 / 3) and np.allclose(y, 1 / 5)


@pytest.mark.parametrize(
    ("payoffs", "x", "y", "value"),
    [
        (RPS, [1 / 3] * 3, [1 / 3] * 3, 0.0),
        (PENNIES, [0.5, 0.5], [0.5, 0.5], 0.0),
        (BIASED_RPS, [0.25, 0.5, 0.25], [0.25, 0.5, 0.25], 0.0),
        # 3x - 2(1-x) = -x + (1-x) -> x = 3/7; 3y - (1-y) = -2y + (1-y) -> y = 2/7; value 1/7
        (np.array([[3.0, -1.0], [-2.0, 1.0]]), [3 / 7, 4 / 7], [2 / 7, 5 / 7], 1 / 7),
        # the second row is dominated: pure (row 0, column 1), value -1
        (np.array([[2.0, -1.0], [1.0, -2.0]]), [1.0, 0.0], [0.0, 1.0], -1.0),
    ],
)
def test_zero_sum_nash_known_equilibria(payoffs, x, y, value):
    sx, sy = zero_sum_nash(payoffs)
    assert np.allclose(sx, x, atol=1e-9) and np.allclose(sy, y, atol=1e-9)
    assert float(sx @ payoffs @ sy) == pytest.approx(value, abs=1e-9)
    assert nash_conv(payoffs, None, sx, sy) == pytest.approx(0.0, abs=1e-9)


def test_zero_sum_nash_takes_torch_and_constant_sum_win_rates():
    wins = torch.tensor([[0.5, 0.9], [0.2, 0.5]])  # win rates: the column's payoff is 1 - row's
    x, y = zero_sum_nash(wins, 1 - wins)
    assert np.allclose(x, [1.0, 0.0]) and np.allclose(y, [1.0, 0.0])
    x, y = solve("nash", torch.tensor(BIASED_RPS), -torch.tensor(BIASED_RPS))
    assert np.allclose(x, [0.25, 0.5, 0.25], atol=1e-9)


def test_zero_sum_nash_refuses_a_general_sum_game():
    with pytest.raises(ValueError, match="general-sum.*replicator_dynamics"):
        zero_sum_nash(BOS_ROW, BOS_COL)
    with pytest.raises(ValueError, match="general-sum"):
        solve("nash", BOS_ROW, BOS_COL)


@pytest.mark.parametrize(
    ("x0", "y0", "x", "y"),
    [
        ([0.7, 0.3], [0.6, 0.4], [1.0, 0.0], [1.0, 0.0]),
        ([0.3, 0.7], [0.5, 0.5], [0.0, 1.0], [0.0, 1.0]),
        (None, None, [0.6, 0.4], [0.4, 0.6]),  # the uniform start sits on the mixed equilibrium's stable set
    ],
)
def test_replicator_dynamics_reaches_an_equilibrium_of_battle_of_the_sexes(x0, y0, x, y):
    sx, sy = replicator_dynamics(BOS_ROW, BOS_COL, x0=x0, y0=y0)
    assert np.allclose(sx, x, atol=1e-6) and np.allclose(sy, y, atol=1e-6)
    # verified as an equilibrium: no pure deviation gains either player anything
    u, w = BOS_ROW @ sy, BOS_COL.T @ sx
    assert u.max() - sx @ u < 1e-6 and w.max() - sy @ w < 1e-6
    assert nash_conv(BOS_ROW, BOS_COL, sx, sy) < 1e-6


def test_projected_replicator_dynamics_keeps_the_exploration_floor():
    gamma = 0.01
    x, y = projected_replicator_dynamics(BOS_ROW, BOS_COL, gamma=gamma, x0=[0.7, 0.3], y0=[0.6, 0.4])
    # the pure equilibrium (0, 0) up to the floor gamma / 2 on the other action
    assert np.allclose(x, [1 - gamma / 2, gamma / 2]) and np.allclose(y, [1 - gamma / 2, gamma / 2])
    # by hand: u = A y = (3 (1 - g/2), 2 g/2); the row gives up g/2 * (u_0 - u_1) = 0.005 * 2.975
    expected = 0.005 * (3 * 0.995 - 0.01) + 0.005 * (2 * 0.995 - 0.015)
    assert nash_conv(BOS_ROW, BOS_COL, x, y) == pytest.approx(expected, abs=1e-9)
    assert nash_conv(BOS_ROW, BOS_COL, x.round(), y.round()) == 0.0


def test_projected_replicator_dynamics_time_average_finds_the_biased_rps_nash():
    """The last iterate cycles around the equilibrium; the time average is close to it."""
    x_last, _ = projected_replicator_dynamics(BIASED_RPS, gamma=0.1, x0=[0.5, 0.3, 0.2])
    x, y = projected_replicator_dynamics(BIASED_RPS, gamma=0.1, x0=[0.5, 0.3, 0.2], average_last=10_000)
    assert nash_conv(BIASED_RPS, None, x_last, x_last) > 0.3
    assert np.allclose(x, [0.25, 0.5, 0.25], atol=0.01) and np.allclose(y, [0.25, 0.5, 0.25], atol=0.01)
    assert nash_conv(BIASED_RPS, None, x, y) < 0.02


def test_replicator_dynamics_on_a_zero_sum_game_from_its_equilibrium_stays_there():
    x, y = replicator_dynamics(RPS, steps=100)
    assert np.allclose(x, 1 / 3) and np.allclose(y, 1 / 3)


def test_projection_onto_the_exploratory_simplex():
    # by hand: floor 0.1 leaves 0.7 to share; (0.8, 0, -0.1) projects to (0.7, 0, 0), + floor: (0.8, 0.1, 0.1)
    assert np.allclose(_project(np.array([0.9, 0.1, 0.0]), 0.1), [0.8, 0.1, 0.1])
    p = _project(np.array([0.5, 0.4, 0.3, -0.2]), 0.05)
    assert p.sum() == pytest.approx(1.0) and (p >= 0.05 - 1e-12).all()
    assert np.allclose(_project(np.array([0.2, 0.3, 0.5]), 0.0), [0.2, 0.3, 0.5])
    x, y = projected_replicator_dynamics(BOS_ROW, BOS_COL, gamma=1.0, steps=10)  # all floor: uniform
    assert np.allclose(x, 0.5) and np.allclose(y, 0.5)


def test_meta_game_nash_conv_by_hand():
    # RPS, both play rock: each could switch to paper for +1 -> NashConv 2
    assert nash_conv(RPS, None, [1, 0, 0], [1, 0, 0]) == 2.0
    # matching pennies, row heads, column mixes: row cannot gain (0), column gains 1 by tails
    assert nash_conv(PENNIES, None, [1, 0], [0.5, 0.5]) == 1.0
    assert meta_game_exploitability(PENNIES, None, [1, 0], [0.5, 0.5]) == 0.5
    # general sum: BoS at (row 0, column 1) pays (0, 0); deviations pay 2 (row) and 2 (column)
    assert nash_conv(BOS_ROW, BOS_COL, [1, 0], [0, 1]) == 4.0
    # weights are normalised
    assert nash_conv(RPS, None, [2, 0, 0], [5, 0, 0]) == 2.0


def test_registry_and_bad_input():
    assert set(META_SOLVERS) == {"uniform", "nash", "replicator_dynamics", "projected_replicator_dynamics"}
    with pytest.raises(ValueError, match="unknown meta-solver 'alpharank'"):
        solve("alpharank", RPS)
    with pytest.raises(ValueError, match="shape"):
        zero_sum_nash(RPS, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        uniform([1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        replicator_dynamics([[np.nan]])
    with pytest.raises(ValueError, match="gamma"):
        projected_replicator_dynamics(RPS, gamma=1.5)
    with pytest.raises(ValueError, match="dt"):
        replicator_dynamics(RPS, dt=0.0)
    with pytest.raises(ValueError, match="average_last"):
        replicator_dynamics(RPS, steps=10, average_last=11)
    with pytest.raises(ValueError, match="x0"):
        replicator_dynamics(RPS, x0=[1.0, 0.0])
    with pytest.raises(ValueError, match="y"):
        nash_conv(RPS, None, [1, 0, 0], [0, 0, 0])
