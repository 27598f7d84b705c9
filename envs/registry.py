"""The env registry: every env, built-in or third-party, is an entry point.

Envs register in the entry-point group `incentive.envs` (name -> BatchedEnv
subclass), the way plugins register in `incentive.plugins`.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from incentive.envs.base import BatchedEnv

__all__ = ["ENV_GROUP", "available_envs", "group_entry_points", "load_env_class"]

ENV_GROUP = "incentive.envs"

_CACHE: dict[str, tuple[tuple, tuple[EntryPoint, ...]]] = {}


def _installed_state() -> tuple:
    """What changes when a package is installed or removed: sys.path and its folders' mtimes."""
    state = []
    for folder in sys.path:
        try:
            state.append((folder, os.stat(folder or ".").st_mtime_ns))
        except OSError:
            state.append((folder, None))
    return tuple(state)


def group_entry_points(group: str) -> tuple[EntryPoint, ...]:
    """The entry points of `group`, sorted by name.

    Scanning every installed distribution's metadata takes tens of
    milliseconds, and one command asks several times; the answer is kept
    until sys.path or one of its folders changes (an install or uninstall).
    """
    state = _installed_state()
    cached = _CACHE.get(group)
    if cached is None or cached[0] != state:
        cached = (state, tuple(sorted(entry_points(group=group), key=lambda e: e.name)))
        _CACHE[group] = cached
    return cached[1]


def available_envs() -> dict[str, str]:
    """Env id -> the entry point's import path, sorted by id."""
    return {ep.name: ep.value for ep in group_entry_points(ENV_GROUP)}


def load_env_class(env_id: str) -> type[BatchedEnv]:
    """Import the env class registered as `env_id`.

    Raises:
        KeyError: no env has that id.

    """
    for ep in group_entry_points(ENV_GROUP):
        if ep.name == env_id:
            return ep.load()
    raise KeyError(env_id)
