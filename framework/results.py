"""Reading runs back for plots and comparisons: run directories, arms, final values.

A run directory is what `incentive run` writes: `recipe.yaml` (the resolved
recipe) and `metrics.jsonl` (one line per iteration). Runs are read as plain
data, without validating the recipe, so runs whose plugins are not installed
here can still be compared.

- **Arms.** Runs whose recipes are equal once `seed` and `log` (where and how
  a run logs, which cannot change what it learns) are removed form one arm:
  the seeds of one incentive structure. An arm's label names the recipe
  fields in which it differs from the other arms (`incentives.0.params.s=0.5`),
  or the recipe's name when there is one arm or nothing differs.
- **Final value** of a metric in a run: the mean over the last 10% of the
  iterations that report it (at least one iteration). Designer metrics are
  reported only by iterations in which an episode finished, so "iterations"
  here counts those iterations only.
"""

from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from incentive.errors import IncentiveError

__all__ = [
    "FINAL_FRACTION",
    "Arm",
    "RunData",
    "expand_run_dirs",
    "group_runs",
    "load_run",
    "load_runs",
    "resolve_metric",
]

FINAL_FRACTION = 0.1
RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.jsonl"
STEP = "train/global_step"
IGNORED_FOR_ARMS = ("seed", "log")


@dataclass
class RunData:
    """One run read back: its directory, its recipe as plain data, its metrics lines."""

    path: Path
    recipe: dict[str, Any]
    lines: list[dict[str, Any]]

    @property
    def name(self) -> str:
        """The recipe's name."""
        return str(self.recipe.get("name", self.path.name))

    @property
    def objectives(self) -> list[str]:
        """The recipe's objective metric names, with the `designer/` prefix (`param` objectives have none)."""
        objective = self.recipe.get("objective") or []
        listed = objective if isinstance(objective, list) else [objective]
        names = [o["metric"] for o in listed if isinstance(o, dict) and isinstance(o.get("metric"), str)]
        return [n if n.startswith("designer/") else f"designer/{n}" for n in names]

    def metric_names(self) -> list[str]:
        """Every metric name that some iteration reported, in first-seen order."""
        seen: dict[str, None] = {}
        for line in self.lines:
            seen.update(dict.fromkeys(line))
        return list(seen)

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(env steps, values) of the iterations that report `metric` with a finite value."""
        steps, values = [], []
        for line in self.lines:
            value = line.get(metric)
            if isinstance(value, int | float) and math.isfinite(value) and STEP in line:
                steps.append(line[STEP])
                values.append(float(value))
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def final(self, metric: str) -> float | None:
        """Mean of the last 10% of the iterations reporting `metric` (at least one); None if none do."""
        _, values = self.series(metric)
        if len(values) == 0:
            return None
        count = max(1, math.ceil(FINAL_FRACTION * len(values)))
        return float(values[-count:].mean())


@dataclass
class Arm:
    """Runs that differ only in seed, and the label that tells this arm from the others."""

    label: str
    runs: list[RunData] = field(default_factory=list)

    def finals(self, metric: str) -> np.ndarray:
        """Final values of `metric`, one per run that reports it."""
        values = [run.final(metric) for run in self.runs]
        return np.asarray([v for v in values if v is not None], dtype=np.float64)


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """Complete lines of a metrics file (a last line cut by a kill is ignored)."""
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise IncentiveError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
    return lines


def load_run(path: str | Path) -> RunData:
    """Read one run directory.

    Raises:
        IncentiveError: not a run directory, or an unreadable recipe or metrics file.

    """
    path = Path(path)
    recipe_file, metrics_file = path / RECIPE_FILE, path / METRICS_FILE
    if not recipe_file.is_file() or not metrics_file.is_file():
        raise IncentiveError(
            f"{path}: not a run directory (expected {RECIPE_FILE} and {METRICS_FILE} in it, "
            "as `incentive run` writes them)"
        )
    try:
        recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise IncentiveError(f"{recipe_file}: unreadable recipe ({type(exc).__name__})") from None
    if not isinstance(recipe, dict):
        raise IncentiveError(f"{recipe_file}: expected a mapping, as `incentive run` writes it")
    return RunData(path=path, recipe=recipe, lines=_read_metrics(metrics_file))


def _is_run_dir(path: Path) -> bool:
    return (path / RECIPE_FILE).is_file() and (path / METRICS_FILE).is_file()


def expand_run_dirs(patterns: list[str]) -> list[Path]:
    """Run directories named by the arguments, in order, without repeats.

    Each argument is a run directory, a glob pattern (quoted, so the shell
    leaves it alone: `'runs/ipd/*'`), or a directory holding run directories
    at any depth (`runs/ipd_prosocial`).

    Raises:
        IncentiveError: an argument that names no run directory.

    """
    found: dict[Path, None] = {}
    for pattern in patterns:
        matches = [Path(p) for p in sorted(glob.glob(pattern))] or [Path(pattern)]
        hits = []
        for match in matches:
            if _is_run_dir(match):
                hits.append(match)
            elif match.is_dir():
                hits += sorted(p.parent for p in match.rglob(METRICS_FILE) if _is_run_dir(p.parent))
        if not hits:
            raise IncentiveError(
                f"{pattern}: no run directory there (a run directory holds {RECIPE_FILE} and {METRICS_FILE})"
            )
        found.update(dict.fromkeys(hits))
    return list(found)


def load_runs(patterns: list[str]) -> list[RunData]:
    """`load_run` of every run directory `expand_run_dirs` finds."""
    return [load_run(path) for path in expand_run_dirs(patterns)]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': [1]}} -> {'a.b.0': 1}."""
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    if not flat and prefix:
        flat[prefix] = data
    return flat


def _arm_key(recipe: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in recipe.items() if k not in IGNORED_FOR_ARMS}, sort_keys=True)


def group_runs(runs: list[RunData]) -> list[Arm]:
    """Arms of runs with equal recipes once `seed` and `log` are removed, in first-seen order."""
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        groups.setdefault(_arm_key(run.recipe), []).append(run)
    flats = [
        _flatten({k: v for k, v in members[0].recipe.items() if k not in IGNORED_FOR_ARMS})
        for members in groups.values()
    ]
    paths = sorted({path for flat in flats for path in flat})
    differing = [p for p in paths if len({json.dumps(flat.get(p), sort_keys=True) for flat in flats}) > 1]
    arms = []
    for flat, members in zip(flats, groups.values(), strict=True):
        parts = [f"{p}={_show(flat[p])}" for p in differing if p != "name" and p in flat]
        if "name" in differing:
            parts.insert(0, str(flat.get("name")))
        arms.append(Arm(label=", ".join(parts) or members[0].name, runs=members))
    return arms


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def resolve_metric(name: str, available: list[str]) -> str:
    """The logged name of a metric given as `collective_return` or `designer/collective_return`.

    Raises:
        IncentiveError: no run logged a metric of that name; the message lists the designer metrics.

    """
    for candidate in (name, f"designer/{name}"):
        if candidate in available:
            return candidate
    designer = sorted(m for m in available if m.startswith(("designer/", "incentive/")))
    raise IncentiveError(
        f"--metric {name!r}: no run logged it. Logged designer and incentive metrics: "
        f"{', '.join(designer) or 'none (did any episode finish?)'}"
    )
