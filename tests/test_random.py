"""The per-instance random streams: SplitMix64 exactly, and independent of the batch."""

from __future__ import annotations

import torch

from incentive.envs.random import InstanceRandom

MASK = (1 << 64) - 1


def reference_splitmix64(state: int, n: int) -> list[int]:
    """Steele et al.'s SplitMix64 `next()` in plain Python integers."""
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def unsigned(t: torch.Tensor) -> list[int]:
    return [v & MASK for v in t.tolist()]


def test_bits_are_splitmix64_from_the_state():
    rng = InstanceRandom(1)
    rng.state = torch.zeros(1, dtype=torch.int64)
    # the published first outputs of SplitMix64 from state 0
    expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert reference_splitmix64(0, 3) == expected
    assert unsigned(rng.bits(3)[0]) == expected
    assert unsigned(rng.bits(2)[0]) == reference_splitmix64(0, 5)[3:]  # the stream advanced by 3


def test_instance_last_is_the_transpose_and_advances_the_same():
    a, b = InstanceRandom(5), InstanceRandom(5)
    a.seed(torch.arange(5) + 11)
    b.seed(torch.arange(5) + 11)
    assert torch.equal(a.bits(4, instance_last=True), b.bits(4).t())
    assert torch.equal(a.state, b.state)


def test_instance_e_draws_what_a_lone_instance_seeded_s_plus_e_draws():
    batch = InstanceRandom(4)
    batch.seed(torch.arange(4) + 100)
    draws = batch.bits(6)
    for e in range(4):
        lone = InstanceRandom(1)
        lone.seed(torch.tensor([100 + e]))
        assert torch.equal(lone.bits(6)[0], draws[e])


def test_uniform_and_integers_ranges():
    rng = InstanceRandom(64)
    rng.seed(torch.arange(64))
    u = rng.uniform(50)
    assert u.dtype == torch.float32 and (u >= 0).all() and (u < 1).all()
    assert torch.equal(u * 2**24, (u * 2**24).floor())  # multiples of 2 ** -24
    k = rng.integers(torch.arange(1, 65), 20)
    assert (k >= 0).all() and (k < torch.arange(1, 65)[:, None]).all()
    assert rng.integers(3, 1000).unique().tolist() == [0, 1, 2]


def test_streams_draw_and_advance_only_the_chosen_streams():
    """Only the chosen streams draw and move; each draws what it would alone."""
    rng = InstanceRandom(3)
    rng.seed(torch.arange(3) + 7)
    lone = [InstanceRandom(1) for _ in range(3)]
    for e, one in enumerate(lone):
        one.seed(torch.tensor([7 + e]))
    start = rng.state.clone()
    first = rng.bits(4, streams=torch.tensor([2, 0]))
    assert first.shape == (2, 4)
    assert torch.equal(first[0], lone[2].bits(4)[0]) and torch.equal(first[1], lone[0].bits(4)[0])
    assert rng.state[1] == start[1]
    assert torch.equal(rng.bits(3), torch.cat([one.bits(3) for one in lone]))
    assert torch.equal(rng.state, torch.cat([one.state for one in lone]))
    k = rng.integers(torch.tensor([[5, 2]]), 2, streams=torch.tensor([1]))
    assert k.shape == (1, 2) and 0 <= k[0, 0] < 5 and 0 <= k[0, 1] < 2
    assert rng.state[0] == lone[0].state[0] and rng.state[1] != lone[1].state[0]
