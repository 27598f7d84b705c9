"""PotentialShaping: F = gamma Phi(s') - Phi(s), Phi = 0 at episode end; optimal policies unchanged."""

from types import SimpleNamespace

import pytest
import torch
from plugin_checks import close
from pydantic import ValidationError
from shaping_potentials import CHAIN_PHI

from incentive import PluginError
from incentive.plugins.potential_shaping import PotentialShaping
from incentive.recipe import load_recipe
from incentive.runner import start_run


def run_with(num_envs=1, agents=2, learner_gamma=0.9):
    return SimpleNamespace(
        agents=[f"agent_{i}" for i in range(agents)],
        num_envs=num_envs,
        recipe=SimpleNamespace(learner=SimpleNamespace(gamma=learner_gamma)),
    )


def make(potential="shaping_potentials:first_feature", run=None, **params):
    plugin = PotentialShaping(PotentialShaping.Params(potential=potential, **params))
    plugin.incentive_setup(run or run_with())
    return plugin


def obs(*rows):
    """Two agents whose observation's first feature (their potential) is given: rows [[phi_0, phi_1], ...]."""
    x = torch.tensor(rows, dtype=torch.float32)
    return {"agent_0": torch.stack([x[:, 0], torch.ones(len(rows))], 1), "agent_1": x[:, 1:2]}


def shaped(plugin, s, s_next, done, reward=None):
    done = torch.tensor(done)
    reward = torch.zeros(len(done), 2) if reward is None else reward
    step = SimpleNamespace(
        obs=s,
        next_obs=s_next,
        done=done,
        terminated=done,
        truncated=torch.zeros_like(done),
        final_obs=None,
        reward=reward,
    )
    out = plugin.incentive_shape_reward(step)
    assert set(out) == {"potential"}
    return out["potential"]


def test_two_step_episode_by_hand():
    # gamma = 0.9 (the learner's); Phi(s0) = [1, 2], Phi(s1) = [3, -1]; the episode ends after s1.
    plugin = make()
    # step 0: s0 -> s1: F = 0.9 * [3, -1] - [1, 2] = [2.7 - 1, -0.9 - 2] = [1.7, -2.9]
    f0 = shaped(plugin, obs([1.0, 2.0]), obs([3.0, -1.0]), [False])
    close(f0, [[1.7, -2.9]])
    # step 1: s1 -> end: Phi(end) = 0, F = -[3, -1] = [-3, 1]. next_obs is already the next
    # episode's first observation (Phi = [10, 10]) and must not enter F
    f1 = shaped(plugin, obs([3.0, -1.0]), obs([10.0, 10.0]), [True])
    close(f1, [[-3.0, 1.0]])
    # the discounted sum telescopes to -Phi(s0): [1.7 - 0.9*3, -2.9 + 0.9*1] = [-1, -2]
    close(f0 + 0.9 * f1, [[-1.0, -2.0]])


def test_batch_resets_only_where_done():
    # instance 0 ends its episode, instance 1 goes on
    # Phi(s) = [[3, -1], [3, -1]], Phi(s') = [[10, 10], [2, 4]]
    # instance 0: F = -[3, -1] = [-3, 1]; instance 1: F = 0.9 * [2, 4] - [3, -1] = [-1.2, 4.6]
    plugin = make(run=run_with(num_envs=2))
    f = shaped(plugin, obs([3.0, -1.0], [3.0, -1.0]), obs([10.0, 10.0], [2.0, 4.0]), [True, False])
    close(f, [[-3.0, 1.0], [-1.2, 4.6]])


def test_gamma_defaults_to_the_learners():
    # learner gamma 0.5: F = 0.5 * [4, 4] - [1, 1] = [1, 1]
    plugin = make(run=run_with(learner_gamma=0.5))
    assert plugin.gamma == 0.5
    close(shaped(plugin, obs([1.0, 1.0]), obs([4.0, 4.0]), [False]), [[1.0, 1.0]])


def test_a_different_gamma_is_used_with_a_warning():
    with pytest.warns(UserWarning, match="differs from the learner's gamma 0.9"):
        plugin = make(gamma=1.0)
    # F = 1.0 * [4, 4] - [1, 1] = [3, 3]
    close(shaped(plugin, obs([1.0, 1.0]), obs([4.0, 4.0]), [False]), [[3.0, 3.0]])


def test_stateless_nothing_to_checkpoint():
    assert not hasattr(PotentialShaping, "incentive_state_dict")


# --- policy invariance on a small chain MDP -------------------------------------------

# States 0..3 and a terminal state 4; three actions, deterministic:
#   left (0):  s -> max(s - 1, 0), reward 0, except +1 for "left" in state 0 (stays at 0)
#   right (1): s -> s + 1, reward -1, except +10 for reaching 4 (3 -> 4, the episode ends)
#   quit (2):  s -> 4, reward 2 (the episode ends)
# With gamma = 0.9, by hand (V(0) = 1 / (1 - 0.9) = 10 by looping left in 0):
#   Q(3) = [0.9 V(2), 10, 2], Q(2) = [0.9 V(1), -1 + 0.9 V(3), 2], Q(1) = [0.9 V(0), -1 + 0.9 V(2), 2]
#   V(3) = 10, V(0) = 10 -> Q(1) = [9, -1 + 0.9 V(2), 2]; V(1) = 9 -> Q(2) = [8.1, 8, 2], V(2) = 8.1
#   Q(1) = [9, 6.29, 2], Q(0) = [10, -1 + 0.9 * 9 = 7.1, 2], Q(3) = [7.29, 10, 2]
# optimal actions: left, left, left, right (state 2 by a margin of only 0.1).

GAMMA = 0.9
STATES, TERMINAL, ACTIONS = 4, 4, 3
NEXT = torch.tensor([[0, 1, 4], [0, 2, 4], [1, 3, 4], [2, 4, 4]])
REWARD = torch.tensor(
    [[1.0, -1.0, 2.0], [0.0, -1.0, 2.0], [0.0, -1.0, 2.0], [0.0, 10.0, 2.0]], dtype=torch.float64
)
Q_BY_HAND = torch.tensor(
    [[10.0, 7.1, 2.0], [9.0, 6.29, 2.0], [8.1, 8.0, 2.0], [7.29, 10.0, 2.0]], dtype=torch.float64
)


def chain_shaping() -> torch.Tensor:
    """F(s, a) [4, 3] from the plugin, every (s, a) as one instance of a one-agent batch."""
    plugin = make("shaping_potentials:chain_potential", run=run_with(num_envs=STATES * ACTIONS, agents=1))
    one_hot = torch.eye(TERMINAL + 1)
    s = torch.arange(STATES).repeat_interleave(ACTIONS)
    s_next = NEXT.flatten()
    done = s_next == TERMINAL
    # as in the loop, where the episode ends next_obs is the next episode's first state (0)
    shown = torch.where(done, torch.zeros_like(s_next), s_next)
    step = SimpleNamespace(
        obs={"agent_0": one_hot[s]},
        next_obs={"agent_0": one_hot[shown]},
        done=done,
        terminated=done,
        truncated=torch.zeros_like(done),
        final_obs=None,
        reward=torch.zeros(STATES * ACTIONS, 1, dtype=torch.float64),
    )
    return plugin.incentive_shape_reward(step)["potential"].reshape(STATES, ACTIONS)


def q_values(reward: torch.Tensor) -> torch.Tensor:
    """Value iteration to convergence on the chain MDP with the given rewards [4, 3]."""
    q = torch.zeros(STATES, ACTIONS, dtype=torch.float64)
    for _ in range(400):  # 0.9 ** 400 ~ 5e-19
        v = torch.cat([q.max(1).values, torch.zeros(1, dtype=torch.float64)])  # V(terminal) = 0
        q = reward + GAMMA * v[NEXT]
    return q


def test_value_iteration_matches_the_hand_computed_q():
    torch.testing.assert_close(q_values(REWARD), Q_BY_HAND)


def test_shaping_leaves_the_optimal_policy_unchanged():
    f = chain_shaping()
    # spot checks by hand, Phi = [3, -7, 11, 0.5, -2]: F(0, left) = 0.9 * 3 - 3 = -0.3;
    # F(1, right) = 0.9 * 11 + 7 = 16.9; F(3, right) = 0 - 0.5 (episode ends, Phi(terminal) unused)
    torch.testing.assert_close(f[0, 0], torch.tensor(-0.3, dtype=torch.float64))
    torch.testing.assert_close(f[1, 1], torch.tensor(16.9, dtype=torch.float64))
    torch.testing.assert_close(f[3, 1], torch.tensor(-0.5, dtype=torch.float64))
    # the shaping is not trivial: the myopic best action changes in state 1 (quit -> right)
    assert REWARD.argmax(1)[1] == 2 and (REWARD + f).argmax(1)[1] == 1
    q = q_values(REWARD)
    q_shaped = q_values(REWARD + f)
    # Ng et al.: Q'(s, a) = Q(s, a) - Phi(s), hence the same argmax in every state
    torch.testing.assert_close(q_shaped, q - CHAIN_PHI[:STATES, None].double())
    assert torch.equal(q_shaped.argmax(1), q.argmax(1))
    assert q.argmax(1).tolist() == [0, 0, 0, 1]


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_xyz:phi", "ModuleNotFoundError"),
        ("shaping_potentials:no_such_function", "AttributeError"),
        ("shaping_potentials:NOT_A_FUNCTION", "not a function"),
    ],
)
def test_setup_names_the_potential_that_does_not_import(path, message):
    with pytest.raises(ValueError, match=f"potential: .*{message}"):
        make(path)


def test_wrong_shape_is_an_error_naming_the_potential():
    plugin = make("shaping_potentials:wrong_shape")
    with pytest.raises(
        ValueError, match=r"potential: shaping_potentials:wrong_shape must return .*\(1, 2\).*\(1,\)"
    ):
        shaped(plugin, obs([1.0, 2.0]), obs([1.0, 2.0]), [False])


@pytest.mark.parametrize("path", ["first_feature", "a:b:c", "mod:", ":func", "mod func"])
def test_params_reject_a_malformed_import_path(path):
    with pytest.raises(ValidationError, match="module:function"):
        PotentialShaping.Params(potential=path)


def test_params_need_a_potential_and_reject_unknown_keys():
    with pytest.raises(ValidationError, match="potential"):
        PotentialShaping.Params()
    with pytest.raises(ValidationError, match="phi"):
        PotentialShaping.Params(potential="shaping_potentials:first_feature", phi=1.0)
    with pytest.raises(ValidationError, match="gamma"):
        PotentialShaping.Params(potential="shaping_potentials:first_feature", gamma=1.5)


def test_a_run_with_a_missing_potential_fails_naming_plugin_and_param(write_recipe):
    path = write_recipe(
        incentives=[{"plugin": "potential_shaping", "params": {"potential": "nowhere_xyz:phi"}}]
    )
    with pytest.raises(
        PluginError, match=r"potential_shaping.*incentive_setup.*potential: cannot import 'nowhere_xyz:phi'"
    ):
        start_run(load_recipe(path), run_id="bad")


def test_truncated_episode_uses_the_final_observation():
    """Truncation: F = gamma * Phi(final obs) - Phi(s); termination: F = -Phi(s)."""
    plugin = make(run=run_with(num_envs=2, learner_gamma=0.5))
    step = SimpleNamespace(
        obs=obs([1.0, 1.0], [2.0, 2.0]),
        next_obs=obs([9.0, 9.0], [9.0, 9.0]),
        final_obs=obs([4.0, 4.0], [6.0, 6.0]),
        reward=torch.zeros(2, 2),
        done=torch.tensor([True, True]),
        terminated=torch.tensor([False, True]),
        truncated=torch.tensor([True, False]),
    )
    out = plugin.incentive_shape_reward(step)["potential"]
    # env 0 truncated: 0.5 * Phi(4) - Phi(1); env 1 terminated: -Phi(2)
    assert torch.allclose(out[0], torch.full((2,), 0.5 * 4.0 - 1.0))
    assert torch.allclose(out[1], torch.full((2,), -2.0))
