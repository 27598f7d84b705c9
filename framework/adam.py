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

`TrialAdam` is Adam for K independent learners whose parameters are stacked
along the first dimension (the league's learners, `incentive.league`): each
trial has its own step count t, so one trial can skip an update or be reset
to a fresh optimiser while the others go on, and trial k's rows compute bit
for bit what a lone `Adam` over trial k's parameters computes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["Adam", "TrialAdam"]


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
        self.steps += 1
        grads = [p.grad for p in self.params]
        self._update(self.params, grads, self.exp_avg, self.exp_avg_sq, self.steps)

    def _update(
        self,
        params: list[torch.Tensor],
        grads: list[torch.Tensor | None],
        exp_avgs: list[torch.Tensor],
        exp_avg_sqs: list[torch.Tensor],
        steps: int,
    ) -> None:
        """The update at step count `steps` of `params` (parameters, or views of their rows)."""
        beta1, beta2 = self.betas
        step = float(steps)
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        step_size = self.lr / bias_correction1
        for p, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
            if grad is None:
                continue
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-step_size)

    def state_dict(self) -> dict:
        """Moments, step count and hyperparameters, in `torch.optim.Adam.state_dict()`'s layout."""
        return self._state_dict(self.steps, self.exp_avg, self.exp_avg_sq)

    def _state_dict(self, steps: int, exp_avg: list[Any], exp_avg_sq: list[Any]) -> dict:
        step = torch.tensor(float(steps), dtype=torch.float32)
        return {
            "state": {
                i: {"step": step.clone(), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
                for i, (m, v) in enumerate(zip(exp_avg, exp_avg_sq, strict=True))
                if steps > 0
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
        self.steps = self._load_state_dict(state, self.exp_avg, self.exp_avg_sq)

    def _load_state_dict(self, state: dict, exp_avg: list[Any], exp_avg_sq: list[Any]) -> int:
        """Hyperparameters into self and moments into the given tensors; returns the step count."""
        group = state["param_groups"][0]
        if len(group["params"]) != len(self.params):
            raise ValueError(
                f"optimizer state holds {len(group['params'])} parameters, the network {len(self.params)}"
            )
        self.lr = float(group["lr"])
        self.betas = (float(group["betas"][0]), float(group["betas"][1]))
        self.eps = float(group["eps"])
        steps = 0
        for key, m, v in zip(group["params"], exp_avg, exp_avg_sq, strict=True):
            saved = state["state"].get(key)
            if saved is None:
                m.zero_()
                v.zero_()
                continue
            m.copy_(saved["exp_avg"])
            v.copy_(saved["exp_avg_sq"])
            steps = int(float(saved["step"]))
        return steps


class TrialAdam(Adam):
    """Adam over K trials stacked along every parameter's first dimension, each with its own step count.

    Trial k owns rows [k*R/K, (k+1)*R/K) of each parameter (R rows). While every trial steps together
    and their counts agree, one update runs over whole parameters (as `Adam` does for batched
    trials); otherwise each stepping trial's rows run `Adam`'s ops on their own, at their own count.

    Args:
        params: the stacked parameters.
        trials: K.
        lr: learning rate, shared.
        betas: decay rates of the moment estimates.
        eps: added to the denominator.

    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        trials: int,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        self.trials = trials
        self.trial_steps = [0] * trials
        for p in self.params:
            if p.shape[0] % trials:
                raise ValueError(f"a parameter of {p.shape[0]} rows does not split into {trials} trials")

    def _rows(self, tensors: list[Any], trial: int) -> list[Any]:
        """Trial `trial`'s rows of each tensor (views; None stays None)."""
        out = []
        for x in tensors:
            per = 0 if x is None else x.shape[0] // self.trials
            out.append(None if x is None else x[trial * per : (trial + 1) * per])
        return out

    @torch.no_grad()
    def step(self, active: list[bool] | None = None) -> None:
        """One update of the trials in `active` (default all); the others keep weights, moments, count."""
        active = [True] * self.trials if active is None else list(active)
        if len(active) != self.trials:
            raise ValueError(f"active names {len(active)} trials, the optimizer holds {self.trials}")
        for k, on in enumerate(active):
            self.trial_steps[k] += int(on)
        grads = [p.grad for p in self.params]
        if all(active) and len(set(self.trial_steps)) == 1:
            self.steps = self.trial_steps[0]
            self._update(self.params, grads, self.exp_avg, self.exp_avg_sq, self.steps)
            return
        for k, on in enumerate(active):
            if on:
                self._update(
                    self._rows(self.params, k),
                    self._rows(grads, k),
                    self._rows(self.exp_avg, k),
                    self._rows(self.exp_avg_sq, k),
                    self.trial_steps[k],
                )

    def reset_trial(self, trial: int) -> None:
        """A fresh optimiser for one trial: zero moments, count 0."""
        for m in self._rows(self.exp_avg, trial) + self._rows(self.exp_avg_sq, trial):
            m.zero_()
        self.trial_steps[trial] = 0

    def trial_state_dict(self, trial: int) -> dict:
        """One trial's state as a lone `Adam.state_dict()` over its rows of each parameter."""
        return self._state_dict(
            self.trial_steps[trial], self._rows(self.exp_avg, trial), self._rows(self.exp_avg_sq, trial)
        )

    def load_trial_state_dict(self, trial: int, state: dict) -> None:
        """Restore one trial from a lone `Adam.state_dict()` (`trial_state_dict`'s layout)."""
        self.trial_steps[trial] = self._load_state_dict(
            state, self._rows(self.exp_avg, trial), self._rows(self.exp_avg_sq, trial)
        )

    def state_dict(self) -> dict:
        """Every trial's `trial_state_dict`."""
        return {"trials": [self.trial_state_dict(k) for k in range(self.trials)]}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict`."""
        if len(state["trials"]) != self.trials:
            raise ValueError(f"optimizer state holds {len(state['trials'])} trials, this one {self.trials}")
        for k, trial in enumerate(state["trials"]):
            self.load_trial_state_dict(k, trial)
