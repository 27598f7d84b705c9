"""Curriculum bookkeeping at 10,000 levels as a share of a training iteration.

Trains navigation (E = 256, T = 128, 10,000 training levels) with prioritized level replay and
with learning progress for a few iterations, timing every curriculum hook call (next task,
update, metrics) against the whole iteration. Run: .venv/bin/python benchmarks/curriculum_bookkeeping.py
"""

from __future__ import annotations

import inspect
import json
import tempfile
import time
from pathlib import Path

import torch

from incentive.plugins.learning_progress import LearningProgress
from incentive.plugins.prioritized_level_replay import PrioritizedLevelReplay
from incentive.recipe import validate_recipe
from incentive.runner import start_run

HOOKS = ("incentive_next_task", "incentive_update_curriculum", "incentive_collect_metrics")


def timed(cls):
    """Wrap a curriculum class's hooks (keeping their hook markers) so their time adds up in `cls.spent`."""
    cls.spent = 0.0
    for name in HOOKS:
        original = getattr(cls, name)

        def wrapper(self, *args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                type(self).spent += time.perf_counter() - started

        wrapper.__wrapped__ = original
        for attr in dir(original):
            if attr.startswith("incentive_impl"):
                setattr(wrapper, attr, getattr(original, attr))
        wrapper.__signature__ = inspect.signature(original)
        setattr(cls, name, wrapper)


def main() -> None:
    torch.set_num_threads(1)
    for cls, plugin in (
        (PrioritizedLevelReplay, "prioritized_level_replay"),
        (LearningProgress, "learning_progress"),
    ):
        timed(cls)
        with tempfile.TemporaryDirectory() as tmp:
            recipe = validate_recipe(
                {
                    "name": "bookkeeping",
                    "env": {
                        "id": "navigation",
                        "num_envs": 256,
                        "params": {"levels": {"train": "0-9999"}, "max_steps": 20},
                    },
                    "learner": {"rollout_steps": 128, "epochs": 1, "minibatches": 4},
                    "curriculum": {
                        "plugin": plugin,
                        "params": {"min_seen_fraction": 0.0} if "replay" in plugin else {},
                    },
                    "train": {"total_steps": 256 * 128 * 4},
                    "log": {"dir": tmp, "wandb": {"mode": "disabled"}},
                },
                source="benchmark",
            )
            started = time.perf_counter()
            run_dir, _ = start_run(recipe, run_id="b")
            total = time.perf_counter() - started
            perf = [json.loads(line) for line in (Path(run_dir) / "perf.jsonl").read_text().splitlines()]
            iteration = sum(p["perf/rollout_s"] + p["perf/update_s"] for p in perf) / len(perf)
            print(
                f"{plugin}: {cls.spent / len(perf) * 1000:.1f} ms of curriculum hooks per iteration, "
                f"iteration {iteration:.2f} s -> {100 * cls.spent / len(perf) / iteration:.2f}% "
                f"(run {total:.1f} s, 10,000 levels, E=256, T=128)"
            )


if __name__ == "__main__":
    main()
