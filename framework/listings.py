"""What `incentive plugins` and `incentive envs` list, read without importing torch.

Listing should answer at once, but plugin and env modules import torch (a
second or more). So a listing first reads the class from its module's
*source* (Python's `ast`, nothing executed): its docstring and the
`incentive_*` methods decorated with `hookimpl`. A class that derives from
another inherits its hooks: each base named in the class statement is read
the same way, from the module it is imported from (`from M import Base`) or
from the class's own module, and its hooks count unless the class defines a
method of that name itself (bases are read in order, like a single-inheritance
method lookup). A class whose source cannot be read that way (defined
elsewhere than its entry point names, or with a base reached any other way,
such as `module.Base` or a C extension) is imported instead, which gives the
same answer, only slower. `envs --details ID` imports the env to show its
parameters, agents and spaces.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

__all__ = ["ListedEnv", "ListedPlugin", "env_details", "list_envs", "list_plugins", "static_class"]

PLUGIN_GROUP = "incentive.plugins"
ENV_GROUP = "incentive.envs"
HOOK_PREFIX = "incentive_"


@dataclass(frozen=True)
class StaticClass:
    """A class as read from source: its docstring, the hook methods it defines, its module's docstring."""

    docstring: str
    hooks: list[str]
    module_docstring: str


@dataclass(frozen=True)
class ListedPlugin:
    """One row of `incentive plugins`."""

    name: str
    families: list[str]
    source: str
    import_path: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass(frozen=True)
class ListedEnv:
    """One row of `incentive envs`."""

    id: str
    summary: str
    source: str
    import_path: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _is_hookimpl(decorator: ast.expr, aliases: set[str]) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Name):
        return target.id in aliases
    return isinstance(target, ast.Attribute) and target.attr == "hookimpl"


def _module_tree(module: str) -> ast.Module | None:
    """The parsed source of a module, found without importing it (None: no readable `.py` source)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _base_path(base: ast.expr, module: str, tree: ast.Module) -> str | None:
    """`module:Class` of a base class named in a class statement, or None when only an import can tell."""
    if not isinstance(base, ast.Name):
        return None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if (alias.asname or alias.name) == base.id:
                    return f"{node.module}:{alias.name}"
        if isinstance(node, ast.ClassDef) and node.name == base.id:
            return f"{module}:{base.id}"
    return None


def static_class(
    import_path: str, *, inherited_hooks_matter: bool = True, _seen: frozenset[str] = frozenset()
) -> StaticClass | None:
    """Read `module:Class` from source without running it; None where only an import can tell.

    Args:
        import_path: the entry point's `module:Class`.
        inherited_hooks_matter: a class with base classes may inherit hooks, so each base
            is read from source too (plugins); envs need only the docstring.
        _seen: the classes being read further up (a cycle is left to the import).

    """
    module, _, qualname = import_path.partition(":")
    if not qualname or "." in qualname or import_path in _seen:
        return None
    tree = _module_tree(module)
    if tree is None:
        return None
    aliases = {"hookimpl"}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            aliases |= {a.asname or a.name for a in node.names if a.name == "hookimpl"}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == qualname:
            methods = [item for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)]
            own = [
                item.name
                for item in methods
                if item.name.startswith(HOOK_PREFIX)
                and any(_is_hookimpl(d, aliases) for d in item.decorator_list)
            ]
            inherited: list[str] = []
            if inherited_hooks_matter:
                defined = {item.name for item in methods}
                for base in node.bases:
                    if isinstance(base, ast.Name) and base.id == "object":
                        continue
                    path = _base_path(base, module, tree)
                    found = None if path is None else static_class(path, _seen=_seen | {import_path})
                    if found is None:
                        return None  # a base only an import can read
                    inherited += [
                        hook for hook in found.hooks if hook not in defined and hook not in inherited
                    ]
            return StaticClass(
                docstring=ast.get_docstring(node) or "",
                hooks=own + [hook for hook in inherited if hook not in own],
                module_docstring=ast.get_docstring(tree) or "",
            )
    return None


def _source(ep: Any) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else "unknown"


def list_plugins() -> list[ListedPlugin]:
    """Every installed plugin, sorted by name, with the hook families it implements."""
    from incentive.hookspecs import FAMILIES

    rows = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        error = None
        found = static_class(ep.value)
        if found is not None:
            families = list(dict.fromkeys(family for hook, family in FAMILIES.items() if hook in found.hooks))
        else:
            from incentive.plugin_manager import hook_families

            try:
                families = hook_families(ep.load())
            except Exception as exc:  # a broken third-party package must not break the listing
                families, error = [], f"fails to import: {type(exc).__name__}: {exc}"
        rows.append(ListedPlugin(ep.name, families, _source(ep), ep.value, error))
    return rows


def _summary(docstring: str) -> str:
    return docstring.strip().splitlines()[0].strip() if docstring.strip() else ""


def list_envs() -> list[ListedEnv]:
    """Every installed env, sorted by id, with its docstring's summary line (nothing is built)."""
    rows = []
    for ep in sorted(entry_points(group=ENV_GROUP), key=lambda e: e.name):
        error = None
        found = static_class(ep.value, inherited_hooks_matter=False)
        if found is not None:
            summary = _summary(found.docstring) or _summary(found.module_docstring)
        else:
            try:
                cls = ep.load()
                summary = _summary(cls.__doc__ or "")
            except Exception as exc:
                summary, error = "", f"fails to import: {type(exc).__name__}: {exc}"
        rows.append(ListedEnv(ep.name, summary, _source(ep), ep.value, error))
    return rows


def _field_lines(model: Any) -> list[str]:
    lines = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        kind = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
        default = (
            "required" if info.is_required() else f"default {info.get_default(call_default_factory=True)!r}"
        )
        lines.append(f"  {name} ({kind}, {default}): {info.description or ''}".rstrip(": "))
    return lines


def env_details(env_id: str) -> str:
    """The env's page: its module docstring, its class, its parameters, and (if it builds) agents and spaces.

    Raises:
        KeyError: no env has that id.

    """
    import inspect

    from incentive.envs.registry import load_env_class

    cls = load_env_class(env_id)
    module = inspect.getmodule(cls)
    parts = [f"{env_id}: {cls.__module__}:{cls.__qualname__}", ""]
    parts += [inspect.cleandoc(cls.__doc__ or ""), ""]
    parts += [inspect.cleandoc(module.__doc__ or "") if module else "", ""]
    params = getattr(cls, "Params", None)
    if params is not None:
        parts.append("parameters (recipe: env.params):")
        parts += _field_lines(params)
        parts.append("")
        required = [name for name, info in params.model_fields.items() if info.is_required()]
        if required:
            parts.append(f"agents and spaces depend on the required parameters ({', '.join(required)}).")
            return "\n".join(parts).rstrip() + "\n"
    try:
        env = cls(num_envs=1, params=params())
    except Exception as exc:
        parts.append(f"with default parameters the env does not build: {type(exc).__name__}: {exc}")
        return "\n".join(parts).rstrip() + "\n"
    parts.append("with default parameters:")
    for agent in env.possible_agents:
        parts.append(
            f"  {agent}: observation {env.observation_spaces[agent]}, action {env.action_spaces[agent]}"
        )
    if env.metric_names:
        parts.append(f"  designer metrics: {', '.join(env.metric_names)}")
    return "\n".join(parts).rstrip() + "\n"
