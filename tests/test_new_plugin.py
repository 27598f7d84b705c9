"""`incentive new-plugin`: the package it writes installs, is listed, and its own tests (a real run) pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe_data

from incentive.cli import main


def test_new_plugin_package_installs_lists_and_runs(capsys, tmp_path: Path):
    package = tmp_path / "pkg"
    assert main(["new-plugin", "threshold_bonus", "--dir", str(package)]) == 0
    assert "pip install -e" in capsys.readouterr().out
    pyproject = (package / "pyproject.toml").read_text()
    assert '[project.entry-points."incentive.plugins"]' in pyproject
    assert 'threshold_bonus = "incentive_threshold_bonus:ThresholdBonus"' in pyproject
    plugin = (package / "incentive_threshold_bonus.py").read_text()
    assert "class Params(BaseModel)" in plugin and "def incentive_shape_reward(self, run" in plugin

    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--target", str(site), str(package)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "incentive.cli"]

    listed = subprocess.run([*cli, "plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "threshold_bonus\treward shaping\tincentive-threshold-bonus 0.1.0\t" in listed.stdout

    # the package's own tests: the term by hand, and a tiny recipe trained with the installed plugin
    pytest_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    tests = subprocess.run(
        [*pytest_cmd, "tests"], capture_output=True, text=True, env=env, timeout=600, cwd=package
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    # and `incentive run` uses it by name from a recipe
    data = tiny_recipe_data(tmp_path / "runs")
    data["incentives"] = [{"plugin": "threshold_bonus", "params": {"bonus": 2.0, "threshold": -100.0}}]
    recipe = tmp_path / "uses_it.yaml"
    recipe.write_text(yaml.safe_dump(data))
    ran = subprocess.run(
        [*cli, "run", str(recipe), "--quiet", "--run-id", "r"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr
    last = (tmp_path / "runs" / "tiny" / "r" / "metrics.jsonl").read_text().splitlines()[-1]
    # every step pays 2.0 (every reward is above -100): 5-step episodes give 10.0
    assert '"incentive/threshold_bonus/bonus": 10.0' in last
    assert (tmp_path / "runs" / "tiny" / "r" / "curves.png").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["new-plugin", "My-Bonus"], "is not a plugin name"),
        (["new-plugin", "class"], "is not a plugin name"),
        (["new-plugin", "reward_sharing"], "already installed"),
    ],
)
def test_new_plugin_refuses_bad_names(capsys, tmp_path: Path, argv, fragment):
    assert main([*argv, "--dir", str(tmp_path / "x")]) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_new_plugin_refuses_a_non_empty_directory(capsys, tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["new-plugin", "fresh_name", "--dir", str(tmp_path)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
