"""Opponent-sampling overhead: training steps/s with 8 frozen snapshots in play vs plain self-play.

Same env, learner and budget; the population arm freezes a snapshot every iteration
(at most 8), so from iteration 8 on every instance's opponent seat is one of 8 snapshots,
each acting in one batched forward pass per step. Prints the median `perf/steps_per_s`
over the last half of the iterations of each arm and their ratio.

    python benchmarks/opponent_overhead.py                  # Connect Four, E = 1024
    python benchmarks/opponent_overhead.py --env kuhn_poker
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from incentive.recipe import load_recipe
from incentive.runner import start_run

ARMS = {
    "self_play": "{plugin: self_play}",
    "8 snapshots (fictitious_self_play)": "{plugin: fictitious_self_play, params: {snapshot_every: 1, max_snapshots: 8}}",
}


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="connect_four")
    parser.add_argument("--envs", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=24)
    args = parser.parse_args()
    recipe = Path(__file__).parent.parent / "recipes" / "connect_four_pfsp.yaml"
    out = tempfile.mkdtemp(prefix="opponent-overhead-")
    rates = {}
    for label, opponents in ARMS.items():
        steps = args.envs * 16 * args.iterations
        overrides = [
            f"env={{id: {args.env}, num_envs: {args.envs}}}",
            "learner.rollout_steps=16",
            "learner.hidden_sizes=[128, 128]",
            f"opponents={opponents}",
            "objective={metric: collective_return}",
            f"train.total_steps={steps}",
            "train.checkpoint_every=1000",
            f"log.dir={out}",
            "log.wandb.mode=disabled",
        ]
        run_dir, _ = start_run(load_recipe(recipe, overrides), run_id=label.split()[0])
        lines = [json.loads(line) for line in (run_dir / "perf.jsonl").read_text().splitlines()]
        rates[label] = statistics.median(line["perf/steps_per_s"] for line in lines[len(lines) // 2 :])
        print(
            f"{label:40s} {rates[label]:12,.0f} steps/s (median of the last {len(lines) - len(lines) // 2})"
        )
    base, pop = rates.values()
    print(f"self-play / population = {base / pop:.2f}x (issue's bound: at most 1.5x)")


if __name__ == "__main__":
    main()
