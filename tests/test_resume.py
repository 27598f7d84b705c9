"""Determinism, and --resume after a real SIGKILL continues bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
from kill_and_resume import kill_and_resume

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


def test_resume_after_sigkill_matches_an_uninterrupted_run(write_recipe, tmp_path: Path):
    # 40 iterations, a checkpoint every 3: the kill lands between checkpoints
    path = write_recipe(
        train__total_steps=8 * 16 * 40,
        train__checkpoint_every=3,
        train__threads=1,
        incentives=[{"plugin": "reward_sharing", "params": {"s": 0.5}}],
    )
    whole, resumed = kill_and_resume(path, tmp_path / "runs" / "tiny", iterations=40)
    assert resumed == whole
