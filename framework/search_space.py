"""What a search trial may change: the recipe's `search.space`, its incentive structure, plugin suggestions.

A trial's recipe is built define-by-run (Optuna samples a value only when
the trial needs it), in the base recipe's coordinates, in this order:

1. Structure. Each `incentives` entry marked `optional: true` is switched on
   or off (Optuna parameter `<label>.on`); each `one_of` group picks one
   alternative or none (parameter `incentives.<i>`, value the alternative's
   label: its `name`, its plugin, or `none`). An entry that is on samples its
   own `search:` params as `<label>.<param>`; an entry that is off samples
   nothing, so conditional parameters never appear for a plugin that is off.
2. `search.space`: recipe paths as for `--set` (`learner.lr`,
   `incentives.0.params.alpha`, `env.params.x`); a path into an entry that is
   off in this trial is not sampled.
3. Plugins of the resulting recipe add overrides through the
   `incentive_search_space` hook (only plugins that are on are asked).

The trial's recipe is then a plain recipe (no `one_of`, no `optional`, no
per-plugin `search`), runnable as is by `incentive run`.

`check_search` validates all of this before the first trial: every searched
path exists, every range bound and choice gives a valid recipe, naming the
field.
"""

from __future__ import annotations

import re
from typing import Any

import optuna

from incentive.errors import PluginError, RecipeError
from incentive.plugin_manager import Hooks, make_plugin_manager
from incentive.recipe import (
    OneOfSpec,
    PluginSpec,
    Recipe,
    SearchParam,
    apply_overrides,
    option_label,
    validate_recipe,
)

__all__ = ["check_search", "searched_params", "structure_labels", "suggest", "trial_recipe"]

_INCENTIVE_PATH = re.compile(r"incentives\.(\d+)(\.|$)")


def suggest(trial: optuna.Trial, name: str, space: SearchParam) -> Any:
    """Sample one value from its searched range or choices under the Optuna parameter `name`."""
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    if space.int:
        step = int(space.step) if space.step else 1
        return trial.suggest_int(name, int(space.low), int(space.high), step=step, log=space.log)
    return trial.suggest_float(name, space.low, space.high, step=space.step, log=space.log)


def structure_labels(recipe: Recipe) -> list[str]:
    """Labels of every entry that search may switch (optional entries and one_of alternatives)."""
    labels = []
    for entry in recipe.incentives:
        if isinstance(entry, OneOfSpec):
            labels += [option_label(option) for option in entry.one_of if option is not None]
        elif entry.optional or entry.search:
            labels.append(option_label(entry))
    return labels


def searched_params(recipe: Recipe) -> dict[str, SearchParam]:
    """Every numeric or categorical parameter a trial may sample, by its Optuna name (no `.on` switches)."""
    params: dict[str, SearchParam] = {}
    for entry in recipe.incentives:
        options = entry.one_of if isinstance(entry, OneOfSpec) else [entry]
        for option in options:
            if option is not None:
                params.update({f"{option_label(option)}.{name}": p for name, p in option.search.items()})
    if recipe.search is not None:
        params.update(recipe.search.space)
    return params


def _plain_entry(spec: PluginSpec, values: dict[str, Any]) -> dict[str, Any]:
    """A plugin entry as a run sees it: its params plus the sampled ones, without search markers."""
    entry = spec.model_dump(mode="json", exclude={"optional", "search"})
    entry["params"] = apply_overrides(entry["params"], list(values.items()))
    return entry


def _structure(trial: optuna.Trial, recipe: Recipe) -> tuple[list[dict[str, Any] | None], set[int]]:
    """Each base entry resolved for this trial (None where off), and the indices that are off."""
    resolved: list[dict[str, Any] | None] = []
    off: set[int] = set()
    for index, entry in enumerate(recipe.incentives):
        if isinstance(entry, OneOfSpec):
            labels = [option_label(option) for option in entry.one_of]
            label = trial.suggest_categorical(entry.name or f"incentives.{index}", labels)
            chosen = entry.one_of[labels.index(label)]
        elif entry.optional:
            chosen = entry if trial.suggest_categorical(f"{option_label(entry)}.on", [True, False]) else None
        else:
            chosen = entry
        if chosen is None:
            resolved.append(None)
            off.add(index)
            continue
        label = option_label(chosen)
        values = {name: suggest(trial, f"{label}.{name}", space) for name, space in chosen.search.items()}
        resolved.append(_plain_entry(chosen, values))
    return resolved, off


def _entry_index(path: str) -> int | None:
    match = _INCENTIVE_PATH.match(path)
    return int(match.group(1)) if match else None


def trial_recipe(trial: optuna.Trial, recipe: Recipe, hooks: Hooks | None = None) -> Recipe:
    """The plain recipe of one trial: structure, then `search.space`, then plugin suggestions.

    Args:
        trial: the Optuna trial (or a `FixedTrial` to rebuild a known design).
        recipe: the base recipe with its `search` section.
        hooks: hooks whose `incentive_search_space` is asked; default: the
            plugins of the trial's own recipe (only those that are on).

    Raises:
        PluginError: two plugins (or a plugin and the recipe) set the same path.
        RecipeError: the resulting recipe is invalid (naming the field).

    """
    resolved, off = _structure(trial, recipe)
    data = recipe.model_dump(mode="json")
    data["incentives"] = resolved
    overrides: dict[str, Any] = {}
    if recipe.search is not None:
        for path, space in recipe.search.space.items():
            if _entry_index(path) in off:
                continue  # conditional: this plugin is off in this trial
            overrides[path] = suggest(trial, path, space)
    data = apply_overrides(data, list(overrides.items()))
    data["incentives"] = [entry for entry in data["incentives"] if entry is not None]
    source = f"{recipe.source} (trial {trial.number})"
    chosen = validate_recipe(data, source=source)
    if hooks is None:
        hooks = Hooks(make_plugin_manager(chosen.model_copy(update={"log": _no_wandb(chosen)})))
    suggested_paths: dict[str, Any] = {}
    for plugin, suggested in hooks.call("incentive_search_space", trial=trial, recipe=chosen):
        for path, value in (suggested or {}).items():
            if path in overrides or path in suggested_paths:
                raise PluginError(plugin, "incentive_search_space", f"path {path!r} is already searched")
            suggested_paths[path] = value
    if not suggested_paths:
        return chosen
    data = apply_overrides(chosen.model_dump(mode="json"), list(suggested_paths.items()))
    return validate_recipe(data, source=source)


def _no_wandb(recipe: Recipe):
    return recipe.log.model_copy(update={"wandb": recipe.log.wandb.model_copy(update={"mode": "disabled"})})


# --- validation before the first trial ---------------------------------------


def _bounds(space: SearchParam) -> list[Any]:
    if space.choices is not None:
        return list(space.choices)
    if space.int:
        return [int(space.low), int(space.high)]
    return [space.low, space.high]


def _only(recipe: Recipe, space: dict[str, SearchParam]) -> Recipe:
    """The recipe with only these `search.space` paths (to check each one alone)."""
    return recipe.model_copy(update={"search": recipe.search.model_copy(update={"space": space})})


def _check_values(recipe: Recipe, where: str, designs: list[dict[str, Any]], build) -> None:
    """Every extreme design must give a valid recipe, whose plugins and env accept their params."""
    for design in designs:
        try:
            chosen = trial_recipe(optuna.trial.FixedTrial(design), recipe)
            build(chosen)
        except (RecipeError, PluginError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in design.items() if not k.endswith(".on"))
            raise RecipeError(
                f"{recipe.source}: field '{where}': the searched value ({shown}) is invalid: {exc}"
            ) from None


def check_search(recipe: Recipe, build) -> None:
    """Validate the search before any trial: paths exist, ranges and choices give valid recipes.

    Args:
        recipe: the base recipe with its `search` section.
        build: called with each extreme trial recipe; builds what a run builds
            first (plugins, the env with one instance) so their own params are
            validated too.

    Raises:
        RecipeError: naming the searched field and what is wrong with it.

    """
    space = recipe.search.space if recipe.search is not None else {}
    if not space and not any(
        isinstance(entry, OneOfSpec) or entry.optional or entry.search for entry in recipe.incentives
    ):
        raise RecipeError(
            f"{recipe.source}: field 'search.space': nothing to search: give recipe paths with ranges "
            "(e.g. `learner.lr: {low: 1.0e-4, high: 1.0e-2, log: true}`), or mark incentives `optional`, "
            "group them with `one_of`, or give a plugin entry its own `search:`"
        )
    labels = structure_labels(recipe)
    for label in labels:
        if labels.count(label) > 1:
            raise RecipeError(
                f"{recipe.source}: field 'incentives': two switchable entries are called {label!r}; "
                "give them distinct `name`s"
            )
    # a base design: every optional entry on, every one_of on its first alternative, lows everywhere
    base: dict[str, Any] = {}
    for index, entry in enumerate(recipe.incentives):
        if isinstance(entry, OneOfSpec):
            base[entry.name or f"incentives.{index}"] = option_label(entry.one_of[0])
            for option in entry.one_of:
                if option is not None:
                    for name, param in option.search.items():
                        base[f"{option_label(option)}.{name}"] = _bounds(param)[0]
        else:
            if entry.optional:
                base[f"{option_label(entry)}.on"] = True
            for name, param in entry.search.items():
                base[f"{option_label(entry)}.{name}"] = _bounds(param)[0]
    structural = dict(base)
    _check_values(_only(recipe, {}), "incentives", [structural], build)
    for path, param in space.items():  # each path alone first, so an error names it
        index = _entry_index(path)
        if (
            index is not None
            and index < len(recipe.incentives)
            and isinstance(recipe.incentives[index], OneOfSpec)
        ):
            raise RecipeError(
                f"{recipe.source}: field 'search.space.{path}': incentives.{index} is a one_of group; "
                "search an alternative's params with its own `search:` mapping"
            )
        alone = [{**structural, path: v} for v in _bounds(param)]
        _check_values(_only(recipe, {path: param}), f"search.space.{path}", alone, build)
        base[path] = _bounds(param)[0]
    _check_values(recipe, "search.space", [base], build)
    for index, entry in enumerate(recipe.incentives):
        options = entry.one_of if isinstance(entry, OneOfSpec) else [entry]
        for option in options:
            if option is None:
                continue
            label = option_label(option)
            design = dict(base)
            if isinstance(entry, OneOfSpec):
                design[entry.name or f"incentives.{index}"] = label
            for name, param in option.search.items():
                where = f"incentives.{index}" + (f".one_of.{label}" if isinstance(entry, OneOfSpec) else "")
                values = [{**design, f"{label}.{name}": v} for v in _bounds(param)]
                _check_values(recipe, f"{where}.search.{name}", values, build)
            if isinstance(entry, OneOfSpec):
                _check_values(recipe, f"incentives.{index}.one_of.{label}", [design], build)
