"""ppo_loss, masked_mean, sample_actions and the PPO learner, against hand-computed numbers."""

import math

import pytest
import torch

from incentive.ppo import PPO, Batch, masked_mean, ppo_loss, sample_actions
from incentive.recipe import LearnerSpec

CLIP = 0.2


def loss_of(
    *,
    ratio,
    adv,
    new_value=None,
    old_value=None,
    returns=None,
    entropy=None,
    policy_mask=None,
    value_mask=None,
    clip_vloss=True,
    vf_coef=0.0,
    ent_coef=0.0,
    new_logprob=None,
):
    """ppo_loss with old_logprob = 0 and new_logprob = log(ratio), so exp(new - old) = ratio."""
    ratio = torch.tensor(ratio, dtype=torch.float64)
    n = ratio.shape
    zeros = torch.zeros(n, dtype=torch.float64)

    def t(x):
        return zeros.clone() if x is None else torch.tensor(x, dtype=torch.float64)

    def m(x):
        return None if x is None else torch.tensor(x)

    return ppo_loss(
        new_logprob=ratio.log() if new_logprob is None else new_logprob,
        old_logprob=zeros,
        advantages=t(adv),
        new_value=t(new_value),
        old_value=t(old_value),
        returns=t(returns),
        entropy=t(entropy),
        policy_mask=m(policy_mask),
        value_mask=m(value_mask),
        clip_coef=CLIP,
        clip_vloss=clip_vloss,
        vf_coef=vf_coef,
        ent_coef=ent_coef,
    )


def approx(x):
    return pytest.approx(x, abs=1e-9)


# --- masked_mean ---------------------------------------------------------------


def test_masked_mean():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert masked_mean(x, None).item() == approx(2.5)  # (1+2+3+4)/4
    assert masked_mean(x, torch.tensor([True, False, True, False])).item() == approx(2.0)  # (1+3)/2
    assert masked_mean(x, torch.tensor([False, False, False, True])).item() == approx(4.0)
    # an empty mask gives 0, not nan
    assert masked_mean(x, torch.zeros(4, dtype=torch.bool)).item() == 0.0


# --- policy term ----------------------------------------------------------------

# (ratio, advantage, max(-A r, -A clip(r, 0.8, 1.2)))
POLICY_CASES = [
    (1.1, 1.0, -1.1),  # inside the range: -1.1 both ways
    (1.5, 1.0, -1.2),  # A > 0, r > 1.2: max(-1.5, -1.2) = -1.2 (clipped, no incentive to go further)
    (0.5, 1.0, -0.5),  # A > 0, r < 0.8: max(-0.5, -0.8) = -0.5 (unclipped, pessimistic)
    (0.5, -1.0, 0.8),  # A < 0, r < 0.8: max(0.5, 0.8) = 0.8 (clipped)
    (1.5, -1.0, 1.5),  # A < 0, r > 1.2: max(1.5, 1.2) = 1.5 (unclipped, pessimistic)
    (0.9, -2.0, 1.8),  # inside the range: 2 * 0.9 = 1.8
]


@pytest.mark.parametrize(("ratio", "adv", "expected"), POLICY_CASES)
def test_policy_term_single_entry(ratio, adv, expected):
    loss, stats = loss_of(ratio=[ratio], adv=[adv])
    assert stats["policy"].item() == approx(expected)
    assert loss.item() == approx(expected)  # vf_coef = ent_coef = 0


def test_policy_term_mean_and_gradient():
    ratios = [c[0] for c in POLICY_CASES]
    advs = [c[1] for c in POLICY_CASES]
    # mean of (-1.1, -1.2, -0.5, 0.8, 1.5, 1.8) = 1.3 / 6
    new_logprob = torch.tensor(ratios, dtype=torch.float64).log().requires_grad_(True)
    loss, stats = loss_of(ratio=ratios, adv=advs, new_logprob=new_logprob)
    assert stats["policy"].item() == approx(1.3 / 6)
    loss.backward()
    # d/d(new_logprob) of -A r is -A r (r = exp(new - old)); clipped entries have zero gradient.
    # entries: -1.1/6, 0 (clipped), -0.5/6, 0 (clipped), 1.5/6, 1.8/6
    expected = torch.tensor([-1.1, 0.0, -0.5, 0.0, 1.5, 1.8], dtype=torch.float64) / 6
    torch.testing.assert_close(new_logprob.grad, expected)


def test_approx_kl_and_clipfrac():
    ratios = [c[0] for c in POLICY_CASES]
    advs = [c[1] for c in POLICY_CASES]
    _, stats = loss_of(ratio=ratios, adv=advs)
    # clipped when |r - 1| > 0.2: 1.5, 0.5, 0.5, 1.5 -> 4 of 6
    assert stats["clipfrac"].item() == pytest.approx(4 / 6, abs=1e-7)  # clipfrac is float32
    # approx_kl = mean((r - 1) - log r)
    kl = [
        0.1 - math.log(1.1),  # 0.0046898
        0.5 - math.log(1.5),  # 0.0945349
        -0.5 - math.log(0.5),  # 0.1931472
        -0.5 - math.log(0.5),
        0.5 - math.log(1.5),
        -0.1 - math.log(0.9),  # 0.0053605
    ]
    assert stats["approx_kl"].item() == approx(sum(kl) / 6)
    assert stats["approx_kl"].item() == pytest.approx(0.0975691, abs=1e-6)


def test_no_change_gives_zero_kl_and_clipfrac():
    _, stats = loss_of(ratio=[1.0, 1.0], adv=[1.0, -3.0])
    assert stats["approx_kl"].item() == 0.0
    assert stats["clipfrac"].item() == 0.0
    assert stats["policy"].item() == approx((-1.0 + 3.0) / 2)


# --- value term -----------------------------------------------------------------

# (new V, old V, return)
VALUE_CASES = [
    (1.0, 0.5, 1.2),  # unclipped (1.0-1.2)^2 = 0.04; clipped V = 0.5+0.2 = 0.7, (0.7-1.2)^2 = 0.25
    (0.6, 0.5, 0.0),  # within the clip: both (0.6)^2 = 0.36
    (0.0, 1.0, 0.0),  # unclipped 0; clipped V = 1.0-0.2 = 0.8, 0.8^2 = 0.64
    (2.0, 1.0, 0.0),  # unclipped 4.0; clipped V = 1.2, 1.44
]


def value_args():
    new, old, ret = zip(*VALUE_CASES, strict=True)
    return {"new_value": list(new), "old_value": list(old), "returns": list(ret)}


def test_clipped_value_loss():
    # 0.5 * mean(max) = 0.5 * mean(0.25, 0.36, 0.64, 4.0) = 0.5 * 5.25 / 4 = 0.65625
    loss, stats = loss_of(ratio=[1.0] * 4, adv=[0.0] * 4, **value_args(), clip_vloss=True, vf_coef=0.5)
    assert stats["value"].item() == approx(0.65625)
    assert loss.item() == approx(0.5 * 0.65625)


def test_unclipped_value_loss():
    # 0.5 * mean(0.04, 0.36, 0.0, 4.0) = 0.5 * 4.4 / 4 = 0.55
    loss, stats = loss_of(ratio=[1.0] * 4, adv=[0.0] * 4, **value_args(), clip_vloss=False, vf_coef=2.0)
    assert stats["value"].item() == approx(0.55)
    assert loss.item() == approx(2.0 * 0.55)


# --- entropy and the total ------------------------------------------------------


def test_entropy_weight():
    # policy = mean(-1 * 1, 1 * 1) = 0 (ratio 1, advantages +1, -1); value = 0 (V = R)
    # mean entropy = (0.5 + 1.5) / 2 = 1.0; loss = 0 - 0.1 * 1.0 = -0.1
    loss, stats = loss_of(ratio=[1.0, 1.0], adv=[1.0, -1.0], entropy=[0.5, 1.5], ent_coef=0.1)
    assert stats["entropy"].item() == approx(1.0)
    assert loss.item() == approx(-0.1)
    loss3, _ = loss_of(ratio=[1.0, 1.0], adv=[1.0, -1.0], entropy=[0.5, 1.5], ent_coef=0.3)
    assert loss3.item() == approx(-0.3)


def test_masks_select_entries():
    # policy entries (first four POLICY_CASES): -1.1, -1.2, -0.5, 0.8; policy_mask drops entry 2
    #   policy = (-1.1 - 1.2 + 0.8) / 3 = -0.5
    # value entries (clipped): 0.25, 0.36, 0.64, 4.0; value_mask drops entry 1
    #   value = 0.5 * (0.25 + 0.64 + 4.0) / 3 = 0.5 * 4.89 / 3 = 0.815
    # entropy [1, 2, 4, 3] over the policy mask: (1 + 2 + 3) / 3 = 2.0
    # loss = -0.5 - 0.1 * 2.0 + 0.5 * 0.815 = -0.5 - 0.2 + 0.4075 = -0.2925
    # clipfrac over the policy mask: 1.1 no, 1.5 yes, 0.5 yes -> 2/3
    # approx_kl over the policy mask: mean of the entries for 1.1, 1.5, 0.5
    loss, stats = loss_of(
        ratio=[1.1, 1.5, 0.5, 0.5],
        adv=[1.0, 1.0, 1.0, -1.0],
        **value_args(),
        entropy=[1.0, 2.0, 4.0, 3.0],
        policy_mask=[True, True, False, True],
        value_mask=[True, False, True, True],
        vf_coef=0.5,
        ent_coef=0.1,
    )
    assert stats["policy"].item() == approx(-0.5)
    assert stats["value"].item() == approx(0.815)
    assert stats["entropy"].item() == approx(2.0)
    assert loss.item() == approx(-0.2925)
    assert stats["clipfrac"].item() == pytest.approx(2 / 3, abs=1e-7)
    kl = (0.1 - math.log(1.1)) + (0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))
    assert stats["approx_kl"].item() == approx(kl / 3)


def test_stats_are_detached():
    new_logprob = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    loss, stats = loss_of(ratio=[1.0, 1.0], adv=[1.0, 2.0], new_logprob=new_logprob)
    assert loss.requires_grad
    assert set(stats) == {"policy", "value", "entropy", "approx_kl", "clipfrac"}
    assert not any(v.requires_grad for v in stats.values())


# --- sample_actions -------------------------------------------------------------


def test_sample_actions_never_picks_masked_logit():
    # logits [0, -1e9, log 3]: probabilities [1/4, 0, 3/4]
    logits = torch.tensor([0.0, -1e9, math.log(3.0)]).expand(20000, 3)
    actions, logprob = sample_actions(logits, torch.Generator().manual_seed(0))
    assert actions.shape == (20000,) and logprob.shape == (20000,)
    assert not (actions == 1).any()
    assert (actions == 2).float().mean().item() == pytest.approx(0.75, abs=0.015)
    # log-probabilities of the chosen action: log(1/4) for 0, log(3/4) for 2
    expected = torch.where(actions == 0, math.log(0.25), math.log(0.75))
    torch.testing.assert_close(logprob, expected)


def test_sample_actions_masked_everywhere_but_one():
    logits = torch.full((500, 4), -1e9)
    logits[:, 2] = 0.0
    actions, logprob = sample_actions(logits, torch.Generator().manual_seed(1))
    assert (actions == 2).all()
    assert torch.equal(logprob, torch.zeros(500))


def test_sample_actions_deterministic_per_seed():
    logits = torch.zeros(64, 3, 5)
    a1, l1 = sample_actions(logits, torch.Generator().manual_seed(7))
    a2, l2 = sample_actions(logits, torch.Generator().manual_seed(7))
    a3, _ = sample_actions(logits, torch.Generator().manual_seed(8))
    assert torch.equal(a1, a2) and torch.equal(l1, l2)
    assert not torch.equal(a1, a3)
    # uniform logits: every log-probability is log(1/5)
    torch.testing.assert_close(l1, torch.full((64, 3), math.log(0.2)))


# --- the PPO learner ------------------------------------------------------------

OBS_DIMS = [5, 3]
ACTION_DIMS = [2, 4]
AGENTS = ["a", "b"]


def make_ppo(seed=0, **changes):
    spec = LearnerSpec(**{"hidden_sizes": [16], **changes})
    return PPO(
        config=spec, obs_dims=OBS_DIMS, action_dims=ACTION_DIMS, generator=torch.Generator().manual_seed(seed)
    )


def obs2():
    # E = 2 instances; agent b's observation is [E, 3] given as [E, 1, 3] (flattened by features)
    return {
        "a": torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]]),
        "b": torch.tensor([[[-1.0, -2.0, -3.0]], [[-4.0, -5.0, -6.0]]]),
    }


def test_default_spec_builds_heterogeneous_learner():
    learner = PPO(
        config=LearnerSpec(),
        obs_dims=OBS_DIMS,
        action_dims=ACTION_DIMS,
        generator=torch.Generator().manual_seed(0),
    )
    # shared: max(5, 3) + 2 agent ids = 7 inputs, max(2, 4) = 4 actions
    assert learner.feature_dim == 7 and learner.num_actions == 4
    feats = learner.features(obs2(), AGENTS)
    logits = learner.net.logits(feats)
    assert logits.shape == (2, 2, 4)
    assert learner.net.value(feats).shape == (2, 2)


def test_features_pad_and_append_agent_id_when_shared():
    learner = make_ppo(share_parameters=True)
    feats = learner.features(obs2(), AGENTS)
    expected = torch.tensor(
        [
            [[1, 2, 3, 4, 5, 1, 0], [-1, -2, -3, 0, 0, 0, 1]],
            [[6, 7, 8, 9, 10, 1, 0], [-4, -5, -6, 0, 0, 0, 1]],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(feats, expected)


def test_features_pad_without_agent_id_when_not_shared():
    learner = make_ppo(share_parameters=False)
    assert learner.feature_dim == 5
    feats = learner.features(obs2(), AGENTS)
    expected = torch.tensor(
        [[[1, 2, 3, 4, 5], [-1, -2, -3, 0, 0]], [[6, 7, 8, 9, 10], [-4, -5, -6, 0, 0]]],
        dtype=torch.float32,
    )
    assert torch.equal(feats, expected)


def test_action_mask_pads_small_action_space():
    learner = make_ppo()
    padding = torch.tensor([[True, True, False, False], [True, True, True, True]])
    assert torch.equal(learner.action_mask(None, AGENTS), padding)
    # env masks combine with the padding: agent b's action 1 illegal, agent a's action 0 illegal
    env_masks = {
        "a": torch.tensor([[False, True], [True, True]]),
        "b": torch.tensor([[True, False, True, True], [True, True, True, False]]),
    }
    expected = torch.tensor(
        [
            [[False, True, False, False], [True, False, True, True]],
            [[True, True, False, False], [True, True, True, False]],
        ]
    )
    assert torch.equal(learner.action_mask(env_masks, AGENTS), expected)


def test_act_respects_padding():
    learner = make_ppo()
    feats = learner.features({"a": torch.zeros(500, 5), "b": torch.zeros(500, 3)}, AGENTS)
    actions, logprob, values, entropy = learner.act(feats, learner.action_mask(None, AGENTS))
    assert actions.shape == (500, 2) and logprob.shape == (500, 2) and values.shape == (500, 2)
    assert (actions[:, 0] < 2).all()
    assert (actions[:, 1] >= 2).any()  # agent b does use its extra actions
    assert torch.isfinite(logprob).all()
    # the entropy of the masked policy: agent a has 2 legal actions, b all 4 (near-uniform at init)
    assert (entropy[:, 0] <= math.log(2) + 1e-6).all() and (entropy[:, 0] > 0.99 * math.log(2)).all()
    assert (entropy[:, 1] > math.log(2) + 0.5).all() and (entropy[:, 1] <= math.log(4) + 1e-6).all()


def _perturb_group(learner, group):
    with torch.no_grad():
        for module in [*learner.net.actor, *learner.net.critic]:
            if hasattr(module, "weight"):
                module.weight[group] += 0.5
                module.bias[group] += 0.5


def test_separate_weights_per_agent():
    learner = make_ppo(share_parameters=False)
    assert learner.net.actor[0].weight.shape == (2, 16, 5)  # two groups
    feats = learner.features(obs2(), AGENTS)
    before = learner.net.logits(feats).detach().clone()
    values_before = learner.net.value(feats).detach().clone()
    _perturb_group(learner, 1)
    after = learner.net.logits(feats).detach()
    values_after = learner.net.value(feats).detach()
    assert torch.equal(after[:, 0], before[:, 0])  # agent 0 untouched
    assert not torch.allclose(after[:, 1], before[:, 1])  # agent 1 changed
    assert torch.equal(values_after[:, 0], values_before[:, 0])
    assert not torch.allclose(values_after[:, 1], values_before[:, 1])


def test_shared_weights_serve_both_agents():
    learner = make_ppo(share_parameters=True)
    assert learner.net.actor[0].weight.shape == (1, 16, 7)  # one group
    feats = learner.features(obs2(), AGENTS)
    before = learner.net.logits(feats).detach().clone()
    _perturb_group(learner, 0)
    after = learner.net.logits(feats).detach()
    assert not torch.allclose(after[:, 0], before[:, 0])
    assert not torch.allclose(after[:, 1], before[:, 1])


def make_batch(learner, n=16, seed=3, expand_mask=True):
    """A rollout of n samples acted by the learner itself, advantages alternating +1 / -1."""
    g = torch.Generator().manual_seed(seed)
    obs = {"a": torch.randn(n, 5, generator=g), "b": torch.randn(n, 3, generator=g)}
    feats = learner.features(obs, AGENTS)
    mask = learner.action_mask(None, AGENTS)  # [A, n]: padding only
    actions, logprobs, values, _ = learner.act(feats, mask)
    if expand_mask:
        mask = mask.expand(n, -1, -1)  # [N, A, n], as the loop stores it
    advantages = torch.tensor([1.0, -1.0]).repeat(n)[: n * 2].reshape(n, 2)
    return Batch(
        features=feats,
        action_mask=mask,
        actions=actions,
        logprobs=logprobs,
        values=values,
        advantages=advantages,
        returns=values + advantages,
        policy_mask=torch.ones(n, 2, dtype=torch.bool),
        value_mask=torch.ones(n, 2, dtype=torch.bool),
    )


def params_of(learner):
    return [p.detach().clone() for p in learner.net.parameters()]


def test_first_update_stats_by_hand():
    # One epoch, one minibatch: the stats are those of the loss before the step, on the data the
    # learner just produced. ratio = 1 everywhere, so:
    #   approx_kl = 0, clipfrac = 0
    #   policy = mean(-A_norm) = 0 (normalised advantages have mean 0)
    #   value = 0.5 * mean((V - (V + A))^2) = 0.5 * mean(A^2) = 0.5 (A = +-1; V = V_old so no clipping)
    # The policy head starts near 0 (gain 0.01), so the policy is nearly uniform over legal actions:
    #   entropy ~ mean(ln 2 (agent a, 2 actions), ln 4 (agent b, 4 actions)) = 1.5 ln 2 = 1.0397
    learner = make_ppo(epochs=1, minibatches=1)
    stats = learner.update(make_batch(learner))
    assert set(stats) == {"policy", "value", "entropy", "approx_kl", "clipfrac", "grad_norm"}
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert stats["clipfrac"] == 0.0
    assert stats["policy"] == pytest.approx(0.0, abs=1e-6)
    assert stats["value"] == pytest.approx(0.5, abs=1e-6)
    assert stats["entropy"] == pytest.approx(1.5 * math.log(2), abs=1e-3)
    assert stats["grad_norm"] > 0


def test_update_changes_parameters_and_returns_finite_stats():
    learner = make_ppo(epochs=2, minibatches=2)
    batch = make_batch(learner)
    before = params_of(learner)
    stats = learner.update(batch)
    assert all(math.isfinite(v) for v in stats.values())
    after = params_of(learner)
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


def test_padded_inputs_of_unshared_network_never_change():
    # Agent b has 3 observation entries padded to 5: columns 3, 4 of its first-layer weights see
    # only zeros, get zero gradient, and Adam leaves them exactly as initialised.
    learner = make_ppo(share_parameters=False, epochs=2, minibatches=2)
    first_actor = learner.net.actor[0].weight
    first_critic = learner.net.critic[0].weight
    padded_before = (first_actor[1, :, 3:].detach().clone(), first_critic[1, :, 3:].detach().clone())
    used_before = first_actor[1, :, :3].detach().clone()
    learner.update(make_batch(learner))
    assert torch.equal(first_actor[1, :, 3:], padded_before[0])
    assert torch.equal(first_critic[1, :, 3:], padded_before[1])
    assert not torch.equal(first_actor[1, :, :3], used_before)


def test_update_is_deterministic_for_a_seed():
    runs = []
    for _ in range(2):
        learner = make_ppo(seed=11, epochs=2, minibatches=2)
        stats = learner.update(make_batch(learner))
        runs.append((params_of(learner), stats))
    (p1, s1), (p2, s2) = runs
    assert s1 == s2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
    other = make_ppo(seed=12, epochs=2, minibatches=2)
    other.update(make_batch(other))
    assert not torch.equal(params_of(other)[0], p1[0])


def test_update_accepts_unexpanded_padding_mask():
    # _minibatch_step has a branch for a 2-D [A, n] mask (what `action_mask(None, ...)` returns):
    # it must act as that mask broadcast to every sample, i.e. exactly like the expanded [N, A, n].
    expanded = make_ppo(seed=5, epochs=1, minibatches=2)
    stats_expanded = expanded.update(make_batch(expanded))
    flat = make_ppo(seed=5, epochs=1, minibatches=2)
    stats_flat = flat.update(make_batch(flat, expand_mask=False))
    assert stats_flat == stats_expanded
    assert all(torch.equal(a, b) for a, b in zip(params_of(flat), params_of(expanded), strict=True))


# --- exact deduplication of observations in the update -----------------------------------------


def test_unique_rows_is_exact_and_verified(monkeypatch):
    from incentive import ppo

    rows = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    distinct, inverse = ppo.unique_rows(rows)
    assert distinct.shape == (3, 2)
    assert torch.equal(distinct[inverse], rows)
    # a hash that collides on everything: the verification refuses to merge different rows
    monkeypatch.setitem(ppo._HASH_WEIGHTS, 2, torch.zeros(2, dtype=torch.int64))
    assert ppo.unique_rows(rows) is None


def _synthetic_batch(n=64, a=2, d=3, actions=3):
    from incentive.ppo import Batch

    g = torch.Generator().manual_seed(5)
    features = torch.randint(0, 2, (n, a, d), generator=g).float()  # at most 8 distinct rows per seat
    features = torch.cat([features, torch.eye(a).expand(n, a, a)], -1)
    return Batch(
        features=features,
        action_mask=None,
        actions=torch.randint(0, actions, (n, a), generator=g),
        logprobs=torch.full((n, a), -1.1),
        values=torch.randn(n, a, generator=g),
        advantages=torch.randn(n, a, generator=g),
        returns=torch.randn(n, a, generator=g),
        policy_mask=torch.ones(n, a, dtype=torch.bool),
        value_mask=torch.ones(n, a, dtype=torch.bool),
    )


def test_dedup_update_matches_the_plain_update():
    from incentive.ppo import PPO
    from incentive.recipe import LearnerSpec

    def trained(dedup: bool):
        config = LearnerSpec(hidden_sizes=[8], dedup_observations=dedup, minibatches=2, epochs=2)
        learner = PPO(
            config=config, obs_dims=[3, 3], action_dims=[3, 3], generator=torch.Generator().manual_seed(0)
        )
        stats = learner.update(_synthetic_batch())
        return learner, stats

    plain, plain_stats = trained(False)
    dedup, dedup_stats = trained(True)
    distinct = dedup._distinct_features(_synthetic_batch().features.unsqueeze(0))  # per trial (K = 1)
    assert distinct[0][0].shape[0] <= 16  # the dedup path ran
    for p, q in zip(plain.net.parameters(), dedup.net.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    for key in plain_stats:
        assert abs(plain_stats[key] - dedup_stats[key]) < 1e-5, key
