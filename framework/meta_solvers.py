"""PSRO meta-solvers: a distribution over each population from an empirical payoff matrix.

A two-player meta-game is a pair of payoff matrices over the populations'
policies: `row_payoffs[i, j]` and `col_payoffs[i, j]` are what the row player
(playing policy i) and the column player (playing policy j) get. Every solver
takes (row_payoffs, col_payoffs) as array-likes (numpy, torch, lists) and
returns (x, y): float64 numpy distributions over the rows and the columns.

| solver                         | games            | what it returns                           |
| ------------------------------ | ---------------- | ----------------------------------------- |
| `uniform`                      | any              | uniform x, y (PSRO with it is fictitious  |
|                                |                  | play over the population)                 |
| `zero_sum_nash`                | zero- (constant-)| an exact Nash equilibrium by one linear   |
|                                | sum              | program per player (scipy's HiGHS)        |
| `replicator_dynamics`          | general sum      | Euler steps of the replicator dynamics    |
| `projected_replicator_dynamics`| general sum      | the same, projected after every step onto |
|                                |                  | the exploratory simplex (Lanctot 2017)    |

Nash for a zero-sum game (row maximises v):  max v  s.t.  sum_i x_i A[i, j] >= v
for every column j, x >= 0, sum x = 1; the column player's program is the
same on -A^T. A constant-sum matrix pair (A + B = c, e.g. win rates) has the
same equilibria as (A, -A) and is accepted; anything else is refused with a
ValueError pointing to the replicator dynamics.

Replicator dynamics (Taylor & Jonker 1978), with u = A y and w = B^T x:

    x_i <- x_i + dt * x_i (u_i - x . u),   y_j <- y_j + dt * y_j (w_j - y . w)

Projected replicator dynamics (Lanctot et al. 2017, "A Unified Game-Theoretic
Approach to Multiagent Reinforcement Learning") projects each step (in the
Euclidean norm) onto the exploratory simplex {x : sum x = 1, x_i >= gamma / n}
for n strategies, so every policy keeps some weight (gamma = 0 is plain RD
kept on the simplex). Both return the time-average of the last
`average_last` iterates (1: the last iterate), which damps the cycles of
games like rock-paper-scissors.

`nash_conv(row, col, x, y)` = max_i (A y)_i - x.A y + max_j (x^T B)_j - x.B y:
0 exactly at a Nash equilibrium of the meta-game; `meta_game_exploitability`
is half of it (OpenSpiel's convention for two players).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog

__all__ = [
    "META_SOLVERS",
    "meta_game_exploitability",
    "nash_conv",
    "projected_replicator_dynamics",
    "replicator_dynamics",
    "solve",
    "uniform",
    "zero_sum_nash",
]

Strategies = tuple[np.ndarray, np.ndarray]


def _array(value: Any) -> np.ndarray:
    """A float64 numpy copy of an array-like (torch tensors included)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.array(value, dtype=np.float64)


def _matrices(row_payoffs: Any, col_payoffs: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 (A, B); B defaults to -A (zero-sum)."""
    a = _array(row_payoffs)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"row_payoffs must be a non-empty 2-D matrix, got shape {a.shape}")
    b = -a if col_payoffs is None else _array(col_payoffs)
    if b.shape != a.shape:
        raise ValueError(f"col_payoffs must have the shape of row_payoffs {a.shape}, got {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("payoff matrices must be finite")
    return a, b


def _distribution(p: Any, n: int, name: str) -> np.ndarray:
    p = _array(p)
    if p.shape != (n,) or (p < 0).any() or not np.isfinite(p).all() or p.sum() <= 0:
        raise ValueError(f"{name} must be {n} non-negative weights that are not all zero, got {p}")
    return p / p.sum()


def uniform(row_payoffs: Any, col_payoffs: Any | None = None) -> Strategies:
    """Uniform over each population."""
    a, _ = _matrices(row_payoffs, col_payoffs)
    return np.full(a.shape[0], 1.0 / a.shape[0]), np.full(a.shape[1], 1.0 / a.shape[1])


def _maximin(a: np.ndarray) -> np.ndarray:
    """The row player's maximin strategy of A (an LP solved with HiGHS)."""
    m, n = a.shape
    cost = np.zeros(m + 1)
    cost[-1] = -1.0  # maximise v
    upper = np.hstack([-a.T, np.ones((n, 1))])  # v - sum_i x_i A[i, j] <= 0
    equal = np.hstack([np.ones((1, m)), np.zeros((1, 1))])
    bounds = [(0.0, None)] * m + [(None, None)]
    result = linprog(
        cost, A_ub=upper, b_ub=np.zeros(n), A_eq=equal, b_eq=[1.0], bounds=bounds, method="highs"
    )
    if result.status != 0:
        raise ValueError(f"the Nash linear program failed: {result.message}")
    x = np.clip(result.x[:m], 0.0, None)
    return x / x.sum()


def zero_sum_nash(row_payoffs: Any, col_payoffs: Any | None = None, *, atol: float = 1e-6) -> Strategies:
    """An exact Nash equilibrium of a two-player zero-sum (or constant-sum) meta-game.

    Args:
        row_payoffs: A [m, n].
        col_payoffs: B [m, n] (default -A).
        atol: how far from constant A + B may stray (relative to max |A|), for float32 or
            estimated payoffs.

    Raises:
        ValueError: row + col payoffs are not constant (the game is general-sum).

    """
    a, b = _matrices(row_payoffs, col_payoffs)
    total = a + b
    if np.abs(total - total.flat[0]).max() > atol * max(1.0, np.abs(a).max()):
        raise ValueError(
            "meta-solver 'nash' solves two-player zero-sum (or constant-sum) games by a linear program, "
            "but row_payoffs + col_payoffs is not constant (the meta-game is general-sum); use "
            "'replicator_dynamics' or 'projected_replicator_dynamics' instead"
        )
    return _maximin(a), _maximin(b.T)


def _project(x: np.ndarray, floor: float) -> np.ndarray:
    """Euclidean projection of x onto {p : sum p = 1, p_i >= floor} (sorting method)."""
    n = x.shape[0]
    budget = 1.0 - n * floor
    if budget <= 0.0:  # gamma = 1: the floor is the whole simplex
        return np.full(n, 1.0 / n)
    z = x - floor
    s = np.sort(z)[::-1]
    cumulative = np.cumsum(s) - budget
    k = np.nonzero(s - cumulative / np.arange(1, n + 1) > 0)[0][-1]
    return np.maximum(z - cumulative[k] / (k + 1), 0.0) + floor


def _replicator(
    a: np.ndarray,
    b: np.ndarray,
    *,
    steps: int,
    dt: float,
    floor_scale: float,
    average_last: int,
    x0: Any | None,
    y0: Any | None,
) -> Strategies:
    m, n = a.shape
    if steps < 1 or not 1 <= average_last <= steps:
        raise ValueError(f"need steps >= 1 and 1 <= average_last <= steps, got {steps} and {average_last}")
    if dt <= 0:
        raise ValueError(f"dt must be positive, got {dt}")
    x = np.full(m, 1.0 / m) if x0 is None else _distribution(x0, m, "x0")
    y = np.full(n, 1.0 / n) if y0 is None else _distribution(y0, n, "y0")
    floor_x, floor_y = floor_scale / m, floor_scale / n
    x, y = _project(x, floor_x), _project(y, floor_y)
    sum_x, sum_y = np.zeros(m), np.zeros(n)
    bt = b.T.copy()
    for step in range(steps):
        u, w = a @ y, bt @ x
        x, y = x + dt * x * (u - x @ u), y + dt * y * (w - y @ w)
        # an Euler step keeps the sum at 1; project only when it leaves the (exploratory) simplex
        x = _project(x, floor_x) if x.min() < floor_x else x / x.sum()
        y = _project(y, floor_y) if y.min() < floor_y else y / y.sum()
        if step >= steps - average_last:
            sum_x += x
            sum_y += y
    return sum_x / average_last, sum_y / average_last


def replicator_dynamics(
    row_payoffs: Any,
    col_payoffs: Any | None = None,
    *,
    steps: int = 20_000,
    dt: float = 0.01,
    average_last: int = 1,
    x0: Any | None = None,
    y0: Any | None = None,
) -> Strategies:
    """Two-population replicator dynamics from (x0, y0) (default uniform).

    Args:
        row_payoffs: A [m, n].
        col_payoffs: B [m, n] (default -A).
        steps: Euler steps.
        dt: step size (scale it with the payoffs' magnitude).
        average_last: return the mean of the last this many iterates.
        x0: initial row distribution.
        y0: initial column distribution.

    Returns:
        (x, y).

    """
    a, b = _matrices(row_payoffs, col_payoffs)
    return _replicator(a, b, steps=steps, dt=dt, floor_scale=0.0, average_last=average_last, x0=x0, y0=y0)


def projected_replicator_dynamics(
    row_payoffs: Any,
    col_payoffs: Any | None = None,
    *,
    gamma: float = 1e-3,
    steps: int = 20_000,
    dt: float = 0.01,
    average_last: int = 1,
    x0: Any | None = None,
    y0: Any | None = None,
) -> Strategies:
    """Replicator dynamics kept on the exploratory simplex {p_i >= gamma / n} (Lanctot et al. 2017).

    Args as `replicator_dynamics`, plus gamma in [0, 1]: the exploration mass
    spread as a floor of gamma / n on each of n strategies.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    a, b = _matrices(row_payoffs, col_payoffs)
    return _replicator(a, b, steps=steps, dt=dt, floor_scale=gamma, average_last=average_last, x0=x0, y0=y0)


def nash_conv(row_payoffs: Any, col_payoffs: Any | None, x: Any, y: Any) -> float:
    """Sum over both players of (best deviation payoff - payoff) of the meta-strategy (x, y)."""
    a, b = _matrices(row_payoffs, col_payoffs)
    x = _distribution(x, a.shape[0], "x")
    y = _distribution(y, a.shape[1], "y")
    u, w = a @ y, b.T @ x
    return float((u.max() - x @ u) + (w.max() - y @ w))


def meta_game_exploitability(row_payoffs: Any, col_payoffs: Any | None, x: Any, y: Any) -> float:
    """NashConv / 2 of the meta-strategy (x, y) on the meta-game."""
    return nash_conv(row_payoffs, col_payoffs, x, y) / 2


META_SOLVERS: dict[str, Callable[..., Strategies]] = {
    "uniform": uniform,
    "nash": zero_sum_nash,
    "replicator_dynamics": replicator_dynamics,
    "projected_replicator_dynamics": projected_replicator_dynamics,
}


def solve(name: str, row_payoffs: Any, col_payoffs: Any | None = None, **options: Any) -> Strategies:
    """Run the meta-solver called `name` (a key of `META_SOLVERS`) with its keyword options."""
    solver = META_SOLVERS.get(name)
    if solver is None:
        raise ValueError(f"unknown meta-solver {name!r}; expected one of {sorted(META_SOLVERS)}")
    return solver(row_payoffs, col_payoffs, **options)
