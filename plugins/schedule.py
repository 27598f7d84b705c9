"""Schedule: a curriculum of stages, each setting env or incentive parameters, with conditions to advance.

Every instance runs the same task; the stage decides it. A stage sets task
keys (env task parameters such as `level` or `size`, or plugin parameters
such as `incentives.0.params.s`) to values, reached by interpolation from
the previous stage's values over `over_steps` env steps after the stage
begins (progress p = steps in the stage / over_steps, at most 1):

    step:    v = target                                   (at once)
    linear:  v = start + (target - start) * p
    cosine:  v = start + (target - start) * (1 - cos(pi * p)) / 2

`start` is the value the previous stage set (a key the previous stage did
not set jumps to its target). A stage ends, and the next begins, when its
`advance` condition holds:

- `{metric: designer/collective_return, threshold: 30, for_iterations: 3}`:
  the designer metric was >= threshold in each of the last K iterations
  that reported it (an iteration without finished episodes reports no
  designer metric: it neither counts nor breaks the streak);
- `{steps: 100000}`: after N env steps in the stage.

Optionally a stage regresses to the previous one on failure: `regress:
{metric: ..., below: 10, for_iterations: 3}` (the metric stayed below the
value for K reporting iterations). The last stage needs no `advance`.

Example: anneal reward sharing from 1 to 0 once cooperation is learnt:

    curriculum:
      plugin: schedule
      params:
        stages:
          - set: {incentives.0.params.s: 1.0}
            advance: {metric: designer/collective_return, threshold: 30, for_iterations: 3}
          - set: {incentives.0.params.s: 0.0}
            interpolation: linear
            over_steps: 200000

Values reach the instances at their next reset, never mid-episode (as for
every task). Metrics: `curriculum/stage` (0-based) and
`curriculum/param/<key>` (the value the schedule hands out this iteration).
The stage, when it began and the streak counters are saved with
checkpoints.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from incentive import hookimpl
from incentive.loop import standard_metric_names

__all__ = ["Schedule", "interpolate"]


def interpolate(start: float, target: float, progress: float, how: str) -> float:
    """The value at `progress` in [0, 1] of the way from `start` to `target` (step, linear or cosine)."""
    p = min(max(progress, 0.0), 1.0)
    if how == "step":
        return target
    if how == "linear":
        return start + (target - start) * p
    return start + (target - start) * (1 - math.cos(math.pi * p)) / 2


class Condition(BaseModel):
    """When a stage ends: a metric at or above a threshold for K iterations, or after N steps."""

    model_config = ConfigDict(extra="forbid")
    metric: str | None = Field(None, description="Designer metric, e.g. `designer/collective_return`.")
    threshold: float | None = Field(None, description="Advance when the metric is >= this.")
    for_iterations: int = Field(1, ge=1, description="K: reporting iterations in a row.")
    steps: int | None = Field(None, ge=1, description="Advance after N env steps in the stage.")

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        by_metric = self.metric is not None or self.threshold is not None
        if by_metric == (self.steps is not None):
            raise ValueError("give either metric and threshold, or steps")
        if by_metric and (self.metric is None or self.threshold is None):
            raise ValueError("a metric condition needs both metric and threshold")
        return self


class Regression(BaseModel):
    """When a stage falls back to the previous one: a metric below a value for K iterations."""

    model_config = ConfigDict(extra="forbid")
    metric: str = Field(description="Designer metric, e.g. `designer/collective_return`.")
    below: float = Field(description="Regress when the metric is < this.")
    for_iterations: int = Field(1, ge=1, description="K: reporting iterations in a row.")


class Stage(BaseModel):
    """One stage: the values it sets, how they are reached, and when it ends."""

    model_config = ConfigDict(extra="forbid")
    set: dict[str, float] = Field(description="Task key -> value (e.g. `incentives.0.params.s: 0.0`).")
    interpolation: Literal["step", "linear", "cosine"] = Field(
        "step", description="How values move from the previous stage's to these."
    )
    over_steps: int = Field(0, ge=0, description="Env steps the interpolation takes (linear, cosine).")
    advance: Condition | None = Field(None, description="When to move to the next stage.")
    regress: Regression | None = Field(None, description="When to fall back to the previous stage.")

    @model_validator(mode="after")
    def _steps_for_interpolation(self) -> Stage:
        if self.interpolation != "step" and self.over_steps == 0:
            raise ValueError(f"{self.interpolation} interpolation needs over_steps > 0")
        return self


class Schedule:
    """Moves every instance through stages of env and incentive parameters."""

    name = "schedule"

    class Params(BaseModel):
        """Parameters: the stages, in order."""

        model_config = ConfigDict(extra="forbid")
        stages: list[Stage] = Field(min_length=1, description="The stages, first to last.")

        @model_validator(mode="after")
        def _advance_before_last(self) -> Schedule.Params:
            for index, stage in enumerate(self.stages[:-1]):
                if stage.advance is None:
                    raise ValueError(
                        f"stage {index} needs an 'advance' condition (only the last may omit it)"
                    )
            return self

    def __init__(self, params: Params) -> None:
        self.params = params
        self.stage = 0
        self.stage_start = 0
        self.advance_streak = 0
        self.regress_streak = 0
        self.values: dict[str, float] = {}

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Check every stage's keys and metrics against the run.

        Raises:
            ValueError: naming the field: a key that cannot be set per instance, or an unknown metric.

        """
        known = standard_metric_names(run.env)
        for index, stage in enumerate(self.params.stages):
            where = f"curriculum.params.stages.{index}"
            for key in stage.set:
                try:
                    run.tasks.check_key(key)
                except ValueError as exc:
                    raise ValueError(f"field '{where}.set.{key}': {exc}") from None
            for kind, condition in (("advance", stage.advance), ("regress", stage.regress)):
                metric = getattr(condition, "metric", None)
                if metric is not None and metric.removeprefix("designer/") not in known:
                    raise ValueError(
                        f"field '{where}.{kind}.metric': unknown designer metric {metric!r}; "
                        f"available: {', '.join('designer/' + name for name in known)}"
                    )

    def _stage_values(self, stage: int, steps_in: int) -> dict[str, float]:
        current = self.params.stages[stage]
        previous = self.params.stages[stage - 1].set if stage > 0 else {}
        values = {}
        for key, target in current.set.items():
            start = previous.get(key, target)
            progress = steps_in / current.over_steps if current.over_steps else 1.0
            values[key] = interpolate(start, target, progress, current.interpolation)
        return values

    @hookimpl
    def incentive_next_task(self, run) -> dict[str, torch.Tensor]:
        """This stage's values for every instance."""
        self.values = self._stage_values(self.stage, run.global_step - self.stage_start)
        e = run.num_envs
        return {key: torch.full((e,), value, dtype=torch.float64) for key, value in self.values.items()}

    @hookimpl
    def incentive_collect_metrics(self) -> dict[str, float]:
        """The stage and the values handed out this iteration."""
        metrics = {"curriculum/stage": float(self.stage)}
        metrics.update({f"curriculum/param/{key}": value for key, value in self.values.items()})
        return metrics

    @hookimpl
    def incentive_iteration_end(self, run, metrics) -> None:
        """Advance or regress the stage from this iteration's metrics and steps."""
        stage = self.params.stages[self.stage]
        advance, regress = stage.advance, stage.regress
        moved = 0
        if advance is not None and self.stage + 1 < len(self.params.stages):
            if advance.steps is not None:
                moved = int(run.global_step - self.stage_start >= advance.steps)
            else:
                value = metrics.get(_designer(advance.metric))
                if value is not None:
                    self.advance_streak = self.advance_streak + 1 if value >= advance.threshold else 0
                moved = int(self.advance_streak >= advance.for_iterations)
        if not moved and regress is not None and self.stage > 0:
            value = metrics.get(_designer(regress.metric))
            if value is not None:
                self.regress_streak = self.regress_streak + 1 if value < regress.below else 0
            moved = -int(self.regress_streak >= regress.for_iterations)
        if moved:
            self.stage += moved
            self.stage_start = run.global_step
            self.advance_streak = self.regress_streak = 0

    @hookimpl
    def incentive_state_dict(self) -> dict[str, Any]:
        """The stage, when it began, and the streaks."""
        keys = ("stage", "stage_start", "advance_streak", "regress_streak")
        return {key: getattr(self, key) for key in keys}

    @hookimpl
    def incentive_load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `incentive_state_dict` returned."""
        for key, value in state.items():
            setattr(self, key, value)


def _designer(metric: str) -> str:
    return metric if metric.startswith("designer/") else f"designer/{metric}"
