"""The env registry: every env, built-in or third-party, is an entry point.

Envs register in the entry-point group `incentive.envs` (name -> BatchedEnv
subclass), the way plugins register in `incentive.plugins`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from incentive.envs.base import BatchedEnv

__all__ = ["ENV_GROUP", "available_envs", "load_env_class"]

ENV_GROUP = "incentive.envs"


def available_envs() -> dict[str, str]:
    """Env id -> the entry point's import path, sorted by id."""
    return {ep.name: ep.value for ep in sorted(entry_points(group=ENV_GROUP), key=lambda e: e.name)}


def load_env_class(env_id: str) -> type[BatchedEnv]:
    """Import the env class registered as `env_id`.

    Raises:
        KeyError: no env has that id.

    """
    for ep in entry_points(group=ENV_GROUP):
        if ep.name == env_id:
            return ep.load()
    raise KeyError(env_id)
