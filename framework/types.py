"""The objects hooks receive and return: the run, a batched step, a rollout, seats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from incentive.envs.base import BatchedEnv
    from incentive.ppo import PPO
    from incentive.recipe import Recipe
    from incentive.tasks import TaskState

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
        tasks: the per-instance task state (`incentive.tasks.TaskState`):
            plugins read their per-instance parameters through it.
        learner: the learner (`incentive.ppo.PPO`): population plugins copy
            its weights into frozen snapshots and evaluate it; never train it.

    """

    recipe: Recipe
    run_dir: Path
    env: BatchedEnv
    agents: list[str]
    num_envs: int
    generator: torch.Generator
    iteration: int = 0
    global_step: int = 0
    tasks: TaskState | None = None
    learner: PPO | None = None


@dataclass(frozen=True)
class StepBatch:
    """One batched env step, as the reward-shaping hook sees it.

    E is the number of env instances (`run.num_envs`), A the number of agents
    (`run.agents`, in seat order: column a of every [E, A] tensor is agent
    `run.agents[a]`). Tensors live on the CPU; do not modify them in place.

    Attributes:
        obs: agent name -> float32 [E, *obs_shape], the observation each agent
            chose its action on (shape from `run.env.observation_spaces`).
        actions: int64 [E, A], the action each seat took (`incentive envs
            --details ID` says what each action index means).
        reward: float32 [E, A], the env's extrinsic reward of this step. Return
            terms shaped like it.
        next_obs: agent name -> float32 [E, *obs_shape], the observation after
            the step; where `done`, the first observation of the next episode
            (the instance was reset automatically).
        terminated: bool [E], the episode ended by the game's rules (or its
            fixed horizon).
        truncated: bool [E], the episode was cut short (a time limit that is
            not part of the game).
        done: bool [E], terminated or truncated: reset per-instance state here.
        acting: bool [E, A], who chose an action on this step (all True in
            simultaneous games; one seat per instance in turn-based ones).
        learner_seats: bool [E, A], seats played by the learner (False where a
            frozen opponent or bot fills the seat).
        info: counter name -> float32 [E], the env's per-step counters (the
            env's `info_keys`, e.g. `waste_cleared`); empty if it has none.
        episode_step: int64 [E], index of this step within its episode (0 on
            an episode's first step).
        final_obs: agent name -> float32 [E, *obs_shape], the last observation
            of the episodes that ended on this step (equal to `next_obs`
            elsewhere), or None when no instance is done.
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
        acting: [T, E, A] bool, the seats whose action counted at step t (turn-based games:
            the acting seat; simultaneous games: every seat); a sampler that trains its own
            opponents (the league's exploiters) masks their samples with it.
        entropy: [T, E, A] entropy (nats) of the learner's policy at each step (None when the
            caller has none; PLR's `policy_entropy` score needs it).

    """

    reward: torch.Tensor
    incentive: torch.Tensor
    done: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    learn_mask: torch.Tensor
    acting: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


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
