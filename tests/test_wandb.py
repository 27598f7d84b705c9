"""The W&B logger: offline by default, records config and metrics, silent, never fatal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from wandb_records import history_rows, records_with_history, run_config

from incentive.recipe import load_recipe
from incentive.runner import start_run


def offline_run_file(run_dir: Path) -> Path:
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    return path


def test_offline_run_records_config_and_every_metric(write_recipe):
    recipe = load_recipe(write_recipe(log__wandb={"mode": "offline", "project": "tests"}))
    run_dir, _ = start_run(recipe, run_id="wb")
    records = records_with_history(offline_run_file(run_dir), 3)
    rows = history_rows(records)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(metrics) == 3
    for row, line in zip(rows, metrics, strict=True):
        for key in ("designer/collective_return", "designer/equality", "incentive/reward_sharing/shared"):
            assert json.loads(row[key]) == line[key]
        assert "perf/steps_per_s" in row
    config = run_config(records)
    assert json.loads(config["name"]) == "tiny"
    assert json.loads(config["incentives"])[0]["params"] == {"s": 0.5}
    assert json.loads(config["env"]) == recipe.model_dump(mode="json")["env"]
    assert not list(run_dir.glob("wandb/offline-run-*/files/wandb-summary.json"))


def test_wandb_prints_nothing(write_recipe, tmp_path: Path):
    path = write_recipe(log__wandb={"mode": "offline"})
    done = subprocess.run(
        [sys.executable, "-m", "incentive.cli", "run", str(path), "--quiet", "--run-id", "silent"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "wandb:" not in done.stdout.lower() and done.stderr == ""
    assert done.stdout.lstrip().startswith("run directory:") and "summary" in done.stdout


def test_failing_wandb_never_stops_a_run(write_recipe, monkeypatch):
    import wandb

    def broken_init(**kwargs):
        raise ConnectionError("unreachable")

    monkeypatch.setattr(wandb, "init", broken_init)
    run_dir, metrics = start_run(load_recipe(write_recipe(log__wandb={"mode": "online"})), run_id="down")
    assert metrics["train/iteration"] == 3
    assert "ConnectionError: unreachable" in (run_dir / "wandb-error.txt").read_text()


def test_missing_wandb_never_stops_a_run(write_recipe, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    run_dir, metrics = start_run(load_recipe(write_recipe(log__wandb={"mode": "offline"})), run_id="gone")
    assert metrics["train/iteration"] == 3
    assert "ModuleNotFoundError" in (run_dir / "wandb-error.txt").read_text()


def test_disabled_wandb_writes_nothing(write_recipe):
    run_dir, _ = start_run(load_recipe(write_recipe()), run_id="off")
    assert not (run_dir / "wandb").exists()
