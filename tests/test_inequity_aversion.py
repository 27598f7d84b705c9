"""InequityAversion: envy and guilt on smoothed rewards, by hand."""

import pytest
import torch
from plugin_checks import close, set_up, shape_reward
from pydantic import ValidationError

from incentive.plugins.inequity_aversion import InequityAversion


def make(num_envs=1, agents=2, **params):
    return set_up(InequityAversion, num_envs, agents, **params)


def shape(plugin, reward, done=None):
    return shape_reward(plugin, reward, done, terms=("envy", "guilt"))


def test_two_agents_behind_pays_alpha_ahead_pays_beta():
    # first step: e = r = [1, 3] (e starts at 0 and includes the current reward)
    # agent 0 is behind by 2: envy = -alpha/(N-1) * 2 = -5 * 2 = -10, guilt 0
    # agent 1 is ahead by 2:  guilt = -beta/(N-1) * 2 = -0.05 * 2 = -0.1, envy 0
    envy, guilt = shape(make(), [[1.0, 3.0]])
    close(envy, [[-10.0, 0.0]])
    close(guilt, [[0.0, -0.1]])


def test_being_ahead_is_a_penalty_not_a_bonus():
    # the sign some public implementations flip: the leader's guilt must be negative
    envy, guilt = shape(make(beta=0.5), [[4.0, 0.0]])
    assert guilt[0, 0] < 0 and envy[0, 0] == 0  # ahead: penalised by beta only
    assert envy[0, 1] < 0 and guilt[0, 1] == 0  # behind: penalised by alpha only
    close(guilt, [[-2.0, 0.0]])  # -0.5 * 4
    close(envy, [[0.0, -20.0]])  # -5 * 4


def test_three_agents():
    # r = e = [1, 2, 4], N - 1 = 2
    # agent 0: behind (2-1) + (4-1) = 4 -> envy -5/2 * 4 = -10;  ahead 0
    # agent 1: behind 4-2 = 2 -> envy -5/2 * 2 = -5;  ahead 2-1 = 1 -> guilt -0.05/2 * 1 = -0.025
    # agent 2: behind 0;  ahead (4-1) + (4-2) = 5 -> guilt -0.05/2 * 5 = -0.125
    # second instance, everyone equal: nothing
    envy, guilt = shape(make(num_envs=2, agents=3), [[1.0, 2.0, 4.0], [2.0, 2.0, 2.0]])
    close(envy, [[-10.0, -5.0, 0.0], [0.0, 0.0, 0.0]])
    close(guilt, [[0.0, -0.025, -0.125], [0.0, 0.0, 0.0]])


def test_smoothing_across_steps_and_reset_at_done():
    # gamma * lam = 1 * 0.5; alpha = beta = 1; two instances, the second ends its episode at step 2
    plugin = make(num_envs=2, alpha=1.0, beta=1.0, gamma=1.0, lam=0.5)
    # step 1: r = [2, 0] in both -> e = [2, 0]: envy [0, -2], guilt [-2, 0]
    envy, guilt = shape(plugin, [[2.0, 0.0], [2.0, 0.0]])
    close(envy, [[0.0, -2.0], [0.0, -2.0]])
    close(guilt, [[-2.0, 0.0], [-2.0, 0.0]])
    # step 2: r = 0 -> e = 0.5 * [2, 0] = [1, 0]: still penalised although this step paid nothing;
    # instance 1 ends here: its terms still use e = [1, 0], then e is reset to 0
    envy, guilt = shape(plugin, [[0.0, 0.0], [0.0, 0.0]], done=[False, True])
    close(envy, [[0.0, -1.0], [0.0, -1.0]])
    close(guilt, [[-1.0, 0.0], [-1.0, 0.0]])
    # step 3: r = [0, 3]
    # instance 0: e = 0.5 * [1, 0] + [0, 3] = [0.5, 3]: agent 0 behind by 2.5
    # instance 1 (new episode): e = [0, 3]: agent 0 behind by 3
    envy, guilt = shape(plugin, [[0.0, 3.0], [0.0, 3.0]])
    close(envy, [[-2.5, 0.0], [-3.0, 0.0]])
    close(guilt, [[0.0, -2.5], [0.0, -3.0]])


def test_default_smoothing_factor():
    # gamma * lam = 0.99 * 0.975 = 0.96525
    plugin = make()
    shape(plugin, [[1.0, 0.0]])
    # e = [0.96525, 0]: envy of agent 1 = -5 * 0.96525 = -4.82625, guilt of agent 0 = -0.05 * 0.96525
    envy, guilt = shape(plugin, [[0.0, 0.0]])
    close(envy, [[0.0, -4.82625]])
    close(guilt, [[-0.0482625, 0.0]])


def test_state_dict_round_trip():
    first = make(num_envs=2, gamma=1.0, lam=0.5)
    shape(first, [[2.0, 0.0], [1.0, 5.0]])
    state = first.incentive_state_dict()
    close(state["smoothed"], [[2.0, 0.0], [1.0, 5.0]])
    second = make(num_envs=2, gamma=1.0, lam=0.5)
    second.incentive_load_state_dict(state)
    a = shape(first, [[0.0, 1.0], [3.0, 0.0]])
    b = shape(second, [[0.0, 1.0], [3.0, 0.0]])
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    # the saved state is a copy: stepping `first` did not change it
    close(state["smoothed"], [[2.0, 0.0], [1.0, 5.0]])


def test_setup_needs_two_agents():
    with pytest.raises(ValueError, match="at least two agents"):
        make(agents=1)


@pytest.mark.parametrize("params", [{"alpha": -1.0}, {"beta": -0.1}, {"lam": 1.5}, {"gamma": -0.5}])
def test_params_reject_out_of_range(params):
    with pytest.raises(ValidationError, match=next(iter(params))):
        InequityAversion.Params(**params)


def test_params_reject_unknown_key():
    with pytest.raises(ValidationError, match="lambda"):
        InequityAversion.Params(**{"lambda": 0.9})
