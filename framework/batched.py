"""Batched trials: K seeds of one recipe trained as one batched training (`incentive run --seeds`).

What: K trials share one process, one env of K*E instances (trial k owns
instances [k*E, (k+1)*E)), one learner holding K independent sets of
networks and optimizer state (`PPO` with K generators), and one call of each
shaping plugin per step over all K*E instances. Each trial writes its own
run directory, exactly as `incentive run --set seed=S_k` would: the resolved
recipe (with its seed), `metrics.jsonl`, `perf.jsonl`, `curves.png`, and a
W&B run of its own.

Why the trials stay independent, bit for bit:

- env: every instance has its own random stream seeded `seed + e`
  (`incentive.envs.random`); trial k's instances are seeded S_k + e, e < E,
  exactly as a lone run with seed S_k seeds its E instances.
- learner: trial k's weights, action noise and minibatch permutations come
  from its own generator seeded S_k; advantage normalisation, loss means,
  the gradient-norm clip and the loss statistics are per trial (see
  `incentive.ppo`). Shared networks run one addmm per trial (bmm sums in
  another order for some shapes); per-agent networks run one bmm over K*A
  groups.
- shaping: plugins keep their state per instance and read their parameters
  as [E] tensors, so one call over K*E instances gives each slice what a
  lone run gives.
- metrics: episodes that end are split by instance; trial k's metrics are
  computed from its own episodes in the order a lone run sees them.

Measured: per-seed `metrics.jsonl` identical byte for byte to the lone runs
for shared networks (the default) on the matrix game, the Coin Game and
Cleanup with inequity aversion (tests/test_batched.py). Per-agent networks
(`learner.share_parameters: false`) agree to within 3e-8 absolute (1.5e-6
relative) on every metric of the Coin Game's first 8 iterations, not in
bytes: the bias gradient of the last layer is a sum
over rows whose memory order autograd chooses from the layout of the
incoming gradient, and that layout differs between one trial and K.

What may differ between the trials of a batch (`plan_batch`): seeds, which
incentive plugins are on (a trial without one gets a zero term on its
instances), and numeric incentive parameters the plugin reads per instance,
its `task_params` (`reward_sharing.s`, `inequity_aversion.alpha`, nested ones
such as `payments`' `contracts.<k>.amount`). Plugin params are compared leaf
by leaf with their defaults filled in; any other difference (a contract's
name or condition, a list of another length, the env, the learner, the
budget) is refused naming the field, and a search then trains its trials
one at a time.

What a batched run refuses (clear message, exit 2), because it would couple
the trials or cannot be split by instance: curriculum and opponent plugins
(`curriculum`, `opponents`), plugins implementing hooks other than set-up,
shaping and their state (`incentive_collect_metrics`, `incentive_next_task`,
...), held-out evaluation (`evaluate.every` > 0), a convolutional torso
(`learner.conv_channels`).

Pruned trials (a search with `--batch`) are dropped, not refilled: their
instances, network groups and optimizer state leave the batch at the end
of the iteration, so they stop costing compute and the others continue bit
for bit (tested). Refilling a slot with the next asked trial would start
that trial late, on a batch whose iteration count is already fixed, and its
networks and env slice would need a reset mid-run; dropping keeps every
trial a plain run from start to end. When every trial of a batch is
pruned, the batch ends.

Speed, and why there is one (exact) mode: a profile of 16 Cleanup 7x7
trials (`torch.profiler`, 5 iterations) puts the matmuls (addmm forward, mm
backward) and tanh at about half of the CPU time, and most of the rest in
per-row work (copying features, hashing rows for the update's
deduplication, gathering minibatches). All of it is per trial: trial k's
rows through trial k's weights, the same arithmetic batched or alone, at
the CPU's matmul speed (about 40-50 GFLOP/s on one core here). What K trials
can share is per-operation overhead, which is large for the IPD's tiny
networks and small for Cleanup's 326 -> 64 -> 64 layers: so Cleanup's
speed-up flattens early (numbers in the README). One bmm for the K shared
networks (another summation order, so not bytes) would not change that:
`benchmarks/batched_trials.py --kernels` times it at the addmm calls'
GFLOP/s at the update's sizes and about a third faster only at the
rollout's small ones, a few percent of a run. So there is no fast mode:
`incentive run --seeds` and `incentive search --batch` both run the exact
path, where every trial gets the metrics (and the objective) it gets alone.
What was K-dependent overhead is gone: the K trials' weight gradients are
gathered by one `unbind` per layer (K `weight[k]` selects cost O(K^2) in the
backward), and the rollout's features are stored trial-major in a buffer
kept across iterations (`TrialMajorBuffer`: no [T, K*E] -> [K, T*E] copy of
the largest tensor, no fresh pages every iteration).

Checkpoints: one batch checkpoint (`batch_checkpoint.pt`) in the first
seed's run directory holds every trial; every seed's directory has
`batch.yaml` naming the batch, and `incentive run --resume` of any of them
resumes the whole batch bit for bit. W&B loggers start fresh runs on resume
(their own resume state is not kept in the batch checkpoint).
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
import torch
import yaml

from incentive.checkpoint import load_checkpoint, save_checkpoint
from incentive.envs.base import TimeStep
from incentive.errors import IncentiveError, RecipeError, RecipeWarning, StopRun
from incentive.loop import METRICS, PERF, Training, check_objectives, make_env
from incentive.metrics import MetricsFile
from incentive.plugin_manager import Hooks, make_plugin_manager
from incentive.ppo import PPO, Batch
from incentive.recipe import Recipe
from incentive.sizes import check_sizes, episode_warnings
from incentive.tasks import TaskState, accepts_task_param
from incentive.types import LEARNER, RunContext

__all__ = [
    "BATCH_CHECKPOINT",
    "BATCH_FILE",
    "BatchPlan",
    "BatchedTraining",
    "check_batchable",
    "parse_seeds",
    "plan_batch",
    "resume_seeds",
    "start_seeds",
]

BATCH_CHECKPOINT = "batch_checkpoint.pt"
BATCH_FILE = "batch.yaml"

BATCHABLE_HOOKS = {
    "incentive_setup",
    "incentive_shape_reward",
    "incentive_state_dict",
    "incentive_load_state_dict",
    "incentive_search_space",
    "incentive_run_end",
}
"""Hooks a plugin of a batched run may implement: each acts per instance (or not on the run at all)."""

MAX_SEEDS = 1024


def parse_seeds(text: str) -> list[int]:
    """`0-7` or `0,3,5` (or a mix, `0-3,9`) -> the seeds, in order, without repeats.

    Raises:
        ValueError: empty, malformed, an inverted range, a repeated seed, or too many seeds.

    """
    if not text or not text.strip():
        raise ValueError("--seeds is empty: give a range such as 0-7 or a list such as 0,3,5")
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ValueError(
                f"--seeds {text!r}: {part!r} is not a seed or a range (write 0-7, 0,3,5 or 0-3,9; "
                "seeds are non-negative integers)"
            )
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ValueError(f"--seeds {text!r}: the range {part!r} is empty (its end is below its start)")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise ValueError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(range(low, high + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"--seeds {text!r}: seed(s) {repeated} appear more than once")
    return seeds


def check_batchable(recipe: Recipe, pm: pluggy.PluginManager) -> None:
    """Refuse what cannot run as batched trials, naming the field or plugin.

    Raises:
        RecipeError: a curriculum or opponent plugin, held-out evaluation, or a
            plugin implementing a hook that is not per instance.

    """
    for field in ("curriculum", "opponents"):
        if getattr(recipe, field) is not None:
            raise RecipeError(
                f"{recipe.source}: field '{field}': batched trials (--seeds, --batch) cannot run a "
                f"{field} plugin (it decides for the whole run, which would couple the trials); "
                "run the seeds one at a time"
            )
    if recipe.evaluate.every > 0:
        raise RecipeError(
            f"{recipe.source}: field 'evaluate.every': batched trials (--seeds, --batch) do not run "
            "held-out evaluation; set it to 0 or run the seeds one at a time"
        )
    if recipe.learner.conv_channels:
        raise RecipeError(
            f"{recipe.source}: field 'learner.conv_channels': batched trials (--seeds, --batch) run MLP "
            "networks only; run the seeds one at a time"
        )
    names = {name for name, _ in recipe.plugin_specs()}
    for name in names:
        plugin = pm.get_plugin(name)
        hooks = {impl.name for impl in pm.get_hookcallers(plugin) or []}
        other = sorted(hooks - BATCHABLE_HOOKS)
        if other:
            raise RecipeError(
                f"{recipe.source}: plugin {name!r}: batched trials (--seeds, --batch) need plugins that "
                f"act per env instance (set-up, shaping, state); it implements {', '.join(other)}, "
                "which act on the whole run; run the seeds one at a time"
            )


BATCHED_FIELDS = ("seed", "incentives", "log")
"""Top-level recipe fields that may differ between batched trials (seeds, incentive params, logs)."""


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}.{i}")
            if found:
                return found
        return None
    return None if a == b else path


_OFF = object()
"""A trial whose design has the plugin off (its instances get a zero term, any value serves)."""


def _full_params(cls: Any, raw: dict[str, Any]) -> Any:
    """A plugin entry's params with every default filled in (validated by the plugin's Params).

    Trials are compared on what the plugin runs with, so a field one trial
    omits and another sets to its default is the same. Params that do not
    validate are compared as written (building the plugin reports them).
    """
    model = getattr(cls, "Params", None)
    if model is None:
        return raw
    try:
        return model.model_validate(raw).model_dump(mode="json")
    except (ValueError, TypeError):
        return raw


def _param_leaves(
    values: list[Any], path: str, *, source: str, where: str
) -> Iterator[tuple[str, list[Any]]]:
    """(dotted path, per-trial values) of every leaf of K trials' plugin params, `_OFF` where off.

    Dicts are walked by key and lists by index, so `contracts.0.amount` is
    a leaf; anything else (a number, a string, None, dicts against lists)
    is a leaf compared as a whole.

    Raises:
        RecipeError: a list whose length differs between trials, naming its field.

    """
    on = [v for v in values if v is not _OFF]
    if on and all(isinstance(v, dict) for v in on):
        for key in sorted(set().union(*on), key=str):
            child = f"{path}.{key}" if path else str(key)
            yield from _param_leaves(
                [v if v is _OFF else v.get(key) for v in values], child, source=source, where=where
            )
        return
    if on and all(isinstance(v, list) for v in on):
        lengths = sorted({len(v) for v in on})
        if len(lengths) > 1:
            raise RecipeError(
                f"{source}: field '{where}.{path}' differs between batched trials: lists of "
                f"{' and '.join(map(str, lengths))} items; trials in one batch need lists of one length "
                "(only numeric per-instance parameters inside them may differ); cannot be batched"
            )
        for i in range(lengths[0]):
            child = f"{path}.{i}" if path else str(i)
            yield from _param_leaves(
                [v if v is _OFF else v[i] for v in values], child, source=source, where=where
            )
        return
    yield path, values


@dataclass
class BatchPlan:
    """How K trial recipes run as one: the union recipe, per-trial plugin on/off, per-instance params.

    Attributes:
        base: trial 0's recipe with the union of every trial's incentives (in recipe order).
        plugins: per trial, the run names of its incentive plugins.
        params: task key (`incentives.<i>.params.<field>`, `<field>` a dotted path down to a
            leaf such as `contracts.0.amount`) -> per-trial value, for every numeric
            parameter that differs between the trials that have the plugin on.
    """

    base: Recipe
    plugins: list[set[str]]
    params: dict[str, list[float]]


def plan_batch(recipes: list[Recipe]) -> BatchPlan:
    """Check that the trial recipes can train as one batch, and plan it.

    Plugin params are compared down to their leaves, defaults filled in: a
    numeric leaf the plugin reads per instance (`accepts_task_param`, e.g.
    `contracts.0.amount` of `payments`) may differ and becomes a task key;
    any other differing leaf (a contract's name or condition) or a list of
    another length is refused.

    Raises:
        RecipeError: naming the first field that differs and cannot be batched
            (env, learner, rollout, budget, a plugin's non-per-instance parameter, ...).

    """
    from incentive.plugin_manager import available_plugins

    first = recipes[0].model_dump(mode="json")
    for recipe in recipes[1:]:
        data = recipe.model_dump(mode="json")
        rest = {k: v for k, v in data.items() if k not in BATCHED_FIELDS}
        found = _first_difference({k: v for k, v in first.items() if k not in BATCHED_FIELDS}, rest, "")
        if found is not None:
            raise RecipeError(
                f"{recipe.source}: field '{found}' differs between batched trials and cannot be batched "
                "(trials in one batch share env, network, rollout, budget and run-wide plugins; only "
                "seeds and per-instance incentive parameters may differ)"
            )
    # the union of the incentive entries, by run name, keeping every trial's order
    union: list[tuple[str, dict[str, Any]]] = []
    per_trial: list[dict[str, dict[str, Any]]] = []
    for recipe in recipes:
        named = dict(recipe.plugin_specs()[: len(recipe.incentives)])
        entries = {name: spec.model_dump(mode="json") for name, spec in named.items()}
        per_trial.append(entries)
        names = [name for name, _ in union]
        position = 0
        for name, entry in entries.items():
            if name in names:
                if names.index(name) < position:
                    raise RecipeError(
                        f"{recipe.source}: field 'incentives': plugin {name!r} comes in another order than "
                        "in other trials of the batch; batched trials need one plugin order"
                    )
                position = names.index(name) + 1
            else:
                union.insert(position, (name, entry))
                names.insert(position, name)
                position += 1
    plugins = available_plugins()
    params: dict[str, list[float]] = {}
    for index, (name, entry) in enumerate(union):
        present = [trial.get(name) for trial in per_trial]
        info = plugins.get(entry["plugin"])
        cls = info.load() if info is not None else None
        task_params = tuple(getattr(cls, "task_params", ()) or ())
        for other in present:
            if other is not None and other["plugin"] != entry["plugin"]:
                raise RecipeError(
                    f"{recipes[0].source}: field 'incentives': the name {name!r} is plugin "
                    f"{entry['plugin']!r} in one trial and {other['plugin']!r} in another; cannot be batched"
                )
            if other is not None:
                found = _first_difference({**entry, "params": {}}, {**other, "params": {}}, "")
                if found is not None:
                    raise RecipeError(
                        f"{recipes[0].source}: field 'incentives.{index}.{found}' differs between batched "
                        "trials and cannot be batched"
                    )
        where = f"incentives.{index}.params"
        values = [_OFF if other is None else _full_params(cls, other["params"]) for other in present]
        for field, leaf in _param_leaves(values, "", source=recipes[0].source, where=where):
            given = [v for v in leaf if v is not _OFF]
            if all(v == given[0] for v in given):
                continue  # the same in every trial that has the plugin on: nothing to vary
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in given)
            if not numeric or not accepts_task_param(cls, field):
                raise RecipeError(
                    f"{recipes[0].source}: field '{where}.{field}' differs between batched "
                    f"trials, and plugin {entry['plugin']!r} cannot vary it per env instance (it accepts "
                    f"{', '.join(task_params) or 'none'}); cannot be batched"
                )
            params[f"{where}.{field}"] = [float(given[0]) if v is _OFF else float(v) for v in leaf]
    data = recipes[0].model_dump(mode="json")
    data["incentives"] = [entry for _, entry in union]
    from incentive.recipe import validate_recipe

    base = validate_recipe(data, source=f"{recipes[0].source} (batch of {len(recipes)})")
    return BatchPlan(base=base, plugins=[set(trial) for trial in per_trial], params=params)


def _trial_plugins(recipe: Recipe, extra: list[tuple[str, Any]]) -> pluggy.PluginManager:
    """A trial's own plugins: its W&B logger (if any) and the caller's extras, no shaping plugins."""
    pm = make_plugin_manager(recipe)
    for name, _ in recipe.plugin_specs():
        pm.unregister(name=name)
    for name, plugin in extra:
        pm.register(plugin, name=name)
    return pm


class BatchedTraining(Training):
    """K trials (designs and seeds) trained as one batched training.

    Reuses `Training`'s rollout, shaping and episode bookkeeping on K*E
    instances; reports, checkpoints and trial hooks are per trial.

    Args:
        recipes: trial k's recipe (its seed, its incentive parameters); they
            may differ only where `plan_batch` allows.
        run_dirs: one run directory per trial (created if missing).
        extra_plugins: per trial, (name, plugin) pairs for that trial only
            (progress bars, search reporters).

    """

    def __init__(
        self,
        recipes: list[Recipe],
        *,
        run_dirs: list[Path],
        extra_plugins: list[list[tuple[str, Any]]] | None = None,
    ) -> None:
        self.plan = plan_batch(recipes)
        recipe = self.plan.base
        self.recipe = recipe
        self.trial_recipes = list(recipes)
        self.seeds = [r.seed for r in recipes]
        seeds = self.seeds
        self.trials = len(recipes)
        self.run_dirs = [Path(d) for d in run_dirs]
        self.run_dir = self.run_dirs[0]
        for run_dir in self.run_dirs:
            run_dir.mkdir(parents=True, exist_ok=True)
        pm = make_plugin_manager(
            recipe.model_copy(
                update={
                    "log": recipe.log.model_copy(
                        update={"wandb": recipe.log.wandb.model_copy(update={"mode": "disabled"})}
                    )
                }
            )
        )
        check_batchable(recipe, pm)
        self.hooks = Hooks(pm)
        extra_plugins = extra_plugins or [[] for _ in seeds]
        self.trial_hooks = [
            Hooks(_trial_plugins(r, list(extra)))
            for r, extra in zip(self.trial_recipes, extra_plugins, strict=True)
        ]
        torch.set_num_threads(recipe.train.threads)
        probe = make_env(recipe.env.model_copy(update={"num_envs": 1}), source=recipe.source)
        check_sizes(recipe, probe)
        for message in episode_warnings(recipe, probe):
            warnings.warn(message, RecipeWarning, stacklevel=2)
        self.envs_per_trial = e = recipe.env.num_envs
        self.env = make_env(recipe.env.model_copy(update={"num_envs": self.trials * e}), source=recipe.source)
        self.agents = list(self.env.possible_agents)
        check_objectives(recipe, self.env, pm)
        self.learner = PPO.for_env(
            recipe.learner, self.env, self.agents, [torch.Generator().manual_seed(seed) for seed in seeds]
        )
        self.context = RunContext(
            recipe=recipe,
            run_dir=self.run_dir,
            env=self.env,
            agents=self.agents,
            num_envs=self.env.num_envs,
            generator=torch.Generator().manual_seed(seeds[0] + 1),
            tasks=TaskState.for_run(recipe, pm, self.env),
            learner=self.learner,
        )
        self.trial_contexts = [
            RunContext(
                recipe=r,
                run_dir=d,
                env=self.env,
                agents=self.agents,
                num_envs=e,
                generator=torch.Generator().manual_seed(r.seed + 1),
                learner=self.learner,
            )
            for r, d in zip(self.trial_recipes, self.run_dirs, strict=True)
        ]
        self.metrics_files = [MetricsFile(d / METRICS) for d in self.run_dirs]
        self.perf_files = [MetricsFile(d / PERF) for d in self.run_dirs]
        self.metrics_file = self.metrics_files[0]
        self.steps_per_iteration = recipe.learner.rollout_steps * e
        self.num_iterations = max(1, math.ceil(recipe.train.total_steps / self.steps_per_iteration))
        self.ts = self._reset_env()
        self._features: TrialMajorBuffer | None = None
        a = len(self.agents)
        self.seats = torch.full((self.env.num_envs, a), LEARNER, dtype=torch.long)
        self.next_seats = self.seats.clone()
        self.policies: list[Any] = []
        self.episode = self._empty_episode()
        self.last_metrics: dict[str, float] = {}
        self.trial_metrics: list[dict[str, float]] = [{} for _ in seeds]
        self.active = [True] * self.trials
        self.statuses = ["failed"] * self.trials
        # each trial's incentive parameters, per instance, from the start; plugins a trial lacks
        # contribute a zero term on its instances
        repeat = lambda values, dtype: torch.tensor(values, dtype=dtype).repeat_interleave(e)  # noqa: E731
        task = {key: repeat(values, torch.float64) for key, values in self.plan.params.items()}
        if task:
            self.context.tasks.set(task, at_boundary=True)
        every = set().union(*self.plan.plugins)
        self.instances_on = {
            name: repeat([name in mine for mine in self.plan.plugins], torch.bool)
            for name in every
            if not all(name in mine for mine in self.plan.plugins)
        }

    def _shape(self, step: Any) -> dict[str, torch.Tensor]:
        """The plugins' terms, zero on the instances of trials whose design has the plugin off."""
        terms = Training._shape(self, step)
        for name, value in terms.items():
            on = self.instances_on.get(name.split("/", 1)[0])
            if on is not None:
                terms[name] = torch.where(on[:, None], value, torch.zeros((), dtype=value.dtype))
        return terms

    def _features_buffer(self, steps: int, e: int, a: int, d: int) -> TrialMajorBuffer:
        """The rollout's features, stored trial-major and kept from one iteration to the next.

        The largest rollout tensor (K*T*E*A*D floats, 130 MB for 16 Cleanup 7x7 trials): stored
        as the update reads it, there is no [T, K*E] -> [K, T*E] copy, and reused, its pages are
        not faulted in afresh every iteration.
        """
        shape = (self.trials, steps, self.envs_per_trial, a, d)
        if self._features is None or tuple(self._features.data.shape) != shape:
            self._features = TrialMajorBuffer(torch.empty(shape))
        return self._features

    def _reset_env(self) -> TimeStep:
        """Reset all K*E instances, trial k's instance e seeded S_k + e (as a lone run seeds it)."""
        e = self.envs_per_trial
        self.env.rng.seed(torch.cat([seed + torch.arange(e) for seed in self.seeds]))
        return self.env.reset()

    # --- the loop --------------------------------------------------------

    def run(
        self, *, resume: bool = False, checkpoint: dict[str, Any] | None = None
    ) -> list[dict[str, float]]:
        """Train every trial to the budget; returns each trial's last metrics."""
        self.status = "failed"
        try:
            self.hooks.call("incentive_setup", run=self.context)
            for hooks, context in zip(self.trial_hooks, self.trial_contexts, strict=True):
                hooks.call("incentive_setup", run=context)
            start = self._restore(checkpoint) if resume else 0
            for iteration in range(start + 1, self.num_iterations + 1):
                self._iteration(iteration)
                if not any(self.active):  # every trial was pruned: nothing left to train
                    break
            self.status = "completed" if any(self.active) or "completed" in self.statuses else "pruned"
        finally:
            for k in range(self.trials):
                if not self.active[k]:
                    continue  # pruned: its run already ended
                status = self.status if self.statuses[k] == "failed" else self.statuses[k]
                self.statuses[k] = status
                try:
                    self.trial_hooks[k].call(
                        "incentive_run_end",
                        run=self.trial_contexts[k],
                        status=status,
                        metrics=self.trial_metrics[k],
                    )
                except IncentiveError:
                    if self.status == "completed":
                        raise
            self.hooks.call("incentive_run_end", run=self.context, status=self.status, metrics={})
        return self.trial_metrics

    def _iteration(self, iteration: int) -> None:
        cfg = self.recipe.learner
        k, e = self.trials, self.envs_per_trial
        started = time.perf_counter()
        if cfg.anneal_lr:
            self.learner.set_lr_fraction(1.0 - (iteration - 1) / self.num_iterations)

        buffers = self._rollout(cfg.rollout_steps)
        rollout_done = time.perf_counter()

        advantages, returns = self._advantages(buffers)

        def per_trial(x: torch.Tensor | None) -> torch.Tensor | None:  # [T, K*E, ...] -> [K, T*E, ...]
            if x is None:
                return None
            t = x.shape[0]
            return x.view(t, k, e, *x.shape[2:]).transpose(0, 1).reshape(k, t * e, *x.shape[2:])

        losses = self.learner.update_trials(
            Batch(
                features=buffers["features"].per_trial(),
                action_mask=per_trial(buffers["action_mask"]),
                actions=per_trial(buffers["actions"]),
                logprobs=per_trial(buffers["logprobs"]),
                values=per_trial(buffers["values"]),
                advantages=per_trial(advantages),
                returns=per_trial(returns),
                policy_mask=per_trial(buffers["policy_mask"]),
                value_mask=per_trial(buffers["value_mask"]),
            )
        )
        self.context.iteration = iteration
        elapsed = time.perf_counter() - started
        for trial in range(k):
            if self.active[trial]:
                self._report(
                    trial, iteration, buffers["finished"], losses[trial], elapsed, rollout_done - started
                )
        if iteration == self.num_iterations:
            self.statuses = [
                "completed" if on else was for on, was in zip(self.active, self.statuses, strict=True)
            ]
        elif any(self.active) and not all(self.active):
            self._drop_inactive()
        if iteration % self.recipe.train.checkpoint_every == 0 or iteration == self.num_iterations:
            self._checkpoint(iteration)

    # --- dropping pruned trials ------------------------------------------------------

    def _drop_inactive(self) -> None:
        """Remove pruned trials from the batch: their instances, networks and optimizer state.

        Every piece of state is per trial, so the remaining trials continue
        exactly as before. State tensors are cut along their one dimension of
        size K*E (the env may keep instances first or last); a state with no
        or several such dimensions cannot be cut, and then the pruned trials
        keep stepping (unreported) until the batch ends.
        """
        keep = [k for k in range(self.trials) if self.active[k]]
        e, total = self.envs_per_trial, self.trials * self.envs_per_trial
        instances = torch.cat([torch.arange(k * e, (k + 1) * e) for k in keep])
        try:
            full = self._state(self.context.iteration)
            parts = ("env", "timestep", "seats", "next_seats", "episode", "tasks", "plugins")
            state = {key: _cut(full[key], total, instances) for key in parts}
        except _CannotCut:
            return
        groups = self.learner.net.actor[0].weight.shape[0] // self.trials
        rows = torch.cat([torch.arange(k * groups, (k + 1) * groups) for k in keep])
        learner = self.learner.state_dict()
        learner["net"] = {name: value.index_select(0, rows) for name, value in learner["net"].items()}
        for saved in learner["optimizer"]["state"].values():
            saved["exp_avg"] = saved["exp_avg"].index_select(0, rows)
            saved["exp_avg_sq"] = saved["exp_avg_sq"].index_select(0, rows)
        learner["generator"] = [learner["generator"][k] for k in keep]
        if len(keep) == 1:
            learner["generator"] = learner["generator"][0]
        # the smaller batch: bookkeeping, env, learner, tasks, plugin state
        for name in (
            "seeds",
            "run_dirs",
            "trial_recipes",
            "trial_hooks",
            "trial_contexts",
            "metrics_files",
            "perf_files",
            "trial_metrics",
            "statuses",
            "active",
        ):
            setattr(self, name, [getattr(self, name)[k] for k in keep])
        self.plan.plugins = [self.plan.plugins[k] for k in keep]
        self.instances_on = {name: on[instances] for name, on in self.instances_on.items()}
        self.context.global_step = self.context.global_step // self.trials * len(keep)  # K*E per step
        self.trials = len(keep)
        self.env = make_env(
            self.recipe.env.model_copy(update={"num_envs": self.trials * e}), source=self.recipe.source
        )
        self.env.load_state_dict(state["env"])
        self.learner = PPO(
            config=self.recipe.learner,
            obs_dims=self.learner.obs_dims,
            action_dims=self.learner.action_dims,
            generator=[torch.Generator() for _ in keep] if len(keep) > 1 else torch.Generator(),
        )
        self.learner.load_state_dict(learner)
        self.context.env, self.context.num_envs, self.context.learner = (
            self.env,
            self.env.num_envs,
            self.learner,
        )
        self.context.tasks = TaskState.for_run(self.recipe, self.hooks.pm, self.env)
        self.context.tasks.load_state_dict(state["tasks"])
        for context in self.trial_contexts:
            context.env, context.learner = self.env, self.learner
        self.ts = TimeStep(**state["timestep"])
        self.seats, self.next_seats, self.episode = state["seats"], state["next_seats"], state["episode"]
        self.hooks.call("incentive_setup", run=self.context)  # plugins size their state for the new batch
        for plugin, plugin_state in state["plugins"].items():
            self.hooks.call_plugin(plugin, "incentive_load_state_dict", run=self.context, state=plugin_state)

    def _report(
        self,
        trial: int,
        iteration: int,
        chunks: list[dict[str, Any]],
        losses: dict[str, float],
        elapsed: float,
        rollout_s: float,
    ) -> None:
        """Trial `trial`'s metrics line, perf line and iteration-end hooks, from its own episodes."""
        e = self.envs_per_trial
        low, high = trial * e, (trial + 1) * e
        own = []
        for chunk in chunks:
            keep = (chunk["instance"] >= low) & (chunk["instance"] < high)
            if bool(keep.any()):
                own.append(
                    {
                        "reward": chunk["reward"][keep],
                        "incentive": chunk["incentive"][keep],
                        "seats": chunk["seats"][keep],
                        "terms": {
                            name: value[keep]
                            for name, value in chunk["terms"].items()
                            if name.split("/", 1)[0] in self.plan.plugins[trial]
                        },
                        "info": {name: value[keep] for name, value in chunk["info"].items()},
                    }
                )
        context = self.trial_contexts[trial]
        context.iteration = iteration
        context.global_step = self.context.global_step // self.trials
        metrics = self._metrics(iteration, self._finished_episodes(own), losses, context.global_step)
        self.metrics_files[trial].append(metrics)
        perf = {
            "train/iteration": iteration,
            "perf/steps_per_s": self.steps_per_iteration * self.trials / elapsed,
            "perf/rollout_s": rollout_s,
            "perf/update_s": elapsed - rollout_s,
            "perf/trials": self.trials,
        }
        self.perf_files[trial].append(perf)
        self.trial_metrics[trial] = {**metrics, **perf}
        try:
            self.trial_hooks[trial].call(
                "incentive_iteration_end", run=context, iteration=iteration, metrics=self.trial_metrics[trial]
            )
        except StopRun as stop:  # a pruned search trial: it reports no more and leaves the batch
            self.active[trial] = False
            self.statuses[trial] = stop.status
            self.trial_hooks[trial].call(
                "incentive_run_end", run=context, status=stop.status, metrics=self.trial_metrics[trial]
            )

    # --- checkpoints -----------------------------------------------------------

    def _checkpoint(self, iteration: int) -> None:
        try:
            save_checkpoint(self.run_dir / BATCH_CHECKPOINT, self._state(iteration))
        except ValueError as exc:
            raise IncentiveError(
                f"{self.run_dir / BATCH_CHECKPOINT}: cannot write the checkpoint: {exc}"
            ) from None

    def _state(self, iteration: int) -> dict[str, Any]:
        """Everything the batch needs to continue (the checkpoint)."""
        return {
            **self._training_state(iteration),
            "seeds": self.seeds,
            "active": list(self.active),
            "statuses": list(self.statuses),
            "metrics_lines": [f.count() for f in self.metrics_files],
            "perf_lines": [f.count() for f in self.perf_files],
        }

    def _restore(self, state: dict[str, Any] | None = None) -> int:
        if state is None:
            state = load_checkpoint(self.run_dir / BATCH_CHECKPOINT)
        if list(state["seeds"]) != self.seeds:
            raise IncentiveError(
                f"{self.run_dir / BATCH_CHECKPOINT}: the checkpoint holds seeds {state['seeds']}, "
                f"the batch {self.seeds}"
            )
        self.active = list(state["active"])
        self.statuses = list(state["statuses"])
        self._load_training_state(state, state["tasks"])
        for context in self.trial_contexts:
            context.iteration = state["iteration"]
            context.global_step = state["global_step"] // self.trials
        for file, lines in zip(self.metrics_files, state["metrics_lines"], strict=True):
            file.truncate(lines)
        for file, lines in zip(self.perf_files, state["perf_lines"], strict=True):
            file.truncate(lines)
        return state["iteration"]


class TrialMajorBuffer:
    """A rollout buffer indexed like [T, K*E, ...] but stored as [K, T, E, ...] (`data`).

    `buffer[t] = x` writes step t of every instance; `per_trial()` is the [K, T*E, ...]
    view the learner's update reads, each trial's samples contiguous and in a lone run's order.
    """

    def __init__(self, data: torch.Tensor) -> None:
        self.data = data

    def __setitem__(self, t: int, value: torch.Tensor) -> None:
        k, _, e, *rest = self.data.shape
        self.data[:, t] = value.view(k, e, *rest)

    def per_trial(self) -> torch.Tensor:
        """[K, T*E, ...] without a copy."""
        k, t, e, *rest = self.data.shape
        return self.data.view(k, t * e, *rest)


class _CannotCut(Exception):
    """A state tensor has no single instance dimension."""


def _cut(value: Any, total: int, instances: torch.Tensor) -> Any:
    """`value` with only `instances` kept along every tensor's one dimension of size `total`."""
    if isinstance(value, torch.Tensor):
        dims = [d for d, size in enumerate(value.shape) if size == total]
        if len(dims) != 1:
            raise _CannotCut
        return value.index_select(dims[0], instances)
    if isinstance(value, dict):
        return {key: _cut(item, total, instances) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cut(item, total, instances) for item in value)
    return value


def write_batch_file(run_dirs: list[Path], seeds: list[int]) -> None:
    """`batch.yaml` in each run directory of a batch: seeds and directories (the first has the checkpoint)."""
    text = yaml.safe_dump(
        {"seeds": list(seeds), "run_dirs": [str(Path(d).resolve()) for d in run_dirs]}, sort_keys=False
    )
    for run_dir in run_dirs:
        (Path(run_dir) / BATCH_FILE).write_text(text)


def read_batch_file(run_dir: Path) -> tuple[list[int], list[Path]] | None:
    """(seeds, run directories) of the batch `run_dir` belongs to, or None for a lone run."""
    path = Path(run_dir) / BATCH_FILE
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text())
        return [int(s) for s in data["seeds"]], [Path(d) for d in data["run_dirs"]]
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise IncentiveError(f"{path}: unreadable batch file ({type(exc).__name__}: {exc})") from None


def seed_run_ids(run_id: str, seeds: list[int]) -> list[str]:
    """Run ids of a batch: `<run id>-seed<S>` per seed."""
    return [f"{run_id}-seed{seed}" for seed in seeds]


def start_seeds(
    recipe: Recipe,
    seeds: list[int],
    *,
    run_id: str | None = None,
    extra_plugins: list[list[tuple[str, Any]]] | None = None,
) -> tuple[list[Path], list[dict[str, float]]]:
    """`incentive run RECIPE --seeds ...`: one batched training, one run directory per seed.

    Returns:
        (run directories, each trial's last metrics).

    """
    from incentive.runner import RECIPE_FILE, new_run_dir

    run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{torch.randint(0, 2**16, (1,)).item():04x}"
    run_dirs = [new_run_dir(recipe, rid) for rid in seed_run_ids(run_id, seeds)]
    for run_dir, seed in zip(run_dirs, seeds, strict=True):
        data = recipe.model_copy(update={"seed": seed}).model_dump(mode="json")
        (run_dir / RECIPE_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    write_batch_file(run_dirs, seeds)
    recipes = [recipe.model_copy(update={"seed": seed}) for seed in seeds]
    training = BatchedTraining(recipes, run_dirs=run_dirs, extra_plugins=extra_plugins)
    try:
        return run_dirs, training.run()
    finally:
        _draw_all(run_dirs)


def resume_seeds(
    run_dir: Path, *, extra_plugins: list[list[tuple[str, Any]]] | None = None
) -> tuple[list[Path], list[dict[str, float]]]:
    """`incentive run --resume DIR` where DIR is one seed of a batch: resume the whole batch.

    Raises:
        IncentiveError: not a batch, no batch checkpoint yet.

    """
    from incentive.runner import load_run_recipe

    found = read_batch_file(run_dir)
    if found is None:
        raise IncentiveError(f"{run_dir}: not part of a batched run (no {BATCH_FILE})")
    seeds, run_dirs = found
    checkpoint = run_dirs[0] / BATCH_CHECKPOINT
    if not checkpoint.exists():
        raise IncentiveError(
            f"{run_dir}: the batch stopped before its first checkpoint; there is nothing to resume "
            "(start it again with `incentive run --seeds`)"
        )
    recipes = [load_run_recipe(d) for d in run_dirs]
    state = load_checkpoint(checkpoint)
    training = BatchedTraining(recipes, run_dirs=run_dirs, extra_plugins=extra_plugins)
    if state["iteration"] >= training.num_iterations:
        return run_dirs, [f.read()[-1] if f.count() else {} for f in training.metrics_files]
    try:
        return run_dirs, training.run(resume=True, checkpoint=state)
    finally:
        _draw_all(run_dirs)


def _draw_all(run_dirs: list[Path]) -> None:
    from incentive.runner import _draw_curves

    for run_dir in run_dirs:
        _draw_curves(run_dir)
