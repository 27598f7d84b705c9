"""Starting and resuming runs: the run directory, the resolved recipe, the plugins.

A run that fails or is stopped before its first iteration is complete leaves
no run directory behind (one it created; a directory that was there before is
left as it was, without the files the run wrote). A resumed run whose
checkpoint already covers its whole budget does nothing: `RunFinished` says
so, before any plugin (W&B) is set up.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from incentive.checkpoint import load_checkpoint
from incentive.errors import IncentiveError
from incentive.loop import CHECKPOINT, METRICS, PERF, Training
from incentive.metrics import MetricsFile
from incentive.plugin_manager import make_plugin_manager
from incentive.recipe import Recipe, parse_yaml, plain_name, validate_recipe

__all__ = [
    "RECIPE_FILE",
    "RunFinished",
    "new_run_dir",
    "num_iterations",
    "resume_run",
    "start_run",
    "train_in",
]

RECIPE_FILE = "recipe.yaml"


class RunFinished(Exception):  # noqa: N818  (a signal, not an error)
    """`--resume` of a run that already trained its whole budget: nothing to do.

    Args:
        run_dir: the run directory.
        iteration: the last iteration, which the checkpoint covers.
        metrics: that iteration's metrics line.

    """

    def __init__(self, run_dir: Path, iteration: int, metrics: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.iteration = iteration
        self.metrics = metrics
        super().__init__(f"{run_dir}: this run already finished (iteration {iteration}); nothing to resume")


def num_iterations(recipe: Recipe) -> int:
    """Iterations the run trains: `train.total_steps` rounded up to whole iterations."""
    return max(1, math.ceil(recipe.train.total_steps / (recipe.learner.rollout_steps * recipe.env.num_envs)))


def new_run_dir(recipe: Recipe, run_id: str | None = None) -> Path:
    """`<log.dir>/<recipe name>/<run id>/`, created; the id defaults to time + random suffix.

    Raises:
        IncentiveError: the run id is not a plain name, or a run exists there.

    """
    if run_id is not None:
        try:
            plain_name(run_id, "--run-id")
        except ValueError as exc:
            raise IncentiveError(str(exc)) from None
    run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
    run_dir = Path(recipe.log.dir) / recipe.name / run_id
    if (run_dir / RECIPE_FILE).exists():
        raise IncentiveError(f"{run_dir}: a run already exists there (use --resume to continue it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _remove_unstarted(run_dir: Path, existed: bool) -> None:
    """Remove what a run that never completed an iteration wrote (the directory, if it made it)."""
    if (run_dir / METRICS).exists() and MetricsFile(run_dir / METRICS).count() > 0:
        return
    if existed:
        for name in (RECIPE_FILE, METRICS, PERF):
            (run_dir / name).unlink(missing_ok=True)
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()  # <log.dir>/<recipe name>, if this was its only run
    except OSError:
        pass


def _training(recipe: Recipe, run_dir: Path, extra_plugins: Iterable[tuple[str, Any]]) -> Training:
    pm = make_plugin_manager(recipe)
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
    return Training(recipe, run_dir=run_dir, pm=pm)


def start_run(
    recipe: Recipe, *, run_id: str | None = None, extra_plugins: Iterable[tuple[str, Any]] = ()
) -> tuple[Path, dict[str, float]]:
    """Run a recipe from scratch in a new run directory.

    Args:
        recipe: the validated recipe.
        run_id: the run directory's name (default: time-based).
        extra_plugins: (name, object) pairs registered besides the recipe's
            plugins (the CLI's progress bar).

    Returns:
        (run directory, last iteration's metrics).

    """
    existed = run_id is not None and (Path(recipe.log.dir) / recipe.name / run_id).exists()
    run_dir = new_run_dir(recipe, run_id)
    try:
        (run_dir / RECIPE_FILE).write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
        training = _training(recipe, run_dir, extra_plugins)
        return run_dir, training.run()
    except BaseException:
        _remove_unstarted(run_dir, existed)
        raise
    finally:
        _draw_curves(run_dir)


def train_in(recipe: Recipe, run_dir: Path, *, extra_plugins: Iterable[tuple[str, Any]] = ()) -> Training:
    """Run a recipe in a given new directory (a search trial's seed); returns the finished `Training`.

    Its `status` says how the run ended ("completed", or "pruned" by a search
    pruner) and its `metrics_file` holds the metrics. No `curves.png`: a
    study draws its own plots.

    Raises:
        IncentiveError: the directory already holds a run, or the run failed.

    """
    run_dir = Path(run_dir)
    if (run_dir / RECIPE_FILE).exists():
        raise IncentiveError(f"{run_dir}: a run already exists there")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECIPE_FILE).write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    training = _training(recipe, run_dir, extra_plugins)
    training.run()
    return training


def load_run_recipe(run_dir: Path) -> Recipe:
    """The resolved recipe of an existing run directory."""
    recipe_file = Path(run_dir) / RECIPE_FILE
    if not Path(run_dir).is_dir() or not recipe_file.exists():
        raise IncentiveError(
            f"{run_dir}: not a run directory (expected {RECIPE_FILE} and {CHECKPOINT} in it, "
            "as `incentive run` writes them)"
        )
    try:
        data = parse_yaml(recipe_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise IncentiveError(f"{recipe_file}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise IncentiveError(f"{recipe_file}: not a recipe (a YAML mapping)")
    return validate_recipe(data, source=str(recipe_file))


def resume_run(run_dir: Path, *, extra_plugins: Iterable[tuple[str, Any]] = ()) -> dict[str, float]:
    """Continue a stopped run from its last checkpoint, as if it had never stopped.

    Raises:
        RunFinished: the checkpoint covers the whole budget (nothing was opened or changed).
        IncentiveError: no run there, no checkpoint, or a checkpoint refused.

    """
    run_dir = Path(run_dir)
    recipe = load_run_recipe(run_dir)
    if not (run_dir / CHECKPOINT).exists():
        raise IncentiveError(
            f"{run_dir}: the run stopped before its first checkpoint; there is nothing to resume "
            f"(start it again with `incentive run`)"
        )
    state = load_checkpoint(run_dir / CHECKPOINT)
    if state["iteration"] >= num_iterations(recipe):
        metrics_file = MetricsFile(run_dir / METRICS)
        metrics_file.truncate(state["metrics_lines"])
        lines = metrics_file.read()
        raise RunFinished(run_dir, state["iteration"], lines[-1] if lines else {})
    training = _training(recipe, run_dir, extra_plugins)
    try:
        return training.run(resume=True, checkpoint=state)
    finally:
        _draw_curves(run_dir)


def _draw_curves(run_dir: Path) -> None:
    """`curves.png` from `metrics.jsonl`, after a run that logged an iteration ended (however it ended)."""
    metrics = run_dir / METRICS
    if metrics.is_file() and metrics.stat().st_size > 0:
        from incentive.plots import write_run_curves

        write_run_curves(run_dir)
