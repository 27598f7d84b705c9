"""Kuhn poker: rules on hand-made deals, observations, masks, metrics, batching.

Cards: 0 = J, 1 = Q, 2 = K. Actions: 0 = pass, 1 = bet.
"""

import pytest
import torch
from poker_helpers import play, set_deal

from incentive.envs import load_env_class
from incentive.envs.kuhn_poker import KuhnPoker

J, Q, K = 0, 1, 2
PASS, BET = 0, 1


def make(num_envs=1):
    return KuhnPoker(num_envs=num_envs, params=KuhnPoker.Params())


def test_registered_and_spaces():
    assert load_env_class("kuhn_poker") is KuhnPoker
    env = make()
    assert env.possible_agents == ["player_0", "player_1"]
    assert env.observation_spaces["player_0"].shape == (11,)
    assert env.action_spaces["player_1"].n == 2
    assert env.game.num_info_states == 12


@pytest.mark.parametrize(
    ("cards", "actions", "reward_0"),
    [
        ((K, J), [PASS, PASS], 1.0),  # check-check: showdown for the antes
        ((Q, K), [PASS, PASS], -1.0),
        ((K, Q), [BET, BET], 2.0),  # bet-call: showdown for 2
        ((J, Q), [BET, BET], -2.0),
        ((J, K), [BET, PASS], 1.0),  # player_1 folds to a bet: player_0 takes the ante
        ((K, J), [PASS, BET, PASS], -1.0),  # player_0 folds after pass-bet
        ((Q, J), [PASS, BET, BET], 2.0),  # pass-bet-call: showdown for 2
        ((J, Q), [PASS, BET, BET], -2.0),
    ],
)
def test_hands(cards, actions, reward_0):
    env = make()
    set_deal(env, *cards)
    steps = play(env, actions)
    for ts in steps[:-1]:
        assert not ts.done.any() and torch.equal(ts.reward, torch.zeros(1, 2))
    assert steps[-1].terminated.all()
    assert steps[-1].reward.tolist() == [[reward_0, -reward_0]]


def test_turns_masks_and_observations():
    env = make()
    set_deal(env, Q, K)
    ts = env.step(torch.tensor([[PASS, BET]]))  # player_1's action is ignored: player_0 moves
    assert ts.acting.tolist() == [[False, True]]
    assert all(m.all() for m in ts.action_mask.values())  # both actions always legal in Kuhn
    # seat, own card, history slot 0 = pass
    assert ts.obs["player_0"][0].tolist() == [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0]
    assert ts.obs["player_1"][0].tolist() == [0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    ts = env.step(torch.tensor([[PASS, BET]]))
    assert ts.acting.tolist() == [[True, False]]
    ts = env.step(torch.tensor([[PASS, BET]]))  # player_0 folds
    assert ts.done.all() and ts.reward.tolist() == [[-1.0, 1.0]]
    # the final observation shows the whole history; the next hand starts fresh with player_0 to act
    assert ts.final_obs["player_1"][0].tolist() == [0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert ts.acting.tolist() == [[True, False]]
    assert ts.obs["player_0"][0, 5:].sum() == 0


def test_bad_actions_are_refused():
    env = make(2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="0..1"):
        env.step(torch.tensor([[0, 2], [0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(2, 3, dtype=torch.long))


def test_instances_play_different_hands_in_one_batch():
    env = make(3)
    set_deal(env, K, J)
    env.deal[1] = env.game.deal_index(J, K)
    first = env.step(torch.tensor([[BET, 0], [BET, 0], [PASS, 0]]))
    assert first.acting[:, 1].all()
    second = env.step(torch.tensor([[0, BET], [0, BET], [0, PASS]]))
    assert second.done.tolist() == [True, True, True]
    assert second.reward[:, 0].tolist() == [2.0, -2.0, 1.0]
    assert second.info["showdowns"].tolist() == [1.0, 1.0, 1.0]
    assert second.info["pot"].tolist() == [4.0, 4.0, 2.0]


def test_metrics_from_hand_totals():
    env = make(2)
    set_deal(env, K, J)
    totals = {key: torch.zeros(0) for key in env.info_keys}
    for actions in ([BET, PASS], [PASS, BET, BET]):  # a fold (+1), then a called bet (+2)
        steps = play(env, actions)
        for key in env.info_keys:
            episode = sum(ts.info[key] for ts in steps)
            totals[key] = torch.cat([totals[key], episode[:1]])
        env.deal[:] = env.game.deal_index(K, J)
    metrics = env.episode_metrics(totals)
    assert metrics == {
        "player_0_chips": 1.5,
        "showdown_rate": 0.5,
        "fold_rate": 0.5,
        "raises_per_hand": 1.0,
        "mean_pot": (3 + 4) / 2,
    }


def test_deals_are_uniform_and_distinct():
    env = make(6000)
    env.reset(seed=3)
    cards = env.game.deals[env.deal]
    assert (cards[:, 0] != cards[:, 1]).all() and (cards[:, 2] == -1).all()
    counts = torch.bincount(cards[:, 0] * 3 + cards[:, 1], minlength=9).float()
    seen = counts[counts > 0]
    assert len(seen) == 6 and (seen - 1000).abs().max() < 120  # 6 deals of 1000 expected each


def test_every_observed_state_is_an_enumerated_information_state():
    env = make(64)
    ts = env.reset(seed=1)
    rows = {tuple(o.tolist()): m.tolist() for o, m in zip(env.game.info_obs, env.game.info_mask, strict=True)}
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        for seat, agent in enumerate(env.possible_agents):
            acting = ts.acting[:, seat]
            for obs, mask in zip(ts.obs[agent][acting], ts.action_mask[agent][acting], strict=True):
                assert rows[tuple(obs.tolist())] == mask.tolist()
        ts = env.step(torch.randint(0, 2, (64, 2), generator=generator))
