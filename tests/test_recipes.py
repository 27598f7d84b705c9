"""Every recipe in recipes/ validates, builds, and trains (briefly)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from incentive.cli import main
from incentive.recipe import load_recipe, option_label
from incentive.runner import start_run
from incentive.search_space import trial_recipe

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


def test_the_folder_has_the_promised_recipes():
    names = {path.stem for path in RECIPES}
    assert {"quickstart", "ipd_selfish", "ipd_prosocial", "stag_hunt_prosocial"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(path, capsys):
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_two_iterations(path, tmp_path):
    recipe = load_recipe(path, [f"log.dir={tmp_path}", "log.wandb.mode=disabled"])
    steps = 2 * recipe.env.num_envs * recipe.learner.rollout_steps
    recipe = load_recipe(
        path, [f"log.dir={tmp_path}", "log.wandb.mode=disabled", f"train.total_steps={steps}"]
    )
    if recipe.structure_choices:  # a search recipe: train its first design of every one_of group
        first = {}
        for i in recipe.structure_choices:
            group = recipe.incentives[i]
            first[group.name or f"incentives.{i}"] = option_label(group.one_of[0])
        design = {**first, **_lows(recipe)}
        recipe = trial_recipe(optuna.trial.FixedTrial(design), recipe)
    run_dir, metrics = start_run(recipe, run_id="smoke")
    assert metrics["train/iteration"] == 2
    assert (run_dir / "checkpoint.pt").exists()


def _lows(recipe) -> dict:
    """The low end of every searched range (the first choice), as Optuna params."""
    values = {}
    for path, param in recipe.search.space.items():
        values[path] = param.choices[0] if param.choices is not None else param.low
    return values
