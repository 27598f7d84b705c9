"""SocialValueOrientation: the angle penalty -w |theta_target - theta(R)|, by hand."""

import math

import pytest
import torch
from plugin_checks import close, set_up, shape_reward
from pydantic import ValidationError

from incentive.plugins.social_value_orientation import SocialValueOrientation, reward_angle

PI = math.pi


def make(num_envs=1, agents=2, **params):
    return set_up(SocialValueOrientation, num_envs, agents, **params)


def svo(plugin, reward, done=None):
    return shape_reward(plugin, reward, done, terms=("svo",))[0]


def test_reward_angle_two_agents():
    # e = [1, 1]: both atan2(1, 1) = pi/4; e = [1, 0]: atan2(0, 1) = 0 and atan2(1, 0) = pi/2
    # e = [-1, 0]: atan2(0, -1) = pi and atan2(-1, 0) = -pi/2
    close(
        reward_angle(torch.tensor([[1.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])),
        [[PI / 4] * 2, [0, PI / 2], [PI, -PI / 2]],
    )


def test_prosocial_two_agents():
    # w = 1, target 45 degrees = pi/4
    # equal rewards [1, 1]: theta = pi/4 for both -> 0
    # [1, 0]: theta = [0, pi/2] -> -|pi/4 - 0| = -pi/4 and -|pi/4 - pi/2| = -pi/4
    # [-1, 0]: theta = [pi, -pi/2] -> -(pi - pi/4) = -3pi/4 and -(pi/4 + pi/2) = -3pi/4
    out = svo(make(num_envs=3, w=1.0), [[1.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    close(out, [[0.0, 0.0], [-PI / 4, -PI / 4], [-3 * PI / 4, -3 * PI / 4]])


def test_individualistic_and_weight():
    # target 0, w = 0.5: [1, 1] -> -0.5 * pi/4 each; [1, 0] -> agent 0: 0, agent 1: -0.5 * pi/2
    out = svo(make(num_envs=2, w=0.5, angle_degrees=0.0), [[1.0, 1.0], [1.0, 0.0]])
    close(out, [[-PI / 8, -PI / 8], [0.0, -PI / 4]])


def test_three_agents():
    # r = [2, 1, 3], w = 1, target pi/4 = 0.7853982
    # agent 0: others' mean (1+3)/2 = 2, own 2 -> atan2(2, 2) = pi/4 -> 0
    # agent 1: others' mean (2+3)/2 = 2.5, own 1 -> atan(2.5) = 1.1902899
    #          -> -(1.1902899 - 0.7853982) = -0.4048917
    # agent 2: others' mean (2+1)/2 = 1.5, own 3 -> atan(0.5) = 0.4636476
    #          -> -(0.7853982 - 0.4636476) = -0.3217506
    out = svo(make(agents=3, w=1.0), [[2.0, 1.0, 3.0]])
    close(out, [[0.0, -0.4048917, -0.3217506]])


def test_per_agent_angles():
    # targets [0, 90] degrees, r = [1, 0]: theta = [0, pi/2] matches both targets -> no penalty
    # r = [1, 1]: theta = pi/4: both are pi/4 away -> -pi/4 each
    out = svo(make(num_envs=2, w=1.0, angle_degrees=[0.0, 90.0]), [[1.0, 0.0], [1.0, 1.0]])
    close(out, [[0.0, 0.0], [-PI / 4, -PI / 4]])
    # three agents with targets [0, 45, 90], r = [2, 1, 3] (angles from test_three_agents):
    # agent 0: -|0 - pi/4| = -0.7853982; agent 1: -|pi/4 - 1.1902899| = -0.4048917;
    # agent 2: -|pi/2 - 0.4636476| = -(1.5707963 - 0.4636476) = -1.1071487
    out = svo(make(agents=3, w=1.0, angle_degrees=[0.0, 45.0, 90.0]), [[2.0, 1.0, 3.0]])
    close(out, [[-0.7853982, -0.4048917, -1.1071487]])


def test_zero_rewards_count_as_individualistic():
    # R = (0, 0): theta = atan2(0, 0) = 0, also for signed zeros (IEEE atan2(0, -0) would be pi)
    # prosocial agents pay w * pi/4 there, individualistic ones nothing
    close(svo(make(w=1.0), [[0.0, 0.0]]), [[-PI / 4, -PI / 4]])
    close(svo(make(w=1.0, angle_degrees=0.0), [[0.0, 0.0]]), [[0.0, 0.0]])
    assert torch.atan2(torch.tensor(0.0), torch.tensor(-0.0)) == PI  # what the plugin guards against
    assert torch.equal(reward_angle(torch.tensor([[-0.0, 0.0], [-0.0, -0.0]])), torch.zeros(2, 2))


def test_smoothing_and_reset_at_done():
    # gamma * lam = 0.5, w = 1, target pi/4; two instances, the second ends its episode at step 2
    plugin = make(num_envs=2, w=1.0, gamma=1.0, lam=0.5)
    # step 1: e = [2, 0] -> theta = [0, pi/2] -> [-pi/4, -pi/4]
    close(svo(plugin, [[2.0, 0.0], [2.0, 0.0]]), [[-PI / 4, -PI / 4]] * 2)
    # step 2: r = [0, 1], e = 0.5 * [2, 0] + [0, 1] = [1, 1] -> theta = pi/4 -> 0
    # (on the instantaneous reward [0, 1] agent 0 would see atan2(1, 0) = pi/2)
    close(svo(plugin, [[0.0, 1.0], [0.0, 1.0]], done=[False, True]), [[0.0, 0.0]] * 2)
    # step 3: r = [0, 0]; instance 0: e = [0.5, 0.5] -> 0; instance 1 was reset: e = [0, 0] -> -pi/4
    close(svo(plugin, [[0.0, 0.0], [0.0, 0.0]]), [[0.0, 0.0], [-PI / 4, -PI / 4]])


def test_state_dict_round_trip():
    first = make(num_envs=2, gamma=1.0, lam=0.5)
    svo(first, [[2.0, 0.0], [1.0, 3.0]])
    state = first.incentive_state_dict()
    second = make(num_envs=2, gamma=1.0, lam=0.5)
    second.incentive_load_state_dict(state)
    assert torch.equal(svo(first, [[0.0, 1.0], [0.0, 0.0]]), svo(second, [[0.0, 1.0], [0.0, 0.0]]))
    close(state["smoothed"], [[2.0, 0.0], [1.0, 3.0]])  # a copy, untouched by later steps


def test_setup_checks_the_number_of_angles():
    with pytest.raises(ValueError, match="2 angles but the env has 3 agents"):
        make(agents=3, angle_degrees=[0.0, 45.0])
    make(agents=3, angle_degrees=[0.0, 45.0, 90.0])


def test_setup_needs_two_agents():
    with pytest.raises(ValueError, match="at least two agents"):
        make(agents=1)


@pytest.mark.parametrize("params", [{"angle_degrees": 200.0}, {"angle_degrees": [0.0, -181.0]}, {"w": -1.0}])
def test_params_reject_out_of_range(params):
    with pytest.raises(ValidationError, match=next(iter(params))):
        SocialValueOrientation.Params(**params)


def test_params_reject_unknown_key():
    with pytest.raises(ValidationError, match="angle"):
        SocialValueOrientation.Params(angle=45.0)
