"""`incentive search`: an Optuna study over a recipe's `search:` section, run by worker processes.

A trial is a recipe (`search_space.trial_recipe`) trained by the same loop as
`incentive run`, once per seed (`search.repeats`), with one extra plugin,
`TrialReporter`, that reports the designer's objective to Optuna at every
iteration and stops the run cleanly (`StopRun`) when the pruner says so. The
trial's value is the mean over seeds of each run's score (`scores.run_score`:
the metric averaged over the last `objective.last_fraction` of iterations,
read from metrics.jsonl), never the shaped return.

Every seed of every trial uses the same seeds (`recipe.seed + r * SEED_STRIDE`,
r < repeats): designs are compared on common random numbers, which is what
the Wilcoxon pruner needs. At the end, the top `verify` designs are re-run on
seeds r >= repeats that no trial used, and the study reports both scores:
the best of many noisy trials is biased upwards (the winner's curse).

Processes: the command's main process creates the study, starts `workers`
worker processes (spawned: no state shared with the parent or each other,
each with its own torch threads), watches them (re-running the trial of a
worker that died), and shows the study; then verifies and writes the
outputs (`study_report`). Rerunning the same command resumes the study.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from incentive import hookimpl
from incentive.errors import IncentiveError, RecipeError, StopRun
from incentive.recipe import PluginSpec, Recipe, closest, validate_recipe
from incentive.scores import constraint_value, metric_key, objective_values, run_score
from incentive.search_space import check_search, searched_params, structure_labels, trial_recipe
from incentive.study import (
    Budget,
    StudyConfig,
    creation_lock,
    make_storage,
    open_study,
    recover_dead_trials,
    storage_label,
    worker_id,
)

__all__ = [
    "SEED_STRIDE",
    "SearchSettings",
    "TrialReporter",
    "design_seeds",
    "make_pruner",
    "make_sampler",
    "run_study",
    "trial_recipe",
]

SEED_STRIDE = 100_003
"""Seeds of a design's repeats are this far apart, so their env instance streams (seed + e) never overlap."""

optuna.logging.set_verbosity(optuna.logging.ERROR)  # the table and trials.csv say what failed


def design_seeds(recipe: Recipe, first: int, count: int) -> list[int]:
    """Seeds of repeats first .. first + count - 1 of a design."""
    return [recipe.seed + r * SEED_STRIDE for r in range(first, first + count)]


@dataclass
class SearchSettings:
    """A study's run-time settings: the recipe's `search:` section overridden by the command line."""

    study_name: str
    study_dir: Path
    storage: str | None
    trials: int
    workers: int
    timeout: float | None
    verify: int
    batch: int = 1

    @classmethod
    def of(
        cls,
        recipe: Recipe,
        *,
        trials: int | None = None,
        workers: int | None = None,
        storage: str | None = None,
        study: str | None = None,
        timeout: float | None = None,
        verify: int | None = None,
        batch: int | None = None,
    ) -> SearchSettings:
        """Settings from the recipe; command-line values take precedence (validated as the recipe's)."""
        search = recipe.search
        data = search.model_dump()
        for key, value in (
            ("trials", trials),
            ("workers", workers),
            ("storage", storage),
            ("study_name", study),
            ("timeout", timeout),
            ("verify", verify),
        ):
            if value is not None:
                data[key] = value
        merged = validate_recipe(
            {**recipe.model_dump(mode="json"), "search": data},
            source=f"{recipe.source} (with command-line options)",
        ).search
        name = merged.study_name or recipe.name
        return cls(
            study_name=name,
            study_dir=Path(recipe.log.dir) / recipe.name / "studies" / name,
            storage=merged.storage,
            trials=merged.trials,
            workers=merged.workers,
            timeout=merged.timeout,
            verify=merged.verify,
            batch=batch or 1,
        )


# --- samplers and pruners -------------------------------------------------------


def _grid_values(param) -> list[Any] | None:
    if param.choices is not None:
        return list(param.choices)
    if param.step is None and not param.int:
        return None
    step = param.step or 1
    count = int(math.floor((param.high - param.low) / step + 1e-9)) + 1
    values = [param.low + i * step for i in range(count)]
    return [int(v) for v in values] if param.int else [round(v, 12) for v in values]


def grid_space(recipe: Recipe) -> dict[str, list[Any]]:
    """Optuna's grid for the grid sampler: every searched value, structure choices included.

    Raises:
        RecipeError: a searched range has no step (a grid needs finite values).

    """
    from incentive.recipe import OneOfSpec, option_label

    grid: dict[str, list[Any]] = {}

    def add(name: str, param, where: str) -> None:
        values = _grid_values(param)
        if values is None:
            raise RecipeError(
                f"{recipe.source}: field '{where}': the grid sampler needs finite values: give `choices`, "
                "or a `step` (or `int: true`) for the range"
            )
        grid[name] = values

    for index, entry in enumerate(recipe.incentives):
        options = entry.one_of if isinstance(entry, OneOfSpec) else [entry]
        if isinstance(entry, OneOfSpec):
            grid[entry.name or f"incentives.{index}"] = [option_label(o) for o in entry.one_of]
        elif entry.optional:
            grid[f"{option_label(entry)}.on"] = [True, False]
        for option in options:
            if option is not None:
                for name, param in option.search.items():
                    add(f"{option_label(option)}.{name}", param, f"incentives.{index}.search.{name}")
    for path, param in recipe.search.space.items():
        add(path, param, f"search.space.{path}")
    return grid


def make_sampler(recipe: Recipe, seed: int) -> optuna.samplers.BaseSampler:
    """The recipe's sampler (default: TPE for one objective, NSGA-II for several).

    Raises:
        RecipeError: a sampler that does not fit the objectives or space, or bad sampler_params.

    """
    search = recipe.search
    multi = len(recipe.objectives) > 1
    name = search.sampler or ("nsga2" if multi else "tpe")
    kwargs = dict(search.sampler_params)
    samplers = optuna.samplers
    if name == "cmaes" and multi:
        raise RecipeError(
            f"{recipe.source}: field 'search.sampler': cmaes optimises one objective; use nsga2 or tpe"
        )
    try:
        if name == "tpe":
            return samplers.TPESampler(seed=seed, **{"multivariate": True, "group": True, **kwargs})
        if name == "random":
            return samplers.RandomSampler(seed=seed, **kwargs)
        if name == "grid":
            return samplers.GridSampler(grid_space(recipe), seed=seed, **kwargs)
        if name == "cmaes":
            return samplers.CmaEsSampler(seed=seed, **{"warn_independent_sampling": False, **kwargs})
        if name == "nsga2":
            return samplers.NSGAIISampler(seed=seed, **kwargs)
        return samplers.GPSampler(seed=seed, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{recipe.source}: field 'search.sampler_params': {name} sampler: {exc}") from None


def make_pruner(recipe: Recipe) -> optuna.pruners.BasePruner:
    """The recipe's pruner (default: median for one objective; none for several).

    Raises:
        RecipeError: pruning asked of a multi-objective study, Wilcoxon without repeats, or bad pruner_params.

    """
    search = recipe.search
    multi = len(recipe.objectives) > 1
    name = search.pruner or ("none" if multi else "median")
    if multi and name != "none":
        raise RecipeError(
            f"{recipe.source}: field 'search.pruner': Optuna cannot prune multi-objective trials "
            "(report/should_prune are single-objective); use `pruner: none`"
        )
    if name == "wilcoxon" and search.repeats < 2:
        raise RecipeError(
            f"{recipe.source}: field 'search.pruner': the wilcoxon pruner compares designs seed by seed; "
            "set search.repeats to 2 or more"
        )
    kwargs = dict(search.pruner_params)
    pruners = optuna.pruners
    try:
        if name == "median":
            return pruners.MedianPruner(**{"n_startup_trials": 4, "n_warmup_steps": 0, **kwargs})
        if name == "successive_halving":
            return pruners.SuccessiveHalvingPruner(**kwargs)
        if name == "hyperband":
            return pruners.HyperbandPruner(**kwargs)
        if name == "wilcoxon":
            return pruners.WilcoxonPruner(**kwargs)
        return pruners.NopPruner(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{recipe.source}: field 'search.pruner_params': {name} pruner: {exc}") from None


def pruner_reports_iterations(recipe: Recipe) -> bool:
    """Whether trials report every iteration (all pruners but Wilcoxon, which compares seeds)."""
    return len(recipe.objectives) == 1 and recipe.search.pruner != "wilcoxon"


# --- one trial ------------------------------------------------------------------


class TrialReporter:
    """The plugin a trial's run carries: reports the designer objective each iteration, prunes cleanly.

    Args:
        trial: the Optuna trial.
        objective: the objective's metric name.
        last_fraction: the objective's averaging window.
        step_offset: Optuna step of this run's iteration 0 (seed r starts at r * iterations).
        prune: ask the pruner after each report.

    """

    def __init__(
        self, trial: optuna.Trial, *, objective: str, last_fraction: float, step_offset: int, prune: bool
    ) -> None:
        self.trial = trial
        self.objective = objective
        self.last_fraction = last_fraction
        self.step_offset = step_offset
        self.prune = prune
        self.rows: list[dict] = []
        self.storage_s = 0.0

    @hookimpl
    def incentive_iteration_end(self, iteration: int, metrics: dict[str, float]) -> None:
        """Report the running score of this seed; stop the run if the pruner says so."""
        self.rows.append(metrics)
        try:
            value = run_score(self.rows, self.objective, self.last_fraction)
        except IncentiveError:
            return  # no episode has ended yet
        started = time.perf_counter()
        self.trial.report(value, self.step_offset + iteration)
        should_prune = self.prune and self.trial.should_prune()
        self.storage_s += time.perf_counter() - started
        if should_prune:
            raise StopRun("pruned", f"iteration {iteration}: {self.objective} {value:.4g}")


class OverBudget(Exception):  # noqa: N818
    """This trial took a slot beyond the study's budget: it is not trained."""


def _trial_run_dir(study_dir: Path, kind: str, number: int, seed: int) -> Path:
    return study_dir / kind / f"{number:04d}-seed-{seed}"  # the name is also the W&B run id's tail


def _seed_recipe(
    recipe: Recipe, seed: int, study_name: str, job_type: str, tags: list[str], extra: dict
) -> Recipe:
    wandb = recipe.log.wandb.model_copy(
        update={
            "group": study_name,
            "job_type": job_type,
            "tags": [*recipe.log.wandb.tags, *tags],
            "config": extra,
        }
    )
    return recipe.model_copy(update={"seed": seed, "log": recipe.log.model_copy(update={"wandb": wandb})})


def train_design(recipe: Recipe, run_dir: Path, extra_plugins=()) -> tuple[str, list[dict]]:
    """Train one seed of a design in `run_dir`; returns (status, metrics.jsonl rows)."""
    from incentive.runner import train_in

    training = train_in(recipe, run_dir, extra_plugins=extra_plugins)
    return training.status, training.metrics_file.read()


@dataclass
class WorkerJob:
    """What a worker process needs (picklable: plain data only)."""

    recipe_data: dict
    source: str
    study_name: str
    study_dir: Path
    storage: str | None
    budget: int
    index: int
    threads: int
    deadline: float | None
    heartbeat_interval: int
    grace_period: int
    batch: int = 1
    workers: int = 1  # this command's workers, among which a batch takes its share of the open slots


class Interrupt:
    """A worker's Ctrl-C: it stops a trial mid-run, but never Optuna's bookkeeping between trials.

    Outside a trial, SIGINT only sets `requested` (a trial being created is
    then stopped at its first line, marked `interrupted`, and re-run when the
    study resumes); inside one, it raises KeyboardInterrupt as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self.in_trial = False
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if self.in_trial:
            raise KeyboardInterrupt


def _objective(
    job: WorkerJob, base: Recipe, study: optuna.Study, budget: Budget, interrupt: Interrupt
) -> Callable:
    report_iterations = pruner_reports_iterations(base)
    objectives = base.objectives
    repeats = base.search.repeats

    def objective(trial: optuna.Trial) -> float | list[float]:
        storage_started = time.perf_counter()
        interrupt.in_trial = True
        try:
            trial.set_user_attr("worker", worker_id())
            trial.set_user_attr("interrupted", False)
            if interrupt.requested:
                raise KeyboardInterrupt
            return _run_trial(trial, storage_started)
        except KeyboardInterrupt:
            interrupt.in_trial = False
            trial.set_user_attr("interrupted", True)
            raise
        finally:
            interrupt.in_trial = False

    def _run_trial(trial: optuna.Trial, storage_started: float) -> float | list[float]:
        trials = study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == trial.number)
        if not budget.within(me, trials):
            trial.set_user_attr("over_budget", True)
            raise OverBudget(f"trial {trial.number} is beyond the budget of {budget.total}")
        storage_s = time.perf_counter() - storage_started
        try:
            recipe = trial_recipe(trial, base)
            trial.set_user_attr("recipe", json.dumps(recipe.model_dump(mode="json")))
            seeds = design_seeds(base, 0, repeats)
            scores: list[list[float]] = []
            constraints: list[dict[str, float]] = []
            env_steps = 0
            num_iterations = None
            for r, seed in enumerate(seeds):
                reporter = TrialReporter(
                    trial,
                    objective=objectives[0].name,
                    last_fraction=objectives[0].last_fraction,
                    step_offset=r * (num_iterations or 0),
                    prune=report_iterations,
                )
                extra = {"trial": trial.number, "params": trial.params, "study": job.study_name}
                seeded = _seed_recipe(recipe, seed, job.study_name, "trial", [f"trial-{trial.number}"], extra)
                plugins = [("search_trial", reporter)] if report_iterations else []
                run_dir = _trial_run_dir(job.study_dir, "trials", trial.number, seed)
                status, rows = train_design(seeded, run_dir, plugins)
                storage_s += reporter.storage_s
                num_iterations = num_iterations or _planned_iterations(seeded)
                env_steps += rows[-1]["train/global_step"] if rows else 0
                trial.set_user_attr("env_steps", env_steps)
                if status == "pruned":
                    raise optuna.TrialPruned(f"seed {seed}")
                scores.append(objective_values(objectives, rows, trial.params))
                constraints.append(_constraint_values(base, recipe, rows))
                if not report_iterations and len(objectives) == 1:  # wilcoxon: one report per seed
                    trial.report(scores[-1][0], r)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"after seed {seed}")
            means = [sum(s[i] for s in scores) / len(scores) for i in range(len(objectives))]
            started = time.perf_counter()
            _set_constraints(trial, constraints)
            trial.set_user_attr("seeds", seeds)
            trial.set_user_attr("per_seed", scores)
            trial.set_user_attr("std", [_std([s[i] for s in scores]) for i in range(len(objectives))])
            storage_s += time.perf_counter() - started
            return means[0] if len(means) == 1 else means
        except IncentiveError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        finally:
            trial.set_user_attr("storage_s", storage_s)

    return objective


def _planned_iterations(recipe: Recipe) -> int:
    return max(1, math.ceil(recipe.train.total_steps / (recipe.learner.rollout_steps * recipe.env.num_envs)))


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _constraint_values(base: Recipe, chosen: Recipe, rows: list[dict]) -> dict[str, float]:
    """One run's value of each constraint (feasible when <= 0); plugins off in this design cost 0."""
    on = {name for name, _ in chosen.plugin_specs()}
    off = frozenset(label for label in structure_labels(base) if label not in on)
    fraction = base.objectives[0].last_fraction
    return {
        f"c{index}": constraint_value(rows, constraint, fraction, off=off)
        for index, constraint in enumerate(base.search.constraints)
    }


def _set_constraints(trial: optuna.Trial, per_seed: list[dict[str, float]]) -> None:
    """The design's constraints: each the mean over its seeds (as its objectives are)."""
    if not per_seed or not per_seed[0]:
        return
    values = {key: sum(seed[key] for seed in per_seed) / len(per_seed) for key in per_seed[0]}
    for key, value in values.items():
        trial.set_constraint(key, value)
    trial.set_user_attr("constraints", values)


WORKER_ERROR = 3
"""Exit code of a worker that could not work (its reason is in `<study dir>/worker-<i>.error`)."""


def worker_main(job: WorkerJob) -> None:
    """A worker process: run trials until the budget is spent and nothing waits to be re-run.

    A failure outside a trial (the storage, a bug) is written to
    `<study dir>/worker-<index>.error` and ends the process with WORKER_ERROR,
    so the main process can report it instead of starting the worker again.
    """
    error_file = job.study_dir / f"worker-{job.index}.error"
    try:
        _work(job)
    except KeyboardInterrupt:  # the trial is marked interrupted; the main process reports
        return
    except IncentiveError as exc:
        error_file.write_text(str(exc))
        raise SystemExit(WORKER_ERROR) from None
    except Exception:
        import traceback

        error_file.write_text(traceback.format_exc())
        raise SystemExit(WORKER_ERROR) from None


def _work(job: WorkerJob) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(job.threads)
    torch.set_num_threads(job.threads)
    base = validate_recipe(job.recipe_data, source=job.source)
    storage = make_storage(
        job.storage, job.study_dir, heartbeat_interval=job.heartbeat_interval, grace_period=job.grace_period
    )
    config = StudyConfig.of(base, job.study_name)
    interrupt = Interrupt()
    study = open_study(storage, config, pruner=make_pruner(base), create=False, where="worker")
    # each worker its own random stream: apart by worker index, by machine (host name), and by how
    # far the study has come (a resumed study must not replay its first suggestions)
    host = sum(ord(c) * 31**i for i, c in enumerate(socket.gethostname())) % 1_000_003
    done = len(study.get_trials(deepcopy=False))
    remote = job.index > 0 or job.storage is not None
    study.sampler = make_sampler(base, seed=base.seed + 7919 * job.index + host * remote + 104_729 * done)
    budget = Budget(job.budget)
    objective = _objective(job, base, study, budget, interrupt)
    if job.batch > 1:
        _work_batched(job, base, study, budget, interrupt, objective)
        return
    heartbeat = isinstance(storage, optuna.storages.RDBStorage)  # the journal has no heartbeat
    while not interrupt.requested:
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        out_of_time = job.deadline is not None and time.time() >= job.deadline
        if waiting or (budget.open_slots(trials) > 0 and not out_of_time):
            # one trial at a time: Optuna's heartbeat, stale-trial check and re-run queue stay in charge
            study.optimize(objective, n_trials=1, catch=(Exception,))
        elif heartbeat and any(t.state == TrialState.RUNNING for t in trials) and not out_of_time:
            time.sleep(job.heartbeat_interval)  # another machine's trial may go stale: re-run it then
            optuna.storages.fail_stale_trials(study)
        else:
            return
    raise KeyboardInterrupt  # asked to stop between trials


# --- batched trials (`--batch K`) ---------------------------------------------------


def batch_space_problem(recipe: Recipe) -> str | None:
    """Why this search cannot run as batched trials (naming the field), or None if it can.

    Batched trials may differ only in seeds and in incentive parameters a
    plugin reads per env instance (its `task_params`, nested paths such as
    `contracts.0.amount` included); switching plugins on and off is fine (a
    trial without a plugin gets a zero term).
    """
    from incentive.plugin_manager import available_plugins
    from incentive.recipe import OneOfSpec
    from incentive.tasks import accepts_task_param

    plugins = available_plugins()

    def per_instance(plugin: str, field_name: str) -> bool:
        info = plugins.get(plugin)
        return info is not None and accepts_task_param(info.load(), field_name)

    for path in recipe.search.space:
        parts = path.split(".")
        ok = len(parts) >= 4 and parts[0] == "incentives" and parts[1].isdigit() and parts[2] == "params"
        index = int(parts[1]) if ok else -1
        entry = recipe.incentives[index] if ok and index < len(recipe.incentives) else None
        field_name = ".".join(parts[3:])
        if entry is None or isinstance(entry, OneOfSpec) or not per_instance(entry.plugin, field_name):
            return (
                f"field 'search.space.{path}': batched trials cannot vary {path!r} (only seeds and incentive "
                "parameters that a plugin reads per env instance, its task_params, may differ in one batch; "
                "env, network, rollout, num_envs, total_steps and learner settings may not)"
            )
    for index, entry in enumerate(recipe.incentives):
        options = entry.one_of if isinstance(entry, OneOfSpec) else [entry]
        for option in options:
            for name in getattr(option, "search", {}) or {}:
                if not per_instance(option.plugin, name):
                    return (
                        f"field 'incentives.{index}.search.{name}': batched trials cannot vary parameter "
                        f"{name!r} of plugin {option.plugin!r} (it does not read it per env instance)"
                    )
    return None


def fair_share(trials: int, workers: int) -> int:
    """The most trials one batch may take: a worker's share of the budget, rounded up.

    Without it, the first of several workers to ask would take a whole batch
    of the budget and leave the others idle (16 trials, `--batch 16
    --workers 2` once split 14 and 2), and workers asking at the same time
    would each ask for every open slot and fail the asks beyond the budget.
    """
    return max(1, -(-trials // max(1, workers)))


def _work_batched(
    job: WorkerJob,
    base: Recipe,
    study: optuna.Study,
    budget: Budget,
    interrupt: Interrupt,
    objective: Callable,
) -> None:
    """A `--batch K` worker: ask K trials, train them (and their repeats) as one batch, tell each result."""
    while not interrupt.requested:
        trials = study.get_trials(deepcopy=False)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        out_of_time = job.deadline is not None and time.time() >= job.deadline
        slots = waiting + (0 if out_of_time else budget.open_slots(trials))
        if slots <= 0:
            return
        asked = []
        for _ in range(min(job.batch, fair_share(job.budget, job.workers), slots)):
            trial = study.ask()
            trial.set_user_attr("worker", worker_id())
            trial.set_user_attr("interrupted", False)
            trials = study.get_trials(deepcopy=False)
            me = next(t for t in trials if t.number == trial.number)
            if not budget.within(me, trials):  # another worker took the last slots meanwhile
                trial.set_user_attr("over_budget", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            asked.append(trial)
        if not asked:
            return
        interrupt.in_trial = True
        try:
            _run_batch(job, base, study, asked, objective)
        except KeyboardInterrupt:
            for trial in asked:
                trial.set_user_attr("interrupted", True)
            raise
        finally:
            interrupt.in_trial = False


def _tell_alone(study: optuna.Study, trial: optuna.Trial, objective: Callable) -> None:
    """Train and tell one trial the unbatched way (its design cannot join a batch)."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the trial failed; the study goes on (as `catch` does for optimize)
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, value)


def _run_batch(
    job: WorkerJob, base: Recipe, study: optuna.Study, asked: list[optuna.Trial], objective: Callable
) -> None:
    from incentive.batched import BatchedTraining

    report_iterations = pruner_reports_iterations(base)
    objectives = base.objectives
    seeds = design_seeds(base, 0, base.search.repeats)
    members: list[tuple[optuna.Trial, int, Recipe, Path, TrialReporter]] = []
    designs: list[tuple[optuna.Trial, Recipe]] = []
    for trial in asked:
        try:
            recipe = trial_recipe(trial, base)
        except IncentiveError as exc:
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=TrialState.FAIL)
            continue
        trial.set_user_attr("recipe", json.dumps(recipe.model_dump(mode="json")))
        designs.append((trial, recipe))
    iterations = _planned_iterations(base)
    for trial, recipe in designs:
        for r, seed in enumerate(seeds):
            extra = {"trial": trial.number, "params": trial.params, "study": job.study_name}
            seeded = _seed_recipe(recipe, seed, job.study_name, "trial", [f"trial-{trial.number}"], extra)
            reporter = TrialReporter(
                trial,
                objective=objectives[0].name,
                last_fraction=objectives[0].last_fraction,
                step_offset=r * iterations,
                prune=report_iterations,
            )
            members.append(
                (trial, seed, seeded, _trial_run_dir(job.study_dir, "trials", trial.number, seed), reporter)
            )
    if not members:
        return
    try:
        training = BatchedTraining(
            [m[2] for m in members],
            run_dirs=[m[3] for m in members],
            extra_plugins=[[("search_trial", m[4])] if report_iterations else [] for m in members],
        )
    except RecipeError as exc:  # a plugin's suggestion made the designs unbatchable: one at a time
        for trial, _ in designs:
            trial.set_user_attr("batch_fallback", str(exc))
            _tell_alone(study, trial, objective)
        return
    try:
        training.run()
    except IncentiveError as exc:
        for trial, _ in designs:
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=TrialState.FAIL)
        return
    for trial, _ in designs:
        mine = [(i, m) for i, m in enumerate(members) if m[0] is trial]
        rows = [training.metrics_files[i].read() for i, _ in mine]
        trial.set_user_attr("env_steps", sum(r[-1]["train/global_step"] if r else 0 for r in rows))
        trial.set_user_attr("storage_s", sum(m[4].storage_s for _, m in mine))
        trial.set_user_attr("batch", len(asked))
        if any(training.statuses[i] == "pruned" for i, _ in mine):
            study.tell(trial, state=TrialState.PRUNED)
            continue
        try:
            scores = [objective_values(objectives, r, trial.params) for r in rows]
            recipe = next(chosen for t, chosen in designs if t is trial)
            _set_constraints(trial, [_constraint_values(base, recipe, r) for r in rows])
        except IncentiveError as exc:
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=TrialState.FAIL)
            continue
        means = [sum(s[i] for s in scores) / len(scores) for i in range(len(objectives))]
        trial.set_user_attr("seeds", seeds)
        trial.set_user_attr("per_seed", scores)
        trial.set_user_attr("std", [_std([s[i] for s in scores]) for i in range(len(objectives))])
        study.tell(trial, means[0] if len(means) == 1 else means)


# --- the study --------------------------------------------------------------------


@dataclass
class StudyResult:
    """What `run_study` hands back for the report."""

    study: optuna.Study
    settings: SearchSettings
    recipe: Recipe
    budget: Budget
    verified: dict[int, dict] = field(default_factory=dict)
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def _threads_per_worker(recipe: Recipe, workers: int) -> int:
    return max(1, min(recipe.train.threads, (os.cpu_count() or 1) // workers))


def validate_search(recipe: Recipe) -> None:
    """Check a recipe's `search:` section before any trial: paths, ranges, structure, sampler, pruner.

    Raises:
        RecipeError: naming the field.

    """
    from incentive.loop import check_objectives, designer_metric_names, make_env
    from incentive.plugin_manager import make_plugin_manager

    if recipe.search is None:
        raise RecipeError(f"{recipe.source}: field 'search': `incentive search` needs a `search:` section")

    def build(chosen: Recipe) -> None:
        wandb = chosen.log.wandb.model_copy(update={"mode": "disabled"})
        pm = make_plugin_manager(
            chosen.model_copy(update={"log": chosen.log.model_copy(update={"wandb": wandb})})
        )
        env = make_env(chosen.env.model_copy(update={"num_envs": 1}), source=chosen.source)
        check_objectives(chosen, env, pm)
        known = designer_metric_names(env, pm)
        for index, constraint in enumerate(recipe.search.constraints):
            for key, name in (("metric", constraint.metric), ("relative_to", constraint.relative_to)):
                if name is not None and metric_key(name).startswith("designer/"):
                    short = metric_key(name).removeprefix("designer/")
                    if short not in known:
                        raise RecipeError(
                            f"{recipe.source}: field 'search.constraints.{index}.{key}': unknown designer "
                            f"metric {name!r} for env {chosen.env.id!r}.{closest(short, known)}"
                        )

    _check_param_objectives(recipe)
    _check_constraint_plugins(recipe)
    check_search(recipe, build)
    make_pruner(recipe)
    make_sampler(recipe, seed=recipe.seed)


def _check_param_objectives(recipe: Recipe) -> None:
    """A `param` objective must name a parameter the study samples, and a numeric one."""
    searched = searched_params(recipe)
    for index, objective in enumerate(recipe.objectives):
        if objective.param is None:
            continue
        where = "objective" if not isinstance(recipe.objective, list) else f"objective.{index}"
        if objective.param not in searched:
            raise RecipeError(
                f"{recipe.source}: field '{where}.param': {objective.param!r} is not a searched parameter."
                f"{closest(objective.param, list(searched))} Searched: {', '.join(searched) or 'none'}."
            )
        choices = searched[objective.param].choices
        if choices is not None and not all(isinstance(c, int | float) for c in choices):
            raise RecipeError(
                f"{recipe.source}: field '{where}.param': {objective.param!r} takes non-numeric choices "
                f"{choices}; an objective needs a number"
            )


def _check_constraint_plugins(recipe: Recipe) -> None:
    """A constraint on `incentive/<plugin>/...` must name a plugin of the recipe."""
    plugins = {"return", *structure_labels(recipe)}
    plugins |= {entry.name or entry.plugin for entry in recipe.incentives if isinstance(entry, PluginSpec)}
    for index, constraint in enumerate(recipe.search.constraints):
        for key, name in (("metric", constraint.metric), ("relative_to", constraint.relative_to)):
            parts = metric_key(name).split("/") if name is not None else []
            if parts and parts[0] == "incentive" and (len(parts) < 3 or parts[1] not in plugins):
                raise RecipeError(
                    f"{recipe.source}: field 'search.constraints.{index}.{key}': {name!r} names no "
                    f"incentive of this recipe; `incentive/<plugin>/<metric>` takes one of: "
                    f"{', '.join(sorted(plugins - {'return'}))} (or `incentive/return/<agent>`)"
                )


def prepare_study(
    recipe: Recipe, settings: SearchSettings
) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    """Validate the search (before any trial) and create or load the study.

    Raises:
        RecipeError: a bad searched path, range, sampler, pruner, or a study made for other objectives.
        IncentiveError: an unusable storage.

    """
    validate_search(recipe)
    search = recipe.search
    with creation_lock(settings.storage):  # commands started together: one creates, the others load
        storage = make_storage(
            settings.storage,
            settings.study_dir,
            heartbeat_interval=search.heartbeat_interval,
            grace_period=search.grace_period,
        )
        where = storage_label(settings.storage) if settings.storage else str(settings.study_dir)
        study = open_study(
            storage,
            StudyConfig.of(recipe, settings.study_name),
            sampler=make_sampler(recipe, seed=recipe.seed),
            pruner=make_pruner(recipe),
            create=True,
            where=where,
        )
    settings.study_dir.mkdir(parents=True, exist_ok=True)
    return study, storage


def run_study(
    recipe: Recipe,
    settings: SearchSettings,
    *,
    monitor: Callable[[optuna.Study, Budget, list[str]], None] | None = None,
    poll_s: float = 1.0,
) -> StudyResult:
    """Run (or resume) a study to its budget with worker processes, then verify the top designs.

    Args:
        recipe: the base recipe with its `search:` section.
        settings: study name, directory, storage, budget, workers, timeout, verify.
        monitor: called about every `poll_s` seconds with the study, its budget
            and new event lines (the CLI's live table).
        poll_s: seconds between looks at the storage and the workers.

    Returns:
        The study and its verification results. Interrupted (Ctrl-C): stops the
        workers, marks their trials for a re-run, and returns with
        `interrupted` set (nothing written is lost; rerun the command to resume).

    """
    study, _ = prepare_study(recipe, settings)
    study.set_user_attr("budget", settings.trials)
    budget = Budget(settings.trials)
    result = StudyResult(study=study, settings=settings, recipe=recipe, budget=budget)
    requeued = recover_dead_trials(study)
    events = [f"re-running trial(s) {requeued} (stopped before they finished)"] if requeued else []
    batch = settings.batch
    if batch > 1:
        problem = batch_space_problem(recipe)
        if problem is not None:
            result.notes.append(f"--batch {batch}: {problem}; the trials run one at a time")
            events.append(result.notes[-1])
            batch = 1
    deadline = time.time() + settings.timeout if settings.timeout else None
    job = dict(
        recipe_data=recipe.model_dump(mode="json"),
        source=recipe.source,
        study_name=settings.study_name,
        study_dir=settings.study_dir,
        storage=settings.storage,
        budget=settings.trials,
        threads=_threads_per_worker(recipe, settings.workers),
        deadline=deadline,
        heartbeat_interval=recipe.search.heartbeat_interval,
        grace_period=recipe.search.grace_period,
        batch=batch,
        workers=settings.workers,
    )
    context = multiprocessing.get_context("spawn")
    workers: dict[int, Any] = {}
    started = 0

    def start(index: int) -> None:
        nonlocal started
        process = context.Process(target=worker_main, args=(WorkerJob(index=index, **job),), daemon=False)
        process.start()
        workers[index] = process
        started += 1

    for index in range(settings.workers):
        start(index)
    try:
        while workers:
            time.sleep(poll_s)
            for index, process in list(workers.items()):
                if process.is_alive():
                    continue
                process.join()
                del workers[index]
                if process.exitcode == WORKER_ERROR:
                    _stop_workers(workers)
                    error = settings.study_dir / f"worker-{index}.error"
                    reason = error.read_text().strip() if error.exists() else "no reason recorded"
                    raise IncentiveError(f"search worker {index} failed; finished trials are kept. {reason}")
                if process.exitcode != 0:
                    dead = f"{socket.gethostname()}:{process.pid}"
                    queued = recover_dead_trials(study, dead_workers=[dead])
                    how = (
                        f"signal {-process.exitcode}"
                        if process.exitcode < 0
                        else f"exit code {process.exitcode}"
                    )
                    events.append(f"worker {index} died ({how}); re-running trial(s) {queued or 'none'}")
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            out_of_time = deadline is not None and time.time() >= deadline
            work_left = waiting or (budget.open_slots(trials) > 0 and not out_of_time)
            if (
                work_left
                and len(workers) < settings.workers
                and started < 4 * settings.workers + settings.trials
            ):
                start(max(workers, default=-1) + 1)
            if monitor is not None:
                monitor(study, budget, events)
                events = []
    except KeyboardInterrupt:
        _stop_workers(workers)
        recover_dead_trials(study)
        result.interrupted = True
        return result
    if monitor is not None:
        monitor(study, budget, events)
    if settings.verify > 0:
        try:
            result.verified = verify_designs(recipe, settings, study, monitor=monitor, budget=budget)
        except KeyboardInterrupt:  # designs verified so far are kept in the study; the rest run on resume
            result.interrupted = True
    return result


def _stop_workers(workers: dict[int, Any], wait_s: float = 30.0) -> None:
    for process in workers.values():
        if process.is_alive():
            os.kill(process.pid, signal.SIGINT)
    deadline = time.time() + wait_s
    for process in workers.values():
        process.join(max(0.1, deadline - time.time()))
        if process.is_alive():
            process.terminate()
            process.join()


# --- the winner's curse check --------------------------------------------------------


def ranked_designs(study: optuna.Study, recipe: Recipe, budget: Budget) -> list[FrozenTrial]:
    """Completed, feasible trials, best first (multi-objective: the Pareto front, by the first objective)."""
    trials = [t for t in budget.counted(study.get_trials(deepcopy=False)) if t.state == TrialState.COMPLETE]
    trials = [t for t in trials if all(v <= 0 for v in t.user_attrs.get("constraints", {}).values())]
    signs = [1 if o.direction == "maximize" else -1 for o in recipe.objectives]
    if len(signs) > 1:
        trials = pareto_front(trials, signs)
    return sorted(trials, key=lambda t: -signs[0] * t.values[0])


def designs_to_verify(ranked: list[FrozenTrial], k: int, objectives: int) -> list[FrozenTrial]:
    """The top k designs; on a Pareto front (sorted by the first objective), k spread along it.

    A front's "top" by its first objective would verify only one end of it;
    spreading the k picks evenly over the front checks its two ends and the
    bend between them, where a designer usually chooses.
    """
    if objectives == 1 or len(ranked) <= k or k <= 1:
        return ranked[:k]
    picks = sorted({round(i * (len(ranked) - 1) / (k - 1)) for i in range(k)})
    return [ranked[i] for i in picks]


def pareto_front(trials: list[FrozenTrial], signs: list[int]) -> list[FrozenTrial]:
    """Trials no other trial dominates (at least as good in every objective, better in one)."""

    def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
        better_or_equal = all(s * x >= s * y for s, x, y in zip(signs, a.values, b.values, strict=True))
        return better_or_equal and any(
            s * x > s * y for s, x, y in zip(signs, a.values, b.values, strict=True)
        )

    return [t for t in trials if not any(dominates(o, t) for o in trials if o is not t)]


def _verify_one(
    recipe_data: dict, source: str, run_dir: str, objectives: list, params: dict, threads: int
) -> list[float]:
    import torch

    torch.set_num_threads(threads)
    recipe = validate_recipe(recipe_data, source=source)
    _, rows = train_design(recipe, Path(run_dir))
    return objective_values(objectives, rows, params)


def verify_designs(
    recipe: Recipe,
    settings: SearchSettings,
    study: optuna.Study,
    *,
    budget: Budget,
    monitor: Callable | None = None,
) -> dict[int, dict]:
    """Re-run the top `verify` designs (spread over the front for several objectives) on fresh seeds.

    Results are kept in the study (`verified/<trial>`).

    Each finished seed is stored at once (`verify/<trial>/<seed>`), so a
    verification stopped half way (Ctrl-C, a lost machine) re-runs only the
    seeds that had not finished; a design whose seeds are all in is
    `verified/<trial>` and is not run again. Runs are deterministic, so a
    duplicate on another machine would give the same numbers.
    """
    designs = designs_to_verify(
        ranked_designs(study, recipe, budget), settings.verify, len(recipe.objectives)
    )
    repeats = recipe.search.repeats
    seeds = design_seeds(recipe, repeats, repeats)
    objectives = recipe.objectives
    threads = _threads_per_worker(recipe, settings.workers)
    stored = study.user_attrs
    results: dict[int, dict] = {}
    todo = []
    for trial in designs:
        if f"verified/{trial.number}" in stored:
            results[trial.number] = stored[f"verified/{trial.number}"]
            continue
        chosen = validate_recipe(json.loads(trial.user_attrs["recipe"]), source=f"trial {trial.number}")
        for seed in seeds:
            if f"verify/{trial.number}/{seed}" in stored:
                continue
            extra = {"trial": trial.number, "params": trial.params, "study": settings.study_name}
            seeded = _seed_recipe(
                chosen, seed, settings.study_name, "verify", [f"trial-{trial.number}"], extra
            )
            run_dir = _trial_run_dir(settings.study_dir, "verify", trial.number, seed)
            if run_dir.exists():  # a verification interrupted earlier: start that seed again
                import shutil

                shutil.rmtree(run_dir)
            todo.append((trial, seed, seeded, run_dir))
    if todo:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=settings.workers, mp_context=context) as pool:
            futures = {
                pool.submit(
                    _verify_one,
                    seeded.model_dump(mode="json"),
                    seeded.source,
                    str(run_dir),
                    objectives,
                    trial.params,
                    threads,
                ): (trial.number, seed)
                for trial, seed, seeded, run_dir in todo
            }
            for future in as_completed(futures):
                number, seed = futures[future]
                study.set_user_attr(f"verify/{number}/{seed}", future.result())
                if monitor is not None:
                    monitor(study, budget, [f"verified trial {number}, seed {seed}"])
    stored = study.user_attrs
    for trial in designs:
        if trial.number in results:
            continue
        scores = [stored[f"verify/{trial.number}/{seed}"] for seed in seeds]
        values = [sum(s[i] for s in scores) / len(scores) for i in range(len(objectives))]
        record = {"values": values, "seeds": seeds, "per_seed": scores}
        study.set_user_attr(f"verified/{trial.number}", record)
        results[trial.number] = record
    return results
