"""RewardSharing: the `shared` term u - r, by hand."""

from types import SimpleNamespace

import pytest
import torch
from plugin_checks import close
from pydantic import ValidationError

from incentive.plugins.reward_sharing import RewardSharing


def shared(reward, **params):
    plugin = RewardSharing(RewardSharing.Params(**params))
    out = plugin.incentive_shape_reward(SimpleNamespace(reward=torch.tensor(reward)))
    assert set(out) == {"shared"}
    return out["shared"]


def test_default_is_selfish():
    # s = 0: nothing shared
    close(shared([[1.0, 2.0, 3.0]]), [[0.0, 0.0, 0.0]])


def test_prosocial_mean_three_agents():
    # r = [1, 2, 3]; others' sums [2+3, 1+3, 1+2] = [5, 4, 3]; means over 2 others [2.5, 2.0, 1.5]
    # shared = 0.5 * means = [1.25, 1.0, 0.75]
    # second instance r = [0, -4, 2]: others' sums [-2, 2, -4], means [-1, 1, -2], shared [-0.5, 0.5, -1]
    close(shared([[1.0, 2.0, 3.0], [0.0, -4.0, 2.0]], s=0.5), [[1.25, 1.0, 0.75], [-0.5, 0.5, -1.0]])


def test_prosocial_sum():
    # r = [1, 2, 3]; s = 1, sum: shared = others' sums [5, 4, 3]
    close(shared([[1.0, 2.0, 3.0]], s=1.0, aggregate="sum"), [[5.0, 4.0, 3.0]])
    # s = 0.5, sum: [2.5, 2.0, 1.5]
    close(shared([[1.0, 2.0, 3.0]], s=0.5, aggregate="sum"), [[2.5, 2.0, 1.5]])


def test_two_agents_s_one_mean_maximises_the_sum():
    # u_i = r_i + r_j: r = [3, -1] -> u = [2, 2], shared = u - r = [-1, 3]
    close(shared([[3.0, -1.0]], s=1.0), [[-1.0, 3.0]])


def test_team_spirit():
    # tau = 0.25; r = [1, 2, 3], mean 2: u = 0.75 r + 0.25 * 2 = [1.25, 2.0, 2.75]
    # shared = u - r = [0.25, 0.0, -0.25]
    close(shared([[1.0, 2.0, 3.0]], team_spirit=0.25), [[0.25, 0.0, -0.25]])
    # tau = 1: everyone gets the mean, shared = mean - r = [1, 0, -1]
    close(shared([[1.0, 2.0, 3.0]], team_spirit=1.0), [[1.0, 0.0, -1.0]])


def test_matrix_three_agents():
    # W = [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 1]], r = [1, 2, 3]
    # u = W r = [1, 0.5 + 1, 2 + 3] = [1, 1.5, 5]; shared = u - r = [0, -0.5, 2]
    # second instance r = [2, 0, -2]: u = [2, 1, -2]; shared = [0, 1, 0]
    w = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 1.0]]
    close(shared([[1.0, 2.0, 3.0], [2.0, 0.0, -2.0]], matrix=w), [[0.0, -0.5, 2.0], [0.0, 1.0, 0.0]])


def test_identity_matrix_shares_nothing():
    close(shared([[1.0, 2.0]], matrix=[[1.0, 0.0], [0.0, 1.0]]), [[0.0, 0.0]])


# --- Params -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"s": 0.5, "team_spirit": 0.25},
        {"s": 0.5, "matrix": [[1.0, 0.0], [0.0, 1.0]]},
        {"team_spirit": 0.25, "matrix": [[1.0, 0.0], [0.0, 1.0]]},
    ],
)
def test_params_reject_two_forms(params):
    with pytest.raises(ValidationError, match="only one of"):
        RewardSharing.Params(**params)


def test_params_reject_unknown_key():
    with pytest.raises(ValidationError, match="weight"):
        RewardSharing.Params(weight=0.5)


@pytest.mark.parametrize("matrix", [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0], [0.0]], []])
def test_params_reject_non_square_matrix(matrix):
    with pytest.raises(ValidationError, match="square"):
        RewardSharing.Params(matrix=matrix)


@pytest.mark.parametrize("tau", [-0.1, 1.5])
def test_params_reject_team_spirit_out_of_range(tau):
    with pytest.raises(ValidationError, match="team_spirit"):
        RewardSharing.Params(team_spirit=tau)


def test_params_reject_unknown_aggregate():
    with pytest.raises(ValidationError, match="aggregate"):
        RewardSharing.Params(s=0.5, aggregate="max")


# --- setup ------------------------------------------------------------------------


def run_with(n):
    return SimpleNamespace(agents=[f"agent_{i}" for i in range(n)])


def test_setup_rejects_matrix_of_wrong_size():
    plugin = RewardSharing(RewardSharing.Params(matrix=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="3 x 3.*2 agents"):
        plugin.incentive_setup(run_with(2))
    plugin.incentive_setup(run_with(3))  # fits


def test_setup_needs_two_agents_without_matrix():
    plugin = RewardSharing(RewardSharing.Params(s=0.5))
    with pytest.raises(ValueError, match="at least two agents"):
        plugin.incentive_setup(run_with(1))
    plugin.incentive_setup(run_with(2))
