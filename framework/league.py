"""The league's machinery (AlphaStar, Vinyals et al. 2019): pairwise payoffs, trained opponents, matchmaking.

The `league` sampler plugin (`incentive.plugins.league`) builds on three pieces
kept here, each testable on its own:

- `Payoffs`: decayed win/draw/loss counts between any two players (not only
  the run's learner against a member), so every role can ask for its win rate
  x = (wins + 0.5 draws) / games against anyone; NaN before any game.
- `LeagueLearners` and `TrainedOpponent`: the learners besides the run's
  (main agents 1 .. N-1 and the exploiters), which fill seats on their own
  instances and train on the seats they played. Each has its own network,
  optimiser state and random stream (the run's learner settings), and all
  of them are one batched learner: one `incentive.ppo.PPO` holding K trials
  (K learners, trial k seeded as learner k), so a step costs one forward
  pass for every learner and an iteration one `update_trials` over all K.
  While the loop's rollout runs, the first learner the loop asks for actions
  in a step acts for all of them (each on its own rows: no padding, see
  `ActorCritic.own_rows`) and records what they saw and did; the others
  read their actions from that pass. After the rollout each learner takes
  its rewards (the seat's shaped reward) and the acting mask from the
  `Rollout`, and its [T * E] batch (zeros outside its instances, as a lone
  learner's) is stacked with the others' into one update. Only steps of
  episodes that end within the rollout train a learner (no bootstrap from a
  value at the cut, so no bias; a seat's tail is trained the iteration its
  episode ends); a learner with fewer than two such samples sits the update
  out. Each trial keeps its own optimiser step count
  (`incentive.adam.TrialAdam`), so one learner can be reset to its initial
  weights and a fresh optimiser while the others go on, and every learner
  computes bit for bit what a lone PPO seeded like it computes (shared
  networks; per-agent networks, `learner.share_parameters: false`, agree to
  about 1e-7: the output layers' bias gradients sum over a differently laid
  out gradient in the K-trial update). A `TrainedOpponent` is one learner
  as a population member: `net` is a one-trial copy of its weights, so a
  snapshot is a deep copy of that learner only. The K-trial PPO runs MLPs
  only: with `learner.conv_channels`, each learner is a `LeagueLearners` of
  its own (one PPO per learner, as before).
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

from incentive.errors import IncentiveError
from incentive.population import pfsp_weights
from incentive.ppo import MASKED_LOGIT, PPO, ActorCritic, Batch, compute_gae, gumbel_max
from incentive.recipe import LearnerSpec
from incentive.types import Rollout, RunContext

__all__ = [
    "LeagueLearners",
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


# --- the trained opponents, as one batched learner ------------------------------------------


class LeagueLearners:
    """The league's learners besides the run's, trained as one batched learner (see the module).

    Learner k is trial k of one `incentive.ppo.PPO` with K trials: its own networks (groups
    k*G .. (k+1)*G - 1), its own random stream and its own optimiser state and step count
    (`independent_trials`), so it computes bit for bit what a lone PPO seeded like it computes.
    Learner k plays on its own instances `homes[k]` only, in every step of every rollout.

    Args:
        run: the run (its env's spaces, its step counter).
        config: PPO settings (the recipe's learner section).
        seeds: per learner, the seed of its initialisation and sampling stream.
        homes: per learner, the instances it plays and trains on ([n_k] indices, disjoint).
        names: per learner, its name (for error messages).

    """

    def __init__(
        self,
        *,
        run: RunContext,
        config: LearnerSpec,
        seeds: list[int],
        homes: list[torch.Tensor],
        names: list[str],
    ) -> None:
        self.run = run
        self.agents = list(run.agents)
        self.names = list(names)
        self.trials = len(seeds)
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        stream = self.generators if self.trials > 1 else self.generators[0]
        self.ppo = PPO.for_env(config, run.env, self.agents, stream, independent_trials=True)
        self.initial = [
            {"net": self.ppo.trial_net_state(k), "optimizer": self.ppo.optimizer.trial_state_dict(k)}
            for k in range(self.trials)
        ]
        self.counts = [len(home) for home in homes]
        self.rows = torch.cat([home.long() for home in homes])  # [R] every learner's instances, in order
        self.trial_of_row = torch.repeat_interleave(torch.arange(self.trials), torch.tensor(self.counts))
        self.home = torch.zeros(self.trials, run.num_envs, dtype=torch.bool)
        self.home[self.trial_of_row, self.rows] = True
        self._template = None  # a one-trial network's layout; K > 1 learners' weights are loaded into copies
        if self.trials > 1:
            self._template = ActorCritic(
                groups=self.ppo.net.groups,
                obs_dim=self.ppo.feature_dim,
                num_actions=self.ppo.num_actions,
                hidden=list(config.hidden_sizes),
                generator=torch.Generator(),  # throwaway: its weights are always overwritten
            )
        self.begin()

    def trial_net(self, trial: int) -> Any:
        """A one-trial network holding a copy of learner `trial`'s weights (the network itself if K = 1)."""
        if self._template is None:
            return self.ppo.net
        net = copy.deepcopy(self._template)
        net.load_state_dict(self.ppo.trial_net_state(trial))
        return net

    # playing

    def begin(self) -> None:
        """A new rollout starts now: forget the last one's records."""
        self.start_step = self.run.global_step
        self.records: list[tuple] = []  # per step: t, features, masks, actions, log-probs, values ([R, ...])
        self.seats: list[torch.Tensor] = []  # per step: [E, A] the seats the learners played
        self._played: tuple[int, Any] | None = None  # (global step, obs) of the latest forward pass
        self._actions = torch.zeros(0)

    @torch.no_grad()
    def act(
        self,
        trial: int,
        obs: dict[str, torch.Tensor],
        action_mask: dict[str, torch.Tensor] | None,
        seats: torch.Tensor,
    ) -> torch.Tensor:
        """Actions [E, A] for learner `trial`'s seats; the step's first call acts for every learner.

        Raises:
            IncentiveError: the learner was seated outside its own instances (a bug in the sampler).

        """
        played = self._played
        if played is None or played[0] != self.run.global_step or played[1] is not obs:
            self._play(obs, action_mask)
        if not torch.equal(seats.any(1), self.home[trial]):
            raise IncentiveError(
                f"league learner {self.names[trial]!r} was seated outside its own instances (or not in "
                "all of them); the league's learners act together and need each in its own instances"
            )
        self.seats[-1] |= seats
        return self._actions

    def _play(self, obs: dict[str, torch.Tensor], action_mask: dict[str, torch.Tensor] | None) -> None:
        """One forward pass for every learner on its own instances; recorded for the update."""
        rows = self.rows
        features = self.ppo.features({a: obs[a].index_select(0, rows) for a in self.agents}, self.agents)
        masks = None if action_mask is None else {a: m.index_select(0, rows) for a, m in action_mask.items()}
        mask = self.ppo.action_mask(masks, self.agents)
        # each learner's rows as a tensor of their own, as a lone learner's (see ActorCritic.own_rows)
        own = [features] if self.trials == 1 else [part.clone() for part in features.split(self.counts)]
        logits, values = self.ppo.net.own_rows(own)
        logits = torch.cat(logits)
        if mask is not None:
            logits = logits.masked_fill(~mask, MASKED_LOGIT)
        noise = [
            torch.rand((n, *logits.shape[1:]), generator=g)
            for n, g in zip(self.counts, self.generators, strict=True)
        ]
        chosen, logprobs = gumbel_max(logits, torch.cat(noise))
        e = self.run.num_envs
        self._actions = torch.zeros(e, len(self.agents), dtype=torch.long)
        self._actions[rows] = chosen
        self._played = (self.run.global_step, obs)
        t = (self.run.global_step - self.start_step) // e
        full_mask = None if mask is None else mask.expand(len(rows), -1, -1)
        self.records.append((t, features, full_mask, chosen, logprobs, torch.cat(values)))
        self.seats.append(torch.zeros(e, len(self.agents), dtype=torch.bool))

    # learning

    def _spread(self, steps: torch.Tensor, x: torch.Tensor, length: int, fill: float = 0) -> torch.Tensor:
        """Recorded [S, R, ...] -> [K, T * E, ...]: each learner's rows at its instances, `fill` elsewhere."""
        out = torch.full((self.trials, length, self.run.num_envs, *x.shape[2:]), fill, dtype=x.dtype)
        out[self.trial_of_row[:, None], steps[None, :], self.rows[:, None]] = x.transpose(0, 1)
        return out.flatten(1, 2)

    def train(self, rollout: Rollout) -> list[dict[str, float]]:
        """One PPO update of every learner on the seats it played in this rollout; statistics per learner.

        A learner with fewer than two samples to learn from sits the update out (an empty dict).
        """
        records, self.records = self.records, []
        seats, self.seats = self.seats, []
        if not records or rollout.acting is None:
            return [{} for _ in range(self.trials)]
        length, e, a = rollout.reward.shape
        k = self.trials
        steps = torch.tensor([record[0] for record in records])
        column = lambda i: torch.stack([record[i] for record in records])  # noqa: E731
        mine = torch.zeros(length, e, a, dtype=torch.bool)
        mine[steps] = torch.stack(seats)
        mine = mine[None] & self.home[:, None, :, None]  # [K, T, E, A]
        values = self._spread(steps, column(5), length).view(k, length, e, a)
        done = rollout.done.bool()
        ended = done.flip(0).cumsum(0).flip(0) > 0  # [T, E] an episode end follows within the rollout
        advantages, returns = compute_gae(
            rollout.incentive[:, None].expand(length, k, e, a),
            values.transpose(0, 1),
            done[:, None, :, None],
            torch.zeros(k, e, a),
            gamma=self.ppo.config.gamma,
            gae_lambda=self.ppo.config.gae_lambda,
        )
        value_mask = mine & ended[None, :, :, None]
        policy_mask = value_mask & rollout.acting[None]
        active = (policy_mask.flatten(1).sum(1) >= 2).tolist()
        if not any(active):
            return [{} for _ in range(k)]
        batch = Batch(
            features=self._spread(steps, column(1), length),
            action_mask=None if records[0][2] is None else self._spread(steps, column(2), length, True),
            actions=self._spread(steps, column(3), length),
            logprobs=self._spread(steps, column(4), length),
            values=values.flatten(1, 2),
            advantages=advantages.transpose(0, 1).flatten(1, 2),
            returns=returns.transpose(0, 1).flatten(1, 2),
            policy_mask=policy_mask.flatten(1, 2),
            value_mask=value_mask.flatten(1, 2),
        )
        return self.ppo.update_trials(batch, active=active)

    def reset(self, trial: int) -> None:
        """Learner `trial` back to its initial weights and a fresh optimiser (its stream goes on)."""
        self.ppo.load_trial_net(trial, self.initial[trial]["net"])
        self.ppo.optimizer.load_trial_state_dict(trial, self.initial[trial]["optimizer"])

    def trial_state_dict(self, trial: int) -> dict[str, Any]:
        """Learner `trial`'s network, optimiser and stream, as a lone `PPO.state_dict()`."""
        return {
            "net": self.ppo.trial_net_state(trial),
            "optimizer": self.ppo.optimizer.trial_state_dict(trial),
            "generator": self.generators[trial].get_state(),
        }

    def load_trial_state_dict(self, trial: int, state: dict[str, Any]) -> None:
        """Restore `trial_state_dict` (or a lone PPO's state)."""
        self.ppo.load_trial_net(trial, state["net"])
        self.ppo.optimizer.load_trial_state_dict(trial, state["optimizer"])
        self.generators[trial].set_state(state["generator"])


class TrainedOpponent:
    """One of the league's learners, as a population member: its trial of a `LeagueLearners`.

    Args:
        learners: the batched learner it is a trial of.
        trial: which one.

    """

    def __init__(self, learners: LeagueLearners, trial: int) -> None:
        self.learners = learners
        self.trial = trial
        self.agents = learners.agents
        self.since_checkpoint = 0

    # what a snapshot copies (`incentive.population.SnapshotPolicy` takes any learner)
    @property
    def net(self) -> Any:
        """Its actor-critic network: a one-trial copy of its weights (alone, K = 1: the network itself)."""
        return self.learners.trial_net(self.trial)

    @property
    def initial(self) -> dict[str, Any]:
        """Its initial network and optimiser state (what `reset` restores)."""
        return self.learners.initial[self.trial]

    def features(self, obs: dict[str, torch.Tensor], agents: list[str]) -> torch.Tensor:
        """Network inputs, as the run's learner builds them."""
        return self.learners.ppo.features(obs, agents)

    def action_mask(self, masks: dict[str, torch.Tensor] | None, agents: list[str]) -> torch.Tensor | None:
        """Legal-action masks, as the run's learner builds them."""
        return self.learners.ppo.action_mask(masks, agents)

    @torch.no_grad()
    def probs(
        self, obs: dict[str, torch.Tensor], action_mask: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """Action probabilities [N, A, n] (for exact exploitability tables)."""
        logits = self.learners.ppo.net.own_rows([self.features(obs, self.agents)], [self.trial])[0][0]
        mask = self.action_mask(action_mask, self.agents)
        return torch.softmax(logits if mask is None else logits.masked_fill(~mask, -1e9), -1)

    @torch.no_grad()
    def act(
        self, obs: dict[str, torch.Tensor], action_mask: dict[str, torch.Tensor] | None, seats: torch.Tensor
    ) -> torch.Tensor:
        """Actions [E, A] for the seats it plays (every learner's come from one batched forward pass)."""
        return self.learners.act(self.trial, obs, action_mask, seats)

    def reset(self) -> None:
        """Back to the initial weights and a fresh optimiser (its sampling stream goes on)."""
        self.learners.reset(self.trial)

    def state_dict(self) -> dict[str, Any]:
        """Network, optimiser, stream, initial weights, iterations since its last snapshot."""
        return {
            "ppo": self.learners.trial_state_dict(self.trial),
            "initial": copy.deepcopy(self.initial),
            "since_checkpoint": self.since_checkpoint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`."""
        self.learners.load_trial_state_dict(self.trial, state["ppo"])
        self.learners.initial[self.trial] = copy.deepcopy(state["initial"])
        self.since_checkpoint = state["since_checkpoint"]
