"""Weights & Biases logging, offline by default.

Every run is a W&B run whose config is the resolved recipe and whose history
is the run's metrics, one step per iteration. Offline mode needs no key and
no network: runs land in `<run dir>/wandb/` for `wandb sync` later.

W&B prints nothing (it is started silent), and W&B never stops a run: if
it is not installed, fails to start or fails to log, the plugin records the
reason in `<run dir>/wandb-error.txt` and carries on without it.

Exact after stops and resumes. Every session of a run (the first, and each
`--resume`) logs to the same W&B run id, and what W&B holds for the run is
exactly `metrics.jsonl`: every iteration once, no gaps, no duplicates.
Iterations after the last checkpoint are run again on `--resume`, so a row
is handed to W&B only once a checkpoint covers it (the loop has moved past
that checkpoint), never before; a stop therefore loses no row W&B would
need twice. What a stopped session did not hand over (rows still held back,
or lost by a SIGKILL before W&B wrote them) is found on `--resume` by
reading the steps the run's earlier W&B files hold (`wandb/*run-*/*.wandb`,
W&B's own record format) and logging the missing covered rows from
`metrics.jsonl` and `perf.jsonl` before training goes on. A killed session's
W&B file has no exit record; that cannot be helped.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from incentive import hookimpl
from incentive.recipe import WandbSpec

__all__ = ["WandbLogger", "logged_steps", "settled_steps"]

_BLOCK = 32 * 1024
_FULL, _LAST = 1, 4


def logged_steps(path: Path) -> tuple[set[int], bool]:
    """(history steps, whether it has its exit record) of a W&B run file; a cut-off end is ignored.

    The file is W&B's LevelDB-style log: a 7-byte header, then 32 KiB blocks of
    records, each with a 7-byte header (CRC32, length, type: 1 full, 2 first,
    3 middle, 4 last) and a serialised `Record` protobuf.
    """
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    steps: set[int] = set()
    finished = False
    if data[:4] != b":W&B":
        return steps, finished
    pending, pos = b"", 7
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if pos + length > len(data):
            break  # the writer was stopped mid-record
        pending += data[pos : pos + length]
        pos += length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(pending)
            except Exception:
                break
            pending = b""
            kind = record.WhichOneof("record_type")
            if kind == "history":
                steps.add(int(record.history.step.num))
            finished = finished or kind == "exit"
    return steps, finished


def settled_steps(path: Path, *, quiet_for: float = 10.0, timeout: float = 30.0) -> set[int]:
    """The history steps of an earlier session's file once W&B has finished writing it.

    W&B's service writes in the background, so a session that just ended in
    this process may not have written everything yet: wait for its exit
    record, unless the file has been quiet for `quiet_for` seconds (a killed
    session never writes one).
    """
    deadline = time.monotonic() + timeout
    while True:
        steps, finished = logged_steps(path)
        quiet = time.time() - Path(path).stat().st_mtime > quiet_for
        if finished or quiet or time.monotonic() > deadline:
            return steps
        time.sleep(0.2)


def _rows(path: Path) -> dict[int, dict[str, Any]]:
    """Complete JSON lines of a metrics file by `train/iteration`."""
    rows: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for line in path.read_text(errors="replace").split("\n")[:-1]:
        try:
            row = json.loads(line)
        except ValueError:
            break
        if isinstance(row, dict) and isinstance(row.get("train/iteration"), int):
            rows[row["train/iteration"]] = row
    return rows


class WandbLogger:
    """Mirrors the run's config and metrics into a W&B run."""

    name = "wandb"
    Params = WandbSpec

    def __init__(self, params: WandbSpec) -> None:
        self.params = params
        self.wandb_run: Any = None
        self.error_file = None
        self.pending: list[tuple[int, dict[str, float]]] = []  # rows no checkpoint covers yet
        self.checkpointed: int | None = None  # iteration of the last checkpoint asked for
        self.covered = 0  # rows up to here are covered by a checkpoint that was written
        self.starting: threading.Thread | None = None  # the background `wandb.init`, until joined

    def _give_up(self, what: str) -> None:
        if self.error_file is not None:
            with open(self.error_file, "a") as f:
                f.write(f"W&B {what} failed; continuing without it.\n{traceback.format_exc()}\n")
        self.wandb_run = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Start the W&B run (resuming it when the training run is resumed) in the background.

        Importing W&B and starting its service takes seconds; training need
        not wait for it, since rows reach W&B only once a checkpoint covers
        them. Every use of the W&B run first waits for the start to finish.
        """
        self.error_file = run.run_dir / "wandb-error.txt"
        os.environ.setdefault("WANDB_SILENT", "true")
        self.starting = threading.Thread(target=self._start, args=(run,), name="wandb-start", daemon=True)
        self.starting.start()

    def _start(self, run) -> None:
        try:
            import wandb

            # a search's trials share run directory names across studies: the group keeps ids apart
            prefix = f"{self.params.group}-" if self.params.group else ""
            run_id = re.sub(r"[^A-Za-z0-9_-]", "-", f"{prefix}{run.recipe.name}-{run.run_dir.name}")
            self.wandb_run = wandb.init(
                project=self.params.project,
                entity=self.params.entity,
                group=self.params.group,
                job_type=self.params.job_type,
                tags=self.params.tags or None,
                name=f"{run.recipe.name}/{run.run_dir.name}",
                id=run_id,
                resume="allow",
                mode=self.params.mode,
                dir=str(run.run_dir),
                config={**run.recipe.model_dump(mode="json"), **self.params.config},
                settings=wandb.Settings(silent=True, console="off", quiet=True),
                reinit="create_new",
            )
        except Exception:  # W&B must never stop a run
            self._give_up("start")

    def _started(self) -> None:
        """Wait for the background start (a no-op once it has finished)."""
        if self.starting is not None:
            self.starting.join()
            self.starting = None

    def _flush(self, through: int) -> None:
        """Log the held-back rows up to iteration `through`, in order."""
        ready = [(step, row) for step, row in self.pending if step <= through]
        self.pending = [(step, row) for step, row in self.pending if step > through]
        if not ready:
            return
        self._started()
        if self.wandb_run is None:
            return
        try:
            for step, row in ready:
                self.wandb_run.log(row, step=step)
        except Exception:
            self._give_up("log")

    @hookimpl
    def incentive_iteration_end(self, iteration: int, metrics: dict[str, float]) -> None:
        """Hold the iteration's metrics back; log those an earlier, written checkpoint covers."""
        if self.checkpointed is not None and self.checkpointed < iteration:
            self.covered = self.checkpointed  # the loop went on: that checkpoint is on disk
        self.pending.append((iteration, dict(metrics)))
        self._flush(self.covered)

    @hookimpl
    def incentive_state_dict(self, run) -> dict[str, int]:
        """Note the checkpoint being written (its rows are logged once the loop moves on)."""
        self.checkpointed = run.iteration
        return {"iteration": run.iteration}

    @hookimpl
    def incentive_load_state_dict(self, run, state: dict[str, int]) -> None:
        """On `--resume`: log the covered rows that earlier sessions did not hand to W&B."""
        covered = int(state["iteration"])
        self.covered = self.checkpointed = covered
        self._started()
        if self.wandb_run is None:
            return
        try:
            current = Path(self.wandb_run.dir).resolve().parent
            held: set[int] = set()
            for path in sorted(Path(run.run_dir, "wandb").glob("*run-*/run-*.wandb")):
                if path.resolve().parent != current:
                    held |= settled_steps(path)
            metrics, perf = _rows(run.run_dir / "metrics.jsonl"), _rows(run.run_dir / "perf.jsonl")
            for step in sorted(metrics):
                if step <= covered and step not in held:
                    self.wandb_run.log({**metrics[step], **perf.get(step, {})}, step=step)
        except Exception:
            self._give_up("resume")

    @hookimpl
    def incentive_run_end(self, status: str) -> None:
        """Log what the last checkpoint covers, then close the W&B run (exit code 1 if it failed).

        A completed run's last iteration is checkpointed; a pruned search
        trial is never resumed, so all it logged is final too.
        """
        if status in ("completed", "pruned"):
            self._flush(self.pending[-1][0] if self.pending else 0)
        else:
            self._flush(self.covered)
        self.pending = []
        self._started()
        if self.wandb_run is None:
            return
        try:
            self.wandb_run.summary["run_status"] = status
            if status == "pruned":
                self.wandb_run.tags = (*self.wandb_run.tags, "pruned")
            self.wandb_run.finish(exit_code=1 if status == "failed" else 0)
        except Exception:
            self._give_up("finish")
        self.wandb_run = None
