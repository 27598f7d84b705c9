"""Time to a result: wall time from launching `incentive run` to a metric crossing a threshold.

The whole process is measured, as a user meets it: interpreter and import
start-up, env and learner set-up, W&B set-up, every iteration, checkpoint
writes. The run is launched as a subprocess; this script polls its
`metrics.jsonl` and stops the run at the first line whose metric reaches the
threshold (default: `designer/own_coin_rate >= 0.9` on
`recipes/coin_game_sharing.yaml`, the Coin Game with reward sharing s = 1).

Printed:

- wall time from launch to the crossing line, and the iteration it is in
  (the iteration count does not depend on machine load; wall time does);
- the child's CPU time (user + system, from `os.wait4`) up to its stop;
- a breakdown: start-up (launch to the first iteration's start: imports,
  set-up, W&B), training (the iterations' own time from `perf.jsonl`) and the
  rest between iterations (metrics, hooks, W&B logging, checkpoint writes),
  measured from when each metrics line appeared.

Usage:
    python benchmarks/time_to_result.py
    python benchmarks/time_to_result.py --set log.wandb.mode=disabled
    python benchmarks/time_to_result.py --recipe recipes/coin_game_sharing.yaml --metric designer/own_coin_rate
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.02


def _read_lines(path: Path, consumed: int) -> tuple[list[dict], int]:
    """Complete JSON lines of `path` after byte offset `consumed`; returns (lines, new offset)."""
    if not path.exists():
        return [], consumed
    with path.open("rb") as handle:
        handle.seek(consumed)
        data = handle.read()
    end = data.rfind(b"\n") + 1  # a line still being written is read on the next poll
    lines = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return lines, consumed + end


def measure(recipe: Path, metric: str, threshold: float, overrides: list[str], timeout: float) -> dict:
    """Run the recipe until `metric >= threshold`; returns the timings."""
    with tempfile.TemporaryDirectory() as log_dir:
        script = Path(sys.executable).parent / "incentive"  # the console script a user types
        launcher = [str(script)] if script.exists() else [sys.executable, "-m", "incentive.cli"]
        command = [
            *launcher,
            "run",
            str(recipe),
            "--quiet",
            "--run-id",
            "timed",
            "--set",
            f"log.dir={log_dir}",
            *[arg for o in overrides for arg in ("--set", o)],
        ]
        env = {**os.environ, "WANDB_SILENT": "true"}
        launched = time.perf_counter()
        child = subprocess.Popen(
            command, cwd=log_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        name = recipe.stem
        try:
            import yaml

            name = yaml.safe_load(recipe.read_text()).get("name", name)
        except Exception:  # noqa: BLE001  (the file's stem is the fallback)
            pass
        run_dir = Path(log_dir) / name / "timed"
        seen: list[tuple[float, dict]] = []  # (seconds since launch when the line appeared, line)
        offset = 0
        crossing = None
        while crossing is None:
            if child.poll() is not None:
                break
            if time.perf_counter() - launched > timeout:
                break
            lines, offset = _read_lines(run_dir / "metrics.jsonl", offset)
            now = time.perf_counter() - launched
            for line in lines:
                seen.append((now, line))
                value = line.get(metric)
                if crossing is None and value is not None and value >= threshold:
                    crossing = (now, line)
            if crossing is None:
                time.sleep(POLL_S)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        _, status, usage = os.wait4(child.pid, 0)
        stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
        perf, _ = _read_lines(run_dir / "perf.jsonl", 0)
    if crossing is None:
        raise SystemExit(f"no crossing of {metric} >= {threshold} (exit status {status}):\n{stderr[-2000:]}")
    wall, line = crossing
    iteration = int(line["train/iteration"])
    perf_by_iter = {int(p["train/iteration"]): p for p in perf}
    own = [
        perf_by_iter[i]["perf/rollout_s"] + perf_by_iter[i]["perf/update_s"] for i in range(1, iteration + 1)
    ]
    rollout = sum(perf_by_iter[i]["perf/rollout_s"] for i in range(1, iteration + 1))
    first_seen = seen[0][0]
    startup = first_seen - own[0]
    return {
        "wall_s": wall,
        "iteration": iteration,
        "env_steps": int(line.get("train/global_step", 0)),
        "value": line[metric],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": usage.ru_maxrss / 1024,
        "startup_s": startup,
        "training_s": sum(own),
        "rollout_s": rollout,
        "update_s": sum(own) - rollout,
        "between_iterations_s": wall - startup - sum(own),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "coin_game_sharing.yaml")
    parser.add_argument("--metric", default="designer/own_coin_rate")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument(
        "--repeats", type=int, default=1, help="independent launches (timings vary with load)"
    )
    parser.add_argument("--timeout", type=float, default=110.0, help="seconds before a launch is abandoned")
    args = parser.parse_args()
    for repeat in range(args.repeats):
        r = measure(args.recipe.resolve(), args.metric, args.threshold, args.overrides, args.timeout)
        print(
            f"[{repeat + 1}/{args.repeats}] {args.metric} = {r['value']:.3f} >= {args.threshold} at iteration "
            f"{r['iteration']} ({r['env_steps']} env steps): wall {r['wall_s']:.2f} s, "
            f"CPU {r['cpu_s']:.2f} s, max RSS {r['max_rss_mb']:.0f} MB\n"
            f"    start-up (launch to first iteration) {r['startup_s']:.2f} s | "
            f"training {r['training_s']:.2f} s (rollout {r['rollout_s']:.2f}, update {r['update_s']:.2f}) | "
            f"between iterations (metrics, hooks, W&B, checkpoints) {r['between_iterations_s']:.2f} s"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
