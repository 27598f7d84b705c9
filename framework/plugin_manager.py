"""Plugin discovery, the per-run plugin manager, and calling hooks plugin by plugin.

Every plugin, built-in or third-party, is a class listed in the entry-point
group `incentive.plugins`. A class has a `Params` pydantic model (validated
from the recipe) and `@hookimpl` methods; a run registers one instance per
recipe entry, so the same plugin may run twice with different params.
"""

from __future__ import annotations

import inspect
import traceback
from dataclasses import dataclass
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from incentive import hookspecs
from incentive.envs.registry import group_entry_points
from incentive.errors import PluginError, RecipeError, StopRun
from incentive.hookspecs import FAMILIES
from incentive.markers import PROJECT
from incentive.recipe import PluginSpec, Recipe, closest, format_validation_error

__all__ = [
    "PLUGIN_GROUP",
    "Hooks",
    "PluginInfo",
    "available_plugins",
    "hook_families",
    "make_plugin_manager",
]

PLUGIN_GROUP = "incentive.plugins"


@dataclass(frozen=True)
class PluginInfo:
    """A plugin as discovered: its entry-point name, import path and distribution."""

    name: str
    value: str
    source: str

    def load(self) -> type:
        """Import the plugin class."""
        for ep in group_entry_points(PLUGIN_GROUP):
            if ep.name == self.name:
                return ep.load()
        raise KeyError(self.name)


_FOUND: list[tuple[tuple, dict[str, PluginInfo]]] = []


def available_plugins() -> dict[str, PluginInfo]:
    """Every installed plugin by name (the entry-point group `incentive.plugins`)."""
    points = group_entry_points(PLUGIN_GROUP)
    if _FOUND and _FOUND[0][0] is points:  # reading distributions' metadata is slow: once per scan
        return dict(_FOUND[0][1])
    found = {}
    for ep in points:
        dist = ep.dist
        source = f"{dist.name} {dist.version}" if dist is not None else "unknown"
        found[ep.name] = PluginInfo(name=ep.name, value=ep.value, source=source)
    _FOUND[:] = [(points, found)]
    return dict(found)


def hook_families(cls: type) -> list[str]:
    """The hook families a plugin class implements, e.g. ['reward shaping', 'state']."""
    families = []
    for attr, family in FAMILIES.items():
        method = getattr(cls, attr, None)
        if method is not None and hasattr(method, f"{PROJECT}_impl"):
            if family not in families:
                families.append(family)
    return families


SECTION_FAMILIES = {
    "incentives": "reward shaping",
    "curriculum": "curriculum",
    "opponents": "opponent sampling",
}
"""The hook family a plugin must implement to be listed in each recipe section."""


def where_in_plugin(exc: BaseException, code: Any) -> str:
    """' (at file:line in function; ...)' for the last traceback frames inside the plugin's own file.

    Args:
        exc: the exception the plugin raised.
        code: the plugin's object, class or function (its source file is searched for).

    """
    own_code = (
        code if inspect.isclass(code) or inspect.ismodule(code) or inspect.isroutine(code) else type(code)
    )
    try:
        target = inspect.getsourcefile(own_code)
    except TypeError:  # built into Python: no file of its own
        target = None
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if target is not None and f.filename == target]
    shown = own[-2:] or frames[-1:]
    if not shown:
        return ""
    return " (at " + "; ".join(f"{f.filename}:{f.lineno} in {f.name}" for f in shown) + ")"


def plugin_failure(exc: BaseException, code: Any) -> str:
    """What a plugin raised, in one line, with where in its code."""
    if isinstance(exc, SystemExit):
        what = f"called sys.exit({exc.code!r}) / raised SystemExit: a plugin may not end the process"
    else:
        text = " ".join(str(exc).split())
        what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return what + where_in_plugin(exc, code)


def _params_model(cls: type) -> type[BaseModel] | None:
    return getattr(cls, "Params", None)


def _instantiate(name: str, spec: PluginSpec, where: str, plugins: dict[str, PluginInfo], source: str) -> Any:
    if spec.plugin not in plugins:
        known = sorted(plugins)
        raise RecipeError(
            f"{source}: field '{where}.plugin': unknown plugin {spec.plugin!r}.{closest(spec.plugin, known)} "
            f"Installed plugins: {', '.join(known) or 'none'}."
        )
    info = plugins[spec.plugin]
    try:
        cls = info.load()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a broken third-party package must not crash (or end) the CLI
        raise PluginError(
            spec.plugin,
            "import",
            f"{info.value} ({info.source}) failed to import: {plugin_failure(exc, None)}",
        ) from exc
    section = where.split(".")[0]
    family = SECTION_FAMILIES.get(section)
    if family is not None and family not in hook_families(cls):
        raise RecipeError(
            f"{source}: field '{where}.plugin': plugin {spec.plugin!r} does not implement the "
            f"{family} hooks a plugin under '{section}' needs (it implements: "
            f"{', '.join(hook_families(cls)) or 'none'}); list it where it belongs, e.g. under 'plugins'"
        )
    model = _params_model(cls)
    if model is None:
        if spec.params:
            raise RecipeError(f"{source}: field '{where}.params': plugin {spec.plugin!r} takes no parameters")
        return cls()
    try:
        params = model.model_validate(spec.params)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(exc, source=source, prefix=f"{where}.params")) from None
    try:
        return cls(params)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise PluginError(name, "__init__", plugin_failure(exc, cls)) from exc


def _recipe_path(recipe: Recipe, spec: PluginSpec) -> str:
    for field in ("incentives", "plugins"):
        for index, listed in enumerate(getattr(recipe, field)):
            if listed is spec:
                return f"{field}.{index}"
    return "curriculum" if spec is recipe.curriculum else "opponents"


def make_plugin_manager(recipe: Recipe | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with every hook spec and the recipe's plugins.

    Registers one instance per plugin entry of the recipe under its run name,
    plus the built-in W&B logger configured by `log.wandb`, then checks that
    every `incentive_*` method matches a spec.

    Raises:
        RecipeError: an unknown plugin name or invalid params (naming the field).
        PluginError: a plugin that fails to import, construct or register.

    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    if recipe is None:
        return pm
    plugins = available_plugins()
    entries = [(name, spec, _recipe_path(recipe, spec)) for name, spec in recipe.plugin_specs()]
    if recipe.log.wandb.mode != "disabled":
        logger = PluginSpec(plugin="wandb", params=recipe.log.wandb.model_dump())
        entries.append(("wandb", logger, "log.wandb"))
    seen: set[str] = set()
    for name, spec, where in entries:
        if name in seen:
            raise RecipeError(f"{recipe.source}: field '{where}.name': two plugins are named {name!r}")
        seen.add(name)
        instance = _instantiate(name, spec, where, plugins, recipe.source)
        try:
            pm.register(instance, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(name, "register", str(exc)) from exc
        refuse_wrappers(pm, instance, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(getattr(exc, "plugin", "?"), "check_pending", str(exc)) from exc
    return pm


def refuse_wrappers(pm: pluggy.PluginManager, instance: object, name: str) -> None:
    """Every hook is a plain call whose result carries its plugin's name: no hook wrappers."""
    for caller in pm.get_hookcallers(instance) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is instance and (impl.hookwrapper or impl.wrapper):
                raise PluginError(
                    name,
                    "register",
                    f"its {caller.name} is a hook wrapper (hookwrapper=True or wrapper=True); incentive "
                    "calls hooks one plugin at a time, so drop that option (tryfirst/trylast set the order)",
                )


def call_order(impls: list[pluggy.HookImpl]) -> list[pluggy.HookImpl]:
    """Implementations in the order `Hooks` calls them: `tryfirst` ones, the rest, `trylast` ones.

    Within each group, registration (recipe) order. pluggy's own list keeps
    `trylast` at the front and `tryfirst` at the back, because pluggy calls
    it from the back; read front to back, as `Hooks` does, the markers would
    be inverted.
    """
    first = [impl for impl in impls if impl.tryfirst]
    last = [impl for impl in impls if impl.trylast]
    middle = [impl for impl in impls if not impl.tryfirst and not impl.trylast]
    return first + middle + last


class Hooks:
    """Calls hooks one plugin at a time, in recipe order, so errors and results carry names.

    `tryfirst` and `trylast` move an implementation to the front or the back
    (`call_order`). Hook wrappers are refused at registration (`refuse_wrappers`).

    Args:
        pm: the run's plugin manager.

    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        return call_order(getattr(self.pm.hook, hook).get_hookimpls())

    def _invoke(self, impl: pluggy.HookImpl, hook: str, kwargs: dict[str, Any]) -> Any:
        try:
            return impl.function(*[kwargs[name] for name in impl.argnames])
        except (PluginError, StopRun, KeyboardInterrupt):
            raise
        except BaseException as exc:  # SystemExit too: a plugin may not end a run silently
            raise PluginError(impl.plugin_name, hook, plugin_failure(exc, impl.plugin)) from exc

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """(plugin name, result) for every implementation.

        Raises:
            PluginError: an implementation raised; names the plugin and hook.

        """
        return [(impl.plugin_name, self._invoke(impl, hook, kwargs)) for impl in self._impls(hook)]

    def first(self, hook: str, **kwargs: Any) -> tuple[str | None, Any]:
        """The first non-None result and its plugin's name, or (None, None)."""
        for impl in self._impls(hook):
            result = self._invoke(impl, hook, kwargs)
            if result is not None:
                return impl.plugin_name, result
        return None, None

    def call_plugin(self, plugin: str, hook: str, **kwargs: Any) -> Any:
        """One named plugin's result for `hook` (None if it does not implement it)."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin_name == plugin:
                return self._invoke(impl, hook, kwargs)
        return None
