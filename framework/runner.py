"""Starting and resuming runs: the run directory, the resolved recipe, the plugins."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from incentive.errors import IncentiveError
from incentive.loop import CHECKPOINT, METRICS, Training
from incentive.plugin_manager import make_plugin_manager
from incentive.recipe import Recipe, validate_recipe

__all__ = ["RECIPE_FILE", "new_run_dir", "resume_run", "start_run", "train_in"]

RECIPE_FILE = "recipe.yaml"


def new_run_dir(recipe: Recipe, run_id: str | None = None) -> Path:
    """`<log.dir>/<recipe name>/<run id>/`, created; the id defaults to time + random suffix."""
    run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
    run_dir = Path(recipe.log.dir) / recipe.name / run_id
    if (run_dir / RECIPE_FILE).exists():
        raise IncentiveError(f"{run_dir}: a run already exists there (use --resume to continue it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


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
    run_dir = new_run_dir(recipe, run_id)
    (run_dir / RECIPE_FILE).write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    training = _training(recipe, run_dir, extra_plugins)
    try:
        return run_dir, training.run()
    finally:
        _draw_curves(run_dir)


def train_in(recipe: Recipe, run_dir: Path, *, extra_plugins: Iterable[tuple[str, Any]] = ()) -> Training:
    """Run a recipe in a given new directory (a search trial's seed); returns the finished `Training`.

    Its `status` says how the run ended ("completed", or "pruned" by a search
    pruner) and its `metrics_file` holds the metrics.

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
    return validate_recipe(yaml.safe_load(recipe_file.read_text()), source=str(recipe_file))


def resume_run(run_dir: Path, *, extra_plugins: Iterable[tuple[str, Any]] = ()) -> dict[str, float]:
    """Continue a stopped run from its last checkpoint, as if it had never stopped."""
    run_dir = Path(run_dir)
    recipe = load_run_recipe(run_dir)
    if not (run_dir / CHECKPOINT).exists():
        raise IncentiveError(
            f"{run_dir}: the run stopped before its first checkpoint; there is nothing to resume "
            f"(start it again with `incentive run`)"
        )
    training = _training(recipe, run_dir, extra_plugins)
    try:
        return training.run(resume=True)
    finally:
        _draw_curves(run_dir)


def _draw_curves(run_dir: Path) -> None:
    """`curves.png` from `metrics.jsonl`, after a run that logged an iteration ended (however it ended)."""
    metrics = run_dir / METRICS
    if metrics.is_file() and metrics.stat().st_size > 0:
        from incentive.plots import write_run_curves

        write_run_curves(run_dir)
