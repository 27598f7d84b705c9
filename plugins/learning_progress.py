"""Learning-progress curriculum (after Kanitscheider et al., 2021, and OMNI, Zhang et al., 2023).

Source: Kanitscheider et al., "Multi-task curriculum learning in a complex,
visual, hard-exploration domain: Minecraft", 2021; Zhang et al., "OMNI:
Open-endedness via Models of human Notions of Interestingness", 2023.

Tasks are sampled where the success rate is changing: where the learner is
getting better (or forgetting). For every candidate task i, two moving
averages of its success rate, updated in each iteration where episodes on
task i ended (with their mean success r_i):

    fast_i <- fast_i + a_fast * (r_i - fast_i)
    slow_i <- slow_i + a_slow * (r_i - slow_i)
    LP_i    = |fast_i - slow_i|
    P(i)    = (1 - floor) * LP_i / sum_j LP_j + floor / N     (uniform if every LP_i = 0)

An episode is a success when its collective extrinsic return (summed over
agents) is at least `success_return`. Both averages start at 0.

Choices made: the papers' reweighting of the success rates before taking
the difference (Kanitscheider et al.) and OMNI's interestingness model are
left out; this is the plain bidirectional learning progress with a uniform
floor. Tasks are drawn once per iteration for all E instances and adopted
at each instance's next reset; an episode counts for the task it ran on,
including the part of it played in earlier iterations.

Parameters: `fast` (a_fast, 0.1), `slow` (a_slow, 0.01), `floor` (share of
uniform sampling, 0.1), `success_return` (1.0), `candidates` (default: the
env's training levels; or task key -> list of values).

Metrics: `curriculum/lp/mean` and `curriculum/lp/max` (learning progress
over tasks), `curriculum/lp/success_fast` (mean fast success rate over
tasks with episodes), `curriculum/lp/tasks_tried` (share of tasks with at
least one episode), and `curriculum/level_difficulty` where the env rates
its levels.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from incentive import hookimpl
from incentive.tasks import CandidateTasks, episode_returns, step_values

__all__ = ["LearningProgress", "progress_distribution"]


def progress_distribution(fast: torch.Tensor, slow: torch.Tensor, *, floor: float) -> torch.Tensor:
    """P(i) = (1 - floor) LP_i / sum LP + floor / N with LP = |fast - slow| (uniform if all LP are 0)."""
    lp = (fast - slow).abs().to(torch.float64)
    n = len(lp)
    uniform = torch.full_like(lp, 1.0 / n)
    total = lp.sum()
    if total <= 0:
        return uniform
    return (1 - floor) * lp / total + floor * uniform


class LearningProgress:
    """Samples tasks by the absolute change of their success rate (fast minus slow average)."""

    name = "learning_progress"

    class Params(BaseModel):
        """Parameters of the learning-progress curriculum."""

        model_config = ConfigDict(extra="forbid")
        fast: float = Field(0.1, gt=0, le=1, description="Step size of the fast success average.")
        slow: float = Field(0.01, gt=0, le=1, description="Step size of the slow success average.")
        floor: float = Field(0.1, ge=0, le=1, description="Share of uniform sampling over all tasks.")
        success_return: float = Field(
            1.0, description="An episode succeeds when its collective extrinsic return is at least this."
        )
        candidates: dict[str, list[float]] | None = Field(
            None, description="Task key -> list of values (default: the env's training levels)."
        )

        @model_validator(mode="after")
        def _fast_is_faster(self) -> LearningProgress.Params:
            if self.fast <= self.slow:
                raise ValueError(f"fast ({self.fast}) must be larger than slow ({self.slow})")
            return self

    def __init__(self, params: Params) -> None:
        self.params = params
        self.candidates: CandidateTasks | None = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Build the candidate tasks and their success averages."""
        self.candidates = CandidateTasks.for_run(run, self.params.candidates)
        n = len(self.candidates)
        self.fast_rate = torch.zeros(n, dtype=torch.float64)
        self.slow_rate = torch.zeros(n, dtype=torch.float64)
        self.episodes = torch.zeros(n, dtype=torch.long)
        self.running = torch.full((run.num_envs,), -1, dtype=torch.long)
        self.pending = torch.full((run.num_envs,), -1, dtype=torch.long)
        self.carried = torch.zeros(run.num_envs, dtype=torch.float64)

    @hookimpl
    def incentive_next_task(self, run, iteration) -> dict[str, torch.Tensor]:
        """Draw every instance's next task from the learning-progress distribution."""
        weights = progress_distribution(self.fast_rate, self.slow_rate, floor=self.params.floor)
        self.pending = torch.multinomial(weights, run.num_envs, replacement=True, generator=run.generator)
        if run.global_step == 0:  # the run starts at a boundary: these tasks start now
            self.running = self.pending.clone()
        return self.candidates.task(self.pending)

    @hookimpl
    def incentive_update_curriculum(self, run, rollout) -> None:
        """Update the success averages of the tasks whose episodes ended in the rollout."""
        done = rollout.done.bool()
        returns, self.carried = episode_returns(rollout.reward.sum(-1), done, self.carried)
        tasks = step_values(self.running, self.pending, done)
        ended = done & (tasks >= 0)
        index = tasks[ended]
        success = (returns[ended] >= self.params.success_return).to(torch.float64)
        n = len(self.fast_rate)
        wins = torch.zeros(n, dtype=torch.float64).index_add_(0, index, success)
        counts = torch.zeros(n, dtype=torch.long).index_add_(0, index, torch.ones_like(index))
        played = counts > 0
        rate = wins / counts.clamp(min=1)
        p = self.params
        fast = self.fast_rate + p.fast * (rate - self.fast_rate)
        slow = self.slow_rate + p.slow * (rate - self.slow_rate)
        self.fast_rate = torch.where(played, fast, self.fast_rate)
        self.slow_rate = torch.where(played, slow, self.slow_rate)
        self.episodes += counts
        self.running = torch.where(done.any(0), self.pending, self.running)

    @hookimpl
    def incentive_collect_metrics(self) -> dict[str, float]:
        """Learning progress summary, success rate, share of tasks tried, drawn levels' difficulty."""
        lp = (self.fast_rate - self.slow_rate).abs()
        tried = self.episodes > 0
        metrics = {
            "curriculum/lp/mean": float(lp.mean()),
            "curriculum/lp/max": float(lp.max()),
            "curriculum/lp/tasks_tried": float(tried.double().mean()),
        }
        if bool(tried.any()):
            metrics["curriculum/lp/success_fast"] = float(self.fast_rate[tried].mean())
        metrics.update(self.candidates.difficulty_metric(self.pending))
        return metrics

    @hookimpl
    def incentive_state_dict(self) -> dict[str, Any]:
        """Success averages, episode counts, running and pending tasks, unfinished returns."""
        keys = ("fast_rate", "slow_rate", "episodes", "running", "pending", "carried")
        return {key: getattr(self, key).clone() for key in keys}

    @hookimpl
    def incentive_load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `incentive_state_dict` returned."""
        for key, value in state.items():
            setattr(self, key, value.clone())
