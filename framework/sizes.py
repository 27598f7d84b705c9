"""Sizes a run will need, checked before anything big is allocated.

A recipe whose sizes cannot fit (`env.num_envs: 100_000_000`, `hidden_sizes:
[2147483648]`) should not validate and then die in a torch allocation
traceback. `check_sizes` estimates, from an env built with one instance, the
memory of the run's big pieces, in bytes:

- env state: the one-instance env's tensors (its `state_keys` and random
  streams) times E;
- rollout buffers: T x E x A x (F + 7) x 4 (features of size F; actions,
  log-probabilities, values, rewards, incentives, advantages, returns; masks
  and done flags), plus T x E x A x n for action masks;
- networks: actor and critic weights and biases, times 4 (parameters,
  gradients and Adam's two moments), per agent without parameter sharing;
- the update: activations of one minibatch through both networks, forward
  and backward (T x E x A / minibatches rows, 3 x 4 bytes per hidden unit).

It refuses, naming the fields and the estimate, when the total exceeds the
memory available now (`MemAvailable` of /proc/meminfo; unchecked where that
is unknown), and when `learner.minibatches` exceeds the batch T x E x A.

`episode_warnings` says when the rollout is shorter than the env's episode
(`learner.rollout_steps` < its `episode_length` or `max_steps` param): no
episode can finish within one iteration, and designer metrics, which are
measured on finished episodes, appear only in the iterations where episodes
end (every ceil(horizon / T) iterations when all instances run in step), or
never, when the whole run is shorter than one episode. Such recipes are
legal (an episode simply spans iterations, its values bootstrapped), so
this warns instead of refusing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from incentive.conv_torso import check_conv
from incentive.envs.base import BatchedEnv
from incentive.errors import RecipeError
from incentive.recipe import Recipe

__all__ = [
    "HORIZON_FIELDS",
    "SizeEstimate",
    "available_memory",
    "check_sizes",
    "episode_warnings",
    "estimate_sizes",
]

HORIZON_FIELDS = ("episode_length", "max_steps")
"""Env params that fix (or bound) an episode's length, in the built-in envs."""


@dataclass(frozen=True)
class SizeEstimate:
    """Estimated bytes of each big piece of a run."""

    env_state: int
    rollout: int
    networks: int
    update: int

    @property
    def total(self) -> int:
        """All pieces together."""
        return self.env_state + self.rollout + self.networks + self.update


def _tensor_bytes(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _mlp_parameters(sizes: list[int]) -> int:
    return sum(d_in * d_out + d_out for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True))


def estimate_sizes(recipe: Recipe, probe: BatchedEnv) -> SizeEstimate:
    """Bytes the run of `recipe` will need, from `probe`, its env built with one instance.

    Args:
        recipe: the validated recipe.
        probe: `recipe.env` built with `num_envs = 1`.

    """
    cfg = recipe.learner
    e, t = recipe.env.num_envs, cfg.rollout_steps
    agents = list(probe.possible_agents)
    a = len(agents)
    obs = [math.prod(probe.observation_spaces[x].shape) for x in agents]
    actions = max(int(probe.action_spaces[x].n) for x in agents)
    feature = max(obs) + (a if cfg.share_parameters else 0)
    try:
        per_instance = _tensor_bytes(probe.state_dict())
    except Exception:  # an env that cannot say: count its observations only
        per_instance = 4 * sum(obs)
    rows = t * e * a
    rollout = rows * (4 * (feature + 7) + 3 + actions)
    groups = 1 if cfg.share_parameters else a
    hidden = list(cfg.hidden_sizes)
    parameters = groups * (
        _mlp_parameters([feature, *hidden, actions]) + _mlp_parameters([feature, *hidden, 1])
    )
    minibatch = math.ceil(rows / cfg.minibatches)
    update = minibatch * 2 * (feature + sum(hidden) + actions) * 3 * 4
    return SizeEstimate(
        env_state=per_instance * e, rollout=rollout, networks=parameters * 4 * 4, update=update
    )


def available_memory() -> int | None:
    """Bytes of memory available now (Linux `MemAvailable`), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB" if size >= 2**30 else f"{size / 2**20:,.1f} MiB"


def check_sizes(recipe: Recipe, probe: BatchedEnv, *, available: int | None = None) -> SizeEstimate:
    """Refuse a recipe whose batch cannot be split as asked, or whose run cannot fit in memory.

    Args:
        recipe: the validated recipe.
        probe: `recipe.env` built with one instance.
        available: bytes available (default: `available_memory()`).

    Raises:
        RecipeError: naming the fields and the numbers.

    """
    cfg = recipe.learner
    agents = len(probe.possible_agents)
    batch = cfg.rollout_steps * recipe.env.num_envs * agents
    if cfg.minibatches > batch:
        raise RecipeError(
            f"{recipe.source}: field 'learner.minibatches': {cfg.minibatches} minibatches is more than the "
            f"batch of {batch:,} samples (learner.rollout_steps {cfg.rollout_steps} x env.num_envs "
            f"{recipe.env.num_envs} x {agents} agents); lower it or enlarge the batch"
        )
    check_conv(recipe, probe)
    estimate = estimate_sizes(recipe, probe)
    available = available_memory() if available is None else available
    if available is not None and estimate.total > available:
        raise RecipeError(
            f"{recipe.source}: this run needs about {_gib(estimate.total)} of memory and "
            f"{_gib(available)} is available: env state {_gib(estimate.env_state)} (env.num_envs "
            f"{recipe.env.num_envs:,}), rollout buffers {_gib(estimate.rollout)} (learner.rollout_steps "
            f"{cfg.rollout_steps:,} x env.num_envs x {agents} agents), networks {_gib(estimate.networks)} "
            f"(learner.hidden_sizes {cfg.hidden_sizes}), update {_gib(estimate.update)} "
            f"(learner.minibatches {cfg.minibatches}). Lower these fields."
        )
    return estimate


def episode_warnings(recipe: Recipe, probe: BatchedEnv) -> list[str]:
    """Warnings, naming the fields, when a rollout or the whole run is shorter than one episode.

    Args:
        recipe: the validated recipe.
        probe: `recipe.env` built with one instance (its validated params give the horizon).

    Returns:
        One message per problem found (none when the env has no horizon param).

    """
    found = [(name, getattr(probe.params, name, None)) for name in HORIZON_FIELDS]
    found = [(name, value) for name, value in found if isinstance(value, int) and value > 0]
    if not found:
        return []
    name, horizon = found[0]
    steps = recipe.learner.rollout_steps
    if steps >= horizon:
        return []
    field = f"env.params.{name}"
    iterations = math.ceil(recipe.train.total_steps / (steps * recipe.env.num_envs))
    if iterations * steps < horizon:
        return [
            f"{recipe.source}: the run is shorter than one episode: {iterations} iteration(s) of "
            f"learner.rollout_steps {steps} = {iterations * steps} steps per env, and {field} is {horizon}. "
            "No episode may finish, so no designer metric will be measured; raise train.total_steps."
        ]
    return [
        f"{recipe.source}: learner.rollout_steps {steps} is shorter than one episode ({field} {horizon}): "
        f"no episode finishes within an iteration, so designer metrics appear only in iterations where "
        f"episodes end (about every {math.ceil(horizon / steps)} iterations when the instances run in step). "
        f"Set learner.rollout_steps to at least {horizon} to measure them every iteration."
    ]
