"""The CLI: bad input gets one clear message and exit code 2; listings work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from incentive.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


RECIPES = Path(__file__).parent.parent / "recipes"


def run_recipe_briefly(capsys, tmp_path: Path, recipe: str, *overrides: str) -> tuple[int, str]:
    """`incentive run` of a shipped recipe for one iteration on 4 envs, W&B off: (exit code, stderr)."""
    args = ["run", str(RECIPES / recipe), "--quiet", "--set", f"log.dir={tmp_path}"]
    args += ["--set", "log.wandb.mode=disabled", "--set", "train.total_steps=1", "--set", "env.num_envs=4"]
    for override in overrides:
        args += ["--set", override]
    code, _, err = run_cli(capsys, *args)
    return code, err


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    # warnings about the recipe (one line each, e.g. a run shorter than an episode) may come first
    lines = err.splitlines()
    while lines and lines[0].startswith("warning:"):
        lines.pop(0)
    assert lines and lines[0].startswith("error:"), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_malformed_yaml(capsys, tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nenv: {id: prisoners_dilemma\n")
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, str(path), "malformed YAML", "line")


def test_not_a_mapping(capsys, tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, str(path), "mapping")


def test_missing_file(capsys, tmp_path: Path):
    code, _, err = run_cli(capsys, "run", str(tmp_path / "nope.yaml"))
    assert_clean_error(code, err, "nope.yaml", "no such recipe file")


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"bogus": 1}, ["unknown field 'bogus'"]),
        ({"learner__bogus": 1}, ["unknown field 'learner.bogus'"]),
        ({"learner__lr": "fast"}, ["field 'learner.lr'", "valid number", '"fast"']),
        ({"learner__epochs": 0}, ["field 'learner.epochs'", "greater than or equal to 1"]),
        (
            {"env__id": "prisoners_dilema"},
            ["field 'env.id'", "Did you mean 'prisoners_dilemma'", "Available envs"],
        ),
        ({"env__params": {"episode_lenght": 4}}, ["unknown field 'env.params.episode_lenght'"]),
        ({"env__params": {"episode_length": 0}}, ["field 'env.params.episode_length'"]),
        (
            {"env": {"id": "connect_four", "num_envs": 8, "params": {"random_opening": 7}}},
            ["field 'env.params.random_opening'", "less than or equal to 6"],
        ),
        (
            {"env": {"id": "connect_four", "num_envs": 8, "params": {"random_opening": -1}}},
            ["field 'env.params.random_opening'", "greater than or equal to 0"],
        ),
        (
            {"incentives": [{"plugin": "reward_shring"}]},
            ["field 'incentives.0.plugin'", "Did you mean 'reward_sharing'"],
        ),
        (
            {"incentives": [{"plugin": "reward_sharing", "params": {"q": 1}}]},
            ["unknown field 'incentives.0.params.q'"],
        ),
        (
            {"objective": {"metric": "colective_return"}},
            ["field 'objective.metric'", "Did you mean 'collective_return'"],
        ),
    ],
)
def test_bad_recipe_fields(capsys, write_recipe, changes, fragments):
    path = write_recipe(**changes)
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, str(path), *fragments)
    code, _, err = run_cli(capsys, "run", str(path), "--quiet")
    assert_clean_error(code, err, *fragments)


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("learner", ["expected path=value"]),
        ("=3", ["path before '=' is empty"]),
        ("incentives.4.params.s=1", ["'incentives.4' needs an index from 0 to 0"]),
        ("learner.lr=abc", ["field 'learner.lr'", "with --set overrides"]),
        ("learner.epochs.x=1", ["'learner.epochs' is a value, not a section"]),
        ("learner.lr.x=1", ["field 'learner.lr'", "valid number"]),
        ("learner.nonsense=1", ["unknown field 'learner.nonsense'"]),
        ("learner.hidden_sizes=[1, 2", ["not valid YAML"]),
    ],
)
def test_bad_overrides(capsys, write_recipe, override, fragments):
    code, _, err = run_cli(capsys, "validate", str(write_recipe()), "--set", override)
    assert_clean_error(code, err, *fragments)


def test_good_override_applies(capsys, write_recipe):
    code, out, _ = run_cli(capsys, "validate", str(write_recipe()), "--set", "train.total_steps=777")
    assert code == 0
    assert "777 steps" in out


def test_resume_of_a_non_run_directory(capsys, tmp_path: Path):
    code, _, err = run_cli(capsys, "run", "--resume", str(tmp_path))
    assert_clean_error(code, err, "not a run directory")


def test_resume_needs_a_checkpoint(capsys, tmp_path: Path, write_recipe):
    run_dir = tmp_path / "stopped"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(write_recipe().read_text())
    code, _, err = run_cli(capsys, "run", "--resume", str(run_dir))
    assert_clean_error(code, err, "before its first checkpoint")


def test_plugins_lists_builtins_with_families_and_source(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    assert "reward_sharing" in out and "reward shaping" in out
    assert "wandb" in out and "lifecycle" in out
    assert "incentive 0.1.0" in out


def test_envs_lists_matrix_games(capsys):
    code, out, _ = run_cli(capsys, "envs")
    assert code == 0
    for name in ("prisoners_dilemma", "stag_hunt", "chicken", "incentive.envs.matrix_games:Chicken"):
        assert name in out


def test_schema_is_the_recipe_json_schema(capsys):
    code, out, _ = run_cli(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["title"] == "Recipe"
    assert {"env", "learner", "incentives", "objective", "train", "search"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_run_prints_summary_and_run_directory(capsys, write_recipe, tmp_path: Path):
    code, out, _ = run_cli(capsys, "run", str(write_recipe()), "--quiet", "--run-id", "r1")
    assert code == 0
    run_dir = tmp_path / "runs" / "tiny" / "r1"
    assert str(run_dir) in out.replace("\n", "")
    assert "designer/collective_return" in out
    assert (run_dir / "metrics.jsonl").exists() and (run_dir / "checkpoint.pt").exists()


def test_run_refuses_to_overwrite_a_run(capsys, write_recipe):
    path = write_recipe()
    assert run_cli(capsys, "run", str(path), "--quiet", "--run-id", "same")[0] == 0
    code, _, err = run_cli(capsys, "run", str(path), "--quiet", "--run-id", "same")
    assert_clean_error(code, err, "already exists", "--resume")
