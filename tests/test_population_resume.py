"""Population runs are deterministic, and --resume after a real SIGKILL continues bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

CASES = {
    # evictions every iteration (cap 2, first not kept): slots freed and reused while games straddle
    # iterations; the random bot's and every snapshot's sampling streams; win rates against a bot
    "connect_four_pfsp": (
        {"id": "connect_four", "num_envs": 16},
        {
            "plugin": "pfsp",
            "params": {
                "snapshot_every": 1,
                "max_snapshots": 2,
                "keep_first": False,
                "bots": ["random"],
                "self_play_share": 0.2,
                "evaluate_every": 5,
                "eval_bots": ["random"],
                "eval_episodes": 16,
            },
        },
    ),
    # the meta-game, sigma from projected replicator dynamics, exact exploitability
    "kuhn_psro": (
        {"id": "kuhn_poker", "num_envs": 64},
        {
            "plugin": "psro",
            "params": {"meta_solver": "prd", "snapshot_every": 3, "meta_episodes": 64, "evaluate_every": 2},
        },
    ),
}


def _write(tmp_path: Path, case: str) -> Path:
    env, opponents = CASES[case]
    data = {
        "name": case,
        "seed": 5,
        "env": env,
        "learner": {"rollout_steps": 8, "epochs": 1, "minibatches": 2, "hidden_sizes": [32]},
        "opponents": opponents,
        "objective": {"metric": "collective_return"},
        "train": {"total_steps": env["num_envs"] * 8 * 40, "checkpoint_every": 3, "threads": 1},
        "log": {"dir": str(tmp_path / "runs"), "wandb": {"mode": "disabled"}},
    }
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "incentive.cli", *args]


@pytest.mark.parametrize("case", sorted(CASES))
def test_population_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, case):
    path = _write(tmp_path, case)
    env = {**os.environ, "WANDB_SILENT": "true"}
    runs = tmp_path / "runs" / case
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
        time.sleep(0.01)
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
    assert b"population/elo/learner" in whole
    assert metrics.read_bytes() == whole
