"""The objects hooks receive and return: the run, a batched step, a rollout, seats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from incentive.envs.base import BatchedEnv
    from incentive.recipe import Recipe

__all__ = ["LEARNER", "EpisodeResults", "OpponentAssignment", "Policy", "Rollout", "RunContext", "StepBatch"]

LEARNER = -1
"""Seat value meaning "played by the learner" in `OpponentAssignment.seats`."""


@dataclass
class RunContext:
    """What every hook gets as `run`: the run's fixed facts and its progress.

    Attributes:
        recipe: the validated recipe.
        run_dir: the run directory (metrics, checkpoints).
        env: the batched env (read its spaces and `num_envs`; do not step it).
        agents: the env's agent names, the A seats in order.
        num_envs: E.
        generator: the run's torch generator for plugins' own randomness
            (seeded from the recipe, saved with checkpoints).
        iteration: iterations completed so far.
        global_step: env steps so far (each batched step counts E).

    """

    recipe: Recipe
    run_dir: Path
    env: BatchedEnv
    agents: list[str]
    num_envs: int
    generator: torch.Generator
    iteration: int = 0
    global_step: int = 0


@dataclass(frozen=True)
class StepBatch:
    """One batched env step, as the reward-shaping hook sees it.

    Attributes:
        obs: agent -> [E, *obs], what the actions were chosen on.
        actions: [E, A] long.
        reward: [E, A] the extrinsic reward.
        next_obs: agent -> [E, *obs] after the step (a new episode's first
            observation where `done`).
        terminated: [E] bool.
        truncated: [E] bool.
        done: [E] bool, terminated or truncated: reset per-env state here.
        acting: [E, A] bool, who chose an action.
        learner_seats: [E, A] bool, seats played by the learner.
        info: counter name -> [E], the env's per-step counters.
        episode_step: [E] long, index of this step within its episode (0 first).
        final_obs: agent -> [E, *obs], the last observation of the episodes that
            ended (equal to `next_obs` elsewhere), or None when none ended.
    """

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    reward: torch.Tensor
    next_obs: dict[str, torch.Tensor]
    terminated: torch.Tensor
    truncated: torch.Tensor
    done: torch.Tensor
    acting: torch.Tensor
    learner_seats: torch.Tensor
    info: dict[str, torch.Tensor]
    episode_step: torch.Tensor
    final_obs: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class Rollout:
    """One iteration's data after advantages, as the curriculum update sees it.

    Shapes: T steps, E instances, A agents.

    Attributes:
        reward: [T, E, A] extrinsic rewards.
        incentive: [T, E, A] shaped rewards the learner trained on (where an episode was
            truncated, with the bootstrap gamma * V(final obs) added; the logged
            `incentive/return/<agent>` leaves it out).
        done: [T, E] bool, the episode ended at step t.
        values: [T, E, A] value estimates.
        advantages: [T, E, A] GAE advantages.
        returns: [T, E, A] value targets.
        learn_mask: [T, E, A] bool, samples that trained the learner.

    """

    reward: torch.Tensor
    incentive: torch.Tensor
    done: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    learn_mask: torch.Tensor


class Policy(Protocol):
    """A frozen policy that can fill seats: a past snapshot or a fixed bot."""

    def act(
        self,
        obs: dict[str, torch.Tensor],
        action_mask: dict[str, torch.Tensor] | None,
        seats: torch.Tensor,
    ) -> torch.Tensor:
        """Actions [E, A] long; only entries where `seats` [E, A] is True are used."""
        ...


@dataclass
class OpponentAssignment:
    """Who plays each seat: `seats[e, a]` is an index into `policies`, or -1 (the learner).

    A seat switches to its new policy only when its instance's episode ends.
    """

    policies: list[Policy]
    seats: torch.Tensor


@dataclass(frozen=True)
class EpisodeResults:
    """Episodes finished during one iteration, for opponent-sampling updates.

    Attributes:
        returns: [N, A] extrinsic return of each seat in each of N episodes.
        seats: [N, A] long, who played the seat (index into the assignment's
            policies, -1 the learner).

    """

    returns: torch.Tensor
    seats: torch.Tensor
