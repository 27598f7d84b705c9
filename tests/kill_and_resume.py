"""Kill a run with a real SIGKILL between checkpoints, resume it, and return both metric logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def cli(*args: str) -> list[str]:
    """The `incentive` command line, run by this interpreter."""
    return [sys.executable, "-m", "incentive.cli", *args]


def kill_and_resume(recipe: Path, runs: Path, *, iterations: int, kill_after: int = 8) -> tuple[bytes, bytes]:
    """Run `recipe` whole, then again killed mid-run and resumed; (whole, resumed) metrics.jsonl bytes.

    Args:
        recipe: a recipe file whose run writes to `runs` (its `log.dir` / name).
        runs: the folder the two runs `whole` and `killed` are written to.
        iterations: the run's length, to check the kill landed mid-run.
        kill_after: metric lines (iterations) the killed run must have written, with a checkpoint.

    """
    env = {**os.environ, "WANDB_SILENT": "true"}
    subprocess.run(
        cli("run", str(recipe), "--quiet", "--run-id", "whole"),
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    victim = subprocess.Popen(
        cli("run", str(recipe), "--quiet", "--run-id", "killed"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = runs / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        lines = metrics.read_text().count("\n") if metrics.exists() else 0
        if lines >= kill_after and (runs / "killed" / "checkpoint.pt").exists():
            break
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = metrics.read_text().count("\n")
    assert kill_after <= killed_at < iterations, "the kill must land mid-run"

    resumed = subprocess.run(
        cli("run", "--resume", str(runs / "killed"), "--quiet"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = (runs / "whole" / "metrics.jsonl").read_bytes()
    assert whole.count(b"\n") == iterations
    return whole, metrics.read_bytes()
