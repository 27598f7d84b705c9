"""Every hook of `incentive`: the one contract between the loop and the plugins.

A plugin implements any subset of these with `@hookimpl` methods of the same
name, and may accept fewer arguments than a spec lists (pluggy's opt-in
arguments), so specs can gain arguments without breaking anyone.

The loop calls each plugin's implementation itself, one plugin at a time, so
that a failure or a bad return value is reported with the plugin's name and
the hook, and shaping terms are logged under the plugin that produced them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from incentive.markers import hookspec

if TYPE_CHECKING:
    import optuna
    import torch

    from incentive.recipe import Recipe
    from incentive.types import EpisodeResults, OpponentAssignment, Rollout, RunContext, StepBatch

# ---------------------------------------------------------------------------
# lifecycle and logging
# ---------------------------------------------------------------------------


@hookspec
def incentive_setup(run: RunContext) -> None:
    """Prepare a plugin for a run.

    Called once, after the env and learner are built and before the first
    iteration (on `--resume`, before the plugin's state is restored).

    Args:
        run: the run context.

    Returns:
        None; every implementation is called.

    Example::

        @hookimpl
        def incentive_setup(self, run):
            self.totals = torch.zeros(run.num_envs, len(run.agents))

    """


@hookspec
def incentive_collect_metrics(run: RunContext, rollout: Rollout) -> dict[str, float] | None:
    """Contribute metrics for this iteration (e.g. `curriculum/...`, `population/...`).

    Called once per iteration, after the learner's update and before
    `incentive_iteration_end`.

    Args:
        run: the run context.
        rollout: the iteration's rollout.

    Returns:
        A mapping metric name -> number, or None. Results of all plugins are
        merged into the iteration's metrics (names should carry a prefix).

    Example::

        @hookimpl
        def incentive_collect_metrics(self, run, rollout):
            return {"curriculum/mean_level": float(self.levels.float().mean())}

    """


@hookspec
def incentive_iteration_end(run: RunContext, iteration: int, metrics: dict[str, float]) -> None:
    """See the finished iteration's metrics (loggers, search reports, league updates).

    Called once per iteration, after the metrics line is written to
    `metrics.jsonl` and before any checkpoint of that iteration.

    Args:
        run: the run context.
        iteration: 1-based number of the iteration just finished.
        metrics: every metric of the iteration, including `perf/...`.

    Returns:
        None; every implementation is called.

    Example::

        @hookimpl
        def incentive_iteration_end(self, iteration, metrics):
            print(iteration, metrics["designer/collective_return"])

    """


@hookspec
def incentive_run_end(run: RunContext, status: str, metrics: dict[str, float]) -> None:
    """Finish a run: flush and close what the plugin opened.

    Called once when the loop stops, whether it completed, failed, or was
    stopped early by a plugin's `StopRun` (a pruned search trial).

    Args:
        run: the run context.
        status: "completed", "failed", or the `StopRun` status (e.g. "pruned").
        metrics: the last iteration's metrics (empty if none finished).

    Returns:
        None; every implementation is called (failures here are reported
        but do not hide the original error).

    Example::

        @hookimpl
        def incentive_run_end(self, status):
            self.file.close()

    """


# ---------------------------------------------------------------------------
# reward shaping
# ---------------------------------------------------------------------------


@hookspec
def incentive_shape_reward(run: RunContext, step: StepBatch) -> dict[str, torch.Tensor] | None:
    """Add named terms to the agents' incentive.

    Called once per batched env step, after `env.step`. The learner trains
    on `reward + sum of every term`; the designer's metrics never see them.
    A plugin with per-env state resets it where `step.done` is True.

    Args:
        run: the run context.
        step: the batched step, a `StepBatch` (E instances, A agents):
            `obs` / `next_obs` / `final_obs` (agent -> float32 [E, *obs]),
            `actions` (int64 [E, A]), `reward` (float32 [E, A], extrinsic),
            `terminated` / `truncated` / `done` (bool [E]), `acting` and
            `learner_seats` (bool [E, A]), `info` (counter -> float32 [E]),
            `episode_step` (int64 [E]). See `incentive.StepBatch`.

    Returns:
        term name -> tensor [E, A] (finite floats), or None. Every plugin's
        terms are collected and added; each is logged as
        `incentive/<plugin>/<term>` (per-episode sum, mean over agents).

    Example::

        @hookimpl
        def incentive_shape_reward(self, step):
            others = (step.reward.sum(1, keepdim=True) - step.reward) / (step.reward.shape[1] - 1)
            return {"shared": self.params.s * others}

    """


# ---------------------------------------------------------------------------
# curriculum
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def incentive_next_task(run: RunContext, iteration: int) -> dict[str, torch.Tensor] | None:
    """Choose the task of every env instance for the coming iteration.

    Called at the start of each iteration, before the rollout. Each instance
    adopts its new task at its next reset, never mid-episode.

    Args:
        run: the run context.
        iteration: 1-based number of the coming iteration.

    Returns:
        task key -> tensor with leading dimension E, or None to keep the
        current tasks. Keys are the env's `task_keys` (e.g. `level`),
        plugin parameters by recipe path (`incentives.0.params.s`, [E]
        numbers; the plugin must list the field in its `task_params`), or
        `opponent` ([E] ids for opponent samplers); see `incentive.tasks`.
        A bad key or shape is reported naming the key. First non-None
        result wins.

    Example::

        @hookimpl
        def incentive_next_task(self, run):
            s = torch.tensor([1.0, 0.0]).repeat_interleave(run.num_envs // 2)
            return {"level": self.sample_levels(run.num_envs), "incentives.0.params.s": s}

    """


@hookspec
def incentive_update_curriculum(run: RunContext, rollout: Rollout) -> None:
    """Learn from how the learners did on their tasks (e.g. PLR level scores).

    Called once per iteration, after advantages are computed and before the
    learner's update.

    Args:
        run: the run context.
        rollout: the rollout with its advantages and episode ends.

    Returns:
        None; every implementation is called.

    Example::

        @hookimpl
        def incentive_update_curriculum(self, rollout):
            self.scores = rollout.advantages.abs().mean((0, 2))

    """


# ---------------------------------------------------------------------------
# opponent sampling
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def incentive_pick_opponents(run: RunContext, iteration: int) -> OpponentAssignment | None:
    """Choose who fills each seat of each instance for the coming iteration.

    Called at the start of each iteration, after `incentive_next_task`. A
    seat switches policy only when its instance's episode ends; only seats
    played by the learner produce training data.

    Args:
        run: the run context.
        iteration: 1-based number of the coming iteration.

    Returns:
        An `OpponentAssignment` (policies, and seats [E, A] of policy
        indices, -1 for the learner), or None: every seat is the learner's.
        First non-None result wins.

    Example::

        @hookimpl
        def incentive_pick_opponents(self, run):
            seats = torch.full((run.num_envs, 2), -1)
            seats[:, 1] = 0
            return OpponentAssignment(policies=[self.bot], seats=seats)

    """


@hookspec
def incentive_update_population(
    run: RunContext, iteration: int, results: EpisodeResults, rollout: Rollout
) -> None:
    """Update the population, ratings or payoffs from this iteration's episodes.

    Called once per iteration, after the iteration's metrics line is written
    and before `incentive_iteration_end`, also when no episode finished
    (`results` then holds none), so counts decay and snapshots follow their
    schedule every iteration.

    Args:
        run: the run context.
        iteration: 1-based number of the iteration just played.
        results: returns and seat occupants of the finished episodes.
        rollout: the iteration's rollout, for opponents that learn from their
            own seats (a league's exploiters).

    Returns:
        None; every implementation is called.

    Example::

        @hookimpl
        def incentive_update_population(self, results):
            self.wins += (results.returns[:, 0] > results.returns[:, 1]).sum()

    """


# ---------------------------------------------------------------------------
# search
# ---------------------------------------------------------------------------


@hookspec
def incentive_search_space(trial: optuna.Trial, recipe: Recipe) -> dict[str, Any] | None:
    """Suggest recipe overrides for an Optuna trial (e.g. switch incentives on or off).

    Called once per trial by `incentive search`, after the recipe's own
    `search.space` is sampled and before the trial's recipe is validated.

    Args:
        trial: the Optuna trial (call its `suggest_*` methods).
        recipe: the base recipe.

    Returns:
        recipe path (as for `--set`) -> value, or None. Results of all
        plugins are merged; a path suggested twice is an error.

    Example::

        @hookimpl
        def incentive_search_space(self, trial):
            return {"incentives.0.params.s": trial.suggest_float("s", 0.0, 1.0)}

    """


# ---------------------------------------------------------------------------
# plugin state (checkpoints)
# ---------------------------------------------------------------------------


@hookspec
def incentive_state_dict(run: RunContext) -> dict[str, Any] | None:
    """Return the plugin's state for a checkpoint.

    Called whenever a checkpoint is written. The state is stored under the
    plugin's name and handed back to the same plugin on `--resume`.

    Args:
        run: the run context.

    Returns:
        Anything `torch.save` can store (tensors, numbers, dicts), or None.

    Example::

        @hookimpl
        def incentive_state_dict(self):
            return {"smoothed": self.smoothed}

    """


@hookspec
def incentive_load_state_dict(run: RunContext, state: dict[str, Any]) -> None:
    """Restore what `incentive_state_dict` returned.

    Called on `--resume`, after `incentive_setup`, for plugins that saved a state.

    Args:
        run: the run context.
        state: the plugin's own saved state.

    Returns:
        None.

    Example::

        @hookimpl
        def incentive_load_state_dict(self, state):
            self.smoothed = state["smoothed"]

    """


# ---------------------------------------------------------------------------
# families (what `incentive plugins` shows; one entry per hook above)
# ---------------------------------------------------------------------------

FAMILIES = {
    "incentive_shape_reward": "reward shaping",
    "incentive_next_task": "curriculum",
    "incentive_update_curriculum": "curriculum",
    "incentive_pick_opponents": "opponent sampling",
    "incentive_update_population": "opponent sampling",
    "incentive_search_space": "search",
    "incentive_setup": "lifecycle",
    "incentive_iteration_end": "lifecycle",
    "incentive_run_end": "lifecycle",
    "incentive_collect_metrics": "logging",
    "incentive_state_dict": "state",
    "incentive_load_state_dict": "state",
}
"""Hook name -> the family it belongs to."""
