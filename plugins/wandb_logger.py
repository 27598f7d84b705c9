"""Weights & Biases logging, offline by default.

Every run is a W&B run whose config is the resolved recipe and whose history
is the run's metrics, one step per iteration. Offline mode needs no key and
no network: runs land in `<run dir>/wandb/` for `wandb sync` later.

W&B prints nothing (it is started silent), and W&B never stops a run: if
it is not installed, fails to start or fails to log, the plugin records the
reason in `<run dir>/wandb-error.txt` and carries on without it.
"""

from __future__ import annotations

import os
import re
import traceback
from typing import Any

from incentive import hookimpl
from incentive.recipe import WandbSpec

__all__ = ["WandbLogger"]


class WandbLogger:
    """Mirrors the run's config and metrics into a W&B run."""

    name = "wandb"
    Params = WandbSpec

    def __init__(self, params: WandbSpec) -> None:
        self.params = params
        self.wandb_run: Any = None
        self.error_file = None

    def _give_up(self, what: str) -> None:
        if self.error_file is not None:
            with open(self.error_file, "a") as f:
                f.write(f"W&B {what} failed; continuing without it.\n{traceback.format_exc()}\n")
        self.wandb_run = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Start the W&B run (resuming it when the training run is resumed)."""
        self.error_file = run.run_dir / "wandb-error.txt"
        os.environ.setdefault("WANDB_SILENT", "true")
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

    @hookimpl
    def incentive_iteration_end(self, iteration: int, metrics: dict[str, float]) -> None:
        """Log the iteration's metrics at step = iteration."""
        if self.wandb_run is None:
            return
        try:
            self.wandb_run.log(metrics, step=iteration)
        except Exception:
            self._give_up("log")

    @hookimpl
    def incentive_run_end(self, status: str) -> None:
        """Close the W&B run (exit code 1 if the training run failed; a pruned trial says so)."""
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
