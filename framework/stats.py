"""Statistics for comparing learning runs: IQM, stratified bootstrap CIs, probability of improvement.

With a handful of seeds, a bare mean or a min-max range says little. Following
Agarwal et al. 2021 ("Deep Reinforcement Learning at the Edge of the
Statistical Precipice", the `rliable` library), an arm is summarised by:

- the interquartile mean (IQM): the mean of the middle 50% of the scores of
  all runs and tasks pooled. With n scores, floor(0.25 * n) are cut from
  each end (`scipy.stats.trim_mean(x, 0.25)`, rliable's definition): n = 4
  keeps the middle 2, n = 5 the middle 3, n = 3 keeps all three;
- a 95% stratified bootstrap confidence interval (percentile method): each
  replicate resamples the runs of every task (stratum) with replacement,
  independently per task, and recomputes the statistic; the interval is the
  2.5th and 97.5th percentiles of the replicates;
- the probability of improvement P(X > Y) of arm X over arm Y: per task,
  the Mann-Whitney statistic P(x > y) + 0.5 * P(x = y) over all pairs of a
  run of X and a run of Y, averaged over tasks; 0.5 means no difference.

Scores are arrays of shape [runs, tasks] (a 1-d array is one task). Here a
"task" is whatever the caller stratifies by (an env or a metric); a single
task makes the bootstrap a plain one over runs. Every bootstrap takes a seed,
so the same inputs give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "bootstrap_band",
    "interquartile_mean",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "stratified_bootstrap_ci",
]

DEFAULT_REPS = 2000


def _as_matrix(scores: np.ndarray | list, name: str = "scores") -> np.ndarray:
    """[runs, tasks] float64; a 1-d input is one task. Raises ValueError on empty or non-finite input."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty [runs] or [runs, tasks] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return x


def _trimmed_mean_rows(values: np.ndarray) -> np.ndarray:
    """IQM of each row of [B, n]: sort, cut floor(n / 4) from each end, average the rest."""
    n = values.shape[-1]
    cut = math.floor(0.25 * n)
    ordered = np.sort(values, axis=-1)
    return ordered[..., cut : n - cut].mean(axis=-1)


def interquartile_mean(scores: np.ndarray | list) -> float:
    """Mean of the middle 50% of all scores pooled (rliable's IQM).

    Args:
        scores: [runs] or [runs, tasks].

    Returns:
        The trimmed mean with floor(n / 4) scores cut from each end.

    Raises:
        ValueError: empty or non-finite scores.

    """
    x = _as_matrix(scores)
    return float(_trimmed_mean_rows(x.reshape(1, -1))[0])


def _resample_index(rng: np.random.Generator, runs: int, tasks: int, reps: int) -> np.ndarray:
    """[reps, runs, tasks] run indices, drawn with replacement independently per task."""
    return rng.integers(0, runs, size=(reps, runs, tasks))


def stratified_bootstrap_ci(
    scores: np.ndarray | list,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    confidence: float = 0.95,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-method stratified bootstrap confidence interval of a statistic.

    Args:
        scores: [runs] or [runs, tasks].
        statistic: maps [reps, runs, tasks] resampled scores to [reps] values;
            default the IQM of each replicate.
        confidence: the interval's coverage (0.95: the 2.5th to 97.5th percentile).
        reps: bootstrap replicates.
        seed: seed of the numpy generator (same seed, same interval).

    Returns:
        (low, high).

    Raises:
        ValueError: empty or non-finite scores, or confidence not in (0, 1).

    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = _as_matrix(scores)
    runs, tasks = x.shape
    index = _resample_index(np.random.default_rng(seed), runs, tasks, reps)
    resampled = np.take_along_axis(x[None].repeat(reps, axis=0), index, axis=1)
    if statistic is None:
        values = _trimmed_mean_rows(resampled.reshape(reps, -1))
    else:
        values = np.asarray(statistic(resampled), dtype=np.float64)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(x > y) + 0.5 P(x = y) per replicate: x [B, n, T], y [B, m, T] -> [B], averaged over tasks."""
    diff = x[:, :, None, :] - y[:, None, :, :]  # [B, n, m, T]
    per_task = ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(1, 2))  # [B, T]
    return per_task.mean(axis=-1)


def _pair(x: np.ndarray | list, y: np.ndarray | list) -> tuple[np.ndarray, np.ndarray]:
    xm, ym = _as_matrix(x, "x"), _as_matrix(y, "y")
    if xm.shape[1] != ym.shape[1]:
        raise ValueError(f"x and y must have the same number of tasks, got {xm.shape[1]} and {ym.shape[1]}")
    return xm, ym


def probability_of_improvement(x: np.ndarray | list, y: np.ndarray | list) -> float:
    """P(X > Y): the chance that a run of arm X beats a run of arm Y on a task, ties counting 1/2.

    Args:
        x: [runs_x] or [runs_x, tasks] scores of arm X (higher is better).
        y: [runs_y] or [runs_y, tasks] scores of arm Y, same tasks.

    Returns:
        The Mann-Whitney U statistic / (runs_x * runs_y), averaged over tasks.

    Raises:
        ValueError: empty or non-finite scores, or different task counts.

    """
    xm, ym = _pair(x, y)
    return float(_improvement(xm[None], ym[None])[0])


def probability_of_improvement_ci(
    x: np.ndarray | list,
    y: np.ndarray | list,
    *,
    confidence: float = 0.95,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified bootstrap CI of P(X > Y), resampling the runs of both arms, task by task.

    Args:
        x: scores of arm X, [runs_x] or [runs_x, tasks].
        y: scores of arm Y, same tasks.
        confidence: the interval's coverage.
        reps: bootstrap replicates.
        seed: seed of the numpy generator.

    Returns:
        (low, high).

    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    xm, ym = _pair(x, y)
    rng = np.random.default_rng(seed)
    xs = np.take_along_axis(xm[None].repeat(reps, 0), _resample_index(rng, *xm.shape, reps), axis=1)
    ys = np.take_along_axis(ym[None].repeat(reps, 0), _resample_index(rng, *ym.shape, reps), axis=1)
    values = _improvement(xs, ys)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_band(
    curves: np.ndarray | list, *, confidence: float = 0.95, reps: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise bootstrap confidence band of the mean curve, resampling whole runs.

    Each replicate draws runs with replacement (a run keeps its whole curve)
    and averages them point by point; the band is the percentile interval of
    those means at each point.

    Args:
        curves: [runs, points], run r's value at each shared x.
        confidence: the band's coverage.
        reps: bootstrap replicates.
        seed: seed of the numpy generator.

    Returns:
        (low, high), each [points].

    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = _as_matrix(curves, "curves")
    index = np.random.default_rng(seed).integers(0, x.shape[0], size=(reps, x.shape[0]))
    means = x[index].mean(axis=1)  # [reps, points]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return low, high
