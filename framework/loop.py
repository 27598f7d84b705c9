"""The training loop: rollout, shaping, advantages, update, report; hooks in between.

Read top to bottom, `Training.run` is DESIGN.md's loop. Hooks are its only
indirection; everything it keeps between steps lives on the `Training`
object so a checkpoint can capture it and `--resume` continue bit for bit.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import pluggy
import torch
from pydantic import ValidationError

from incentive.checkpoint import load_checkpoint, plain_data_problem, save_checkpoint
from incentive.envs.base import BatchedEnv, TimeStep
from incentive.envs.registry import available_envs, load_env_class
from incentive.errors import IncentiveError, PluginError, RecipeError, RecipeWarning, StopRun
from incentive.evaluation import Evaluator
from incentive.metrics import MetricsFile, equality
from incentive.plugin_manager import Hooks
from incentive.ppo import PPO, Batch, compute_gae
from incentive.recipe import EnvSpec, Recipe, closest, format_validation_error
from incentive.sizes import check_sizes, episode_warnings
from incentive.tasks import TaskState
from incentive.types import LEARNER, EpisodeResults, OpponentAssignment, Rollout, RunContext, StepBatch

__all__ = ["Training", "check_objectives", "designer_metric_names", "make_env", "standard_metric_names"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
PERF = "perf.jsonl"


def check_env_params(spec: EnvSpec, *, source: str = "recipe", where: str = "env") -> type[BatchedEnv]:
    """The env class of `spec`, its params validated; nothing is built. RecipeError naming the field."""
    cls, _ = _env_class_and_params(spec, source=source, where=where)
    return cls


def make_env(spec: EnvSpec, *, source: str = "recipe", where: str = "env") -> BatchedEnv:
    """Build the recipe's env, or raise a RecipeError naming the file and field."""
    cls, params = _env_class_and_params(spec, source=source, where=where)
    try:
        return cls(num_envs=spec.num_envs, params=params)
    except (ValueError, OverflowError) as exc:
        raise RecipeError(f"{source}: field '{where}.params': {exc}") from None


def _env_class_and_params(spec: EnvSpec, *, source: str, where: str) -> tuple[type[BatchedEnv], Any]:
    envs = available_envs()
    if spec.id not in envs:
        raise RecipeError(
            f"{source}: field '{where}.id': unknown env {spec.id!r}.{closest(spec.id, list(envs))} "
            f"Available envs: {', '.join(envs) or 'none'}."
        )
    try:
        cls = load_env_class(spec.id)
    except Exception as exc:
        raise RecipeError(
            f"{source}: field '{where}.id': env {spec.id!r} ({envs[spec.id]}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        params = cls.Params.model_validate(spec.params)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, source=source, prefix=f"{where}.params")) from None
    return cls, params


def designer_metric_names(env: BatchedEnv, pm: pluggy.PluginManager) -> list[str]:
    """Designer metrics (without `designer/`) that the env and the run's plugins report."""
    known = standard_metric_names(env)
    for plugin in pm.get_plugins():
        known += list(getattr(plugin, "designer_metrics", ()))
    return known


def check_objectives(recipe: Recipe, env: BatchedEnv, pm: pluggy.PluginManager) -> None:
    """Every metric objective must name a designer metric the env or a plugin reports."""
    known = designer_metric_names(env, pm)
    for index, objective in enumerate(recipe.objectives):
        name = objective.name
        if objective.metric is not None and name not in known:
            where = "objective" if not isinstance(recipe.objective, list) else f"objective.{index}"
            raise RecipeError(
                f"{recipe.source}: field '{where}.metric': unknown designer metric "
                f"{objective.metric!r} for env {recipe.env.id!r}.{closest(name, known)} "
                f"Available: {', '.join(known)}."
            )


def standard_metric_names(env: BatchedEnv) -> list[str]:
    """Designer metrics every run reports (without the `designer/` prefix)."""
    per_agent = [f"return/{agent}" for agent in env.possible_agents]
    names = ["collective_return", "equality", *per_agent, *env.metric_names]
    if getattr(env, "test_levels", None) is not None:  # reported when `evaluate.every` > 0
        names += [f"test/{name}" for name in names]
    return names


def _plugin_metrics(plugin: str, extra: Any) -> dict[str, float]:
    """A plugin's contributed metrics as floats, or a PluginError naming the bad entry."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise PluginError(
            plugin, "incentive_collect_metrics", f"must return a dict, got {type(extra).__name__}"
        )
    try:
        return {str(key): float(value) for key, value in extra.items()}
    except (TypeError, ValueError) as exc:
        raise PluginError(
            plugin, "incentive_collect_metrics", f"metric values must be numbers ({exc})"
        ) from None


class Training:
    """One run of a recipe.

    Args:
        recipe: the validated recipe.
        run_dir: where metrics and checkpoints go (created if missing).
        pm: the plugin manager with the recipe's plugins.

    """

    def __init__(self, recipe: Recipe, *, run_dir: Path, pm: pluggy.PluginManager) -> None:
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.hooks = Hooks(pm)
        torch.set_num_threads(recipe.train.threads)
        # sizes are checked on a one-instance env before E instances and the buffers are allocated
        probe = make_env(recipe.env.model_copy(update={"num_envs": 1}), source=recipe.source)
        check_sizes(recipe, probe)
        for message in episode_warnings(recipe, probe):
            warnings.warn(message, RecipeWarning, stacklevel=2)
        self.env = probe if recipe.env.num_envs == 1 else make_env(recipe.env, source=recipe.source)
        self.agents = list(self.env.possible_agents)
        check_objectives(recipe, self.env, pm)
        learner_stream = torch.Generator().manual_seed(recipe.seed)
        self.learner = PPO.for_env(recipe.learner, self.env, self.agents, learner_stream)
        self.context = RunContext(
            recipe=recipe,
            run_dir=self.run_dir,
            env=self.env,
            agents=self.agents,
            num_envs=self.env.num_envs,
            generator=torch.Generator().manual_seed(recipe.seed + 1),
            tasks=TaskState.for_run(recipe, pm, self.env),
            learner=self.learner,
        )
        self.evaluator = Evaluator.for_run(recipe, self.env, self.agents)
        self.metrics_file = MetricsFile(self.run_dir / METRICS)
        self.perf_file = MetricsFile(self.run_dir / PERF)
        e, a = self.env.num_envs, len(self.agents)
        self.steps_per_iteration = recipe.learner.rollout_steps * e
        self.num_iterations = max(1, math.ceil(recipe.train.total_steps / self.steps_per_iteration))
        # loop state between steps and iterations (all of it checkpointed)
        self.ts: TimeStep = self.env.reset(seed=recipe.seed)
        self.seats = torch.full((e, a), LEARNER, dtype=torch.long)
        self.next_seats = self.seats.clone()
        self.policies: list[Any] = []
        self.episode = self._empty_episode()
        self.last_metrics: dict[str, float] = {}

    # --- set-up helpers ----------------------------------------------------

    def _empty_episode(self) -> dict[str, Any]:
        e, a = self.env.num_envs, len(self.agents)
        return {
            "length": torch.zeros(e, dtype=torch.long),
            "reward": torch.zeros(e, a),
            "incentive": torch.zeros(e, a),
            "terms": {},
            "info": {key: torch.zeros(e) for key in self.env.info_keys},
        }

    # --- the loop --------------------------------------------------------

    def run(self, *, resume: bool = False, checkpoint: dict[str, Any] | None = None) -> dict[str, float]:
        """Train to the recipe's budget; returns the last iteration's metrics.

        A plugin may end the run early with `StopRun`; `self.status` then
        says how it ended ("completed", "failed", or the StopRun's status).

        Args:
            resume: continue from the run directory's checkpoint.
            checkpoint: that checkpoint, if the caller has read it already.

        Raises:
            PluginError: a plugin failed or returned an unusable value; what
                was written before (metrics, checkpoints) stays as it was.

        """
        self.status = "failed"
        try:
            self.hooks.call("incentive_setup", run=self.context)
            start = self._restore(checkpoint) if resume else 0
            for iteration in range(start + 1, self.num_iterations + 1):
                self._iteration(iteration)
            self.status = "completed"
        except StopRun as stop:  # a plugin ended the run cleanly (a pruned search trial)
            self.status = stop.status
        finally:
            self._run_end(self.status)
        return self.last_metrics

    def _iteration(self, iteration: int) -> None:
        cfg = self.recipe.learner
        started = time.perf_counter()
        # tasks and seats
        plugin, task = self.hooks.first("incentive_next_task", run=self.context, iteration=iteration)
        if task is not None:
            self._set_task(plugin, task)
        plugin, assignment = self.hooks.first(
            "incentive_pick_opponents", run=self.context, iteration=iteration
        )
        if assignment is not None:
            self._assign(plugin, assignment)
        if cfg.anneal_lr:
            self.learner.set_lr_fraction(1.0 - (iteration - 1) / self.num_iterations)

        # rollout
        buffers = self._rollout(cfg.rollout_steps)
        rollout_done = time.perf_counter()

        # advantages
        advantages, returns = self._advantages(buffers)
        rollout = Rollout(
            reward=buffers["reward"],
            incentive=buffers["incentive"],
            done=buffers["done"],
            values=buffers["values"],
            advantages=advantages,
            returns=returns,
            learn_mask=buffers["policy_mask"],
            acting=buffers["acting"],
            entropy=buffers["entropy"],
        )
        self.hooks.call("incentive_update_curriculum", run=self.context, rollout=rollout)

        # update
        losses = self.learner.update(
            Batch.from_rollout(
                features=buffers["features"],
                action_mask=buffers["action_mask"],
                actions=buffers["actions"],
                logprobs=buffers["logprobs"],
                values=buffers["values"],
                advantages=advantages,
                returns=returns,
                policy_mask=buffers["policy_mask"],
                value_mask=buffers["value_mask"],
            )
        )
        self.context.iteration = iteration

        # report
        finished = self._finished_episodes(buffers["finished"])
        metrics = self._metrics(iteration, finished, losses)
        metrics.update(self.evaluator.metrics(self.learner, iteration))  # held-out test levels, when due
        for plugin, extra in self.hooks.call("incentive_collect_metrics", run=self.context, rollout=rollout):
            metrics.update(_plugin_metrics(plugin, extra))
        self.metrics_file.append(metrics)
        elapsed = time.perf_counter() - started
        perf = {
            "train/iteration": iteration,
            "perf/steps_per_s": self.steps_per_iteration / elapsed,
            "perf/rollout_s": rollout_done - started,
            "perf/update_s": time.perf_counter() - rollout_done,
        }
        self.perf_file.append(perf)
        self.last_metrics = {**metrics, **perf}
        if finished is not None:
            results = EpisodeResults(returns=finished["reward"], seats=finished["seats"])
        else:  # no episode finished this iteration
            nobody = torch.zeros(0, len(self.agents), dtype=torch.long)
            results = EpisodeResults(returns=torch.zeros(0, len(self.agents)), seats=nobody)
        self.hooks.call(
            "incentive_update_population",
            run=self.context,
            iteration=iteration,
            results=results,
            rollout=rollout,
        )
        self.hooks.call(
            "incentive_iteration_end", run=self.context, iteration=iteration, metrics=self.last_metrics
        )
        if iteration % self.recipe.train.checkpoint_every == 0 or iteration == self.num_iterations:
            self._checkpoint(iteration)

    def _advantages(self, buffers: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE advantages and returns of a rollout, bootstrapped from the value of the state after it."""
        cfg = self.recipe.learner
        next_value = self.learner.value(self.learner.features(self.ts.obs, self.agents))
        return compute_gae(
            buffers["incentive"],
            buffers["values"],
            buffers["done"][..., None],
            next_value,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
        )

    def _rollout(self, steps: int) -> dict[str, Any]:
        e, a = self.env.num_envs, len(self.agents)
        feature_dim = self.learner.feature_dim
        buf: dict[str, Any] = {
            "features": self._features_buffer(steps, e, a, feature_dim),
            "actions": torch.empty(steps, e, a, dtype=torch.long),
            "logprobs": torch.empty(steps, e, a),
            "values": torch.empty(steps, e, a),
            "entropy": torch.empty(steps, e, a),
            "reward": torch.empty(steps, e, a),
            "incentive": torch.empty(steps, e, a),
            "done": torch.empty(steps, e),
            "policy_mask": torch.empty(steps, e, a, dtype=torch.bool),
            "value_mask": torch.empty(steps, e, a, dtype=torch.bool),
            "acting": torch.empty(steps, e, a, dtype=torch.bool),
            "action_mask": None,
            "finished": [],
        }
        gamma = self.recipe.learner.gamma
        for t in range(steps):
            ts = self.ts
            features = self.learner.features(ts.obs, self.agents)
            mask = self.learner.action_mask(ts.action_mask, self.agents)
            actions, logprobs, values, entropy = self.learner.act(features, mask)
            actions = self._opponent_actions(actions)
            learner_seats = self.seats == LEARNER
            nxt = self.env.step(actions)
            self.context.global_step += e

            # shaping
            step = StepBatch(
                obs=ts.obs,
                actions=actions,
                reward=nxt.reward,
                next_obs=nxt.obs,
                terminated=nxt.terminated,
                truncated=nxt.truncated,
                done=nxt.done,
                acting=ts.acting,
                learner_seats=learner_seats,
                info=nxt.info or {},
                episode_step=self.episode["length"].clone(),
                final_obs=nxt.final_obs,
            )
            terms = self._shape(step)
            incentive = nxt.reward.clone()
            for value in terms.values():
                incentive += value
            target = incentive
            if nxt.final_obs is not None and bool(nxt.truncated.any()):
                # a cut-short episode still has a future: the learner's target bootstraps it (as
                # SB3 does); the logged incentive does not, it is what the agents were paid
                final_value = self.learner.value(self.learner.features(nxt.final_obs, self.agents))
                target = incentive + gamma * final_value * nxt.truncated[:, None]

            buf["features"][t] = features
            buf["actions"][t] = actions
            buf["logprobs"][t] = logprobs
            buf["values"][t] = values
            buf["entropy"][t] = entropy
            buf["reward"][t] = nxt.reward
            buf["incentive"][t] = target
            buf["done"][t] = nxt.done
            buf["policy_mask"][t] = learner_seats & ts.acting
            buf["value_mask"][t] = learner_seats
            buf["acting"][t] = ts.acting
            if mask is not None:
                if buf["action_mask"] is None:
                    buf["action_mask"] = torch.ones(steps, *mask.expand(e, a, -1).shape, dtype=torch.bool)
                buf["action_mask"][t] = mask

            self._account(nxt, incentive, terms, buf["finished"])
            self.ts = nxt
        return buf

    def _features_buffer(self, steps: int, e: int, a: int, d: int) -> torch.Tensor:
        """Where the rollout stores its features: `buffer[t] = features` ([E, A, D]) for each step t."""
        return torch.empty(steps, e, a, d)

    def _set_task(self, plugin: str, task: dict[str, torch.Tensor]) -> None:
        at_start = self.context.global_step == 0  # every instance is at an episode boundary
        try:
            self.context.tasks.set(task, at_boundary=at_start)
        except (ValueError, TypeError, AttributeError) as exc:
            raise PluginError(plugin, "incentive_next_task", str(exc)) from exc
        if at_start:
            self.ts = self.env.reset(seed=self.recipe.seed)  # the first episodes already run the task

    def _opponent_actions(self, actions: torch.Tensor) -> torch.Tensor:
        for index, policy in enumerate(self.policies):
            seats = self.seats == index
            if bool(seats.any()):
                theirs = policy.act(self.ts.obs, self.ts.action_mask, seats)
                actions = torch.where(seats, theirs, actions)
        return actions

    def _shape(self, step: StepBatch) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        expected = tuple(step.reward.shape)
        for plugin, result in self.hooks.call("incentive_shape_reward", run=self.context, step=step):
            if result is None:
                continue
            if not isinstance(result, dict):
                raise PluginError(
                    plugin,
                    "incentive_shape_reward",
                    f"must return a dict of term name -> tensor, got {type(result).__name__}",
                )
            for term, value in result.items():
                if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise PluginError(
                        plugin,
                        "incentive_shape_reward",
                        f"term {term!r} must be a tensor of shape {expected} (E, A), got {shape}",
                    )
                if not bool(torch.isfinite(value).all()):
                    raise PluginError(plugin, "incentive_shape_reward", f"term {term!r} contains NaN or inf")
                # detached: a term that carries a graph would tie every update to this rollout
                terms[f"{plugin}/{term}"] = value.detach().to(step.reward.dtype)
        return terms

    def _account(
        self,
        nxt: TimeStep,
        incentive: torch.Tensor,
        terms: dict[str, torch.Tensor],
        finished: list[dict[str, Any]],
    ) -> None:
        """Add the step to the running episodes; move finished episodes out."""
        ep = self.episode
        ep["length"] += 1
        ep["reward"] += nxt.reward
        ep["incentive"] += incentive
        for name, value in terms.items():
            if name not in ep["terms"]:
                ep["terms"][name] = torch.zeros_like(ep["reward"])
            ep["terms"][name] += value
        for key in self.env.info_keys:
            ep["info"][key] += nxt.info[key]
        done = nxt.done
        if not bool(done.any()):
            return
        finished.append(
            {
                "reward": ep["reward"][done],
                "incentive": ep["incentive"][done],
                "terms": {name: value[done] for name, value in ep["terms"].items()},
                "info": {key: value[done] for key, value in ep["info"].items()},
                "seats": self.seats[done],
                "instance": done.nonzero()[:, 0],  # which instances (batched trials split by it)
            }
        )
        keep = ~done
        ep["length"] *= keep
        ep["reward"] *= keep[:, None]
        ep["incentive"] *= keep[:, None]
        for value in ep["terms"].values():
            value *= keep[:, None]
        for value in ep["info"].values():
            value *= keep
        self.seats = torch.where(done[:, None], self.next_seats, self.seats)
        self.context.tasks.advance(done)

    def _assign(self, plugin: str, assignment: OpponentAssignment) -> None:
        shape = (self.env.num_envs, len(self.agents))
        seats = assignment.seats
        if not isinstance(seats, torch.Tensor) or tuple(seats.shape) != shape:
            raise PluginError(plugin, "incentive_pick_opponents", f"seats must be a tensor of shape {shape}")
        if bool(((seats < LEARNER) | (seats >= len(assignment.policies))).any()):
            raise PluginError(
                plugin,
                "incentive_pick_opponents",
                f"seats must hold -1 (learner) or an index below {len(assignment.policies)}",
            )
        self.policies = list(assignment.policies)
        self.next_seats = seats.long().clone()
        if self.context.global_step == 0:  # every instance is at an episode boundary
            self.seats = self.next_seats.clone()

    # --- report ------------------------------------------------------------

    @staticmethod
    def _finished_episodes(chunks: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not chunks:
            return None
        names = {name for chunk in chunks for name in chunk["terms"]}
        out = {key: torch.cat([c[key] for c in chunks]) for key in ("reward", "incentive", "seats")}
        out["terms"] = {
            name: torch.cat([c["terms"].get(name, torch.zeros_like(c["reward"])) for c in chunks])
            for name in sorted(names)
        }
        out["info"] = {key: torch.cat([c["info"][key] for c in chunks]) for key in chunks[0]["info"]}
        return out

    def _metrics(
        self,
        iteration: int,
        finished: dict[str, Any] | None,
        losses: dict[str, float],
        global_step: int | None = None,
    ) -> dict:
        metrics: dict[str, Any] = {
            "train/iteration": iteration,
            "train/global_step": self.context.global_step if global_step is None else global_step,
            "train/episodes": 0 if finished is None else len(finished["reward"]),
            "train/lr": self.learner.optimizer.lr,
        }
        if finished is not None:
            reward = finished["reward"]
            metrics["designer/collective_return"] = float(reward.sum(1).mean())
            metrics["designer/equality"] = float(equality(reward).mean())
            for i, agent in enumerate(self.agents):
                metrics[f"designer/return/{agent}"] = float(reward[:, i].mean())
            for name, value in self.env.episode_metrics(finished["info"]).items():
                metrics[f"designer/{name}"] = float(value)
            for i, agent in enumerate(self.agents):
                metrics[f"incentive/return/{agent}"] = float(finished["incentive"][:, i].mean())
            for name, value in finished["terms"].items():
                metrics[f"incentive/{name}"] = float(value.mean())
        metrics.update({f"losses/{key}": value for key, value in losses.items()})
        return metrics

    # --- checkpoints ---------------------------------------------------------

    def _checkpoint(self, iteration: int) -> None:
        state = {
            **self._training_state(iteration),
            "metrics_lines": self.metrics_file.count(),
            "perf_lines": self.perf_file.count(),
        }
        try:
            save_checkpoint(self.run_dir / CHECKPOINT, state)
        except ValueError as exc:
            raise IncentiveError(f"{self.run_dir / CHECKPOINT}: cannot write the checkpoint: {exc}") from None

    def _training_state(self, iteration: int) -> dict[str, Any]:
        """What any training needs to continue: learner, env, streams, seats, episodes, tasks, plugins."""
        plugin_states = {}
        for plugin, state in self.hooks.call("incentive_state_dict", run=self.context):
            if state is not None:
                problem = plain_data_problem(state, "its state")
                if problem:
                    raise PluginError(plugin, "incentive_state_dict", problem)
                plugin_states[plugin] = state
        return {
            "iteration": iteration,
            "global_step": self.context.global_step,
            "learner": self.learner.state_dict(),
            "env": self.env.state_dict(),
            "run_generator": self.context.generator.get_state(),
            "timestep": vars(self.ts),
            "seats": self.seats,
            "next_seats": self.next_seats,
            "episode": self.episode,
            "tasks": self.context.tasks.state_dict(),
            "plugins": plugin_states,
        }

    def _restore(self, state: dict[str, Any] | None = None) -> int:
        if state is None:
            state = load_checkpoint(self.run_dir / CHECKPOINT)
        self._load_training_state(state, self._saved_tasks(state))
        self.metrics_file.truncate(state["metrics_lines"])
        self.perf_file.truncate(state["perf_lines"])
        return state["iteration"]

    def _load_training_state(self, state: dict[str, Any], tasks: dict[str, Any]) -> None:
        """Restore what `_training_state` saved (the tasks as given: older checkpoints have none)."""
        self.learner.load_state_dict(state["learner"])
        self.env.load_state_dict(state["env"])
        self.context.generator.set_state(state["run_generator"])
        self.context.iteration = state["iteration"]
        self.context.global_step = state["global_step"]
        self.ts = TimeStep(**state["timestep"])
        self.seats = state["seats"]
        self.next_seats = state["next_seats"]
        self.episode = state["episode"]
        self.context.tasks.load_state_dict(tasks)
        for plugin, plugin_state in state["plugins"].items():
            self.hooks.call_plugin(plugin, "incentive_load_state_dict", run=self.context, state=plugin_state)

    def _saved_tasks(self, state: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint's task state; one written before per-instance tasks existed has none.

        Such a run never set a task (nothing could), so no task is the exact state, unless the
        recipe now has a curriculum: its tasks cannot be recovered, and resuming would not
        continue the run that was saved.

        Raises:
            IncentiveError: no task state and a curriculum in the recipe.

        """
        if "tasks" in state:
            return state["tasks"]
        if self.recipe.curriculum is not None:
            raise IncentiveError(
                f"{self.run_dir / CHECKPOINT}: the checkpoint has no 'tasks' entry (it was written "
                "before per-instance tasks existed), so the state of the recipe's curriculum "
                f"({self.recipe.curriculum.plugin!r}) cannot be restored; start the run afresh "
                "instead of resuming it"
            )
        return {"current": {}, "pending": {}}

    def _run_end(self, status: str) -> None:
        try:
            self.hooks.call("incentive_run_end", run=self.context, status=status, metrics=self.last_metrics)
        except IncentiveError:
            if status == "completed":
                raise
