"""Curriculum costs: bookkeeping at 10,000 levels, and env throughput with a level per instance.

Bookkeeping: trains navigation (E = 256, T = 128, 10,000 training levels) with prioritized level
replay and with learning progress for a few iterations, timing every curriculum hook call (next
task, update, metrics) against the whole iteration.

Levels (`--levels`): steps Cleanup (lio_7x7) and Harvest (small) at E = 1024 with random actions,
on the map's own layout and with every instance on its own procedural level (task `level` =
0 ... E - 1, so the episode ends, all at once every `episode_length` steps, lay out 1024 new
levels), and prints env steps per second of each and their ratio. The two are timed in turns,
`--rounds` times, and the best round of each counts (the machine is shared).

Run: .venv/bin/python benchmarks/curriculum_bookkeeping.py [--levels] [--skip-bookkeeping]
"""

from __future__ import annotations

import argparse
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


def steps_per_second(env, actions: torch.Tensor) -> float:
    """Env steps (of all E instances) per second over the pre-drawn actions [T, E, A]."""
    started = time.perf_counter()
    for step_actions in actions:
        env.step(step_actions)
    return len(actions) * env.num_envs / (time.perf_counter() - started)


def level_throughput(num_envs: int, steps: int, rounds: int) -> None:
    """Fixed map vs a procedural level per instance: env steps per second, best of `rounds` each."""
    from incentive.envs.cleanup import Cleanup
    from incentive.envs.harvest import Harvest

    for cls, map_name in ((Cleanup, "lio_7x7"), (Harvest, "small")):
        fixed = cls(num_envs=num_envs, params=cls.Params(map=map_name))
        levels = cls(
            num_envs=num_envs,
            params=cls.Params(map=map_name, levels={"train": f"0-{num_envs - 1}", "test": "100000-100099"}),
        )
        levels.set_task({"level": torch.arange(num_envs)})
        fixed.reset(seed=0)
        levels.reset(seed=0)
        assert len(set(levels.level.tolist())) == num_envs  # every instance on its own level
        n = fixed.action_spaces["agent_0"].n
        actions = torch.randint(
            0, n, (steps, num_envs, fixed.num_agents), generator=torch.Generator().manual_seed(0)
        )
        steps_per_second(fixed, actions[:20])  # warm up
        steps_per_second(levels, actions[:20])
        best = {"fixed": 0.0, "levels": 0.0}
        for _ in range(rounds):
            best["fixed"] = max(best["fixed"], steps_per_second(fixed, actions))
            best["levels"] = max(best["levels"], steps_per_second(levels, actions))
        print(
            f"{cls.__name__} {map_name}, E = {num_envs}, {steps} steps (episode {fixed.spec.episode_length}), "
            f"best of {rounds}: fixed map {best['fixed']:,.0f} env steps/s, own level per instance "
            f"{best['levels']:,.0f} env steps/s -> fixed / levels = {best['fixed'] / best['levels']:.2f}x",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", action="store_true", help="also time Cleanup/Harvest with levels")
    parser.add_argument("--skip-bookkeeping", action="store_true", help="leave out the bookkeeping runs")
    parser.add_argument("--num-envs", type=int, default=1024, help="E for --levels")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per round for --levels")
    parser.add_argument("--rounds", type=int, default=5, help="rounds for --levels")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.levels:
        level_throughput(args.num_envs, args.steps, args.rounds)
    if args.skip_bookkeeping:
        return
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
