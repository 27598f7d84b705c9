"""After any number of stops and resumes, W&B holds exactly `metrics.jsonl`: one run id, no duplicate
steps, no gaps (read back from the offline run files)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wandb_records import history_rows, read_records

from incentive import hookimpl
from incentive.plugins.wandb_logger import logged_steps
from incentive.recipe import load_recipe
from incentive.runner import resume_run, start_run


def wandb_history(run_dir: Path) -> tuple[set[str], list[tuple[int, dict]]]:
    """(run ids, [(step, row)] over every session's offline file, in session order)."""
    ids, rows = set(), []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        records = read_records(path)
        for record in records:
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
            elif kind == "history":
                rows.append((record.history.step.num, history_rows([record])[0]))
    return ids, rows


def assert_wandb_equals_metrics(run_dir: Path) -> None:
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    deadline = time.monotonic() + 60  # W&B's service writes its files in the background
    ids, rows = wandb_history(run_dir)
    while len(rows) < len(metrics) and time.monotonic() < deadline:
        time.sleep(0.5)
        ids, rows = wandb_history(run_dir)
    assert len(ids) == 1
    steps = [step for step, _ in rows]
    assert sorted(steps) == list(range(1, len(metrics) + 1)), steps  # no gaps, no duplicates
    by_step = dict(rows)
    for line in metrics:
        row = by_step[line["train/iteration"]]
        for key, value in line.items():
            assert json.loads(row[key]) == value, key


class StopAt:
    """Raises KeyboardInterrupt (Ctrl-C) at the end of some iterations."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    @hookimpl
    def incentive_iteration_end(self, iteration):
        if iteration == self.iteration:
            raise KeyboardInterrupt


def test_stops_and_resumes_leave_wandb_equal_to_metrics(write_recipe):
    # 9 iterations, a checkpoint every 2: stops at 3 (after checkpoint 2) and at 8 (checkpoint 8 written)
    path = write_recipe(
        train__total_steps=8 * 16 * 9, train__checkpoint_every=2, log__wandb={"mode": "offline"}
    )
    with pytest.raises(KeyboardInterrupt):
        start_run(load_recipe(path), run_id="stops", extra_plugins=[("stop", StopAt(3))])
    run_dir = Path(load_recipe(path).log.dir) / "tiny" / "stops"
    with pytest.raises(KeyboardInterrupt):
        resume_run(run_dir, extra_plugins=[("stop", StopAt(8))])
    resume_run(run_dir)
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 3
    assert_wandb_equals_metrics(run_dir)


def test_sigkill_and_resume_leave_wandb_equal_to_metrics(write_recipe, tmp_path: Path):
    path = write_recipe(
        train__total_steps=8 * 16 * 30, train__checkpoint_every=3, log__wandb={"mode": "offline"}
    )
    run_dir = tmp_path / "runs" / "tiny" / "killed"
    cli = [sys.executable, "-m", "incentive.cli"]
    # each process its own W&B service, as from a shell (pytest's service would outlive the kill)
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    victim = subprocess.Popen(
        [*cli, "run", str(path), "--quiet", "--run-id", "killed"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if metrics.exists() and metrics.read_text().count("\n") >= 8:
            break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert metrics.read_text().count("\n") < 30, "the kill must land mid-run"
    resumed = subprocess.run(
        [*cli, "run", "--resume", str(run_dir), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert not (run_dir / "wandb-error.txt").exists()
    assert resumed.returncode == 0, resumed.stderr
    assert_wandb_equals_metrics(run_dir)


def test_a_run_file_cut_mid_record_reads_up_to_the_cut(write_recipe, tmp_path: Path):
    path = write_recipe(train__total_steps=8 * 16 * 4, log__wandb={"mode": "offline"})
    run_dir, _ = start_run(load_recipe(path), run_id="cut")
    assert_wandb_equals_metrics(run_dir)
    (source,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    steps, finished = logged_steps(source)
    assert steps == {1, 2, 3, 4} and finished
    data = source.read_bytes()
    for cut in range(7, len(data), max(1, len(data) // 40)):
        (tmp_path / "cut.wandb").write_bytes(data[:cut])
        steps, finished = logged_steps(tmp_path / "cut.wandb")
        assert steps <= {1, 2, 3, 4} and not finished
