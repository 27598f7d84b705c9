"""Search benchmarks: does `incentive search` find good designs, and at what cost?

    python benchmarks/search_benchmarks.py payment     # TPE over the Cleanup 7x7 cleaning payment c
    python benchmarks/search_benchmarks.py structure   # none / sharing / inequity aversion / payment
    python benchmarks/search_benchmarks.py pareto      # NSGA-II: Coin Game own-coin rate vs sharing s
    python benchmarks/search_benchmarks.py pruning     # median pruner vs none on the quickstart search
    python benchmarks/search_benchmarks.py throughput  # trials/hour with 1 and 2 workers (Cleanup); storage share

    python benchmarks/search_benchmarks.py payment --batch 16 --workers 1 --payment-trials 32

Each experiment runs the real command (`incentive search ...`, W&B disabled to
time training, not logging) in a fresh log directory under
`benchmarks/out/` and prints what it found, from the study's own storage,
with the command's wall time and CPU time (user + system of the command and
every worker and verification process it started and waited for, from
`getrusage(RUSAGE_CHILDREN)`: other load on the machine inflates the wall
time, much less the CPU time).

`--batch K` (payment, structure) passes `--batch K` to `incentive search`:
K trials asked at once and trained as one batched training; the study is
named `<experiment>-batch<K>`. TPE has no result while it asks a batch, so
the first batch is random search; `--payment-trials` (say 32 with
`--batch 16 --workers 1`) gives TPE a second batch informed by the first.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
DOCS = ROOT / "docs"
INCENTIVE = str(Path(sys.executable).parent / "incentive")


def search(recipe: str, study: str, *args: str) -> tuple[optuna.Study, float, Path]:
    """Run `incentive search` in a fresh directory; returns the study, the wall time, the study dir.

    Prints the wall and CPU seconds (the command and all its processes).
    """
    log_dir = OUT / study
    shutil.rmtree(log_dir, ignore_errors=True)
    command = [
        INCENTIVE,
        "search",
        str(ROOT / "recipes" / recipe),
        "--study",
        study,
        "--set",
        f"log.dir={log_dir}",
        "--set",
        "log.wandb.mode=disabled",
        *args,
    ]
    print("$", " ".join(command[1:]), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"# {study}: wall {wall:.0f} s, CPU {cpu:.0f} s (user {after.ru_utime - before.ru_utime:.0f} s)")
    name = json.loads(json.dumps(recipe)).removesuffix(".yaml")
    study_dir = log_dir / name / "studies" / study
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_dir / "journal.log"))
    )
    return optuna.load_study(study_name=study, storage=storage), wall, study_dir


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    retried = {n for t in study.trials for n in t.system_attrs.get("retry_history", [])}
    return [t for t in study.trials if not t.user_attrs.get("over_budget") and t.number not in retried]


def table(study: optuna.Study, study_dir: Path) -> None:
    verified = {int(k.split("/")[1]): v for k, v in study.user_attrs.items() if k.startswith("verified/")}
    print(f"{'trial':>5} | {'state':8} | {'search':>8} | {'verified':>8} | params")
    for t in counted(study):
        value = f"{t.values[0]:8.2f}" if t.values else " " * 8
        check = f"{verified[t.number]['values'][0]:8.2f}" if t.number in verified else " " * 8
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
        )
        print(f"{t.number:>5} | {t.state.name.lower():8} | {value} | {check} | {params}")
    best = (study_dir / "best.yaml").read_text().splitlines()[:4]
    print("\n".join(best))


def batch_args(args, name: str) -> tuple[str, list[str]]:
    """The study name and the `--batch` option of an experiment (`<name>-batch<K>` when batched)."""
    if args.batch > 1:
        return f"{name}-batch{args.batch}", ["--batch", str(args.batch)]
    return name, []


def payment(args) -> None:
    name, batch = batch_args(args, "payment")
    trials = ["--trials", str(args.payment_trials)] if args.payment_trials else []
    study, wall, study_dir = search(
        "search_cleanup_payment.yaml", name, "--workers", str(args.workers), *trials, *batch
    )
    table(study, study_dir)
    amounts = [
        (t.values[0], t.params["incentives.0.params.contracts.0.amount"]) for t in counted(study) if t.values
    ]
    best_value, best_c = max(amounts)
    print(
        f"best c = {best_c:.3f} (collective return {best_value:.2f}); "
        f"mean return of trials with c >= 1: "
        f"{sum(v for v, c in amounts if c >= 1) / max(1, sum(c >= 1 for _, c in amounts)):.2f}; wall {wall:.0f} s"
    )


def structure(args) -> None:
    name, batch = batch_args(args, "structure")
    study, wall, study_dir = search(
        "search_cleanup_structure.yaml",
        name,
        *batch,
        "--workers",
        str(args.workers),
        "--trials",
        str(args.structure_trials),
        "--verify",
        "2",
        "--set",
        f"search.repeats={args.repeats}",
    )
    table(study, study_dir)
    print(f"wall {wall:.0f} s")


def pareto(args) -> None:
    """NSGA-II over the Coin Game's sharing weight s: own-coin rate (max) against s (min)."""
    study, wall, study_dir = search("search_coin_game_pareto.yaml", "pareto", "--workers", str(args.workers))
    verified = {int(k.split("/")[1]): v for k, v in study.user_attrs.items() if k.startswith("verified/")}
    trials = sorted((t for t in counted(study) if t.values), key=lambda t: t.params["incentives.0.params.s"])
    front = {int(p.stem.split("-")[1]) for p in (study_dir / "pareto").glob("trial-*.yaml")}
    print(f"{'trial':>5} | {'s':>6} | {'own-coin':>8} | {'verified':>8} | on the front")
    for t in trials:
        check = f"{verified[t.number]['values'][0]:8.3f}" if t.number in verified else " " * 8
        mark = "*" if t.number in front else ""
        print(f"{t.number:>5} | {t.values[1]:6.3f} | {t.values[0]:8.3f} | {check} | {mark}")
    DOCS.mkdir(exist_ok=True)
    shutil.copy(study_dir / "pareto.png", DOCS / "search_coin_game_pareto.png")
    print(f"front plot copied to {DOCS / 'search_coin_game_pareto.png'}; wall {wall:.0f} s")


def pruning(args) -> None:
    """The quickstart search (IPD, s and lr) with and without the median pruner: env steps to the same best.

    `--pruner-params` sets the median pruner's (default: 4 startup trials, 5 warm-up iterations).
    """
    results = {}
    for pruner in args.pruners:
        params = args.pruner_params if pruner == "median" else "{}"
        study, wall, study_dir = search(
            "quickstart_search.yaml",
            f"pruning-{pruner}",
            "--workers",
            "1",  # one worker: the sampler's sequence, and so the env-step count, is reproducible
            "--verify",
            "0",
            "--trials",
            "16",
            "--set",
            f"search.pruner={pruner}",
            "--set",
            f"search.pruner_params={params}",
        )
        trials = counted(study)
        steps = sum(t.user_attrs.get("env_steps", 0) for t in trials)
        best = max((t for t in trials if t.values), key=lambda t: t.values[0])
        pruned = sum(t.state.name == "PRUNED" for t in trials)
        results[pruner] = steps
        print(
            f"pruner {pruner:6}: best trial {best.number} s = {best.params['incentives.0.params.s']:.3f} "
            f"value {best.values[0]:.3f}; {pruned} pruned; env steps in total {steps:,}; wall {wall:.0f} s"
        )
    if {"none", "median"} <= set(results):
        print(f"median pruner used {1 - results['median'] / results['none']:.0%} fewer env steps")


def throughput(args) -> None:
    """Trials per hour with 1 and 2 workers on the payment search (Cleanup 7x7, one seed per trial).

    Two rates: end to end (the command's wall time: start-up, validation and
    the final report included) and steady state (trials finished between the
    first trial's start and the last trial's end, what a long study sees).
    """
    rates: dict[int, tuple[float, float]] = {}
    for workers in (1, 2):
        study, wall, _ = search(
            args.throughput_recipe,
            f"throughput-{workers}",
            "--workers",
            str(workers),
            "--verify",
            "0",
            "--set",
            f"search.trials={args.trials}",
            "--set",
            "search.repeats=1",
            "--set",
            "search.pruner=none",
        )
        trials = [t for t in counted(study) if t.state.is_finished()]
        busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
        span = (
            max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
        ).total_seconds()
        storage = sum(t.user_attrs.get("storage_s", 0.0) for t in trials)
        rates[workers] = (len(trials) / wall * 3600, len(trials) / span * 3600)
        print(
            f"{workers} worker(s): {len(trials)} trials; end to end {wall:.1f} s = {rates[workers][0]:.0f} "
            f"trials/hour; steady state {span:.1f} s = {rates[workers][1]:.0f} trials/hour; "
            f"storage {storage:.2f} s of {busy:.1f} s in trials ({storage / busy:.2%})"
        )
    print(
        f"speed-up with 2 workers: {rates[2][0] / rates[1][0]:.2f}x end to end, "
        f"{rates[2][1] / rates[1][1]:.2f}x steady state"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "experiment", choices=["payment", "structure", "pareto", "pruning", "throughput"], nargs="+"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=12, help="throughput: trials per run")
    parser.add_argument(
        "--pruners", nargs="+", default=["none", "median"], choices=["none", "median"], help="pruning"
    )
    parser.add_argument("--pruner-params", default="{n_startup_trials: 4, n_warmup_steps: 5}", help="pruning")
    parser.add_argument(
        "--throughput-recipe", default="search_cleanup_payment.yaml", help="throughput: the searched recipe"
    )
    parser.add_argument("--structure-trials", type=int, default=24, help="structure: the study's budget")
    parser.add_argument("--repeats", type=int, default=2, help="structure: seeds per design")
    parser.add_argument(
        "--batch", type=int, default=1, help="payment, structure: `incentive search --batch K` (1: unbatched)"
    )
    parser.add_argument(
        "--payment-trials",
        type=int,
        default=None,
        help="payment: the study's budget (default: the recipe's 16)",
    )
    args = parser.parse_args()
    for name in args.experiment:
        print(f"== {name}", flush=True)
        globals()[name](args)


if __name__ == "__main__":
    main()
