"""Helpers for the hand-computed plugin tests: a plugin set up on a fake run, one shaped step."""

from __future__ import annotations

from types import SimpleNamespace

import torch


def close(actual: torch.Tensor, expected) -> None:
    """`actual` equals the hand-computed float32 numbers (torch's default tolerances)."""
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32))


def set_up(plugin_class, num_envs: int = 1, agents: int = 2, **params):
    """A plugin with these params, after `incentive_setup` on a run of `agents` agents and E envs."""
    plugin = plugin_class(plugin_class.Params(**params))
    plugin.incentive_setup(SimpleNamespace(agents=[f"agent_{i}" for i in range(agents)], num_envs=num_envs))
    return plugin


def shape_reward(plugin, reward, done=None, *, terms: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """The plugin's terms for one step of rewards [E, A] (no episode ends unless `done` [E])."""
    reward = torch.tensor(reward)
    done = torch.zeros(reward.shape[0], dtype=torch.bool) if done is None else torch.tensor(done)
    out = plugin.incentive_shape_reward(SimpleNamespace(reward=reward, done=done))
    assert set(out) == set(terms)
    return tuple(out[name] for name in terms)
