"""The learner's Adam: bit-identical to torch.optim.Adam on CPU, checked by hand, checkpoints both ways."""

import torch
from torch import nn

from incentive.adam import Adam


def _nets() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    twin = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    twin.load_state_dict(net.state_dict())
    return net, twin


def _train(net: nn.Module, opt, steps: int, seed: int, lrs=None) -> None:
    generator = torch.Generator().manual_seed(seed)
    for t in range(steps):
        if lrs is not None:
            if isinstance(opt, Adam):
                opt.lr = lrs[t]
            else:
                opt.param_groups[0]["lr"] = lrs[t]
        x = torch.randn(16, 5, generator=generator)
        opt.zero_grad()
        (net(x) ** 2).mean().backward()
        opt.step()


def test_bit_identical_to_torch_adam_with_changing_lr() -> None:
    ours, theirs = _nets()
    lrs = [1e-2 * (1 - t / 40) for t in range(40)]
    _train(ours, Adam(ours.parameters(), lr=1e-2, eps=1e-5), 40, 0, lrs)
    _train(theirs, torch.optim.Adam(theirs.parameters(), lr=1e-2, eps=1e-5), 40, 0, lrs)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


def test_first_step_by_hand() -> None:
    # after one step m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2: p -= lr * g / (|g| + eps)
    p = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    p.grad = torch.tensor([4.0, -0.25, 0.0])
    opt = Adam([p], lr=0.1, eps=1e-8)
    opt.step()
    expected = torch.tensor([1.0 - 0.1 * 4 / (4 + 1e-8), -2.0 + 0.1 * 0.25 / (0.25 + 1e-8), 0.5])
    assert torch.allclose(p.detach(), expected, rtol=0, atol=1e-6)
    assert opt.exp_avg[0].tolist() == torch.tensor([0.4, -0.025, 0.0]).tolist()


def test_state_dict_round_trips_with_torch_adam() -> None:
    # torch's state loads into ours and ours into torch's; training then goes on identically
    ours, theirs = _nets()
    torch_opt = torch.optim.Adam(theirs.parameters(), lr=3e-3, eps=1e-5)
    _train(theirs, torch_opt, 5, 1)
    ours.load_state_dict(theirs.state_dict())
    our_opt = Adam(ours.parameters(), lr=1.0)
    our_opt.load_state_dict(torch_opt.state_dict())
    assert our_opt.steps == 5 and our_opt.lr == 3e-3 and our_opt.eps == 1e-5
    _train(ours, our_opt, 5, 2)
    _train(theirs, torch_opt, 5, 2)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    back = torch.optim.Adam(theirs.parameters(), lr=1.0)
    back.load_state_dict(our_opt.state_dict())
    assert back.state_dict()["state"][0]["step"].item() == 10
    assert torch.equal(back.state_dict()["state"][1]["exp_avg_sq"], our_opt.exp_avg_sq[1])


def test_state_before_any_step_is_empty_and_loads() -> None:
    net, _ = _nets()
    opt = Adam(net.parameters(), lr=1e-3)
    fresh = Adam(net.parameters(), lr=5.0)
    fresh.load_state_dict(opt.state_dict())
    assert opt.state_dict()["state"] == {} and fresh.steps == 0 and fresh.lr == 1e-3


def test_trial_adam_steps_skips_and_resets_each_trial_as_a_lone_adam() -> None:
    """Two trials stacked in rows: trial 1 skips a step, then is reset; each equals a lone Adam."""
    from incentive.adam import TrialAdam

    g = torch.Generator().manual_seed(0)
    weight = nn.Parameter(torch.randn(2, 4, 3, generator=g))  # trial k: rows k
    bias = nn.Parameter(torch.randn(2, 4, generator=g))
    lone = [
        [nn.Parameter(weight.detach()[k : k + 1].clone()), nn.Parameter(bias.detach()[k : k + 1].clone())]
        for k in (0, 1)
    ]
    trials = TrialAdam([weight, bias], trials=2, lr=1e-2, eps=1e-5)
    alone = [Adam(params, lr=1e-2, eps=1e-5) for params in lone]
    plan = [[True, True], [True, False], [True, True], "reset 1", [True, True], [False, True]]
    for step in plan:
        if step == "reset 1":
            trials.reset_trial(1)
            alone[1] = Adam(lone[1], lr=1e-2, eps=1e-5)
            continue
        grads = [torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, generator=g)]
        weight.grad, bias.grad = grads
        trials.step(active=step)
        for k in (0, 1):
            if step[k]:
                lone[k][0].grad, lone[k][1].grad = grads[0][k : k + 1], grads[1][k : k + 1]
                alone[k].step()
    assert trials.trial_steps == [4, 2] and [a.steps for a in alone] == [4, 2]
    for k in (0, 1):
        assert torch.equal(weight.detach()[k : k + 1], lone[k][0].detach())
        assert torch.equal(bias.detach()[k : k + 1], lone[k][1].detach())
        theirs = alone[k].state_dict()
        ours = trials.trial_state_dict(k)
        assert ours["param_groups"] == theirs["param_groups"]
        for i in (0, 1):
            assert all(
                torch.equal(ours["state"][i][key], theirs["state"][i][key]) for key in theirs["state"][i]
            )
    # a trial's state loads into another trial (and a lone Adam's into either)
    copy = TrialAdam([weight, bias], trials=2, lr=1.0)
    copy.load_state_dict(trials.state_dict())
    assert copy.trial_steps == [4, 2] and copy.lr == 1e-2
    copy.load_trial_state_dict(0, alone[1].state_dict())
    assert copy.trial_steps == [2, 2] and torch.equal(copy.exp_avg[0][0], trials.exp_avg[0][1])
