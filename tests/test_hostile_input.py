"""Hostile and absurd recipes: a clear one-paragraph error naming the file or field, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from incentive.cli import main
from incentive.loop import make_env
from incentive.recipe import load_recipe, plain_name
from incentive.sizes import check_sizes


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("error:")
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def tiny_text(write_recipe) -> str:
    return write_recipe().read_text()


def test_non_utf8_bytes_name_the_file_and_line(capsys, write_recipe, tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(tiny_text(write_recipe).encode() + "# caf\xe9\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "validate", str(path))
    lines = tiny_text(write_recipe).count("\n") + 1
    assert_clean_error(code, err, str(path), "not a UTF-8", "0xe9", f"line {lines}")


def test_binary_file(capsys, tmp_path: Path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(bytes(range(256)))
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, str(path))


def test_duplicate_key_names_the_key_and_both_lines(capsys, tmp_path: Path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: twice\nseed: 1\nenv: {id: prisoners_dilemma}\nseed: 2\n")
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, str(path), "'seed' is given twice", "line 2", "line 4")


def test_duplicate_key_in_a_nested_mapping(capsys, tmp_path: Path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: twice\nenv:\n  id: prisoners_dilemma\n  num_envs: 2\n  num_envs: 3\n")
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, "'num_envs' is given twice", "line 4", "line 5")


def test_unquoted_date_is_read_as_the_string_it_looks_like(capsys, write_recipe, tmp_path: Path):
    path = write_recipe()
    path.write_text(path.read_text().replace("name: tiny", "name: 2024-05-01"))
    code, out, err = run_cli(capsys, "validate", str(path), "--set", "seed=4")
    assert code == 0, err
    assert "'2024-05-01'" in out
    assert load_recipe(path).name == "2024-05-01"


@pytest.mark.parametrize(
    ("line", "fragments"),
    [
        ("name: !!binary aGVsbG8=", ["field 'name'", "!!binary", "line "]),
        ("name: !!set {a: null}", ["field 'name'", "!!set", "line "]),
        ("name: !custom x", ["field 'name'", "!custom", "line "]),
        ("name: !!python/object:os.system x", ["field 'name'", "!!python/object", "line "]),
        ("name: [1, !!binary aGVsbG8=]", ["!!binary", "line "]),
    ],
)
def test_non_json_yaml_values_are_refused(capsys, write_recipe, line, fragments):
    path = write_recipe()
    path.write_text(path.read_text().replace("name: tiny", line))
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, str(path), *fragments)


def test_non_string_keys_are_refused_naming_the_field(capsys, write_recipe):
    path = write_recipe()
    data = yaml.safe_load(path.read_text())
    data["env"]["params"] = {1: 2}
    path.write_text(yaml.safe_dump(data))
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, "env.params", "key 1")


@pytest.mark.parametrize("depth", [60, 5000])
def test_deep_nesting(capsys, tmp_path: Path, depth: int):
    path = tmp_path / "deep.yaml"
    path.write_text(
        "name: deep\nenv: {id: prisoners_dilemma, params: {x: " + "[" * depth + "]" * depth + "}}\n"
    )
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, str(path), "nest")


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("env.num_envs=9223372036854775808", ["'env.num_envs'", "less than or equal"]),
        ("seed=1e30", ["'seed'", "1e+30"]),
        ("seed=1.0e+30", ["'seed'"]),
        ("env.params.episode_length=1000000000000000000000000000000", ["'env.params.episode_length'"]),
        ("learner.lr=1.0e+308", ["'learner.lr'", "less than or equal to 1"]),
        ("learner.lr=.inf", ["'learner.lr'", "finite"]),
        ("learner.ent_coef=.nan", ["'learner.ent_coef'"]),
        ("learner.hidden_sizes=[2147483648]", ["'learner.hidden_sizes.0'"]),
        ("train.total_steps=1.5", ["'train.total_steps'", "fractional"]),
        ("env.params.payoffs=[[[.inf, 1], [1, 1]], [[1, 1], [1, 1]]]", ["'env.params.payoffs"]),
    ],
)
def test_absurd_numbers_are_bounded(capsys, write_recipe, override, fragments):
    code, _, err = run_cli(capsys, "validate", str(write_recipe()), "--set", override)
    assert_clean_error(code, err, *fragments)


def test_the_same_bounds_hold_in_the_file(capsys, write_recipe):
    path = write_recipe()
    path.write_text(path.read_text().replace("seed: 3", "seed: 1e30"))
    code, _, err = run_cli(capsys, "validate", str(path))
    assert_clean_error(code, err, str(path), "'seed'")


@pytest.mark.parametrize("value", ["1e6", "1E6", "1.0e+6", "1_000_000", "1000000.0"])
def test_integral_scientific_notation_is_an_integer(capsys, write_recipe, value):
    code, out, err = run_cli(capsys, "validate", str(write_recipe()), "--set", f"train.total_steps={value}")
    assert code == 0, err
    assert "1,000,000 steps" in out


def test_integral_scientific_notation_in_the_file(write_recipe):
    path = write_recipe()
    path.write_text(path.read_text().replace("total_steps: 384", "total_steps: 2e5"))
    assert load_recipe(path).train.total_steps == 200_000


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["learner.hidden_sizes=[1048576, 1048576]"], ["learner.hidden_sizes", "GiB", "available"]),
        (["env.num_envs=16000000", "learner.rollout_steps=1000"], ["env.num_envs", "GiB", "rollout buffers"]),
    ],
)
def test_runs_that_cannot_fit_in_memory_are_refused(capsys, write_recipe, overrides, fragments):
    argv = ["validate", str(write_recipe())]
    for override in overrides:
        argv += ["--set", override]
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, *fragments)


def test_memory_refusal_happens_before_allocation_in_a_run(capsys, write_recipe, tmp_path: Path):
    path = write_recipe()
    code, _, err = run_cli(
        capsys,
        "run",
        str(path),
        "--quiet",
        "--run-id",
        "big",
        "--set",
        "learner.hidden_sizes=[1048576, 1048576]",
    )
    assert_clean_error(code, err, "learner.hidden_sizes")
    assert not (tmp_path / "runs" / "tiny" / "big").exists()


def test_size_estimate_by_hand(write_recipe):
    # IPD: 2 agents, obs 5, 2 actions, shared network: features 5 + 2 = 7
    recipe = load_recipe(write_recipe(learner__hidden_sizes=[16], learner__minibatches=2))
    probe = make_env(recipe.env.model_copy(update={"num_envs": 1}))
    estimate = check_sizes(recipe, probe, available=10**12)
    rows = 16 * 8 * 2  # T x E x A
    assert estimate.rollout == rows * (4 * (7 + 7) + 3 + 2)
    params = (7 * 16 + 16 + 16 * 2 + 2) + (7 * 16 + 16 + 16 * 1 + 1)
    assert estimate.networks == params * 16
    assert estimate.update == (rows // 2) * 2 * (7 + 16 + 2) * 12
    with pytest.raises(Exception, match="needs about"):
        check_sizes(recipe, probe, available=estimate.total - 1)


def test_minibatches_larger_than_the_batch(capsys, write_recipe):
    code, _, err = run_cli(capsys, "validate", str(write_recipe()), "--set", "learner.minibatches=257")
    assert_clean_error(
        code, err, "'learner.minibatches'", "257", "256", "learner.rollout_steps", "env.num_envs"
    )
    assert run_cli(capsys, "validate", str(write_recipe()), "--set", "learner.minibatches=256")[0] == 0


@pytest.mark.parametrize("run_id", ["../../escape", "a/b", "..", ".hidden", "x\x00y", ""])
def test_run_id_must_be_a_plain_name(capsys, write_recipe, tmp_path: Path, run_id):
    code, _, err = run_cli(capsys, "run", str(write_recipe()), "--quiet", "--run-id", run_id)
    assert_clean_error(code, err, "--run-id")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs" / "escape").exists()


def test_plain_name():
    assert plain_name("20240501-1200-ab12") == "20240501-1200-ab12"
    assert plain_name("seed_3.v2") == "seed_3.v2"
    for bad in ["..", ".", "../x", "a/b", "a\\b", ".x", "", "a\nb", "x" * 256]:
        with pytest.raises(ValueError, match="study name"):
            plain_name(bad, "study name")


def test_recipe_name_must_be_a_plain_name(capsys, write_recipe):
    code, _, err = run_cli(capsys, "validate", str(write_recipe()), "--set", "name=..")
    assert_clean_error(code, err, "'name'")
