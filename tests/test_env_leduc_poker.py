"""Leduc poker: rules on hand-made deals (showdowns, folds, raise caps, pairs, split pots), masks, batching.

Cards: rank = card // 2, so 0, 1 = J; 2, 3 = Q; 4, 5 = K. Actions: 0 = fold, 1 = call/check, 2 = raise.
"""

import pytest
import torch
from poker_helpers import play, set_deal

from incentive.envs import load_env_class
from incentive.envs.leduc_poker import LeducPoker

J1, J2, Q1, Q2, K1, K2 = range(6)
F, C, R = 0, 1, 2


def make(num_envs=1):
    return LeducPoker(num_envs=num_envs, params=LeducPoker.Params())


def test_registered_and_spaces():
    assert load_env_class("leduc_poker") is LeducPoker
    env = make()
    assert env.observation_spaces["player_1"].shape == (38,)
    assert env.action_spaces["player_0"].n == 3
    assert env.game.num_info_states == 936


@pytest.mark.parametrize(
    ("cards", "actions", "reward_0"),
    [
        ((J1, K1, J2), [C, C, C, C], 1.0),  # a pair (J with public J) beats the higher card K
        ((K1, J1, J2), [C, C, C, C], -1.0),
        ((K1, Q1, J1), [C, C, C, C], 1.0),  # no pair: the higher card wins
        ((Q1, Q2, K1), [R, C, R, C], 0.0),  # equal ranks split the pot
        ((K1, Q1, J1), [R, C, R, C], 7.0),  # 1 + 2 in round one, + 4 in round two
        ((K1, Q1, J1), [R, R, C, R, R, C], 13.0),  # both rounds capped: 1 + 2 + 2 + 4 + 4
        ((Q1, K1, J1), [C, R, R, C, C, R, R, C], -13.0),
        ((K1, Q1, J1), [R, F], 1.0),  # player_1 folds in round one: loses the ante
        ((K1, Q1, J1), [C, R, F], -1.0),  # player_0 folds to a raise after checking
        ((K1, Q1, J1), [R, R, F], -3.0),  # player_0 folds to a re-raise: loses 1 + 2
        ((Q1, K1, J1), [C, C, C, R, R, F], 5.0),  # player_1 folds in round two after raising 4
        ((Q1, K1, Q2), [R, C, R, R, C], 11.0),  # pair of queens: 1 + 2 + 4 + 4
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


def masks(ts):
    seat = int(ts.acting[0].nonzero()[0, 0])
    return ts.action_mask[f"player_{seat}"][0].tolist(), ts.action_mask[f"player_{1 - seat}"][0].tolist()


def test_action_masks_and_raise_cap():
    env = make()
    set_deal(env, K1, Q1, J1)
    ts = env.step(torch.tensor([[C, C]]))  # check: player_1 faces no raise
    assert ts.acting.tolist() == [[False, True]]
    assert masks(ts) == ([False, True, True], [True, True, True])  # the idle seat's row is all True
    ts = env.step(torch.tensor([[C, R]]))
    assert masks(ts)[0] == [True, True, True]  # facing a raise: fold is legal
    ts = env.step(torch.tensor([[R, C]]))
    assert masks(ts)[0] == [True, True, False]  # two raises this round: no third
    assert ts.acting.tolist() == [[False, True]]
    ts = env.step(torch.tensor([[C, C]]))  # call: round two, player_0 acts first again
    assert ts.acting.tolist() == [[True, False]] and not ts.done.any()
    assert masks(ts)[0] == [False, True, True]  # the raise count starts over


def test_illegal_actions_are_played_as_call():
    env = make()
    set_deal(env, K1, Q1, J1)
    fold_unfaced = play(env, [F])[0]  # folding with nothing to call is a check
    assert not fold_unfaced.done.any() and fold_unfaced.obs["player_1"][0, 14:17].tolist() == [0, 1, 0]
    steps = play(env, [R, R, R])  # the third raise is a call: round two starts
    assert not steps[-1].done.any() and steps[-1].acting.tolist() == [[True, False]]


def test_observation_layout():
    env = make()
    set_deal(env, Q2, K1, J2)
    ts = play(env, [R, C])[-1]  # round one over: the public card shows
    obs = ts.obs["player_0"][0]
    assert obs[:2].tolist() == [1, 0]
    assert obs[2:8].tolist() == [0, 0, 0, 1, 0, 0]  # own card Q2
    assert obs[8:14].tolist() == [0, 1, 0, 0, 0, 0]  # public card J2
    history = obs[14:].reshape(2, 4, 3)
    assert history[0].tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0]]
    assert history[1].sum() == 0
    other = ts.obs["player_1"][0]
    assert other[:8].tolist() == [0, 1, 0, 0, 0, 0, 1, 0] and torch.equal(other[8:], obs[8:])
    first = env.reset(seed=0).obs["player_1"][0]
    assert first[8:14].sum() == 0  # no public card in round one


def test_deals_are_uniform_and_distinct():
    env = make(12000)
    env.reset(seed=7)
    d = env.game.deals[env.deal]
    assert ((d[:, 0] != d[:, 1]) & (d[:, 0] != d[:, 2]) & (d[:, 1] != d[:, 2])).all()
    counts = torch.bincount(d[:, 0] * 36 + d[:, 1] * 6 + d[:, 2], minlength=216).float()
    seen = counts[counts > 0]
    assert len(seen) == 120 and (seen - 100).abs().max() < 45  # 120 deals of 100 expected each


def test_every_observed_state_is_an_enumerated_information_state():
    env = make(128)
    ts = env.reset(seed=2)
    rows = {tuple(o.tolist()): m.tolist() for o, m in zip(env.game.info_obs, env.game.info_mask, strict=True)}
    assert len(rows) == 936  # information-state tensors are all distinct
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        for seat, agent in enumerate(env.possible_agents):
            acting = ts.acting[:, seat]
            for obs, mask in zip(ts.obs[agent][acting], ts.action_mask[agent][acting], strict=True):
                key = tuple(obs.tolist())
                assert rows[key] == mask.tolist()
                seen.add(key)
        weights = (
            ts.action_mask["player_0"].float() * ts.acting[:, :1]
            + ts.action_mask["player_1"].float() * ts.acting[:, 1:]
        )
        action = torch.multinomial(weights, 1, generator=generator)
        ts = env.step(action.expand(-1, 2))
    assert len(seen) > 300
