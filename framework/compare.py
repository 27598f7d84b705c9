"""Comparing arms: final designer metrics per arm with IQM and 95% bootstrap CIs, as a plain table.

An arm is the runs that differ only in seed (`incentive.results.group_runs`).
For each arm and metric, each run contributes its final value (the mean over
the last 10% of the iterations that report the metric, at least one); the
table shows the interquartile mean of those values over the arm's runs with
a 95% stratified bootstrap confidence interval (`incentive.stats`; the
stratum is the arm's one env, so runs are resampled with replacement).
`incentive compare` and `benchmarks/reproductions.py` print through
`format_table`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from incentive.errors import IncentiveError
from incentive.results import Arm, group_runs, load_runs, resolve_metric
from incentive.stats import (
    interquartile_mean,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)

__all__ = [
    "Cell",
    "Improvement",
    "compare_runs",
    "comparison_rows",
    "comparison_table",
    "format_number",
    "format_table",
    "improvement",
    "pick_arm",
    "summarise",
]


@dataclass(frozen=True)
class Cell:
    """One arm's summary of one metric over its runs."""

    iqm: float
    low: float
    high: float
    runs: int

    def __str__(self) -> str:
        return f"{format_number(self.iqm)} [{format_number(self.low)}, {format_number(self.high)}]"


@dataclass(frozen=True)
class Improvement:
    """P(X > Y) of arm X's final values over arm Y's on one metric, with its 95% CI."""

    metric: str
    x: str
    y: str
    probability: float
    low: float
    high: float


def format_number(value: float) -> str:
    """Three decimals below 1000, thousands separators above."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"


def summarise(values: np.ndarray | list[float], *, seed: int = 0) -> Cell | None:
    """IQM and 95% bootstrap CI of per-run final values; None when there are none."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return None
    low, high = stratified_bootstrap_ci(values, seed=seed)
    return Cell(iqm=interquartile_mean(values), low=low, high=high, runs=len(values))


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """An aligned plain-text table; cells are never cut, columns as wide as their widest cell."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        return " | ".join(
            [f"{first:<{widths[0]}}", *(f"{c:>{w}}" for c, w in zip(rest, widths[1:], strict=True))]
        )

    head = line(headers)
    return "\n".join([head, "-" * len(head), *(line([str(c) for c in row]) for row in rows)])


def comparison_rows(arms: list[Arm], metrics: list[str], *, seed: int = 0) -> list[dict]:
    """Per arm: its number, label, run count and a `Cell` (or None) per metric."""
    rows = []
    for number, arm in enumerate(arms, start=1):
        cells = {metric: summarise(arm.finals(metric), seed=seed) for metric in metrics}
        rows.append({"arm": number, "label": arm.label, "runs": len(arm.runs), "cells": cells})
    return rows


def comparison_table(arms: list[Arm], metrics: list[str], *, seed: int = 0) -> str:
    """`format_table` of the arms' final metrics: IQM [95% CI] over runs."""
    headers = ["#", "arm", "runs", *(f"{m.removeprefix('designer/')} IQM [95% CI]" for m in metrics)]
    body = []
    for row in comparison_rows(arms, metrics, seed=seed):
        shown = [str(row["cells"][m]) if row["cells"][m] is not None else "-" for m in metrics]
        body.append([str(row["arm"]), row["label"], str(row["runs"]), *shown])
    # the first column is left-aligned: put the arm label there and the number after it
    return format_table([headers[1], headers[0], *headers[2:]], [[r[1], r[0], *r[2:]] for r in body])


def pick_arm(arms: list[Arm], key: str) -> Arm:
    """An arm by its number in the table (1-based) or its exact label.

    Raises:
        IncentiveError: no such arm; the message lists them.

    """
    if key.isdigit() and 1 <= int(key) <= len(arms):
        return arms[int(key) - 1]
    for arm in arms:
        if arm.label == key:
            return arm
    listed = "; ".join(f"{i} = {arm.label}" for i, arm in enumerate(arms, start=1))
    raise IncentiveError(f"--improvement: no arm {key!r}; give an arm's number or label ({listed})")


def improvement(x: Arm, y: Arm, metric: str, *, seed: int = 0) -> Improvement:
    """P(X > Y) on the final values of `metric`, with a 95% bootstrap CI over both arms' runs.

    Raises:
        IncentiveError: an arm with no run that reports the metric.

    """
    xs, ys = x.finals(metric), y.finals(metric)
    for arm, values in ((x, xs), (y, ys)):
        if len(values) == 0:
            raise IncentiveError(f"--improvement: arm {arm.label!r} has no run that reports {metric!r}")
    low, high = probability_of_improvement_ci(xs, ys, seed=seed)
    return Improvement(
        metric=metric,
        x=x.label,
        y=y.label,
        probability=probability_of_improvement(xs, ys),
        low=low,
        high=high,
    )


def compare_runs(
    patterns: list[str],
    *,
    metrics: list[str] | None = None,
    improvement_arms: list[str] | None = None,
    as_json: bool = False,
) -> str:
    """What `incentive compare` prints: the arms' table (or JSON) and P(A > B) if asked.

    Args:
        patterns: run directories, globs or folders of runs.
        metrics: metric names (default: the recipes' objectives, then every
            other designer metric except per-agent returns).
        improvement_arms: two arms (number or label) for P(A > B) on every metric.
        as_json: JSON instead of a table.

    Raises:
        IncentiveError: no runs, an unknown metric or arm, or no designer metric at all.

    """
    runs = load_runs(patterns)
    available = list(dict.fromkeys(m for run in runs for m in run.metric_names()))
    if metrics:
        chosen = [resolve_metric(name, available) for name in metrics]
    else:
        objectives = [m for run in runs for m in run.objectives]
        others = [m for m in available if m.startswith("designer/") and not m.startswith("designer/return/")]
        chosen = [m for m in dict.fromkeys([*objectives, *others]) if m in available]
        if not chosen:
            raise IncentiveError(
                "incentive compare: no designer metric in these runs (no episode ended); train longer"
            )
    arms = group_runs(runs)
    found = []
    if improvement_arms:
        x, y = (pick_arm(arms, key) for key in improvement_arms)
        found = [improvement(x, y, metric) for metric in chosen]
    if as_json:
        rows = comparison_rows(arms, chosen)
        for row in rows:
            row["cells"] = {m: (None if c is None else vars(c)) for m, c in row["cells"].items()}
        return json.dumps(
            {"metrics": chosen, "arms": rows, "improvement": [vars(i) for i in found]}, indent=2
        )
    lines = [
        comparison_table(arms, chosen),
        "",
        "final value of a run: mean over the last 10% of its iterations that report the metric; "
        "IQM over runs with a 95% stratified bootstrap CI",
    ]
    lines += [
        f"P({r.x} > {r.y}) on {r.metric}: {r.probability:.3f} [{r.low:.3f}, {r.high:.3f}]" for r in found
    ]
    return "\n".join(lines)
