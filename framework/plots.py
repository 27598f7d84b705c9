"""Learning-curve pictures: one run's `curves.png`, and several runs on shared axes.

matplotlib draws off screen (the Agg backend, no display, no browser), and is
imported only when a picture is drawn. Every x axis is env steps (each
batched step counts E instances, as `train/global_step` does). Designer
metrics are the mean over the episodes that finished in an iteration, so
each point is one iteration that finished an episode.

- `run_curves(run_dir)`: one panel per designer metric (the objective first),
  then one panel per agent with its extrinsic return (`designer/return/<agent>`)
  beside its shaped return (`incentive/return/<agent>`): the gap is what the
  shaping terms added. Written as `curves.png` in the run directory at the end
  of every run, and again after every `--resume`.
- `plot_arms(arms, metrics, out)`: one panel per metric; each arm (the runs
  differing only in seed) is drawn as the mean over its runs with a 95%
  bootstrap band (runs resampled as whole curves), a single run as its line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from incentive.errors import IncentiveError
from incentive.results import Arm, RunData, group_runs, load_run, load_runs, resolve_metric
from incentive.stats import bootstrap_band

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CURVES_FILE",
    "DPI",
    "PANEL_INCHES",
    "figure_size",
    "plot_arms",
    "plot_runs",
    "run_curves",
    "write_run_curves",
]

CURVES_FILE = "curves.png"
DPI = 100
PANEL_INCHES = (4.0, 3.0)
COLUMNS = 3
X_LABEL = "env steps (all instances)"


def figure_size(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of a picture with `panels` panels, three to a row."""
    columns = min(COLUMNS, max(1, panels))
    rows = max(1, math.ceil(panels / COLUMNS))
    return round(columns * PANEL_INCHES[0] * DPI), round(rows * PANEL_INCHES[1] * DPI)


def _figure(panels: int) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    width, height = figure_size(panels)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    columns = min(COLUMNS, max(1, panels))
    rows = max(1, math.ceil(panels / COLUMNS))
    # fixed margins in inches (a layout engine would cost more than the drawing)
    w, h = width / DPI, height / DPI
    fig.subplots_adjust(
        left=0.85 / w, right=1 - 0.15 / w, bottom=0.55 / h, top=1 - 0.6 / h, wspace=0.4, hspace=0.6
    )
    axes = [fig.add_subplot(rows, columns, i + 1) for i in range(max(1, panels))]
    for ax in axes:
        ax.xaxis.set_major_formatter("{x:,.0f}")
    return fig, axes


def _y_label(metric: str) -> str:
    if "/return/" in metric or metric.endswith("_return"):
        return "return per episode"
    if metric.startswith("incentive/"):
        return "shaping term per episode"
    return "episode mean"


def _save(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, dpi=DPI, format="png")
    tmp.replace(out)
    return out


def _designer_panels(run: RunData) -> list[str]:
    """Objective first, then the other designer metrics except per-agent returns (they get agent panels)."""
    names = [
        m for m in run.metric_names() if m.startswith("designer/") and not m.startswith("designer/return/")
    ]
    objectives = [m for m in run.objectives if m in names]
    return objectives + [m for m in names if m not in objectives]


def run_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw one run's curves (designer metrics, extrinsic vs shaped return per agent).

    Args:
        run_dir: the run directory.
        out: the picture's path (default `<run_dir>/curves.png`).

    Returns:
        The path written.

    """
    run = load_run(run_dir)
    out = Path(out) if out is not None else run.path / CURVES_FILE
    designer = _designer_panels(run)
    agents = [
        m.removeprefix("designer/return/") for m in run.metric_names() if m.startswith("designer/return/")
    ]
    fig, axes = _figure(len(designer) + len(agents))
    if not designer and not agents:
        ax = axes[0]
        ax.text(
            0.5, 0.5, "no episode finished yet:\ndesigner metrics need a longer run", ha="center", va="center"
        )
        ax.set_xlabel(X_LABEL)
        ax.set_title(run.name)
        return _save(fig, out)
    for ax, metric in zip(axes, designer, strict=False):
        steps, values = run.series(metric)
        ax.plot(steps, values, marker="." if len(steps) < 30 else None, color="C0")
        objective = " (objective)" if metric in run.objectives else ""
        ax.set_title(metric.removeprefix("designer/") + objective, fontsize=10)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(_y_label(metric))
    for ax, agent in zip(axes[len(designer) :], agents, strict=False):
        for prefix, label, color in (("designer", "extrinsic", "C0"), ("incentive", "shaped", "C1")):
            steps, values = run.series(f"{prefix}/return/{agent}")
            ax.plot(steps, values, label=label, color=color, marker="." if len(steps) < 30 else None)
        ax.set_title(f"return of {agent}", fontsize=10)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel("return per episode")
        ax.legend(fontsize=8)
    fig.suptitle(f"{run.name}, run {run.path.name}", fontsize=9, y=1 - 0.08 / fig.get_figheight(), va="top")
    return _save(fig, out)


def write_run_curves(run_dir: str | Path) -> Path | None:
    """`run_curves` for the end of a run: a failure to draw warns instead of failing the run."""
    import warnings

    try:
        return run_curves(run_dir)
    except Exception as exc:  # a picture must never cost the run its result
        warnings.warn(f"{run_dir}: could not draw {CURVES_FILE}: {type(exc).__name__}: {exc}", stacklevel=2)
        return None


def _arm_curve(arm: Arm, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(steps, mean, band low, band high) over the steps every run of the arm reports."""
    series = [run.series(metric) for run in arm.runs]
    series = [(s, v) for s, v in series if len(s)]
    if not series:
        return np.array([]), np.array([]), None, None
    common = series[0][0]
    for steps, _ in series[1:]:
        common = np.intersect1d(common, steps)
    values = np.stack([v[np.isin(s, common)] for s, v in series])  # [runs, points]
    if len(series) == 1 or len(common) == 0:
        return common, values[0], None, None
    low, high = bootstrap_band(values)
    return common, values.mean(axis=0), low, high


def plot_arms(arms: list[Arm], metrics: list[str], out: str | Path) -> Path:
    """Draw each metric in its own panel, every arm on the same axes.

    Args:
        arms: the arms (`incentive.results.group_runs`).
        metrics: logged metric names.
        out: the picture's path.

    Returns:
        The path written.

    """
    fig, axes = _figure(len(metrics))
    for ax, metric in zip(axes, metrics, strict=False):
        for index, arm in enumerate(arms):
            steps, mean, low, high = _arm_curve(arm, metric)
            color = f"C{index % 10}"
            label = f"{arm.label} ({len(arm.runs)} run{'s' if len(arm.runs) > 1 else ''})"
            ax.plot(steps, mean, color=color, label=label, marker="." if len(steps) < 30 else None)
            if low is not None:
                ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
        ax.set_title(metric.removeprefix("designer/"), fontsize=10)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(_y_label(metric))
    axes[0].legend(fontsize=7)
    return _save(fig, Path(out))


def plot_runs(patterns: list[str], *, metrics: list[str] | None = None, out: str | Path) -> str:
    """What `incentive plot` does: group the runs into arms, draw them, say what was written.

    Args:
        patterns: run directories, globs or folders of runs.
        metrics: metric names (default: the recipes' objectives).
        out: the picture's path.

    Raises:
        IncentiveError: no runs, an unknown metric, or no metric to draw.

    """
    runs = load_runs(patterns)
    available = list(dict.fromkeys(m for run in runs for m in run.metric_names()))
    names = metrics or list(dict.fromkeys(m for run in runs for m in run.objectives))
    if not names:
        raise IncentiveError(
            "incentive plot: these runs' recipes name no objective; choose with --metric NAME"
        )
    chosen = [resolve_metric(name, available) for name in names]
    arms = group_runs(runs)
    written = plot_arms(arms, chosen, out)
    return f"{len(runs)} run(s) in {len(arms)} arm(s): wrote {written}"
