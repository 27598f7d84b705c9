"""LearnedIncentives: gifts, terms and resets by hand; checkpoints; a run; learning in a bandit."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from plugin_checks import close
from pydantic import ValidationError

from incentive import PluginError, hookimpl
from incentive.plugins.learned_incentives import LearnedIncentives
from incentive.recipe import load_recipe
from incentive.runner import resume_run, start_run

LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4


def agents(n):
    return [f"agent_{i}" for i in range(n)]


def make_run(n, *, obs_dim, num_actions, num_envs, seed=0):
    env = SimpleNamespace(
        observation_spaces={a: SimpleNamespace(shape=(obs_dim,)) for a in agents(n)},
        action_spaces={a: SimpleNamespace(n=num_actions) for a in agents(n)},
        info_keys=(),
    )
    return SimpleNamespace(
        agents=agents(n), env=env, num_envs=num_envs, generator=torch.Generator().manual_seed(seed)
    )


def make_plugin(n, *, obs_dim=2, num_actions=3, num_envs=2, seed=0, **params):
    plugin = LearnedIncentives(LearnedIncentives.Params(**params))
    plugin.incentive_setup(
        make_run(n, obs_dim=obs_dim, num_actions=num_actions, num_envs=num_envs, seed=seed)
    )
    return plugin


def make_step(actions, *, obs=None, reward=None, done=None, obs_dim=2):
    actions = torch.tensor(actions)
    e, n = actions.shape
    obs = {a: torch.zeros(e, obs_dim) for a in agents(n)} if obs is None else obs
    return SimpleNamespace(
        obs=obs,
        next_obs=obs,
        actions=actions,
        reward=torch.zeros(e, n) if reward is None else torch.tensor(reward, dtype=torch.float32),
        done=torch.zeros(e, dtype=torch.bool) if done is None else torch.tensor(done),
    )


def set_linear(plugin, i, *, bias, weight=None):
    """Give eta_i (a single linear layer: hidden_sizes=[]) hand-set parameters."""
    layer = plugin.eta[i][0]
    with torch.no_grad():
        layer.weight.zero_()
        if weight is not None:
            for (row, col), value in weight.items():
                layer.weight[row, col] = value
        layer.bias.copy_(torch.tensor(bias))


def random_step(g, n, *, num_envs, obs_dim, num_actions, p_done=0.3):
    obs = {a: torch.randn(num_envs, obs_dim, generator=g) for a in agents(n)}
    return SimpleNamespace(
        obs=obs,
        next_obs={a: torch.randn(num_envs, obs_dim, generator=g) for a in agents(n)},
        actions=torch.randint(0, num_actions, (num_envs, n), generator=g),
        reward=torch.randn(num_envs, n, generator=g),
        done=torch.rand(num_envs, generator=g) < p_done,
    )


# --- gifts and terms ----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 1000.0, -1000.0])
def test_gifts_stay_in_bounds(scale):
    plugin = make_plugin(3, num_envs=64, max_reward=1.5, hidden_sizes=[8])
    with torch.no_grad():
        for param in plugin.eta.parameters():
            param.mul_(scale)
    step = random_step(torch.Generator().manual_seed(1), 3, num_envs=64, obs_dim=2, num_actions=3)
    step.obs = {a: 100 * o for a, o in step.obs.items()}
    gifts = plugin.gifts(step.obs, step.actions)
    assert gifts.shape == (64, 3, 3)
    assert bool((gifts >= 0).all()) and bool((gifts <= 1.5).all())
    assert bool((gifts.diagonal(dim1=1, dim2=2) == 0).all())  # nobody gives to itself
    terms = plugin.incentive_shape_reward(step)
    assert set(terms) == {"received", "given"}
    assert terms["received"].shape == terms["given"].shape == (64, 3)


@pytest.mark.parametrize(("giver_pays_gift", "charge"), [(False, 0.2), (True, 1.2)])
def test_terms_for_hand_set_nets(giver_pays_gift, charge):
    # N = 3, R_max = 2, c = 0.2. Every eta_i is linear with zero weights and biases [0, ln 3]:
    # i gives its first other 2 * sigmoid(0) = 1 and its second other 2 * sigmoid(ln 3) = 1.5.
    # eta_0 also reads agent_1's one-hot: x_0 = [o_0 (2), onehot(a_1) (3), onehot(a_2) (3)], a_1 = 2 is
    # column 2 + 2 = 4; weight ln 3 on output 0 makes g_01 = 1.5 when a_1 = 2 (else 1).
    # e0, actions [0, 2, 1]: g01 = 1.5, g02 = 1.5 | g10 = 1, g12 = 1.5 | g20 = 1, g21 = 1.5
    #     received = [g10 + g20, g01 + g21, g02 + g12] = [2, 3, 3]; given totals [3, 2.5, 2.5]
    # e1, actions [0, 0, 1]: g01 = 1: received [2, 2.5, 3]; given totals [2.5, 2.5, 2.5]
    # given = -charge * totals, charge = c (0.2) or 1 + c (1.2) when the giver pays the gift.
    plugin = make_plugin(
        3, max_reward=2.0, cost=0.2, giver_pays_gift=giver_pays_gift, hidden_sizes=[], observe_given=False
    )
    for i in range(3):
        set_linear(plugin, i, bias=[0.0, LN3], weight={(0, 4): LN3} if i == 0 else None)
    step = make_step([[0, 2, 1], [0, 0, 1]])
    close(plugin.gifts(step.obs, step.actions)[0], [[0, 1.5, 1.5], [1, 0, 1.5], [1, 1.5, 0]])
    terms = plugin.incentive_shape_reward(step)
    close(terms["received"], [[2, 3, 3], [2, 2.5, 3]])
    totals = torch.tensor([[3, 2.5, 2.5], [2.5, 2.5, 2.5]])
    close(terms["given"], (-charge * totals).tolist())


@pytest.mark.parametrize("giver_pays_gift", [False, True])
def test_zero_sum_except_the_cost(giver_pays_gift):
    # S = sum of all gifts of an instance, c = 0.3. Every gift is received by someone: sum received = S.
    # The giver is charged c per unit (sum given = -0.3 S), or 1 + c with giver_pays_gift (-1.3 S), so
    # sum of received + given = 0.7 S, or -0.3 S: zero-sum except for the cost.
    plugin = make_plugin(3, num_envs=16, cost=0.3, giver_pays_gift=giver_pays_gift)
    step = random_step(torch.Generator().manual_seed(2), 3, num_envs=16, obs_dim=2, num_actions=3)
    terms = plugin.incentive_shape_reward(step)
    gifts = terms["received"].sum(1)  # every gift is received by someone
    expected = -0.3 * gifts if giver_pays_gift else 0.7 * gifts
    torch.testing.assert_close((terms["received"] + terms["given"]).sum(1), expected)
    torch.testing.assert_close(terms["given"].sum(1), -(1.3 if giver_pays_gift else 0.3) * gifts)
    assert bool((terms["received"] >= 0).all()) and bool((terms["given"] <= 0).all())


def test_what_was_given_resets_at_done():
    # N = 2, R_max = 2, eta_i linear on x_i = [o_i (1), G_i / 2 (1), onehot(a_j) (2)] with weight
    # 2 ln 3 on G_i / 2 and no bias: a gift is 2 * sigmoid(ln 3 * G_i), 1 when G_i = 0, 1.5 when G_i = 1.
    # e0 ends its episode on step 1, e1 on step 2:
    # step 1: G = 0 everywhere -> gifts 1, 1; G after: e0 0 (done), e1 1
    # step 2: e0 1, e1 1.5;  G after: e0 1, e1 0 (done)
    # step 3: e0 1.5, e1 1;  G after: e0 2.5, e1 1
    plugin = make_plugin(2, obs_dim=1, num_actions=2, max_reward=2.0, hidden_sizes=[])
    for i in range(2):
        set_linear(plugin, i, bias=[0.0], weight={(0, 1): 2 * LN3})
    expected = [[1.0, 1.0], [1.0, 1.5], [1.5, 1.0]]
    dones = [[True, False], [False, True], [False, False]]
    for gifts, done in zip(expected, dones, strict=True):
        terms = plugin.incentive_shape_reward(make_step([[0, 1], [1, 0]], done=done, obs_dim=1))
        close(terms["received"], [[gifts[0]] * 2, [gifts[1]] * 2])
    close(plugin.given, [[[2.5], [2.5]], [[1.0], [1.0]]])


# --- state -------------------------------------------------------------------------------------------


def test_state_dict_round_trip_continues_identically():
    g = torch.Generator().manual_seed(3)
    steps = [random_step(g, 2, num_envs=4, obs_dim=6, num_actions=3) for _ in range(15)]
    kwargs = {"obs_dim": 6, "num_actions": 3, "num_envs": 4, "hidden_sizes": [8]}
    first = make_plugin(2, seed=0, **kwargs)
    for step in steps[:5]:
        first.incentive_shape_reward(step)
    first.incentive_iteration_end()
    for step in steps[5:8]:  # mid-iteration: buffers and G are part of the state
        first.incentive_shape_reward(step)
    state = first.incentive_state_dict()

    second = make_plugin(2, seed=99, **kwargs)  # other initial weights, overwritten by the state
    second.incentive_load_state_dict(state)
    for plugin in (first, second):  # `first` goes on from where its state was taken
        outs = [plugin.incentive_shape_reward(step) for step in steps[8:12]]
        plugin.incentive_iteration_end()
        outs += [plugin.incentive_shape_reward(step) for step in steps[12:]]
        plugin.outs = outs
    for a, b in zip(first.outs, second.outs, strict=True):
        assert torch.equal(a["received"], b["received"]) and torch.equal(a["given"], b["given"])
    assert first.incentive_collect_metrics() == second.incentive_collect_metrics()
    after = first.incentive_state_dict(), second.incentive_state_dict()
    for key in ("eta", "value"):
        assert all(torch.equal(after[0][key][name], after[1][key][name]) for name in after[0][key])


# --- params and set-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"max_reward": 0}, "max_reward"),
        ({"cost": -1}, "cost"),
        ({"epochs": 0}, "epochs"),
        ({"hidden_sizes": [0]}, "hidden_sizes"),
        ({"eta": 1}, "eta"),
    ],
)
def test_params_reject_bad_values(params, fragment):
    with pytest.raises(ValidationError, match=fragment):
        LearnedIncentives.Params(**params)


def test_needs_two_agents():
    with pytest.raises(ValueError, match="at least two agents"):
        make_plugin(1)


# --- end to end: Escape Room through the runner, and resume -------------------------------------------


class StopAt:
    """Fails the run at the end of one iteration (after checkpoints of the earlier ones)."""

    def __init__(self, iteration):
        self.iteration = iteration

    @hookimpl
    def incentive_iteration_end(self, iteration):
        if iteration == self.iteration:
            raise RuntimeError("stopped by the test")


def test_escape_room_run_and_resume(write_recipe, tmp_path):
    path = write_recipe(
        env={"id": "escape_room", "num_envs": 8, "params": {"num_agents": 2, "min_at_lever": 1}},
        incentives=[{"plugin": "learned_incentives", "params": {"cost": 0.25, "hidden_sizes": [8]}}],
    )
    recipe = load_recipe(path)
    whole, _ = start_run(recipe, run_id="whole")
    lines = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for metrics in lines:
        prefix = "incentive/learned_incentives"
        assert 0 < metrics[f"{prefix}/mean_gift"] <= metrics[f"{prefix}/max_gift"] <= 2.0
        # per agent, per episode: given = -c * received on average (every gift is someone's receipt)
        assert metrics[f"{prefix}/given"] == pytest.approx(-0.25 * metrics[f"{prefix}/received"], rel=1e-5)
    assert "incentive/learned_incentives/baseline_loss" in lines[-1]

    with pytest.raises(PluginError, match="stopped by the test"):
        start_run(recipe, run_id="stopped", extra_plugins=[("stop", StopAt(2))])
    stopped = whole.parent / "stopped"
    resume_run(stopped)  # from the checkpoint of iteration 1
    assert (stopped / "metrics.jsonl").read_bytes() == (whole / "metrics.jsonl").read_bytes()


# --- behaviour: a two-agent bandit ---------------------------------------------------------------------


def test_learns_to_pay_for_the_action_that_helps_the_giver():
    # One-step episodes, 32 instances, constant observations. agent_1 picks 0 or 1 at random (a fixed
    # policy: only the incentive learns). agent_0 earns 1 when agent_1 picks 1, else 0; agent_1 earns 0.
    # For agent_0 the advantage of agent_1's action 1 is +0.5 and of action 0 is -0.5, both beyond the
    # cost 0.1, so g_01 should rise to R_max for action 1 and fall to 0 for action 0. agent_0's actions
    # never matter to agent_1 (advantage 0 < cost), so g_10 should fall to 0.
    # 60 iterations x 4 epochs = 240 Adam updates.
    e, names = 32, agents(2)
    plugin = make_plugin(2, obs_dim=1, num_actions=2, num_envs=e, max_reward=2.0, cost=0.1, epochs=4)
    obs = {a: torch.ones(e, 1) for a in names}
    g = torch.Generator().manual_seed(0)

    def gift(giver, other_action):
        actions = torch.full((1, 2), other_action)
        return float(
            plugin.gifts({a: torch.ones(1, 1) for a in names}, actions, torch.zeros(1, 2, 1))[
                0, giver, 1 - giver
            ]
        )

    assert 0.5 < gift(0, 1) < 1.5 and 0.5 < gift(0, 0) < 1.5  # about R_max / 2 at the start
    for _ in range(60):
        for _ in range(4):
            actions = torch.randint(0, 2, (e, 2), generator=g)
            reward = torch.stack([(actions[:, 1] == 1).float(), torch.zeros(e)], 1)
            step = SimpleNamespace(
                obs=obs, next_obs=obs, actions=actions, reward=reward, done=torch.ones(e, dtype=torch.bool)
            )
            plugin.incentive_shape_reward(step)
        plugin.incentive_iteration_end()
    assert gift(0, 1) > 1.8  # > 0.9 R_max for the helpful action
    assert gift(0, 0) < 0.2  # < 0.1 R_max for the other one
    assert gift(1, 0) < 0.2 and gift(1, 1) < 0.2  # agent_1 gains nothing from agent_0: gives nothing
