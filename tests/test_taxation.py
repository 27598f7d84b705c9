"""Taxation: a marginal tax schedule, equal redistribution (zero-sum), and the welfare metric."""

from types import SimpleNamespace

import pytest
import torch
from plugin_checks import close, set_up, shape_reward
from pydantic import ValidationError

from incentive.plugins.taxation import Taxation, marginal_tax


def make(num_envs=1, agents=2, **params):
    return set_up(Taxation, num_envs, agents, **params)


def taxed(plugin, reward, done=None):
    return shape_reward(plugin, reward, done, terms=("tax", "redistribution"))


def test_flat_tax_two_agents():
    # bracket 1, rate 0.5, r = [4, 2]: tax = 0.5 * [3, 1] = [1.5, 0.5], pool 2, each gets 1
    # u = r - tax + 1 = [3.5, 2.5]
    tax, back = taxed(make(brackets=[1.0], rates=[0.5]), [[4.0, 2.0]])
    close(tax, [[-1.5, -0.5]])
    close(back, [[1.0, 1.0]])


def test_flat_tax_three_agents_below_the_bracket_is_untaxed():
    # bracket 0, rate 0.5, r = [4, 0, -2]: tax = [2, 0, 0], pool 2, each gets 2/3
    tax, back = taxed(make(agents=3, brackets=[0.0], rates=[0.5]), [[4.0, 0.0, -2.0]])
    close(tax, [[-2.0, 0.0, 0.0]])
    close(back, [[2 / 3, 2 / 3, 2 / 3]])


def test_default_schedule():
    # 10% above 0: r = [3, 1] -> tax [0.3, 0.1], pool 0.4, each 0.2
    tax, back = taxed(make(), [[3.0, 1.0]])
    close(tax, [[-0.3, -0.1]])
    close(back, [[0.2, 0.2]])


def test_brackets_four_agents():
    # brackets [0, 10], rates [0.25, 0.5]; r = [5, 10, 14, -1]
    # 5  -> 0.25 * 5 = 1.25
    # 10 -> 0.25 * 10 = 2.5
    # 14 -> 0.25 * 10 + 0.5 * 4 = 4.5
    # -1 -> 0
    # pool 8.25, each gets 8.25 / 4 = 2.0625 (all exact in binary floating point)
    tax, back = taxed(make(agents=4, brackets=[0.0, 10.0], rates=[0.25, 0.5]), [[5.0, 10.0, 14.0, -1.0]])
    assert torch.equal(tax, torch.tensor([[-1.25, -2.5, -4.5, -0.0]]))
    assert torch.equal(back, torch.full((1, 4), 2.0625))
    assert torch.equal((tax + back).sum(1), torch.zeros(1))  # exactly zero-sum


def test_regressive_schedule_is_allowed():
    # brackets [0, 2], rates [0.5, 0.25]: 6 -> 0.5 * 2 + 0.25 * 4 = 2
    close(
        marginal_tax(torch.tensor([6.0, 1.0]), torch.tensor([0.0, 2.0]), torch.tensor([0.5, 0.25])),
        [2.0, 0.5],
    )


def test_negative_brackets():
    # prisoner's dilemma rewards are -3..0; bracket -2 at rate 0.5: -1 -> 0.5, -3 -> 0, 0 -> 1
    close(
        marginal_tax(torch.tensor([-1.0, -3.0, 0.0]), torch.tensor([-2.0]), torch.tensor([0.5])),
        [0.5, 0.0, 1.0],
    )


def test_zero_sum_on_random_rewards():
    gen = torch.Generator().manual_seed(0)
    reward = torch.randn(64, 5, generator=gen) * 10
    plugin = make(num_envs=64, agents=5, brackets=[-5.0, 0.0, 3.0, 8.0], rates=[0.1, 0.2, 0.4, 0.9])
    tax, back = taxed(plugin, reward.tolist())
    assert bool((tax <= 0).all()) and bool((back >= 0).all())
    torch.testing.assert_close((tax + back).sum(1), torch.zeros(64), atol=1e-5, rtol=0)
    # the agents' total reward is unchanged
    torch.testing.assert_close((reward + tax + back).sum(1), reward.sum(1))


def test_episode_period():
    # rate 0.5 above 0; two instances; terms only on an episode's last step, on the episode's total
    plugin = make(num_envs=2, brackets=[0.0], rates=[0.5], period="episode")
    # step 1: instance 1 ends with total [2, 0]: tax [1, 0], pool 1, each 0.5; instance 0 runs on
    tax, back = taxed(plugin, [[2.0, 0.0], [2.0, 0.0]], done=[False, True])
    close(tax, [[0.0, 0.0], [-1.0, 0.0]])
    close(back, [[0.0, 0.0], [0.5, 0.5]])
    # step 2: instance 0 ends with total [2+2, 0] = [4, 0]: tax [2, 0], each 1; instance 1 runs on
    tax, back = taxed(plugin, [[2.0, 0.0], [0.0, 4.0]], done=[True, False])
    close(tax, [[-2.0, 0.0], [0.0, 0.0]])
    close(back, [[1.0, 1.0], [0.0, 0.0]])
    # step 3: both end; instance 0's new episode totals [1, 1] -> tax [0.5, 0.5], each 0.5;
    # instance 1's episode totals [0, 4] -> tax [0, 2], each 1
    tax, back = taxed(plugin, [[1.0, 1.0], [0.0, 0.0]], done=[True, True])
    close(tax, [[-0.5, -0.5], [0.0, -2.0]])
    close(back, [[0.5, 0.5], [1.0, 1.0]])


def test_episode_period_state_dict_round_trip():
    first = make(num_envs=1, brackets=[0.0], rates=[0.5], period="episode")
    taxed(first, [[3.0, 1.0]])
    state = first.incentive_state_dict()
    second = make(num_envs=1, brackets=[0.0], rates=[0.5], period="episode")
    second.incentive_load_state_dict(state)
    # totals [3+1, 1+1] = [4, 2]: tax [2, 1], pool 3, each 1.5
    for plugin in (first, second):
        tax, back = taxed(plugin, [[1.0, 1.0]], done=[True])
        close(tax, [[-2.0, -1.0]])
        close(back, [[1.5, 1.5]])
    close(state["earned"], [[3.0, 1.0]])  # a copy, untouched by later steps


def test_welfare_metric():
    # rollout rewards [T=2, E=2, A=2]:
    #   t0: e0 [1, 3], e1 [0, 0];  t1: e0 [1, 1], e1 [2, 2]
    # totals: e0 [2, 4], e1 [2, 2]; productivity = mean(6, 4) = 5
    # Gini e0 = |2-4| * 2 / (2 * 2 * 6) * 2/1 = 4/24 * 2 = 1/3 -> equality 2/3; e1 equal -> 1
    # equality = mean(2/3, 1) = 5/6; welfare = 5/6 * 5 = 25/6
    reward = torch.tensor([[[1.0, 3.0], [0.0, 0.0]], [[1.0, 1.0], [2.0, 2.0]]])
    incentive = reward + 100.0  # shaped rewards are ignored
    metrics = make().incentive_collect_metrics(SimpleNamespace(reward=reward, incentive=incentive))
    assert set(metrics) == {"designer/welfare"}
    assert metrics["designer/welfare"] == pytest.approx(25 / 6)
    assert Taxation.designer_metrics == ("welfare",)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"brackets": [0.0, 0.0], "rates": [0.1, 0.2]}, "strictly increasing"),
        ({"brackets": [5.0, 1.0], "rates": [0.1, 0.2]}, "strictly increasing"),
        ({"brackets": [0.0], "rates": [1.5]}, r"rates must lie in \[0, 1\]"),
        ({"brackets": [0.0], "rates": [-0.1]}, r"rates must lie in \[0, 1\]"),
        ({"brackets": [0.0, 1.0], "rates": [0.1]}, "same length"),
        ({"brackets": [], "rates": []}, "at least 1 item"),
        ({"period": "year"}, "period"),
        ({"bracket": 0.0}, "bracket"),
    ],
)
def test_params_reject(params, message):
    with pytest.raises(ValidationError, match=message):
        Taxation.Params(**params)
