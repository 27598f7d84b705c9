"""Tasks: what each of the E env instances meets, set per instance and adopted at its next reset.

A task is a flat mapping `key -> tensor with leading dimension E`, the value
of one parameter for every instance. `incentive_next_task` returns one; the
loop hands it to `TaskState.set`. Three kinds of keys:

| key                                  | what it sets                          | who reads it              |
| ------------------------------------ | ------------------------------------- | ------------------------- |
| `incentives.<i>.params.<field>`      | a numeric parameter of the i-th       | the plugin, through       |
| `plugins.<i>.params.<field>`         | incentive (or further) plugin, [E]    | `instance_param`          |
|                                      | float; `<field>` may be nested        |                           |
|                                      | (`contracts.0.amount`)                |                           |
| `opponent`                           | [E] long, an opponent choice (a       | an opponent sampler,      |
|                                      | policy index or id) for samplers      | through `TaskState.value` |
| anything else (`level`, `payoffs`)   | an env task parameter, [E, ...]       | the env (`env.set_task`)  |

Every value applies to an instance at that instance's next reset, never in
the middle of an episode: the env keeps its own pending values; for plugin
parameters and the opponent choice this module keeps `pending` and
`current` [E] tensors and the loop calls `advance(done)` after each step's
shaping (the step that ends an episode is still shaped with the old values).
At the very start of a run every instance is at a boundary, so the first
task applies at once (the loop then resets the env again with the run seed).

Why plugin parameters are [E] tensors: shaping stays one batched call over
all instances, whatever mix of parameters they run. A plugin declares which
of its parameters may vary per instance in `task_params` (patterns, `*`
matching one part of the path, a list index; `accepts_task_param` matches
them) and reads them with `instance_param(self.tasks, self, name, num_envs=E)`
(`self.tasks` is `run.tasks`, kept at set-up):
an [E] float64 tensor, the task's value where one was set and the plugin's
`Params` value elsewhere. Coefficients are formed in float64 (as Python
computes with the scalar parameter) and cast to the reward's dtype before
they touch a reward, so an instance at s = 1 gives bit for bit what a plugin
built with s = 1 gives. A parameter the plugin does not declare, a path that
does not exist or a non-numeric field is a ValueError naming the key.

The same mechanism batches designs: E instances can run E different
incentive parameter sets (say, many search trials in one process) by setting
`incentives.<i>.params.<field>` per instance once at the start.

Helpers for curricula (all vectorised, no loop over instances):

- `step_values(start, pending, done)`: which task each rollout step ran on,
  [T, E], given the value each instance ran at the rollout's start and the
  value pending for its next reset (at most one task change per instance
  and iteration, because tasks are set once per iteration).
- `episode_returns(reward, done, carried)`: the return of every episode that
  ended in a rollout, including the part played in earlier rollouts.
- `candidate_tasks(tasks, env, candidates)`: the N tasks a sampling
  curriculum (PLR, learning progress) chooses among, as key -> [N] values:
  the env's training levels by default, or an explicit list of values per
  key (say, opponent ids or values of `incentives.0.params.s`).
- `CandidateTasks.for_run(run, candidates)`: the same table for a run, with
  the env's difficulty rating of each candidate level (where it rates them),
  the task of chosen candidate indices, and their mean difficulty metric.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel

__all__ = [
    "OPPONENT",
    "CandidateTasks",
    "TaskState",
    "candidate_tasks",
    "episode_returns",
    "accepts_task_param",
    "instance_param",
    "resolve_param",
    "step_values",
]

OPPONENT = "opponent"
"""Task key of the per-instance opponent choice (read by opponent samplers)."""

PLUGIN_LISTS = ("incentives", "plugins")


def resolve_param(params: BaseModel, field: str) -> Any:
    """The value of a dotted field path inside a plugin's Params (`contracts.0.amount`).

    Raises:
        ValueError: a part of the path does not exist.

    """
    node: Any = params
    for part in field.split("."):
        if isinstance(node, BaseModel) and part in type(node).model_fields:
            node = getattr(node, part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"has no parameter {field!r} (no {part!r} there)")
    return node


def accepts_task_param(plugin: Any, field: str) -> bool:
    """Whether `plugin` (a class or an instance) reads parameter `field` per env instance.

    `field` is a dotted path inside the plugin's Params (`contracts.0.amount`);
    the plugin lists what it reads per instance in `task_params`, patterns
    matched part by part, `*` matching one part (a list index):
    `contracts.*.amount` accepts `contracts.0.amount`, not `contracts.0.name`.
    The one matcher for task keys, batched trials and batched searches.
    """
    parts = field.split(".")
    for pattern in tuple(getattr(plugin, "task_params", ()) or ()):
        wanted = pattern.split(".")
        if len(wanted) == len(parts) and all(
            fnmatch.fnmatchcase(part, want) for part, want in zip(parts, wanted, strict=True)
        ):
            return True
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def instance_param(tasks: TaskState | None, plugin: Any, field: str, *, num_envs: int) -> torch.Tensor:
    """A plugin parameter for every instance: [E] float64.

    The value the current task set for each instance, or the plugin's
    `Params` value where no task set one (and when there are no tasks).

    Args:
        tasks: the run's task state (`run.tasks`, kept by the plugin at
            set-up), or None.
        plugin: the plugin asking (identifies its recipe path).
        field: the parameter, a dotted path inside the plugin's Params.
        num_envs: E.

    """
    if tasks is not None:
        value = tasks.plugin_value(plugin, field)
        if value is not None:
            return value
    default = float(resolve_param(plugin.params, field))
    return torch.full((num_envs,), default, dtype=torch.float64)


class TaskState:
    """Per-instance plugin parameters and opponent choices: current values and pending ones.

    Args:
        num_envs: E.
        env: the run's env (receives the env keys), or None for no env keys.
        plugins: recipe path prefix (`incentives.0`) -> plugin object.

    """

    def __init__(self, *, num_envs: int, env: Any = None, plugins: dict[str, Any] | None = None) -> None:
        self.num_envs = num_envs
        self.env = env
        self.plugins = dict(plugins or {})
        self._prefix = {id(plugin): prefix for prefix, plugin in self.plugins.items()}
        self.current: dict[str, torch.Tensor] = {}
        self.pending: dict[str, torch.Tensor] = {}

    @classmethod
    def for_run(cls, recipe: Any, pm: Any, env: Any) -> TaskState:
        """The task state of a run: every listed plugin under its recipe path."""
        names = [name for name, _ in recipe.plugin_specs()]
        plugins = {}
        offset = 0
        for field in PLUGIN_LISTS:
            for index in range(len(getattr(recipe, field))):
                plugins[f"{field}.{index}"] = pm.get_plugin(names[offset + index])
            offset += len(getattr(recipe, field))
        return cls(num_envs=env.num_envs, env=env, plugins=plugins)

    # --- keys ------------------------------------------------------------

    def split_key(self, key: str) -> tuple[str, Any, str] | None:
        """(prefix, plugin, field) of a plugin-parameter key, or None for other keys.

        Raises:
            ValueError: the key names a plugin list but no listed plugin.

        """
        parts = key.split(".")
        if parts[0] not in PLUGIN_LISTS:
            return None
        if len(parts) < 4 or parts[2] != "params":
            raise ValueError(
                f"task key {key!r}: a plugin parameter is written '{parts[0]}.<index>.params.<name>'"
            )
        prefix = f"{parts[0]}.{parts[1]}"
        if prefix not in self.plugins:
            listed = [p for p in self.plugins if p.startswith(parts[0])]
            raise ValueError(
                f"task key {key!r}: the recipe has no plugin at '{prefix}' "
                f"(listed: {', '.join(listed) or 'none'})"
            )
        return prefix, self.plugins[prefix], ".".join(parts[3:])

    def check_key(self, key: str) -> str:
        """Check that `key` can be set per instance; returns its kind: 'plugin', 'opponent' or 'env'.

        Raises:
            ValueError: naming the key: no such plugin or parameter, a
                non-numeric parameter, one the plugin or env cannot change
                per instance.

        """
        split = self.split_key(key)
        if split is not None:
            prefix, plugin, field = split
            name = getattr(plugin, "name", type(plugin).__name__)
            try:
                value = resolve_param(plugin.params, field)
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"task key {key!r}: plugin {name!r} at '{prefix}' {exc}") from None
            if not _is_number(value):
                raise ValueError(
                    f"task key {key!r}: parameter {field!r} of plugin {name!r} is not a number "
                    f"(it is {value!r}); only numeric parameters can vary per instance"
                )
            allowed = tuple(getattr(plugin, "task_params", ()) or ())
            if not accepts_task_param(plugin, field):
                raise ValueError(
                    f"task key {key!r}: plugin {name!r} cannot change {field!r} per instance; "
                    f"it accepts {', '.join(allowed) or 'none'}"
                )
            return "plugin"
        if key == OPPONENT:
            return "opponent"
        keys = tuple(getattr(self.env, "task_keys", ()))
        if key not in keys:
            env = type(self.env).__name__ if self.env is not None else "the env"
            raise ValueError(
                f"task key {key!r}: {env} cannot change {key!r} per instance; its task parameters are "
                f"{', '.join(keys) or 'none'}, plugin parameters are written "
                "'incentives.<index>.params.<name>'"
            )
        return "env"

    # --- setting and adopting ------------------------------------------------

    def set(self, task: dict[str, torch.Tensor], *, at_boundary: bool = False) -> None:
        """Make `task` pending for every instance's next reset.

        Args:
            task: key -> tensor with leading dimension E.
            at_boundary: every instance is between episodes (the run's start):
                the plugin and opponent values apply at once.

        Raises:
            ValueError: a bad key (see `check_key`) or a wrongly shaped value.

        """
        env_part = {}
        for key, value in task.items():
            kind = self.check_key(key)
            if not isinstance(value, torch.Tensor) or value.dim() < 1 or value.shape[0] != self.num_envs:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(
                    f"task key {key!r}: expected a tensor with leading dimension E = "
                    f"{self.num_envs}, got {shape}"
                )
            if kind == "env":
                env_part[key] = value
                continue
            if value.dim() != 1:
                raise ValueError(
                    f"task key {key!r}: expected shape ({self.num_envs},), got {tuple(value.shape)}"
                )
            if kind == "plugin":
                value = value.to(torch.float64)
                if not bool(torch.isfinite(value).all()):
                    raise ValueError(f"task key {key!r}: values must be finite numbers")
            else:
                value = value.to(torch.long)
            self.pending[key] = value.clone()
            if at_boundary:
                self.current[key] = value.clone()
            elif key not in self.current:
                self.current[key] = self._default(key, value)
        if env_part:
            self.env.set_task(env_part)

    def _default(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """What instances run until their next reset under a key set for the first time mid-run.

        The plugin's Params value; for the opponent choice, -1 (none chosen).
        """
        if key == OPPONENT:
            return torch.full_like(value, -1)
        _, plugin, field = self.split_key(key)
        return torch.full_like(value, float(resolve_param(plugin.params, field)))

    def advance(self, done: torch.Tensor) -> None:
        """Instances whose episode ended (`done` [E] bool) adopt their pending values."""
        for key, value in self.pending.items():
            self.current[key] = torch.where(done, value, self.current[key])

    # --- reading ---------------------------------------------------------

    def plugin_value(self, plugin: Any, field: str) -> torch.Tensor | None:
        """[E] float64 current values of a plugin parameter, or None if no task set it."""
        prefix = self._prefix.get(id(plugin))
        if prefix is None:
            return None
        return self.current.get(f"{prefix}.params.{field}")

    def value(self, key: str) -> torch.Tensor | None:
        """[E] current values of a plugin parameter or the opponent choice, or None if never set."""
        return self.current.get(key)

    # --- checkpoints -----------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Current and pending values."""
        return {
            "current": {k: v.clone() for k, v in self.current.items()},
            "pending": {k: v.clone() for k, v in self.pending.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.current = {k: v.clone() for k, v in state["current"].items()}
        self.pending = {k: v.clone() for k, v in state["pending"].items()}


def step_values(start: torch.Tensor, pending: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """The task value each rollout step ran on, [T, E].

    An instance runs `start` until its first episode end in the rollout
    (that step included) and `pending` after it.

    Args:
        start: [E] values the instances ran when the rollout began.
        pending: [E] values pending for their next reset.
        done: [T, E] episode ends (bool, or 0/1 as the loop's rollout holds them).

    """
    done = done.bool()
    ended_before = (done.long().cumsum(0) - done.long()) > 0  # an earlier step ended an episode
    return torch.where(ended_before, pending[None], start[None])


def episode_returns(
    reward: torch.Tensor, done: torch.Tensor, carried: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns of the episodes that ended in a rollout, and the unfinished parts to carry on.

    Args:
        reward: [T, E] a per-step reward (for example summed over agents).
        done: [T, E] bool episode ends.
        carried: [E] return so far of each instance's unfinished episode
            when the rollout began.

    Returns:
        (returns [T, E]: at each step where an episode ended, its whole
        return, 0 elsewhere; carried [E]: the unfinished returns at the end).

    """
    reward, done = reward.to(carried.dtype), done.bool()
    total = carried[None] + reward.cumsum(0)  # return since the start of the carried episode
    steps = torch.arange(done.shape[0])[:, None].expand_as(done)
    last_end = torch.where(done, steps, torch.full_like(steps, -1)).cummax(0).values  # at or before t
    previous_end = torch.cat([torch.full_like(last_end[:1], -1), last_end[:-1]])  # strictly before t
    before = torch.where(
        previous_end >= 0, total.gather(0, previous_end.clamp(min=0)), torch.zeros_like(total)
    )
    episode = total - before
    returns = torch.where(done, episode, torch.zeros_like(episode))
    final_end = last_end[-1]
    carried_out = total[-1] - torch.where(
        final_end >= 0, total.gather(0, final_end.clamp(min=0)[None])[0], torch.zeros_like(carried)
    )
    return returns, carried_out


def candidate_tasks(
    tasks: TaskState | None, env: Any, candidates: dict[str, list[float]] | None
) -> dict[str, torch.Tensor]:
    """The N tasks a sampling curriculum chooses among: key -> [N] values (candidate n is column n).

    Args:
        tasks: the run's task state (checks the keys), or None.
        env: the run's env (its `train_levels` are the default candidates).
        candidates: key -> list of N values, or None for the env's training levels.

    Raises:
        ValueError: no candidates, lists of different lengths, a key that
            cannot be set per instance, or an env without levels.

    """
    if candidates is None:
        levels = getattr(env, "train_levels", None)
        if levels is None:
            raise ValueError(
                f"the env {type(env).__name__} has no procedural levels (no train_levels); "
                "give the candidate tasks explicitly in 'candidates'"
            )
        return {"level": levels.clone()}
    if not candidates:
        raise ValueError("'candidates' is empty: give at least one key with a list of values")
    lengths = {key: len(values) for key, values in candidates.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"'candidates' lists must be non-empty and of one length, got {lengths}")
    table = {}
    for key, values in candidates.items():
        if tasks is not None:
            kind = tasks.check_key(key)
        else:
            kind = "plugin" if key.split(".")[0] in PLUGIN_LISTS else "env"
        dtype = torch.float64 if kind == "plugin" else None
        table[key] = torch.tensor(values, dtype=dtype)
    return table


@dataclass
class CandidateTasks:
    """The N candidate tasks of a sampling curriculum, and the env's difficulty of each.

    Attributes:
        table: key -> [N] values (candidate n is column n).
        difficulty: [N] float64 difficulty of each candidate level, where the
            env rates its levels (`level_difficulty`) and the candidates are
            levels; else None.

    """

    table: dict[str, torch.Tensor]
    difficulty: torch.Tensor | None

    @classmethod
    def for_run(cls, run: Any, candidates: dict[str, list[float]] | None) -> CandidateTasks:
        """The candidates of a run (`curriculum.params.candidates`, or the env's training levels).

        Raises:
            ValueError: naming the field 'curriculum.params.candidates' (see `candidate_tasks`).

        """
        try:
            table = candidate_tasks(run.tasks, run.env, candidates)
        except ValueError as exc:
            raise ValueError(f"field 'curriculum.params.candidates': {exc}") from None
        rate = getattr(run.env, "level_difficulty", None)
        difficulty = rate(table["level"]) if rate is not None and "level" in table else None
        return cls(table=table, difficulty=difficulty)

    def __len__(self) -> int:
        return len(next(iter(self.table.values())))

    def task(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The task giving instance e candidate `index[e]`: key -> [E] values."""
        return {key: values[index] for key, values in self.table.items()}

    def difficulty_metric(self, index: torch.Tensor) -> dict[str, float]:
        """`curriculum/level_difficulty`: mean difficulty of the chosen candidates (none if unrated/unset)."""
        if self.difficulty is None or not bool((index >= 0).all()):
            return {}
        return {"curriculum/level_difficulty": float(self.difficulty[index].double().mean())}
