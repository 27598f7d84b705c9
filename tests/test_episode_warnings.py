"""A rollout (or a whole run) shorter than one episode is warned about, naming the fields."""

from __future__ import annotations

import warnings

import pytest

from incentive.cli import main
from incentive.errors import RecipeWarning
from incentive.loop import Training, make_env
from incentive.recipe import load_recipe
from incentive.sizes import episode_warnings


def _warnings(write_recipe, **changes) -> list[str]:
    recipe = load_recipe(write_recipe(**changes))
    return episode_warnings(recipe, make_env(recipe.env.model_copy(update={"num_envs": 1})))


def test_rollout_shorter_than_episode_names_both_fields(write_recipe):
    # IPD episodes of 20 steps, T = 8: an episode ends every ceil(20 / 8) = 3 iterations
    found = _warnings(
        write_recipe,
        env__params={"episode_length": 20},
        learner__rollout_steps=8,
        train__total_steps=8 * 8 * 10,
    )
    assert len(found) == 1
    assert "learner.rollout_steps 8" in found[0] and "env.params.episode_length 20" in found[0]
    assert "every 3 iterations" in found[0]


@pytest.mark.parametrize("steps", [5, 16])
def test_rollout_of_an_episode_or_more_is_silent(write_recipe, steps):
    assert _warnings(write_recipe, learner__rollout_steps=steps) == []  # episode_length 5


def test_run_shorter_than_an_episode_says_no_designer_metric(write_recipe):
    # 2 iterations of 16 steps = 32 steps per env < 50: no episode can finish
    found = _warnings(write_recipe, env__params={"episode_length": 50}, train__total_steps=8 * 16 * 2)
    assert len(found) == 1
    assert "32 steps per env" in found[0] and "env.params.episode_length is 50" in found[0]
    assert "train.total_steps" in found[0]


def test_max_steps_horizon_is_read_too(write_recipe):
    found = _warnings(
        write_recipe,
        env={"id": "escape_room", "num_envs": 8, "params": {"max_steps": 40}},
        objective={"metric": "collective_return"},
        train__total_steps=8 * 16 * 10,
    )
    assert len(found) == 1 and "env.params.max_steps 40" in found[0]


def test_env_without_a_horizon_param_is_silent(write_recipe):
    found = _warnings(
        write_recipe, env={"id": "connect_four", "num_envs": 8}, objective={"metric": "first_player_win_rate"}
    )
    assert found == []


def test_run_warns_once_as_one_plain_cli_line(write_recipe, capsys):
    path = write_recipe(env__params={"episode_length": 20}, learner__rollout_steps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["run", str(path), "--quiet", "--run-id", "short"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "RecipeWarning" not in err
    assert "learner.rollout_steps 8" in err and "env.params.episode_length 20" in err


def test_training_emits_a_recipe_warning(write_recipe):
    from incentive.plugin_manager import make_plugin_manager
    from incentive.runner import new_run_dir

    recipe = load_recipe(write_recipe(env__params={"episode_length": 20}, learner__rollout_steps=8))
    with pytest.warns(RecipeWarning, match=r"learner\.rollout_steps 8 .*env\.params\.episode_length 20"):
        Training(recipe, run_dir=new_run_dir(recipe), pm=make_plugin_manager(recipe))
