"""--resume after a real SIGKILL continues a curriculum run bit for bit (scores, staleness, stage, tasks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

NAV_PLR = {
    "env": {
        "id": "navigation",
        "num_envs": 8,
        "params": {
            "min_size": 5,
            "max_size": 6,
            "max_steps": 10,
            "levels": {"train": "0-29", "test": "900-905"},
        },
    },
    "incentives": [],
    "curriculum": {"plugin": "prioritized_level_replay", "params": {"min_seen_fraction": 0.0}},
    "evaluate": {"every": 4},
}
IPD_SCHEDULE = {
    "curriculum": {
        "plugin": "schedule",
        "params": {
            "stages": [
                {"set": {"incentives.0.params.s": 1.0}, "advance": {"steps": 8 * 16 * 10}},
                {"set": {"incentives.0.params.s": 0.0}, "interpolation": "cosine", "over_steps": 8 * 16 * 20},
            ]
        },
    },
}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "incentive.cli", *args]


# (learning progress's state is covered by the stop-and-resume contract test of every plugin)
@pytest.mark.parametrize("changes", [NAV_PLR, IPD_SCHEDULE], ids=["plr", "schedule"])
def test_resume_after_sigkill_matches_an_uninterrupted_run(write_recipe, tmp_path: Path, changes):
    # 40 iterations, a checkpoint every 3: the kill lands between checkpoints
    path = write_recipe(
        train__total_steps=8 * 16 * 40, train__checkpoint_every=3, train__threads=1, **changes
    )
    env = {**os.environ, "WANDB_SILENT": "true"}
    runs = tmp_path / "runs" / "tiny"
    subprocess.run(_cli("run", str(path), "--quiet", "--run-id", "whole"), check=True, env=env, timeout=300)
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
    assert b"curriculum/" in whole
    assert metrics.read_bytes() == whole
