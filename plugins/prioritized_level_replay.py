"""Prioritized level replay (Jiang, Grefenstette & Rocktaeschel, 2021).

Source: Jiang et al., "Prioritized Level Replay", ICML 2021, and its
official code (facebookresearch/level-replay, `level_sampler.py`), whose
README runs' settings are the defaults here; the `max_mc` score is from
Robust PLR (Jiang et al., "Replay-Guided Adversarial Environment Design",
NeurIPS 2021) and ACCEL (Parker-Holder et al., 2022).

Each instance's next level is either a new (unseen) level or a replay of a
seen one, chosen by how much the learner can still learn there.

- Score of level i (strategy): over the steps the level was played in the
  iteration's rollout, the mean over steps and learning seats of
      value_l1:            |A_t|              (GAE advantage; default)
      positive_value_loss: max(A_t, 0)
      policy_entropy:      H(pi(. | o_t)) = -sum_a pi(a | o_t) log pi(a | o_t)
      max_mc:              R_max(i, a) - V(o_t)
  and S_i <- (1 - alpha) S_i + alpha * score (alpha = 1: the newest score).
  R_max(i, a) is the highest return any episode on level i has reached in
  seat a so far (the undiscounted sum of the env's rewards over the episode,
  as Robust PLR's code keeps it), kept in the plugin's state and raised by
  the episodes that end in each rollout before the rollout is scored. A
  level the learner never solved has R_max = 0 under a 0/1 success reward
  and scores about -V; one it solved once but not reliably scores high; a
  mastered one scores R_max - V ~ 0 (positive_value_loss and value_l1 are
  high on mastered levels too, wherever the value still underestimates the
  success reward).
- Score prioritisation (rank transform, temperature beta = 0.1):
      h_i = (1 / rank_i)^(1 / beta),  rank 1 = highest score,
      P_S(i) = h_i / sum_{j seen} h_j             (seen levels only)
  (`score_transform: power`: h_i = S_i^(1/beta)).
- Staleness: c counts draws (samples, replays and new levels alike, as the
  official `_update_staleness` does), C_i is the number of the last draw of
  level i, so c - C_i is how many draws ago level i was last drawn:
      P_C(i) = (c - C_i) / sum_{j seen} (c - C_j)
  (the E draws of an iteration are numbered in instance order).
- Replay distribution, with the paper's rho = `staleness_coef` (0.1):
      P(i) = (1 - staleness_coef) * P_S(i) + staleness_coef * P_C(i)
- Replay or new level, per instance (the official "proportionate" schedule):
  with f = seen levels / all levels, replay with probability f once
  f >= `min_seen_fraction`; otherwise draw an unseen level uniformly.
  `min_seen_fraction` is the official code's argument `rho` (default 1.0 in
  its arguments: every level is seen once before any replay, after which
  every level is a replay), not the paper's rho, which is `staleness_coef`.

Choices made (where a batched run differs from the official code):

- Levels are drawn once per iteration for all E instances (each adopts its
  level at its next reset and replays it at every reset until the next
  draw); the official code draws at every reset. Both draw from the same P,
  which changes only when scores do (once per iteration in both), so the
  expected share of episodes per level is the same; per-iteration draws
  vary more, and a first pass over N unseen levels takes about N / E
  iterations instead of N episodes. "Seen" changes when a level is scored.
- With rank prioritisation at beta = 0.1 the top-ranked level has weight 1
  and the next 2^-10, so about (1 - staleness_coef) of the draws go to one
  level per iteration, in the official code as here. When episodes are much
  shorter than a rollout (each instance restarts several times per
  iteration), that level fills most of the iteration's batch;
  `curriculum/plr/top_share` reports the share of the draws on the most
  drawn level.
- A level's score covers every step it was played in the iteration,
  finished or not, as in the official code (its `after_update` commits the
  score of an unfinished episode's part at the end of every rollout, and the
  rest of that episode is scored in the next one). Several instances or
  episodes on one level in one iteration: the official code keeps the score
  of the last one it processes (alpha = 1); here their steps are averaged.
- Under a sparse 0/1 reward a level the learner always fails has r = 0 and
  small deltas (the loop bootstraps a truncated episode's target from
  V(final obs), so a timeout adds no large negative delta): |A| ~ 0, and
  value_l1 and positive_value_loss replay such levels mostly through
  staleness. A mastered level keeps a larger |A| (all of it positive)
  wherever the value still underestimates the success reward, so these two
  scores can favour levels already solved (`benchmarks/plr_scores.py` shows
  the scores against the learner's success per level).
- `policy_entropy` is in nats; the official code divides it by the largest
  entropy log(n) of its n actions. A constant factor changes neither the
  ranks nor the power transform's P_S (S^(1/beta) scales every h alike), so
  only the reported `score_*` metrics differ by that factor.
- `max_mc` scores a level only once one of its episodes has ended (R_max is
  known): its steps before that do not count, and it stays unseen until
  then. The episode returns are those of the env's own rewards, not of the
  shaped incentive the value predicts (as in Robust PLR's code; with shaping
  plugins R_max and V are on different scales). A seat's return counts
  whoever played the seat; the score reads only the learning seats.
- Rank ties go to the lower level index (the official code's reversed
  argsort favours the higher one; only exact ties differ); if every seen
  level has staleness 0, P_C is 0 and P is renormalised.

Parameters: `strategy` (value_l1 | positive_value_loss | policy_entropy | max_mc), `score_transform`
(rank | power), `temperature` (beta, 0.1), `staleness_coef` (0.1),
`min_seen_fraction` (1.0), `alpha` (1.0), `candidates` (default: the env's
training levels; or key -> list of values, e.g. opponent ids or values of an
incentive parameter).

Metrics: `curriculum/plr/seen_fraction`, `curriculum/plr/replay_share`
(share of this iteration's draws that were replays), `curriculum/plr/top_share`
(share of this iteration's draws on its most drawn level), score summary of seen
levels (`score_mean`, `score_p10`, `score_p50`, `score_p90`, `score_max`),
and `curriculum/level_difficulty` (mean over the drawn levels) where the
env rates its levels. Bookkeeping is a handful of [N] tensor operations per
iteration (N candidate levels), no loop over levels or instances.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from incentive import hookimpl
from incentive.tasks import CandidateTasks, episode_returns, step_values

__all__ = [
    "PrioritizedLevelReplay",
    "count_draws",
    "level_scores",
    "max_mc_step_scores",
    "raise_max_returns",
    "replay_distribution",
    "step_scores",
]


def rank_weights(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """h_i = (1 / rank_i)^(1 / temperature), rank 1 for the highest score (ties: lower index first)."""
    order = torch.sort(-scores, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, len(scores) + 1)
    return ranks.to(torch.float64).reciprocal() ** (1.0 / temperature)


def replay_distribution(
    scores: torch.Tensor,
    staleness: torch.Tensor,
    seen: torch.Tensor,
    *,
    temperature: float,
    staleness_coef: float,
    transform: str = "rank",
) -> torch.Tensor:
    """P = (1 - staleness_coef) P_S + staleness_coef P_C over the seen levels, [N] float64.

    Args:
        scores: [N] level scores S.
        staleness: [N] c - C_i.
        seen: [N] bool.
        temperature: beta.
        staleness_coef: the paper's rho.
        transform: "rank" or "power".

    """
    scores = scores.to(torch.float64)
    if transform == "rank":
        h = rank_weights(scores, temperature)
    else:
        h = scores.clamp(min=0) ** (1.0 / temperature)
    h = h * seen
    p_s = h / h.sum() if h.sum() > 0 else h
    c = staleness.to(torch.float64) * seen
    p_c = c / c.sum() if c.sum() > 0 else c
    p = (1 - staleness_coef) * p_s + staleness_coef * p_c
    total = p.sum()
    if total > 0:
        return p / total
    return seen.to(torch.float64) / seen.sum().clamp(min=1)


def count_draws(
    last_draw: torch.Tensor, draws: torch.Tensor, drawn: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Staleness bookkeeping after drawing `drawn`: (C [N], c), draws numbered c + 1, c + 2, ... in order.

    The official sampler adds 1 to every level's staleness at each draw and
    sets the drawn level's to 0; keeping C_i (the number of level i's last
    draw) and c (draws so far) gives the same staleness c - C_i.

    Args:
        last_draw: [N] long C_i.
        draws: scalar long c.
        drawn: [K] long candidate indices, in draw order.

    """
    numbers = draws + torch.arange(1, len(drawn) + 1, dtype=torch.long)
    last_draw = last_draw.scatter_reduce(0, drawn, numbers, reduce="amax")
    return last_draw, draws + len(drawn)


def level_scores(
    per_step: torch.Tensor, levels: torch.Tensor, *, num_levels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean score of every level over the steps it was played: ([N] mean, [N] bool played).

    Args:
        per_step: [T, E] score of each step (NaN where the step does not count).
        levels: [T, E] long level index of each step (-1: unknown, ignored).
        num_levels: N.

    """
    keep = (levels >= 0) & ~torch.isnan(per_step)
    sums = torch.zeros(num_levels, dtype=torch.float64)
    counts = torch.zeros(num_levels, dtype=torch.float64)
    index = levels[keep]
    sums.index_add_(0, index, per_step[keep].to(torch.float64))
    counts.index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
    played = counts > 0
    return torch.where(played, sums / counts.clamp(min=1), torch.zeros_like(sums)), played


def step_scores(rollout: Any, strategy: str) -> torch.Tensor:
    """[T, E] score of every step: the strategy's per-seat score, averaged over learning seats.

    NaN where no seat learned (the step does not count).

    Raises:
        ValueError: `policy_entropy` asked of a rollout without policy entropies.

    """
    if strategy == "value_l1":
        per_seat = rollout.advantages.abs()
    elif strategy == "positive_value_loss":
        per_seat = rollout.advantages.clamp(min=0)
    else:
        entropy = getattr(rollout, "entropy", None)
        if entropy is None:
            raise ValueError("strategy 'policy_entropy' needs the policy's entropies in the rollout")
        per_seat = entropy
    mask = rollout.learn_mask.to(per_seat.dtype)
    count = mask.sum(-1)
    return torch.where(count > 0, (per_seat * mask).sum(-1) / count.clamp(min=1), float("nan"))


def raise_max_returns(
    r_max: torch.Tensor, reward: torch.Tensor, done: torch.Tensor, levels: torch.Tensor, carried: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """R_max after the episodes that ended in a rollout: (R_max [N, A], returns carried on [E, A]).

    Args:
        r_max: [N, A] float64 highest return per level and seat so far (-inf: no episode ended yet).
        reward: [T, E, A] the env's rewards.
        done: [T, E] episode ends.
        levels: [T, E] long level index of each step (-1: unknown, ignored).
        carried: [E, A] float64 return so far of each instance's unfinished episode at the rollout's start.

    """
    t, e, a = reward.shape
    done = done.bool()
    flat_done = done[..., None].expand(t, e, a).reshape(t, e * a)
    returns, carried = episode_returns(reward.reshape(t, e * a), flat_done, carried.reshape(e * a))
    ended = done & (levels >= 0)
    index = levels[ended][:, None].expand(-1, a)
    r_max = r_max.scatter_reduce(0, index, returns.reshape(t, e, a)[ended], reduce="amax")
    return r_max, carried.reshape(e, a)


def max_mc_step_scores(
    values: torch.Tensor, learn_mask: torch.Tensor, levels: torch.Tensor, r_max: torch.Tensor
) -> torch.Tensor:
    """[T, E] max_mc score of every step: R_max(level, seat) - V, averaged over learning seats.

    NaN where no learning seat's level has an R_max yet (the step does not count).

    Args:
        values: [T, E, A] V(o_t).
        learn_mask: [T, E, A] bool, samples that trained the learner.
        levels: [T, E] long level index of each step (-1: unknown).
        r_max: [N, A] float64 (-inf: no episode ended yet).

    """
    best = r_max[levels.clamp(min=0)]  # [T, E, A]
    known = (levels >= 0)[..., None] & torch.isfinite(best) & learn_mask.bool()
    gap = torch.where(known, best - values.to(torch.float64), torch.zeros_like(best))
    count = known.sum(-1)
    return torch.where(count > 0, gap.sum(-1) / count.clamp(min=1), float("nan"))


class PrioritizedLevelReplay:
    """Replays the levels with the highest learning potential, by score rank and staleness."""

    name = "prioritized_level_replay"

    class Params(BaseModel):
        """Parameters of prioritized level replay (the official code's README settings)."""

        model_config = ConfigDict(extra="forbid")
        strategy: Literal["value_l1", "positive_value_loss", "policy_entropy", "max_mc"] = Field(
            "value_l1",
            description="Level score: mean |GAE advantage|, positive advantage, policy entropy or R_max - V.",
        )
        score_transform: Literal["rank", "power"] = Field(
            "rank", description="Score prioritisation: (1/rank)^(1/beta) or score^(1/beta)."
        )
        temperature: float = Field(0.1, gt=0, description="beta, the prioritisation temperature.")
        staleness_coef: float = Field(
            0.1, ge=0, le=1, description="The paper's rho: weight of staleness in the replay mix."
        )
        min_seen_fraction: float = Field(
            1.0,
            ge=0,
            le=1,
            description="The official code's `rho`: share of levels seen before replays start.",
        )
        alpha: float = Field(1.0, gt=0, le=1, description="Score update S <- (1-alpha) S + alpha score.")
        candidates: dict[str, list[float]] | None = Field(
            None, description="Task key -> list of values (default: the env's training levels)."
        )

    def __init__(self, params: Params) -> None:
        self.params = params
        self.candidates: CandidateTasks | None = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Build the candidate levels and their bookkeeping."""
        self.candidates = CandidateTasks.for_run(run, self.params.candidates)
        n = len(self.candidates)
        self.scores = torch.zeros(n, dtype=torch.float64)
        self.seen = torch.zeros(n, dtype=torch.bool)
        self.last_draw = torch.zeros(n, dtype=torch.long)  # C_i
        self.draws = torch.zeros((), dtype=torch.long)  # c
        self.running = torch.full((run.num_envs,), -1, dtype=torch.long)
        self.pending = torch.full((run.num_envs,), -1, dtype=torch.long)
        self.replayed = torch.zeros(run.num_envs, dtype=torch.bool)
        a = len(run.agents)
        self.r_max = torch.full((n, a), float("-inf"), dtype=torch.float64)  # max_mc's R_max(i, a)
        self.carried = torch.zeros(run.num_envs, a, dtype=torch.float64)  # unfinished episodes' returns

    @hookimpl
    def incentive_next_task(self, run, iteration) -> dict[str, torch.Tensor]:
        """Draw every instance's next level: a replay with probability f, else an unseen one."""
        p = self.params
        e = run.num_envs
        fraction = float(self.seen.double().mean())
        u = torch.rand(e, generator=run.generator, dtype=torch.float64)
        replay = (u < fraction) & (fraction >= p.min_seen_fraction)
        if fraction < 1.0:
            unseen = (~self.seen).double()
            new = torch.multinomial(unseen / unseen.sum(), e, replacement=True, generator=run.generator)
        else:
            new = torch.zeros(e, dtype=torch.long)
        if bool(self.seen.any()):
            weights = replay_distribution(
                self.scores,
                self.draws - self.last_draw,
                self.seen,
                temperature=p.temperature,
                staleness_coef=p.staleness_coef,
                transform=p.score_transform,
            )
            old = torch.multinomial(weights, e, replacement=True, generator=run.generator)
        else:
            old = torch.zeros(e, dtype=torch.long)
        self.pending = torch.where(replay, old, new)
        self.replayed = replay
        self.last_draw, self.draws = count_draws(self.last_draw, self.draws, self.pending)
        if run.global_step == 0:  # the run starts at a boundary: these levels start now
            self.running = self.pending.clone()
        return self.candidates.task(self.pending)

    @hookimpl
    def incentive_update_curriculum(self, run, rollout) -> None:
        """Score the levels played in the rollout; note which instances adopted their pending level."""
        done = rollout.done.bool()
        levels = step_values(self.running, self.pending, done)
        if self.params.strategy == "max_mc":
            self.r_max, self.carried = raise_max_returns(
                self.r_max, rollout.reward, done, levels, self.carried
            )
            per_step = max_mc_step_scores(rollout.values, rollout.learn_mask, levels, self.r_max)
        else:
            per_step = step_scores(rollout, self.params.strategy)
        score, played = level_scores(per_step, levels, num_levels=len(self.scores))
        a = self.params.alpha
        self.scores = torch.where(played, (1 - a) * self.scores + a * score, self.scores)
        self.seen |= played
        self.running = torch.where(done.any(0), self.pending, self.running)

    @hookimpl
    def incentive_collect_metrics(self) -> dict[str, float]:
        """Seen fraction, replay share, top-level share, score summary and the drawn levels' difficulty."""
        metrics = {
            "curriculum/plr/seen_fraction": float(self.seen.double().mean()),
            "curriculum/plr/replay_share": float(self.replayed.double().mean()),
            "curriculum/plr/top_share": float(torch.bincount(self.pending).max()) / len(self.pending),
        }
        if bool(self.seen.any()):
            seen = self.scores[self.seen]
            q = torch.quantile(seen, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
            metrics.update(
                {
                    "curriculum/plr/score_mean": float(seen.mean()),
                    "curriculum/plr/score_p10": float(q[0]),
                    "curriculum/plr/score_p50": float(q[1]),
                    "curriculum/plr/score_p90": float(q[2]),
                    "curriculum/plr/score_max": float(seen.max()),
                }
            )
        metrics.update(self.candidates.difficulty_metric(self.pending))
        return metrics

    @hookimpl
    def incentive_state_dict(self) -> dict[str, Any]:
        """Scores, seen levels, staleness, R_max, and what every instance runs and will run."""
        keys = ("scores", "seen", "last_draw", "draws", "running", "pending", "replayed", "r_max", "carried")
        return {key: getattr(self, key).clone() for key in keys}

    @hookimpl
    def incentive_load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `incentive_state_dict` returned."""
        for key, value in state.items():
            setattr(self, key, value.clone())
