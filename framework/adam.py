"""Adam (Kingma and Ba, 2015), the learner's optimizer, without torch.optim.

    m_t = b1 m_{t-1} + (1 - b1) g          (torch's lerp form: m += (1 - b1)(g - m))
    v_t = b2 v_{t-1} + (1 - b2) g^2
    p  -= lr / (1 - b1^t) * m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps)

Why not `torch.optim.Adam`: constructing any `torch.optim` optimizer imports
`torch._dynamo` (the compiler), which takes 2-4 s of a run's start-up on a
loaded CPU and is never used here. This class runs the same tensor
operations in the same order as torch's single-tensor CPU Adam (the default
on CPU), so its updates are bit-identical to it (tested), and its
`state_dict` has torch's layout, so checkpoints written with either load in
the other.

Parameters: `lr`, `betas` (b1, b2), `eps`; no weight decay, no AMSGrad.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["Adam"]


class Adam:
    """Adam over a fixed list of parameters.

    Args:
        params: the parameters to update (their `.grad` is read).
        lr: learning rate; may be changed between steps (`self.lr`).
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.

    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (the next backward writes a fresh one)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        beta1, beta2 = self.betas
        self.steps += 1
        step = float(self.steps)
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        step_size = self.lr / bias_correction1
        for p, exp_avg, exp_avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            grad = p.grad
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict:
        """Moments, step count and hyperparameters, in `torch.optim.Adam.state_dict()`'s layout."""
        step = torch.tensor(float(self.steps), dtype=torch.float32)
        return {
            "state": {
                i: {"step": step.clone(), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
                for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq, strict=True))
                if self.steps > 0
            },
            "param_groups": [
                {
                    "lr": self.lr,
                    "betas": self.betas,
                    "eps": self.eps,
                    "weight_decay": 0,
                    "amsgrad": False,
                    "params": list(range(len(self.params))),
                }
            ],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict` (ours or `torch.optim.Adam`'s, for the same parameters)."""
        group = state["param_groups"][0]
        if len(group["params"]) != len(self.params):
            raise ValueError(
                f"optimizer state holds {len(group['params'])} parameters, the network {len(self.params)}"
            )
        self.lr = float(group["lr"])
        self.betas = (float(group["betas"][0]), float(group["betas"][1]))
        self.eps = float(group["eps"])
        self.steps = 0
        for i, key in enumerate(group["params"]):
            saved = state["state"].get(key)
            if saved is None:
                self.exp_avg[i].zero_()
                self.exp_avg_sq[i].zero_()
                continue
            self.exp_avg[i].copy_(saved["exp_avg"])
            self.exp_avg_sq[i].copy_(saved["exp_avg_sq"])
            self.steps = int(float(saved["step"]))
