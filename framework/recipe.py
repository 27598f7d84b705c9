"""Recipes: the YAML that says what runs, validated by pydantic.

Every model forbids unknown keys, so a typo is an error naming its path.
`load_recipe` turns a file plus `--set path=value` overrides into a
`Recipe`, or raises `RecipeError` with one paragraph naming the file, the
field path, what was expected and what was given.

Hostile input gets the same treatment: bytes that are not UTF-8 (the file
and line), a key given twice (the key and both lines), YAML values JSON
has no type for (`!!binary`, `!!set`; an unquoted date is read as the
string it looks like), nesting deeper than `MAX_DEPTH`, and numbers beyond
each field's bounds. Scientific notation without a dot (`1e6`, which YAML
1.1 reads as a string) is a number, so integer fields accept it when it is
integral.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from incentive.errors import RecipeError

__all__ = [
    "Constraint",
    "CurriculumSpec",
    "EnvSpec",
    "EvaluateSpec",
    "LearnerSpec",
    "LogSpec",
    "Objective",
    "OneOfSpec",
    "OpponentsSpec",
    "PluginSpec",
    "Recipe",
    "SearchParam",
    "SearchSpec",
    "TrainSpec",
    "WandbSpec",
    "apply_overrides",
    "closest",
    "format_validation_error",
    "load_recipe",
    "option_label",
    "parse_override",
    "plain_name",
]

MAX_DEPTH = 50
"""Deepest nesting of mappings and lists a recipe may have (real recipes use 4)."""


def plain_name(value: str, what: str = "name") -> str:
    """`value` if it can name one directory inside another, else a ValueError saying why.

    A plain name is non-empty, at most 255 characters, has no path separator,
    no control character, and does not start with '.' (so it is never '.' or
    '..' and cannot climb out of its parent or hide). Run ids, recipe names
    and study names are plain names.

    Args:
        value: the name to check.
        what: what it names, for the message (`--run-id`, `name`).

    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty name")
    problems = []
    if len(value) > 255:
        problems.append("is longer than 255 characters")
    if "/" in value or "\\" in value:
        problems.append("contains a path separator")
    if value.startswith("."):
        problems.append("starts with '.'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        problems.append("contains a control character")
    if problems:
        raise ValueError(
            f"{what} {value!r} {' and '.join(problems)}: it must be a plain name of one directory "
            "(letters, digits, '-', '_', '.'; no '/', not starting with '.')"
        )
    return value


class Strict(BaseModel):
    """Base of every recipe model: unknown keys are errors, numbers are finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EnvSpec(Strict):
    """Which environment, how many parallel instances, and its parameters."""

    id: str = Field(description="Env id, as listed by `incentive envs`.")
    num_envs: int = Field(64, ge=1, le=2**24, description="E, the number of instances stepped together.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The env's own parameters (validated by the env)."
    )


class LearnerSpec(Strict):
    """PPO hyperparameters (CleanRL's defaults where they apply)."""

    algo: Literal["ppo"] = Field("ppo", description="The learning algorithm.")
    lr: float = Field(2.5e-4, gt=0, le=1, description="Adam learning rate.")
    anneal_lr: bool = Field(False, description="Decay the learning rate linearly to 0.")
    rollout_steps: int = Field(128, ge=1, le=10**6, description="T, batched env steps per iteration.")
    epochs: int = Field(4, ge=1, le=10**4, description="Passes over each rollout.")
    minibatches: int = Field(
        4, ge=1, le=10**6, description="Minibatches per epoch (at most the batch T x E x A)."
    )
    gamma: float = Field(0.99, ge=0, le=1, description="Discount factor.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    clip_coef: float = Field(0.2, gt=0, le=100, description="PPO ratio clip.")
    clip_vloss: bool = Field(True, description="Clip the value loss around the old values.")
    ent_coef: float = Field(0.01, ge=0, le=1e6, description="Entropy bonus weight.")
    vf_coef: float = Field(0.5, ge=0, le=1e6, description="Value loss weight.")
    max_grad_norm: float = Field(0.5, gt=0, le=1e6, description="Global gradient-norm clip.")
    norm_adv: bool = Field(True, description="Normalise advantages per minibatch.")
    hidden_sizes: list[Annotated[int, Field(ge=1, le=2**20)]] = Field(
        [64, 64], max_length=64, description="Hidden layer widths of the actor and critic MLPs."
    )
    conv_channels: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        [],
        max_length=8,
        description="Channels of the convolutions run on [H, W, C] observations before the MLP "
        "(empty: none; see incentive.conv_torso).",
    )
    conv_kernel: int = Field(3, ge=1, le=16, description="Square kernel of those convolutions (no padding).")
    dedup_observations: bool = Field(
        True,
        description="In the update, run each distinct observation through the shared network once "
        "(exact; used when at most half the rows are distinct).",
    )
    share_parameters: bool = Field(
        True,
        description="One network for all agents (with an agent-id input) or one per agent.",
    )


class SearchParam(Strict):
    """One searched value: a range (`low`/`high`) or a list of `choices`."""

    low: float | None = Field(None, description="Lower bound.")
    high: float | None = Field(None, description="Upper bound.")
    log: bool = Field(False, description="Sample on a log scale.")
    step: float | None = Field(None, description="Discretisation step.")
    int: bool = Field(False, description="Sample integers.")
    choices: list[Any] | None = Field(None, description="Categorical choices.")

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParam:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices must not be empty")
        elif self.low is None or self.high is None:
            raise ValueError("give low and high, or choices")
        elif not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        elif self.low > self.high:
            raise ValueError(f"the range is inverted: low ({self.low}) exceeds high ({self.high})")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        elif self.int and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int range needs whole-number bounds, got {self.low} .. {self.high}")
        elif self.step is not None and not 0 < self.step <= max(self.high - self.low, self.step):
            raise ValueError(f"step must be > 0, got {self.step}")
        elif self.step is not None and self.log:
            raise ValueError("give either step or log, not both")
        return self


class PluginSpec(Strict):
    """One plugin instance and its parameters."""

    plugin: str = Field(description="Plugin name, as listed by `incentive plugins`.")
    name: str | None = Field(
        None,
        description="Name in this run (metrics `incentive/<name>/...`); defaults to the plugin "
        "name, suffixed with its position when the plugin appears twice.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="The plugin's own parameters (validated by its Params)."
    )
    optional: bool = Field(
        False,
        description="`incentive search` switches this entry on or off per trial (`run` keeps it on).",
    )
    search: dict[str, SearchParam] = Field(
        default_factory=dict,
        description="This plugin's searched params (name -> range), sampled only in trials that use it.",
    )


class OneOfSpec(Strict):
    """A structure choice: `incentive search` picks one of these plugins (or none) per trial."""

    one_of: list[PluginSpec | None] = Field(
        min_length=2, description="The alternatives; `null` (or `none`) means no plugin."
    )
    name: str | None = Field(None, description="Name of the choice in the study (default: `incentives.<i>`).")

    @field_validator("one_of", mode="before")
    @classmethod
    def _none_word(cls, options: Any) -> Any:
        if isinstance(options, list):
            return [None if option in (None, "none") else option for option in options]
        return options

    @model_validator(mode="after")
    def _options_plain(self) -> OneOfSpec:
        labels = [option_label(option) for option in self.one_of]
        for label in labels:
            if labels.count(label) > 1:
                raise ValueError(f"two alternatives are both called {label!r}: give them distinct `name`s")
        for option in self.one_of:
            if option is not None and option.optional:
                raise ValueError("an alternative of one_of cannot also be optional (add `none` instead)")
        return self


def option_label(option: PluginSpec | None) -> str:
    """How a structure alternative is named in trials: its `name`, its plugin, or `none`."""
    return "none" if option is None else option.name or option.plugin


def _incentive_kind(value: Any) -> str:
    if isinstance(value, OneOfSpec) or (isinstance(value, dict) and "one_of" in value):
        return "one_of"
    return "plugin"


IncentiveEntry = Annotated[
    Annotated[PluginSpec, Tag("plugin")] | Annotated[OneOfSpec, Tag("one_of")],
    Discriminator(_incentive_kind),
]


class CurriculumSpec(PluginSpec):
    """The curriculum plugin that picks each instance's task."""


class OpponentsSpec(PluginSpec):
    """The opponent-sampling plugin that fills the non-learning seats."""


class Objective(Strict):
    """What the designer wants, and which way is better: a designer metric, or a searched parameter.

    A `param` objective scores a design by one of its own searched numbers
    (for example the sharing weight s, to minimise: how much incentive a
    design needs); it only means something to `incentive search`, which reads
    it from the trial's parameters. An incentive switched off in a trial has
    no parameter and scores 0 there (no incentive, no cost).
    """

    metric: str | None = Field(
        None, description="Designer metric, e.g. `collective_return` (`designer/...`)."
    )
    param: str | None = Field(
        None,
        description="A searched parameter as named in the study (a `search.space` path such as "
        "`incentives.0.params.s`, or `<entry>.<param>`); search only.",
    )
    direction: Literal["maximize", "minimize"] = Field(
        "maximize", description="Whether larger or smaller is better."
    )
    last_fraction: float = Field(
        0.1,
        gt=0,
        le=1,
        description="A run's score is the mean of the metric over this last fraction of its iterations.",
    )

    @model_validator(mode="after")
    def _metric_or_param(self) -> Objective:
        if (self.metric is None) == (self.param is None):
            raise ValueError(
                "give exactly one of `metric` (a designer metric) or `param` (a searched parameter)"
            )
        return self

    @property
    def name(self) -> str:
        """How tables and the study call it: the metric without `designer/`, or the parameter."""
        return self.metric.removeprefix("designer/") if self.metric is not None else str(self.param)


class TrainSpec(Strict):
    """How long to train and how often to checkpoint."""

    total_steps: int = Field(
        100_000,
        ge=1,
        le=10**15,
        description="Env steps in total (instance-steps: each batched step counts E), rounded up to "
        "whole iterations of learner.rollout_steps x env.num_envs.",
    )
    checkpoint_every: int = Field(
        10, ge=1, le=10**9, description="Iterations between checkpoints (one is always written at the end)."
    )
    threads: int = Field(
        1,
        ge=1,
        le=1024,
        description="torch intra-op threads. Part of reproducibility: float reductions may "
        "differ between thread counts. 1 suits small networks and shared machines.",
    )


class EvaluateSpec(Strict):
    """Periodic evaluation on the env's held-out test levels (`designer/test/...`, no training data)."""

    every: int = Field(
        0, ge=0, description="Iterations between evaluations on the held-out test levels (0: never)."
    )
    policy: Literal["greedy", "sampled"] = Field(
        "greedy", description="Act by the most likely action, or sample from the policy."
    )
    num_envs: int = Field(256, ge=1, description="Test levels played at once.")


class WandbSpec(Strict):
    """Weights & Biases logging; offline by default, no key or network needed."""

    mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="offline writes locally (`wandb sync` later)."
    )
    project: str = Field("incentive", description="W&B project.")
    entity: str | None = Field(None, description="W&B entity (team or user).")
    group: str | None = Field(None, description="W&B group (search studies group their trials).")
    tags: list[str] = Field(default_factory=list, description="W&B tags.")
    job_type: str | None = Field(None, description="W&B job type (search trials use `trial`).")
    config: dict[str, Any] = Field(
        default_factory=dict, description="Extra W&B config besides the recipe (a trial's params)."
    )


class LogSpec(Strict):
    """Where runs are written and what is logged."""

    dir: str = Field("runs", description="Root of run directories: <dir>/<recipe name>/<run id>/.")
    wandb: WandbSpec = Field(default_factory=WandbSpec, description="Weights & Biases settings.")


class Constraint(Strict):
    """A feasibility condition on a metric of the run (Optuna's `set_constraint`: feasible when <= 0)."""

    metric: str = Field(
        description="Metric key as in metrics.jsonl (e.g. `incentive/payments/cleaning/paid`); "
        "a name without a prefix means `designer/<name>`."
    )
    relative_to: str | None = Field(
        None, description="Divide by this metric's absolute value (e.g. `collective_return`)."
    )
    at_most: float | None = Field(None, description="Feasible when the (relative) value is <= this.")
    at_least: float | None = Field(None, description="Feasible when the (relative) value is >= this.")

    @model_validator(mode="after")
    def _one_bound(self) -> Constraint:
        if (self.at_most is None) == (self.at_least is None):
            raise ValueError("give exactly one of at_most or at_least")
        return self


class SearchSpec(Strict):
    """Optuna search over the recipe (used by `incentive search`)."""

    trials: int = Field(20, ge=1, le=100_000, description="Trials in the whole study (all workers).")
    sampler: Literal["tpe", "random", "grid", "cmaes", "nsga2", "gp"] | None = Field(
        None, description="Optuna sampler (default: tpe for one objective, nsga2 for several)."
    )
    sampler_params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the sampler (e.g. n_startup_trials)."
    )
    pruner: Literal["median", "successive_halving", "hyperband", "wilcoxon", "none"] | None = Field(
        None, description="Optuna pruner (default: median for one objective; none for several)."
    )
    pruner_params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the pruner (e.g. n_warmup_steps)."
    )
    repeats: int = Field(1, ge=1, le=100, description="Seeds per design; the trial's value is their mean.")
    verify: int = Field(
        3, ge=0, le=100, description="Re-run the top designs on fresh seeds at the end (winner's curse)."
    )
    constraints: list[Constraint] = Field(default_factory=list, description="Feasibility conditions.")
    storage: str | None = Field(
        None, description="Optuna storage URL (default: a journal file in the study directory)."
    )
    study_name: str | None = Field(None, description="Study name (default: the recipe name).")
    workers: int = Field(1, ge=1, le=256, description="Worker processes on this machine.")
    timeout: float | None = Field(None, gt=0, description="Stop starting trials after this many seconds.")
    heartbeat_interval: int = Field(
        10, ge=1, description="Seconds between a running trial's heartbeats (PostgreSQL storage)."
    )
    grace_period: int = Field(
        60, ge=2, description="A trial without a heartbeat for this long is stale and re-run once."
    )
    space: dict[str, SearchParam] = Field(
        default_factory=dict, description="Recipe path (as for --set) -> searched range."
    )

    @field_validator("study_name")
    @classmethod
    def _plain_study_name(cls, name: str | None) -> str | None:
        if name is not None:
            plain_name(name, "search.study_name")
        return name


class Recipe(Strict):
    """A complete run: env, learner, incentives, curriculum, opponents, objective, budget."""

    name: str = Field(description="Recipe name; runs go to <log.dir>/<name>/<run id>/.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of every random stream in the run.")
    env: EnvSpec = Field(description="The environment.")
    learner: LearnerSpec = Field(default_factory=LearnerSpec, description="The learner.")
    incentives: list[IncentiveEntry] = Field(
        default_factory=list,
        description="Reward-shaping plugins, applied in this order (a `one_of` entry is a structure choice).",
    )
    curriculum: CurriculumSpec | None = Field(None, description="Curriculum plugin (none: default task).")
    opponents: OpponentsSpec | None = Field(None, description="Opponent sampling (none: every seat learns).")
    plugins: list[PluginSpec] = Field(
        default_factory=list, description="Further plugins (loggers, metrics) with their params."
    )
    objective: Objective | list[Objective] = Field(
        default_factory=lambda: Objective(metric="collective_return"),
        description="The designer's objective (several for multi-objective search).",
    )
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training budget.")
    evaluate: EvaluateSpec = Field(
        default_factory=EvaluateSpec, description="Evaluation on held-out test levels."
    )
    log: LogSpec = Field(default_factory=LogSpec, description="Logging.")
    search: SearchSpec | None = Field(None, description="Search settings for `incentive search`.")
    _source: str = PrivateAttr("recipe")

    @property
    def source(self) -> str:
        """Where the recipe came from (its file), for error messages."""
        return self._source

    @field_validator("name")
    @classmethod
    def _path_safe(cls, name: str) -> str:
        return plain_name(name)

    @property
    def structure_choices(self) -> list[int]:
        """Indices of `incentives` entries that are `one_of` groups (resolved per trial by search)."""
        return [i for i, entry in enumerate(self.incentives) if isinstance(entry, OneOfSpec)]

    @property
    def objectives(self) -> list[Objective]:
        """The objective(s) as a list (metrics and searched parameters, as `incentive search` sees them)."""
        return self.objective if isinstance(self.objective, list) else [self.objective]

    @property
    def metric_objectives(self) -> list[Objective]:
        """The objectives a run measures (designer metrics; `param` objectives are the search's)."""
        return [o for o in self.objectives if o.metric is not None]

    @model_validator(mode="after")
    def _a_metric_objective(self) -> Recipe:
        if not self.metric_objectives:
            raise ValueError(
                "objective: at least one objective must be a designer `metric`; a `param` objective only "
                "adds a cost to a metric (e.g. `[{metric: own_coin_rate}, {param: incentives.0.params.s, "
                "direction: minimize}]`)"
            )
        return self

    def plugin_specs(self) -> list[tuple[str, PluginSpec]]:
        """Every plugin instance of the recipe with its unique name in the run."""
        if self.structure_choices:
            index = self.structure_choices[0]
            raise RecipeError(
                f"{self.source}: field 'incentives.{index}': a `one_of` group is chosen per trial by "
                "`incentive search`; to run one design, keep one alternative (or run a study's best.yaml)"
            )
        listed = [*self.incentives, *self.plugins]
        counts: dict[str, int] = {}
        for spec in listed:
            counts[spec.plugin] = counts.get(spec.plugin, 0) + 1
        named: list[tuple[str, PluginSpec]] = []
        for index, spec in enumerate(listed):
            default = spec.plugin if counts[spec.plugin] == 1 else f"{spec.plugin}_{index}"
            named.append((spec.name or default, spec))
        for spec in (self.curriculum, self.opponents):
            if spec is not None:
                named.append((spec.name or spec.plugin, spec))
        return named


# --- loading -------------------------------------------------------------


_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}


def _refused(node: yaml.Node) -> str:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return f"{tag} values are not allowed in a recipe (use a plain string, number, list or mapping)"


# libyaml's parser when PyYAML has it: several times faster, and it refuses nesting beyond 1000 levels
# with a clean error instead of recursing
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RecipeLoader(_SafeLoader):
    """YAML's safe loader, stricter where a recipe needs it.

    A key given twice is an error (plain YAML keeps the last one silently),
    timestamps stay the strings they look like, `!!binary` and `!!set` are
    errors, and `1e6` is a float as in YAML 1.2.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping whose keys are each given once (errors name the key and both lines)."""
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        "a mapping key must be a plain value, not a list or mapping",
                        key_node.start_mark,
                    ) from None
                line = key_node.start_mark.line + 1
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} is given twice, on line {first_line[key]} and on line {line}",
                        key_node.start_mark,
                    )
                first_line[key] = line
                if value_node.tag not in _PLAIN_TAGS:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"field {key!r}: {_refused(value_node)}", value_node.start_mark
                    )
        return super().construct_mapping(node, deep=deep)

    def _refuse(self, node: yaml.Node) -> None:
        raise yaml.constructor.ConstructorError(None, None, _refused(node), node.start_mark)

    def _as_string(self, node: yaml.Node) -> str:
        return str(node.value)


RecipeLoader.add_constructor("tag:yaml.org,2002:timestamp", RecipeLoader._as_string)
RecipeLoader.add_constructor("tag:yaml.org,2002:binary", RecipeLoader._refuse)
RecipeLoader.add_constructor("tag:yaml.org,2002:set", RecipeLoader._refuse)
RecipeLoader.add_constructor("tag:yaml.org,2002:omap", RecipeLoader._refuse)
RecipeLoader.add_constructor("tag:yaml.org,2002:pairs", RecipeLoader._refuse)
RecipeLoader.add_constructor(None, RecipeLoader._refuse)  # any other tag (`!foo`)
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Parse recipe YAML with `RecipeLoader`.

    Raises:
        yaml.YAMLError: malformed YAML, a duplicate key, a refused tag.
        RecursionError: nesting too deep for the parser.

    """
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506  (a SafeLoader subclass)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}: {problem}"


def check_plain(data: Any, *, source: str, path: str = "", depth: int = 0) -> None:
    """Check that `data` is JSON-like and at most `MAX_DEPTH` deep, else a RecipeError naming the field.

    JSON-like: mappings with string keys, lists, None, booleans, numbers, strings.
    """
    where = path or "the recipe"
    if depth > MAX_DEPTH:
        raise RecipeError(f"{source}: field '{where}' is nested more than {MAX_DEPTH} levels deep")
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise RecipeError(
                    f"{source}: field '{where}': key {key!r} is a {type(key).__name__}, "
                    "keys must be strings (quote it)"
                )
            check_plain(value, source=source, path=f"{path}.{key}" if path else key, depth=depth + 1)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            check_plain(value, source=source, path=f"{path}.{index}" if path else str(index), depth=depth + 1)
    elif not isinstance(data, str | int | float | bool | type(None)):
        raise RecipeError(
            f"{source}: field '{where}': a {type(data).__name__} value is not allowed "
            "(use a string, number, boolean, list or mapping)"
        )


def format_validation_error(error: ValidationError, *, source: str, prefix: str = "") -> str:
    """One paragraph per problem: the source, the field path, what was expected and given."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(p) for p in (*([prefix] if prefix else []), *problem["loc"]))
        given = problem.get("input")
        shown = json.dumps(given, default=str) if not isinstance(given, dict) else "a mapping"
        if problem["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown field '{path}' (remove it or check its spelling)")
        elif problem["type"] == "missing":
            lines.append(f"{source}: field '{path}' is required")
        else:
            lines.append(f"{source}: field '{path}': {problem['msg']} (given: {shown})")
    return "\n".join(lines)


def closest(name: str, options: list[str]) -> str:
    """' Did you mean X?' for the nearest option, or ''."""
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def parse_override(text: str) -> tuple[str, Any]:
    """`path=value` -> (path, value); the value is read as YAML (so 3, 0.5, true, [1, 2] work)."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected path=value, e.g. --set learner.lr=0.001")
    path, _, raw = text.partition("=")
    path = path.strip()
    if not path:
        raise RecipeError(f"--set {text!r}: the path before '=' is empty")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"--set {text!r}: the value is not valid YAML{_yaml_problem(exc)}") from None
    except RecursionError:
        raise RecipeError(f"--set {text!r}: the value is nested too deeply") from None
    check_plain(value, source=f"--set {text!r}", path=path)
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """Set each dotted path (list items by index) in a copy of the raw recipe data.

    A path may create a missing key only inside free-form `params` mappings
    or at a field the schema knows; anything else is left to validation,
    which names it.
    """
    data = copy.deepcopy(data)
    for path, value in overrides:
        parts = path.split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                node = node[_list_index(part, node, where, path)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise RecipeError(f"--set {path}: '{where}' is a value, not a section")
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(last, node, path, path)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise RecipeError(f"--set {path}: '{'.'.join(parts[:-1])}' is a value, not a section")
    return data


def _list_index(part: str, node: list, where: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise RecipeError(f"--set {path}: '{where}' needs an index from 0 to {len(node) - 1}, got {part!r}")
    return int(part)


def read_recipe_data(path: Path) -> dict[str, Any]:
    """The raw mapping of a recipe file, or a RecipeError naming the file."""
    if not path.exists():
        raise RecipeError(f"{path}: no such recipe file")
    if path.is_dir():
        raise RecipeError(f"{path}: is a directory, expected a recipe YAML file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RecipeError(
            f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at line {line}, byte offset "
            f"{exc.start}); save the recipe as UTF-8"
        ) from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: malformed YAML{_yaml_problem(exc)}") from None
    except RecursionError:
        raise RecipeError(f"{path}: the YAML is nested too deeply (more than {MAX_DEPTH} levels)") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping, got {type(data).__name__}")
    check_plain(data, source=str(path))
    return data


def validate_recipe(data: dict[str, Any], *, source: str) -> Recipe:
    """A `Recipe` from raw data, or a RecipeError listing every problem."""
    check_plain(data, source=source)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, source=source)) from None
    recipe._source = source
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file.

    Args:
        path: the YAML file.
        overrides: `path=value` strings, applied in order.

    Raises:
        RecipeError: the file is missing or malformed, or a field is invalid.

    """
    path = Path(path)
    data = read_recipe_data(path)
    parsed = [parse_override(text) for text in overrides or []]
    data = apply_overrides(data, parsed)
    source = str(path) + (" (with --set overrides)" if parsed else "")
    return validate_recipe(data, source=source)
