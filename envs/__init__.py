"""Batched multi-agent environments, their PettingZoo views, and the env registry.

The names below are imported on first use, so that listing envs (`incentive
envs`) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from incentive.envs.base import BatchedEnv, EnvParams, TimeStep
    from incentive.envs.pettingzoo_view import ParallelView
    from incentive.envs.random import InstanceRandom
    from incentive.envs.registry import available_envs, load_env_class

__all__ = [
    "BatchedEnv",
    "EnvParams",
    "InstanceRandom",
    "ParallelView",
    "TimeStep",
    "available_envs",
    "load_env_class",
]

_HOMES = {
    "BatchedEnv": "base",
    "EnvParams": "base",
    "TimeStep": "base",
    "ParallelView": "pettingzoo_view",
    "InstanceRandom": "random",
    "available_envs": "registry",
    "load_env_class": "registry",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
