"""The league's machinery (AlphaStar, Vinyals et al. 2019): pairwise payoffs, trained opponents, matchmaking.

The `league` sampler plugin (`incentive.plugins.league`) builds on three pieces
kept here, each testable on its own:

- `Payoffs`: decayed win/draw/loss counts between any two players (not only
  the run's learner against a member), so every role can ask for its win rate
  x = (wins + 0.5 draws) / games against anyone; NaN before any game.
- `TrainedOpponent`: a learner that fills opponent seats and trains on the
  seats it played, for the exploiter roles. It has its own PPO network,
  optimiser and random stream (`incentive.ppo.PPO`, the run's learner
  settings). While the loop's rollout runs it records what it saw and did;
  after the rollout it takes its rewards (the seat's shaped reward) and the
  acting mask from the `Rollout` and runs the same PPO update as the run's
  learner. Only steps of episodes that end within the rollout train it (no
  bootstrap from a value at the cut, so no bias; a seat's tail is trained
  the iteration its episode ends). It can be reset to its initial weights.
- the matchmaking distributions of the three roles, as pure functions of
  win rates (below).

Roles (up to four main agents, the first the run's own learner; any number
of exploiters). Each main agent draws from its own win rates x; "the main"
below is the main agent in question:

| role             | opponents                                                                        |
| ---------------- | -------------------------------------------------------------------------------- |
| main agent       | `pfsp_share` (0.5): PFSP `hard` (1 - x)^2 over every historical player;          |
|                  | `verification_share` (0.15): main exploiters' snapshots by PFSP `hard` if it     |
|                  | beats one of them less than 30% of the time, else its own snapshots that it      |
|                  | "forgot" (PFSP `hard` over them after `remove_monotonic_suffix`) if it beats      |
|                  | one of those less than 70%, else self-play; the rest (0.35): self-play (mirror)  |
| main exploiter   | a current main agent while it wins more than 10% against it, else that main's     |
|                  | snapshots by PFSP `variance` x (1 - x)                                            |
| league exploiter | PFSP `linear_capped` min(0.5, 1 - x) over every historical player               |

Historical players: every frozen snapshot (of any main agent or exploiter)
and every fixed bot. A win rate without games counts as 0.5 (AlphaStar's
prior), in the weights and in the thresholds.

`remove_monotonic_suffix`: of the main's own snapshots, oldest first, drop
the longest tail along which the win rate never rises (it beats newer
snapshots less, as expected of a learner that improves); what is left ends
with a snapshot it beats more than the one before, i.e. one it forgot how to
beat. If the whole list never rises, nothing is left.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from incentive.population import pfsp_weights, seated_inputs
from incentive.ppo import PPO, Batch, compute_gae
from incentive.recipe import LearnerSpec
from incentive.types import Rollout, RunContext

__all__ = [
    "Payoffs",
    "TrainedOpponent",
    "league_exploiter_probs",
    "main_exploiter_probs",
    "main_probs",
    "remove_monotonic_suffix",
]

EXPLOITER_FALLBACK = 0.1  # a main exploiter plays the main while it wins more than this
VERIFY_EXPLOITERS = 0.3  # the main replays exploiter snapshots it beats less than this
VERIFY_FORGETTING = 0.7  # the main replays own snapshots it beats less than this


# --- matchmaking, as pure functions ------------------------------------------------


def remove_monotonic_suffix(x: torch.Tensor) -> int:
    """How many of the oldest-first win rates `x` to keep (see the module docstring)."""
    for i in range(len(x) - 1, 0, -1):
        if x[i - 1] < x[i]:
            return i + 1
    return 0


def _prior(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x.to(torch.float64), nan=0.5)


def main_probs(
    x: torch.Tensor,
    *,
    historical: torch.Tensor,
    exploiter_snapshots: torch.Tensor,
    own_snapshots: list[int],
    pfsp_share: float,
    verification_share: float,
) -> tuple[float, torch.Tensor]:
    """The main agent's (self-play probability, [K] probabilities over the members).

    Args:
        x: [K] the main's win rate against each member (NaN: no games).
        historical: [K] bool, the historical players (snapshots and bots).
        exploiter_snapshots: [K] bool, snapshots of main exploiters.
        own_snapshots: member indices of the main's own snapshots, oldest first.
        pfsp_share: share of the PFSP branch (AlphaStar 0.5).
        verification_share: share of the verification branch (AlphaStar 0.15).

    """
    k = len(x)
    probs = torch.zeros(k, dtype=torch.float64)
    mirror = 1.0 - pfsp_share - verification_share
    if bool(historical.any()):
        probs[historical] += pfsp_share * pfsp_weights(x[historical], "hard", 2.0)
    else:
        mirror += pfsp_share
    rates = _prior(x)
    if bool(exploiter_snapshots.any()) and float(rates[exploiter_snapshots].min()) < VERIFY_EXPLOITERS:
        probs[exploiter_snapshots] += verification_share * pfsp_weights(x[exploiter_snapshots], "hard", 2.0)
        return mirror, probs
    own = torch.tensor(own_snapshots, dtype=torch.long)
    kept = own[: remove_monotonic_suffix(rates[own])] if len(own_snapshots) else own
    if len(kept) and float(rates[kept].min()) < VERIFY_FORGETTING:
        probs[kept] += verification_share * pfsp_weights(x[kept], "hard", 2.0)
        return mirror, probs
    return mirror + verification_share, probs


def main_exploiter_probs(
    x_main: float, x: torch.Tensor, *, main_snapshots: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """A main exploiter's (probability of the current main, [K] over the members).

    Args:
        x_main: its win rate against the current main (NaN: no games).
        x: [K] its win rate against each member.
        main_snapshots: [K] bool, the main's snapshots.

    """
    probs = torch.zeros(len(x), dtype=torch.float64)
    if (0.5 if math.isnan(x_main) else x_main) > EXPLOITER_FALLBACK or not bool(main_snapshots.any()):
        return 1.0, probs
    probs[main_snapshots] = pfsp_weights(x[main_snapshots], "variance")
    return 0.0, probs


def league_exploiter_probs(x: torch.Tensor, *, historical: torch.Tensor) -> tuple[float, torch.Tensor]:
    """A league exploiter's (probability of the current main, [K] over the members): PFSP over history."""
    probs = torch.zeros(len(x), dtype=torch.float64)
    if not bool(historical.any()):
        return 1.0, probs
    probs[historical] = pfsp_weights(x[historical], "linear_capped")
    return 0.0, probs


# --- payoffs -------------------------------------------------------------------------


class Payoffs:
    """Decayed win/draw/loss counts between players (integer ids), from each side's point of view."""

    def __init__(self) -> None:
        self.counts: dict[tuple[int, int], list[float]] = {}

    def decay(self, factor: float) -> None:
        """Multiply every count by `factor` (once per iteration)."""
        for key, (w, d, l_) in self.counts.items():
            self.counts[key] = [factor * w, factor * d, factor * l_]

    def add(self, a: int, b: int, wins: float, draws: float, losses: float) -> None:
        """Add a's games against b (and b's against a, mirrored)."""
        for key, new in (((a, b), (wins, draws, losses)), ((b, a), (losses, draws, wins))):
            old = self.counts.get(key, [0.0, 0.0, 0.0])
            self.counts[key] = [o + n for o, n in zip(old, new, strict=True)]

    def win_rate(self, a: int, others: list[int]) -> torch.Tensor:
        """[len(others)] a's win rate against each; NaN where they have not played."""
        out = torch.full((len(others),), torch.nan, dtype=torch.float64)
        for i, b in enumerate(others):
            w, d, l_ = self.counts.get((a, b), [0.0, 0.0, 0.0])
            if w + d + l_ > 0:
                out[i] = (w + 0.5 * d) / (w + d + l_)
        return out

    def pooled_win_rate(self, a: int, others: list[int]) -> float:
        """The win rate of a over all its games against `others` together (counts summed); NaN if none."""
        w, d, l_ = (sum(self.counts.get((a, b), [0.0, 0.0, 0.0])[k] for b in others) for k in range(3))
        return (w + 0.5 * d) / (w + d + l_) if w + d + l_ > 0 else float("nan")

    def state_dict(self) -> list[list[float]]:
        """[[a, b, wins, draws, losses], ...]."""
        return [[a, b, *counts] for (a, b), counts in sorted(self.counts.items())]

    def load_state_dict(self, state: list[list[float]]) -> None:
        """Restore `state_dict`."""
        self.counts = {(int(a), int(b)): [w, d, l_] for a, b, w, d, l_ in state}


# --- a trained opponent ------------------------------------------------------------------


class TrainedOpponent:
    """A learner in opponent seats: its own network, trained on the seats it played (see the module).

    Args:
        run: the run (its env's spaces, its step counter).
        config: PPO settings (the recipe's learner section).
        seed: seed of its initialisation and sampling stream.

    """

    def __init__(self, *, run: RunContext, config: LearnerSpec, seed: int) -> None:
        self.run = run
        self.agents = list(run.agents)
        self.ppo = PPO.for_env(config, run.env, self.agents, torch.Generator().manual_seed(seed))
        self.initial = copy.deepcopy(
            {"net": self.ppo.net.state_dict(), "optimizer": self.ppo.optimizer.state_dict()}
        )
        self.since_checkpoint = 0
        self.records: list[
            tuple
        ] = []  # per step played: t, rows, features, mask, actions, logprobs, values, seats
        self.start_step = 0

    # what a snapshot copies (`incentive.population.SnapshotPolicy` takes any learner)
    @property
    def net(self) -> Any:
        """The actor-critic network."""
        return self.ppo.net

    def features(self, obs: dict[str, torch.Tensor], agents: list[str]) -> torch.Tensor:
        """Network inputs, as the run's learner builds them."""
        return self.ppo.features(obs, agents)

    def action_mask(self, masks: dict[str, torch.Tensor] | None, agents: list[str]) -> torch.Tensor | None:
        """Legal-action masks, as the run's learner builds them."""
        return self.ppo.action_mask(masks, agents)

    @torch.no_grad()
    def probs(
        self, obs: dict[str, torch.Tensor], action_mask: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """Action probabilities [N, A, n] (for exact exploitability tables)."""
        logits = self.ppo.net.logits(self.features(obs, self.agents))
        mask = self.action_mask(action_mask, self.agents)
        return torch.softmax(logits if mask is None else logits.masked_fill(~mask, -1e9), -1)

    # playing

    def begin(self) -> None:
        """A new rollout starts now: forget the last one's records."""
        self.records = []
        self.start_step = self.run.global_step

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], action_mask: dict[str, torch.Tensor] | None, seats: torch.Tensor
    ) -> torch.Tensor:
        """Actions [E, A] for the seats it plays, one forward pass over those instances; recorded."""
        actions = torch.zeros(seats.shape, dtype=torch.long)
        rows, features, mask = seated_inputs(self, self.agents, obs, action_mask, seats)
        if len(rows) == 0:
            return actions
        chosen, logprobs, values, _ = self.ppo.act(features, mask)
        actions[rows] = chosen
        t = (self.run.global_step - self.start_step) // seats.shape[0]
        full_mask = None if mask is None else mask.expand(len(rows), -1, -1)
        self.records.append((t, rows, features, full_mask, chosen, logprobs, values, seats[rows]))
        return actions

    # learning

    def train(self, rollout: Rollout) -> dict[str, float]:
        """One PPO update on the seats it played in this rollout (episodes that ended in it)."""
        records, self.records = self.records, []
        if not records or rollout.acting is None:
            return {}
        steps, e, a = rollout.reward.shape
        dim = records[0][2].shape[-1]
        features = torch.zeros(steps, e, a, dim)
        actions = torch.zeros(steps, e, a, dtype=torch.long)
        logprobs = torch.zeros(steps, e, a)
        values = torch.zeros(steps, e, a)
        mine = torch.zeros(steps, e, a, dtype=torch.bool)
        masks = None
        for t, rows, feats, mask, chosen, logp, vals, seats in records:
            features[t, rows], actions[t, rows], logprobs[t, rows], values[t, rows] = (
                feats,
                chosen,
                logp,
                vals,
            )
            mine[t, rows] = seats
            if mask is not None:
                if masks is None:
                    masks = torch.ones(steps, e, a, mask.shape[-1], dtype=torch.bool)
                masks[t, rows] = mask
        done = rollout.done.bool()
        ended = done.flip(0).cumsum(0).flip(0) > 0  # [T, E] an episode end follows within the rollout
        advantages, returns = compute_gae(
            rollout.incentive,
            values,
            done[..., None],
            torch.zeros(e, a),
            gamma=self.ppo.config.gamma,
            gae_lambda=self.ppo.config.gae_lambda,
        )
        value_mask = mine & ended[..., None]
        policy_mask = value_mask & rollout.acting
        if int(policy_mask.sum()) < 2:
            return {}
        return self.ppo.update(
            Batch.from_rollout(
                features=features,
                action_mask=masks,
                actions=actions,
                logprobs=logprobs,
                values=values,
                advantages=advantages,
                returns=returns,
                policy_mask=policy_mask,
                value_mask=value_mask,
            )
        )

    def reset(self) -> None:
        """Back to the initial weights and a fresh optimiser (its sampling stream goes on)."""
        self.ppo.net.load_state_dict(self.initial["net"])
        self.ppo.optimizer.load_state_dict(copy.deepcopy(self.initial["optimizer"]))

    def state_dict(self) -> dict[str, Any]:
        """Network, optimiser, stream, initial weights, iterations since its last snapshot."""
        return {
            "ppo": copy.deepcopy(self.ppo.state_dict()),
            "initial": copy.deepcopy(self.initial),
            "since_checkpoint": self.since_checkpoint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`."""
        self.ppo.load_state_dict(state["ppo"])
        self.initial = copy.deepcopy(state["initial"])
        self.since_checkpoint = state["since_checkpoint"]
