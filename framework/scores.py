"""A run's score for the designer: a metric averaged over the last part of training.

One iteration's designer metric is noisy (few episodes end in it), so a run's
score is the mean of the metric over its last `last_fraction` of iterations
(default 10%), read from `metrics.jsonl`: the designer's metrics, never the
shaped return. Search objectives, pruning reports and constraints all use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from incentive.errors import IncentiveError
from incentive.recipe import Constraint, Objective

__all__ = ["constraint_value", "metric_key", "objective_values", "run_score"]

PREFIXES = ("designer/", "incentive/", "losses/", "train/", "population/", "curriculum/")


def metric_key(name: str) -> str:
    """The metrics.jsonl key of a metric name: names without a known prefix are designer metrics."""
    return name if name.startswith(PREFIXES) else f"designer/{name}"


def run_score(
    rows: Sequence[dict], name: str, last_fraction: float, *, num_iterations: int | None = None
) -> float:
    """Mean of a metric over the iterations in the last `last_fraction` of the run.

    Args:
        rows: metrics.jsonl lines (dicts with `train/iteration`), in order.
        name: the metric (`collective_return` means `designer/collective_return`).
        last_fraction: the share of the run's iterations to average over, in (0, 1].
        num_iterations: the run's planned length (default: the last row's
            iteration); a pruning report mid-run passes nothing and so scores
            the last fraction of what has run so far.

    Returns:
        The mean over iterations t > n * (1 - last_fraction) that reported the
        metric; if none of them did (long episodes), the last reported value.

    Raises:
        IncentiveError: the metric was never reported.

    """
    key = metric_key(name)
    reported = [(row["train/iteration"], row[key]) for row in rows if key in row]
    if not reported:
        raise IncentiveError(
            f"metric {key!r} was never reported in {len(rows)} iteration(s): episodes may be longer than "
            "the run, or the metric does not exist for this env and plugins"
        )
    n = num_iterations if num_iterations is not None else rows[-1]["train/iteration"]
    start = n - max(1, math.ceil(n * last_fraction))
    window = [value for iteration, value in reported if iteration > start]
    if not window:
        return float(reported[-1][1])
    return sum(window) / len(window)


def objective_values(objectives: Sequence[Objective], rows: Sequence[dict], params: dict) -> list[float]:
    """A run's value of each objective: the run's score of a metric, or the design's searched parameter.

    A `param` objective the design did not sample (its incentive is off)
    is 0: no incentive, no cost.
    """
    return [
        run_score(rows, o.metric, o.last_fraction)
        if o.metric is not None
        else float(params.get(o.param, 0.0))
        for o in objectives
    ]


def constraint_value(
    rows: Sequence[dict], constraint: Constraint, last_fraction: float, *, off: frozenset[str] = frozenset()
) -> float:
    """Optuna's constraint value of a run (feasible when <= 0).

    x = score(metric), divided by |score(relative_to)| when given; then
    x - at_most, or at_least - x. A zero denominator makes any positive
    numerator infeasible (+inf) and zero feasible. A metric
    `incentive/<plugin>/...` of a plugin in `off` (switched off in this
    design, so it never reports) is 0: an incentive that is off costs nothing.
    """
    x = _score_or_off(rows, constraint.metric, last_fraction, off)
    if constraint.relative_to is not None:
        denominator = abs(_score_or_off(rows, constraint.relative_to, last_fraction, off))
        if denominator == 0:
            x = 0.0 if x == 0 else math.copysign(math.inf, x)
        else:
            x = x / denominator
    return x - constraint.at_most if constraint.at_most is not None else constraint.at_least - x


def _score_or_off(rows: Sequence[dict], name: str, last_fraction: float, off: frozenset[str]) -> float:
    parts = metric_key(name).split("/")
    if parts[0] == "incentive" and len(parts) > 2 and parts[1] in off:
        return 0.0
    return run_score(rows, name, last_fraction)
