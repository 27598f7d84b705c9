"""Determinism, and --resume after a real SIGKILL continues bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from incentive.recipe import load_recipe
from incentive.runner import RunFinished, resume_run, start_run


def test_same_recipe_and_seed_give_identical_metrics(write_recipe, tmp_path: Path):
    recipe = load_recipe(write_recipe())
    first, _ = start_run(recipe, run_id="a")
    second, _ = start_run(recipe, run_id="b")
    a = (first / "metrics.jsonl").read_bytes()
    assert a == (second / "metrics.jsonl").read_bytes()
    assert a.count(b"\n") == 3


def test_different_seeds_give_different_metrics(write_recipe):
    first, _ = start_run(load_recipe(write_recipe()), run_id="s3")
    second, _ = start_run(load_recipe(write_recipe(seed=4)), run_id="s4")
    assert (first / "metrics.jsonl").read_bytes() != (second / "metrics.jsonl").read_bytes()


def test_resume_of_a_finished_run_changes_nothing(write_recipe):
    run_dir, _ = start_run(load_recipe(write_recipe()), run_id="done")
    before = (run_dir / "metrics.jsonl").read_bytes()
    with pytest.raises(RunFinished) as info:
        resume_run(run_dir)
    assert info.value.iteration == 3 and info.value.metrics["train/iteration"] == 3
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "incentive.cli", *args]


def test_resume_after_sigkill_matches_an_uninterrupted_run(write_recipe, tmp_path: Path):
    # 40 iterations, a checkpoint every 3: the kill lands between checkpoints
    path = write_recipe(
        train__total_steps=8 * 16 * 40,
        train__checkpoint_every=3,
        train__threads=1,
        incentives=[{"plugin": "reward_sharing", "params": {"s": 0.5}}],
    )
    env = {**os.environ, "WANDB_SILENT": "true"}
    runs = tmp_path / "runs" / "tiny"
    subprocess.run(
        _cli("run", str(path), "--quiet", "--run-id", "whole"),
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )

    victim = subprocess.Popen(
        _cli("run", str(path), "--quiet", "--run-id", "killed"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = runs / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        lines = metrics.read_text().count("\n") if metrics.exists() else 0
        if lines >= 8 and (runs / "killed" / "checkpoint.pt").exists():
            break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = metrics.read_text().count("\n")
    assert 8 <= killed_at < 40, "the kill must land mid-run"

    resumed = subprocess.run(
        _cli("run", "--resume", str(runs / "killed"), "--quiet"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = (runs / "whole" / "metrics.jsonl").read_bytes()
    assert whole.count(b"\n") == 40
    assert metrics.read_bytes() == whole
