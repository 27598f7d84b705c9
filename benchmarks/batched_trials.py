"""Batched trials: designs per CPU-hour, K trials in one batched training against one at a time.

For each env (Cleanup 7x7, the Coin Game, the IPD; their selfish recipes) and
each K, the script trains K seeds of the recipe twice in this process, with
one torch thread:

- one at a time: K lone runs (`incentive run --set seed=S`), back to back;
- batched: one `BatchedTraining` of the K seeds (`incentive run --seeds`).

Both are trained as a search trains them (`train_in`: metrics, no curve
pictures). It prints the CPU seconds of each (this process's CPU time, so
other load on the machine inflates them little), designs per CPU-hour
(3600 / CPU seconds per design) and the speed-up. With
`--check` it also asserts that the batched metrics equal the lone ones byte
for byte. A search with W workers multiplies both rates by W (workers are
independent processes), so the ratio is the same with 2 workers on 2 cores.

The K = 1 point of the batched curve is the batch code path with one trial;
with larger K the fixed per-operation cost of small tensors is shared by
K trials, until the work per operation dominates (the curve flattens).

    nice -n 10 python benchmarks/batched_trials.py                       # all envs, K = 1 2 4 8 16 32
    nice -n 10 python benchmarks/batched_trials.py --envs cleanup --k 1 16 --steps 300000
    nice -n 10 python benchmarks/batched_trials.py --envs ipd --k 1 4 --steps 20000 --check
    nice -n 10 python benchmarks/batched_trials.py --kernels                # addmm per trial vs one bmm

`--kernels` answers whether a batched matmul (bmm, which sums in another
order and so would break the byte identity) would buy speed: it times
Cleanup 7x7's first layer (326 -> 64, the largest) for K = 16 trials as K
addmm calls (what batched trials run) and as one bmm, at the rollout's
rows per trial (E x A = 128) and the update's (a minibatch, 1600), and
prints the GFLOP/s of each.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from incentive.batched import BatchedTraining
from incentive.recipe import load_recipe
from incentive.runner import train_in

HERE = Path(__file__).parent
RECIPES = {
    "cleanup": "cleanup_selfish.yaml",
    "coin_game": "coin_game_selfish.yaml",
    "ipd": "ipd_selfish.yaml",
}
DEFAULT_STEPS = {"cleanup": 300_000, "coin_game": 300_000, "ipd": 100_000}


def _recipe(env: str, steps: int, log_dir: Path):
    return load_recipe(
        HERE.parent / "recipes" / RECIPES[env],
        [
            f"train.total_steps={steps}",
            "train.threads=1",
            "train.checkpoint_every=1000000",
            f"log.dir={log_dir}",
            "log.wandb.mode=disabled",
        ],
    )


def one_at_a_time(env: str, steps: int, seeds: list[int], log_dir: Path) -> tuple[float, list[Path]]:
    """CPU seconds (this process) to train the seeds one after another, and their run directories."""
    started = time.process_time()
    dirs = []
    for seed in seeds:
        recipe = _recipe(env, steps, log_dir).model_copy(update={"seed": seed})
        run_dir = log_dir / f"lone-{seed}"
        train_in(recipe, run_dir)
        dirs.append(run_dir)
    return time.process_time() - started, dirs


def batched(env: str, steps: int, seeds: list[int], log_dir: Path) -> tuple[float, list[Path]]:
    """CPU seconds (this process) to train the seeds as one batched training, and their run directories."""
    started = time.process_time()
    recipe = _recipe(env, steps, log_dir)
    dirs = [log_dir / f"batch{len(seeds)}-seed{seed}" for seed in seeds]
    BatchedTraining([recipe.model_copy(update={"seed": s}) for s in seeds], run_dirs=dirs).run()
    return time.process_time() - started, dirs


def kernels(trials: int = 16, repeats: int = 20) -> None:
    """Print CPU time and GFLOP/s of K per-trial addmm calls against one bmm, at Cleanup 7x7's layer 1."""
    generator = torch.Generator().manual_seed(0)
    d_in, d_out = 326, 64
    weight = torch.randn(trials, d_out, d_in, generator=generator)
    bias = torch.zeros(trials, d_out)
    print(f"{'rows/trial':>10} {'K':>3} {'kernel':<16} {'ms':>8} {'GFLOP/s':>8}")
    for rows in (128, 1600):
        x = (torch.rand(trials, rows, d_in, generator=generator) < 0.2).float()
        flops = 2 * trials * rows * d_in * d_out
        runs = {
            "addmm per trial": lambda x=x: [
                torch.nn.functional.linear(x[k], weight[k], bias[k]) for k in range(trials)
            ],
            "one bmm": lambda x=x: torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2)),
        }
        for name, run in runs.items():
            run()
            started = time.process_time()
            for _ in range(repeats):
                run()
            seconds = (time.process_time() - started) / repeats
            print(f"{rows:>10} {trials:>3} {name:<16} {seconds * 1e3:>8.2f} {flops / seconds / 1e9:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--k", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32], help="batch sizes K")
    parser.add_argument(
        "--steps", type=int, help="env steps per design (default: per env, see DEFAULT_STEPS)"
    )
    parser.add_argument(
        "--lone", type=int, default=2, help="lone runs timed to estimate one-at-a-time cost (default: 2)"
    )
    parser.add_argument("--check", action="store_true", help="assert batched metrics == lone metrics")
    parser.add_argument(
        "--kernels", action="store_true", help="only time K addmm calls against one bmm (see above)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.kernels:
        kernels()
        return
    print(
        f"{'env':<10} {'K':>3} {'steps':>8} {'lone s/design':>14} {'batched s':>10} "
        f"{'s/design':>9} {'designs/CPU-h lone':>19} {'batched':>8} {'speed-up':>9}"
    )
    for env in args.envs:
        steps = args.steps or DEFAULT_STEPS[env]
        log_dir = Path(tempfile.mkdtemp(prefix="batched-bench-"))
        try:
            lone_s, lone_dirs = one_at_a_time(env, steps, list(range(args.lone)), log_dir)
            per_design = lone_s / args.lone
            for k in args.k:
                seconds, dirs = batched(env, steps, list(range(k)), log_dir)
                if args.check:
                    for lone_dir, batch_dir in zip(lone_dirs, dirs, strict=False):
                        lone_bytes = (lone_dir / "metrics.jsonl").read_bytes()
                        assert lone_bytes == (batch_dir / "metrics.jsonl").read_bytes(), (env, k)
                print(
                    f"{env:<10} {k:>3} {steps:>8} {per_design:>14.2f} {seconds:>10.2f} {seconds / k:>9.2f} "
                    f"{3600 / per_design:>19.0f} {3600 * k / seconds:>8.0f} {per_design * k / seconds:>8.1f}x",
                    flush=True,
                )
        finally:
            shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
