"""The speed work on batched trials changes no number: each piece against its plain reference."""

from __future__ import annotations

import torch

from incentive.batched import TrialMajorBuffer
from incentive.ppo import GroupedLinear, unique_rows


def test_trial_major_buffer_reads_as_the_transposed_rollout():
    """`buffer[t] = x` for [K*E, ...] steps, read back as [K, T*E, ...]: trial k, sample t*E + e."""
    k, t, e, a, d = 3, 4, 2, 2, 5
    steps = torch.arange(t * k * e * a * d, dtype=torch.float32).view(t, k * e, a, d)
    buffer = TrialMajorBuffer(torch.empty(k, t, e, a, d))
    for step in range(t):
        buffer[step] = steps[step]
    expected = steps.view(t, k, e, a, d).transpose(0, 1).reshape(k, t * e, a, d)
    assert torch.equal(buffer.per_trial(), expected)
    # hand-checked entry: trial 2, step 1, instance 1 of the trial (global instance 2*2 + 1 = 5)
    assert torch.equal(buffer.per_trial()[2, 1 * e + 1], steps[1, 5])
    assert buffer.per_trial().data_ptr() == buffer.data.data_ptr()  # a view, not a copy


def test_row_hash_keys_wrap_exactly_as_the_elementwise_sum(monkeypatch):
    """Keys are int64 dot products mod 2^64: the matrix-vector form equals an explicit wrapping sum."""
    from incentive import ppo

    rows = torch.tensor([[1.0, -2.5, 0.0], [3.0, 1.0, 1.0], [1.0, -2.5, 0.0]])
    weights = torch.tensor([2**62 + 1, -(2**61) + 3, 2**60 + 5])  # products overflow int64
    monkeypatch.setitem(ppo._HASH_WEIGHTS, 3, weights)
    bits = rows.view(torch.int32).to(torch.int64)
    reference = (bits * weights).sum(1)  # elementwise products and a sum, both wrapping
    by_hand = []
    for row in rows.view(torch.int32).tolist():
        total = sum(b * w for b, w in zip(row, weights.tolist(), strict=True)) % 2**64
        by_hand.append(total - 2**64 if total >= 2**63 else total)
    assert reference.tolist() == by_hand
    distinct, inverse = unique_rows(rows)
    assert inverse.tolist()[0] == inverse.tolist()[2] != inverse.tolist()[1]
    assert torch.equal(distinct[inverse], rows)
    # distinct rows come sorted by key, so the order is the hand-computed keys' order
    order = sorted(range(2), key=lambda i: by_hand[i])
    assert torch.equal(distinct, rows[order])


def test_k_shared_networks_get_each_trials_own_gradient_in_one_gather():
    """K one-group trials: outputs and weight gradients equal K lone layers', bit for bit."""
    trials, rows, d_in, d_out = 4, 6, 5, 3
    generators = [torch.Generator().manual_seed(s) for s in range(trials)]
    layer = GroupedLinear(trials, d_in, d_out, gain=1.0, generator=generators)
    lone = [
        GroupedLinear(1, d_in, d_out, gain=1.0, generator=torch.Generator().manual_seed(s))
        for s in range(trials)
    ]
    x = torch.randn(trials, rows, d_in, generator=torch.Generator().manual_seed(9))
    out = layer(x)
    (out.tanh() * torch.arange(trials)[:, None, None]).sum().backward()
    for k in range(trials):
        alone = lone[k](x[k : k + 1])
        assert torch.equal(out[k : k + 1], alone)
        (alone.tanh() * k).sum().backward()
        assert torch.equal(layer.weight.grad[k : k + 1], lone[k].weight.grad)
        assert torch.equal(layer.bias.grad[k : k + 1], lone[k].bias.grad)
    # the weights are cut by one unbind, whose backward stacks the K gradients once (K selects
    # would each scatter into a zero [K, ...] tensor, summed K times)
    nodes, seen = [out.grad_fn], set()
    names = set()
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        nodes.extend(next_node for next_node, _ in node.next_functions)
    assert "UnbindBackward0" in names
    assert "SelectBackward0" not in names
