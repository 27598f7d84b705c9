"""Optuna studies: where they are stored, how they are opened, and how the trial budget is counted.

Storage is a factory. By default a study lives in an embedded journal file,
`<study dir>/journal.log` (Optuna's `JournalFileBackend`: safe for several
processes on one machine, nothing to install). `postgresql://...` puts it in
PostgreSQL (Optuna's `RDBStorage`) so that `incentive search` on several
machines adds workers to one study; running trials send heartbeats there,
and a trial whose worker died (machine lost, SIGKILL) goes stale after the
grace period and is re-run once (`RetryHeartbeatStaleTrialCallback`).

The trial budget is global and exact, whatever the number of workers and
machines (Optuna's `n_trials` counts per worker). Each trial holds a *slot*:
its own number, or for a re-run of a dead or interrupted trial, the original
trial's number. A trial that was re-run no longer counts; its re-run holds
its slot. The budget is N slots; a trial whose slot ranks N-th or later
(trial numbers are given out in order by the storage, so every worker
computes the same ranks) is over budget: it is marked `over_budget`, never
trained, and not counted, and its worker stops.

Several commands started at the same instant on a new PostgreSQL database
would race to create Optuna's tables and the study (Optuna's own pitfall);
`creation_lock` serialises that step with a PostgreSQL advisory lock, so the
first command creates and the others load.

Dead workers on this machine are found without heartbeats: each trial
records `worker = host:pid`; a RUNNING trial whose process on this host is
gone is failed and re-run once, the same way a stale trial is.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from incentive.errors import IncentiveError, RecipeError
from incentive.recipe import Recipe

__all__ = [
    "JOURNAL",
    "Budget",
    "StudyConfig",
    "creation_lock",
    "make_storage",
    "open_study",
    "recover_dead_trials",
    "storage_label",
    "worker_id",
]

JOURNAL = "journal.log"
RETRIES = 1
"""A dead or interrupted trial is re-run this many times at most."""

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, TPE group


def worker_id() -> str:
    """`host:pid` of this process, recorded on every trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def storage_label(url: str) -> str:
    """The storage URL without its password, for messages and files."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+"))


def make_storage(
    url: str | None, study_dir: Path, *, heartbeat_interval: int = 10, grace_period: int = 60
) -> optuna.storages.BaseStorage:
    """The study's storage: the local journal (url None or a file path) or PostgreSQL.

    Raises:
        IncentiveError: an unsupported URL, or a database that cannot be reached.

    """
    if url is None or "://" not in url:
        path = Path(url) if url is not None else study_dir / JOURNAL
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        except ValueError as exc:  # JSONDecodeError: not an Optuna journal
            raise IncentiveError(f"{path}: not an Optuna journal file ({exc}); nothing was changed") from None
    if not _is_postgres(url):
        raise IncentiveError(
            f"--storage {storage_label(url)}: unsupported storage; use a PostgreSQL URL "
            "(postgresql://user:password@host:5432/db) or omit it for the local journal file "
            "(SQLite is not safe for parallel workers)"
        )
    if url.startswith(("postgresql://", "postgres://")):  # SQLAlchemy's default driver is psycopg2
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}},
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=RETRIES),
        )
    except Exception as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncentiveError(
            f"--storage {storage_label(url)}: cannot open the PostgreSQL study storage ({cause}). Check that "
            "the server is running and reachable, and the user, password and database in the URL"
        ) from None


CREATION_LOCK = 0x1A7E5EA
"""PostgreSQL advisory lock key held while a command creates or loads its study (any 64-bit number)."""


@contextlib.contextmanager
def creation_lock(url: str | None) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock while tables and the study are created (no-op for the journal).

    The lock belongs to its own connection and is released when it closes,
    also when the process dies, so a crashed command never blocks the others.
    """
    if url is None or not _is_postgres(url):
        yield  # the journal file serialises its own writes
        return
    import psycopg

    conninfo = "postgresql://" + url.split("://", 1)[1]
    try:
        connection = psycopg.connect(conninfo, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IncentiveError(
            f"--storage {storage_label(url)}: cannot open the PostgreSQL study storage ({cause}). Check that "
            "the server is running and reachable, and the user, password and database in the URL"
        ) from None
    with connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (CREATION_LOCK,))
        yield


@dataclass(frozen=True)
class StudyConfig:
    """What identifies a study: its name, directions, objectives and the recipe it searches."""

    name: str
    directions: list[str]
    objectives: list[str]
    recipe_json: str

    @classmethod
    def of(cls, recipe: Recipe, name: str) -> StudyConfig:
        """The config of searching `recipe` under `name` (run-time settings excluded)."""
        data = recipe.model_dump(mode="json")
        for key in ("trials", "workers", "timeout", "verify", "storage", "study_name"):
            data["search"].pop(key, None)
        data["log"].pop("wandb", None)
        return cls(
            name=name,
            directions=[o.direction for o in recipe.objectives],
            objectives=[o.name for o in recipe.objectives],
            recipe_json=json.dumps(data, sort_keys=True),
        )


def _recipe_difference(stored: str, ours: str) -> str:
    a, b = json.loads(stored), json.loads(ours)
    changed = []

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(x.get(key), y.get(key), f"{path}.{key}" if path else key)
        elif x != y:
            changed.append(path)

    walk(a, b, "")
    return ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")


def open_study(
    storage: optuna.storages.BaseStorage,
    config: StudyConfig,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    create: bool,
    where: str,
) -> optuna.Study:
    """Create the study (once) or load it, checking it searches the same recipe for the same objectives.

    Args:
        storage: the study's storage.
        config: what the study must be.
        sampler: the sampler of this process.
        pruner: the pruner of this process.
        create: create the study if missing (the command's main process);
            workers only load it (creating in many processes races).
        where: the storage as shown in messages.

    Raises:
        RecipeError: the study exists with other objectives, directions or recipe.

    """
    try:
        existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    except Exception as exc:
        raise IncentiveError(
            f"{where}: cannot read the studies in the storage ({type(exc).__name__}: {exc})"
        ) from None
    if config.name not in existing:
        if not create:
            raise IncentiveError(f"{where}: no study named {config.name!r}")
        study = optuna.create_study(
            storage=storage,
            study_name=config.name,
            directions=config.directions,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
        study.set_user_attr("objectives", config.objectives)
        study.set_user_attr("recipe", config.recipe_json)
        return study
    study = optuna.load_study(study_name=config.name, storage=storage, sampler=sampler, pruner=pruner)
    directions = [d.name.lower() for d in study.directions]
    stored_objectives = study.user_attrs.get("objectives")
    if directions != config.directions or (
        stored_objectives is not None and stored_objectives != config.objectives
    ):
        raise RecipeError(
            f"{where}: study {config.name!r} exists with other objectives "
            f"({list(zip(stored_objectives or ['?'] * len(directions), directions, strict=False))}, "
            "this recipe: "
            f"{list(zip(config.objectives, config.directions, strict=True))}); nothing was changed. Choose "
            "another study name (--study) or the recipe it was made with"
        )
    stored_recipe = study.user_attrs.get("recipe")
    if stored_recipe is not None and stored_recipe != config.recipe_json:
        raise RecipeError(
            f"{where}: study {config.name!r} was made from a different recipe (differs in: "
            f"{_recipe_difference(stored_recipe, config.recipe_json)}); nothing was changed. Its trials "
            "would not be comparable: choose another study name (--study)"
        )
    return study


# --- the budget ---------------------------------------------------------------


def retried_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of trials that were re-run (their re-run holds their slot)."""
    return {number for t in trials for number in t.system_attrs.get("retry_history", [])}


def slot(trial: FrozenTrial) -> int:
    """The budget slot a trial holds: the original trial's number for a re-run, else its own."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


@dataclass
class Budget:
    """The global trial budget of a study, computed from its trials.

    Args:
        total: N, the trials the study may hold (all workers and machines).

    """

    total: int

    def counted(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """Trials that count: neither over budget nor replaced by a re-run."""
        retried = retried_numbers(trials)
        return [t for t in trials if not t.user_attrs.get("over_budget") and t.number not in retried]

    def slots(self, trials: Sequence[FrozenTrial]) -> list[int]:
        """The distinct slots held by counted trials, in order."""
        return sorted({slot(t) for t in self.counted(trials)})

    def within(self, trial: FrozenTrial, trials: Sequence[FrozenTrial]) -> bool:
        """Whether `trial` holds one of the first N slots."""
        return self.slots(trials).index(slot(trial)) < self.total

    def open_slots(self, trials: Sequence[FrozenTrial]) -> int:
        """Slots not yet taken by any counted trial."""
        return max(0, self.total - len(self.slots(trials)))

    def finished(self, trials: Sequence[FrozenTrial]) -> int:
        """Counted trials in a final state (complete, pruned, failed)."""
        return sum(t.state.is_finished() for t in self.counted(trials) if self.within(t, trials))


def _retry(study: optuna.Study, trial: FrozenTrial, max_retry: int | None) -> None:
    """Fail `trial` (if it still runs) and queue its re-run, as Optuna does for stale trials."""
    storage = study._storage
    if trial.state == TrialState.RUNNING:
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # another process got there first and re-runs it
    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, storage.get_trial(trial._trial_id))


def _alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's: its heartbeat says
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def recover_dead_trials(study: optuna.Study, *, dead_workers: Sequence[str] = ()) -> list[int]:
    """Re-run (once) trials whose worker on this host is gone, and trials a Ctrl-C interrupted.

    Args:
        study: the study.
        dead_workers: `host:pid` of workers known to have died (their pid may
            already be reused); other RUNNING trials are checked by pid.

    Returns:
        Numbers of the trials that were queued for a re-run.

    """
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    queued = []
    for trial in trials:
        if trial.number in retried or trial.user_attrs.get("over_budget"):
            continue
        worker = trial.user_attrs.get("worker")
        dead = (
            trial.state == TrialState.RUNNING
            and worker is not None
            and (worker in dead_workers or not _alive(worker))
        )
        interrupted = trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted")
        if interrupted:  # a Ctrl-C is not the design's fault: re-run it however often
            _retry(study, trial, max_retry=None)
            queued.append(trial.number)
        elif dead:
            if len(trial.system_attrs.get("retry_history", [])) >= RETRIES:  # died again: fail for good
                try:
                    study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass
                continue
            _retry(study, trial, max_retry=RETRIES)
            queued.append(trial.number)
    return queued
