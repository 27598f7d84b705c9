"""The population of policies that fills the opponent seats, its payoffs and ratings.

Opponent-sampling plugins (`self_play`, `fictitious_self_play`, `pfsp`,
`psro`, `league`) are subclasses of `PopulationSampler`, which carries every
hook they share: it owns a `Population`, answers `incentive_pick_opponents`
by sampling from the plugin's `distribution`, updates payoffs, ratings and
snapshots in `incentive_update_population`, and saves it all with the checkpoint.
A sampler plugin is then a `name`, a `Params` model and its distribution.

Members, each with a stable integer id:

| kind       | what                                                                   |
| ---------- | ---------------------------------------------------------------------- |
| learner    | the live learner (seat value -1); the "mirror" of self-play            |
| snapshot   | a frozen deep copy (`copy.deepcopy`) of the learner's network, taken    |
|            | every `snapshot_every` iterations or when the learner's win rate this  |
|            | iteration against its opponents reaches `snapshot_gate`; it never     |
|            | shares storage with the live network                                    |
| bot        | a fixed policy: `random` (uniform over legal actions, every env) and   |
|            | each env's scripted bots (Connect Four: `one_ply`, `minimax`; the      |
|            | matrix games: `always_cooperate`, `always_defect`)                     |

Ids are given in order: the listed `bots` first (0, 1, ...), then each
snapshot as it is taken (the one at start next). A curriculum may choose
opponents per instance with the task key `opponent` (`incentive.tasks`): a
member id fixes the instance's opponent seats to that member, -1 leaves the
choice to the sampler; like every task it applies from the instance's next
episode.

Eviction: at most `max_snapshots` snapshots; adding one more drops the oldest
snapshot, except the first one when `keep_first` is set (the initial policy
stays as an anchor; with `max_snapshots: 1` there is nothing else to drop, so
the first goes too). Bots are never evicted.

Seats. Each instance gets a learner seat (uniformly at random) and an opponent
member in every other seat, or, with the sampler's mirror share, the learner in
every seat. The loop swaps a seat's policy only at an episode boundary of its
instance, so the `policies` list handed to the loop is indexed by *slots* that
keep their member while any instance may still be playing it: the population
mirrors the loop's seats (`in_play`, updated from each rollout's `done`) and
frees an evicted member's slot only once no instance plays it any more. Frozen
policies act batched: one forward pass over the instances a snapshot plays.

Payoffs. After each iteration, every finished two-seat episode between the
learner and a member counts as a win (learner's return > the member's), a draw
(equal) or a loss. Counts decay by `decay` per iteration
(w <- decay * w + new wins), and the learner's win rate against member B is

    x_B = (wins_B + 0.5 draws_B) / games_B

Elo ratings (all start at `elo_start`; a snapshot inherits the learner's
rating when it is taken), updated once per iteration: the iteration's n_B
games against member B count as one match with score s_B = S_B / n_B
(S_B = wins + 0.5 draws), all matches at once, so the result does not depend
on the order of games or on how many instances run:

    E_B = 1 / (1 + 10 ** ((R_B - R_learner) / 400))           expected learner score
    d_B = K (s_B - E_B),   R_learner += sum_B d_B,   R_B -= d_B

Bots keep their rating fixed (they anchor the scale). Metrics, every iteration:
`population/size`, `population/snapshots`, `population/elo/<member>`,
`population/win_rate/<member>`, `population/prob/<member>`,
`population/mirror_share` (they describe the state in which the iteration was
played: this iteration's games are counted after the metrics are collected).

Designer metrics (every `evaluate_every` iterations; 0 = never):
`exploitability` of the learner's current policy and `mixture_exploitability`
of the sampler's meta-mixture over the members (its sampling distribution, or
PSRO's sigma; the random bot plays uniformly; NashConv / 2, exact, Kuhn and
Leduc poker only, `incentive.exploitability`), and `win_rate/<bot>` for each
`eval_bots` entry: the learner's score (win 1, draw 1/2) against the bot over
`eval_episodes` evaluation games, half in each seat, that produce no training
data, with the learner's actions sampled or greedy (`eval_policy`).

Checkpoints: everything (snapshot weights, sampling streams, counts, ratings,
slots, the sampler's own state) is saved as tensors and plain containers, so
`--resume` continues bit for bit.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from incentive.errors import IncentiveError, RecipeError
from incentive.markers import hookimpl
from incentive.tasks import OPPONENT
from incentive.types import LEARNER, EpisodeResults, OpponentAssignment, Rollout, RunContext

__all__ = [
    "Member",
    "Population",
    "PopulationParams",
    "PopulationSampler",
    "RandomPolicy",
    "SnapshotPolicy",
    "elo_update",
    "exact_game",
    "matches_against_bot",
    "pfsp_weights",
    "play_matches",
    "score_against_bot",
    "win_rates",
]

MASKED_LOGIT = -1e9


# --- pure formulas -------------------------------------------------------------


def win_rates(wins: torch.Tensor, draws: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """X = (wins + 0.5 draws) / games per member; NaN where a member has no games."""
    games = wins + draws + losses
    return torch.where(games > 0, (wins + 0.5 * draws) / games.clamp(min=1e-12), torch.nan)


def pfsp_weights(x: torch.Tensor, weighting: str, p: float = 2.0) -> torch.Tensor:
    """AlphaStar's prioritised fictitious self-play: P(B) = f(x_B) / sum_C f(x_C).

    Args:
        x: [K] the learner's win rate against each candidate; NaN (no games yet) counts as 0.5.
        weighting: `hard` (1 - x)^p, `variance` x (1 - x), `linear` 1 - x, `linear_capped`
            min(0.5, 1 - x).
        p: the exponent of `hard`.

    Returns:
        [K] probabilities; uniform when every f is 0 (or there are no games at all).

    """
    x = torch.nan_to_num(x.to(torch.float64), nan=0.5)
    if weighting == "hard":
        f = (1.0 - x) ** p
    elif weighting == "variance":
        f = x * (1.0 - x)
    elif weighting == "linear":
        f = 1.0 - x
    elif weighting == "linear_capped":
        f = (1.0 - x).clamp(max=0.5)
    else:
        raise ValueError(f"unknown PFSP weighting {weighting!r}")
    total = f.sum()
    if not bool(total > 0):
        return torch.full_like(f, 1.0 / len(f))
    return f / total


def elo_update(
    learner: float, ratings: torch.Tensor, score: torch.Tensor, games: torch.Tensor, *, k: float
) -> tuple[float, torch.Tensor]:
    """One simultaneous Elo update of the learner against K members (see the module docstring).

    Args:
        learner: the learner's rating.
        ratings: [K] the members' ratings.
        score: [K] the learner's score against each (wins + 0.5 draws).
        games: [K] games against each (all > 0).
        k: the Elo K factor.

    Returns:
        (the learner's new rating, the members' new ratings [K]).

    """
    expected = 1.0 / (1.0 + 10.0 ** ((ratings.to(torch.float64) - learner) / 400.0))
    delta = k * (score.to(torch.float64) / games.to(torch.float64) - expected)
    return learner + float(delta.sum()), ratings.to(torch.float64) - delta


# --- policies --------------------------------------------------------------------


def seated_inputs(
    learner: Any,
    agents: list[str],
    obs: dict[str, torch.Tensor],
    action_mask: dict[str, torch.Tensor] | None,
    seats: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(rows, features, masks) of the instances where a policy plays a seat; features None if none.

    `learner` gives the feature and mask layout (`features`, `action_mask`, as `incentive.ppo.PPO`).
    """
    rows = seats.any(1).nonzero().flatten()
    if len(rows) == 0:
        return rows, None, None
    features = learner.features({a: obs[a].index_select(0, rows) for a in agents}, agents)
    mask = learner.action_mask(
        None if action_mask is None else {a: m.index_select(0, rows) for a, m in action_mask.items()}, agents
    )
    return rows, features, mask


def _masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return logits if mask is None else logits.masked_fill(~mask, MASKED_LOGIT)


class SnapshotPolicy:
    """A frozen deep copy of the learner's network that fills seats.

    Args:
        learner: the learner (`incentive.ppo.PPO`) whose network is copied; only its
            feature and mask layout is used afterwards, never its weights.
        agents: the env's agents in seat order.
        seed: seed of the snapshot's own sampling stream.
        greedy: play the most likely legal action (ties: the lowest) instead of sampling;
            for evaluations only.

    """

    def __init__(self, learner: Any, agents: list[str], seed: int, *, greedy: bool = False) -> None:
        self.greedy = greedy
        self.net = copy.deepcopy(learner.net).requires_grad_(False)
        self.features = learner.features
        self.mask = learner.action_mask
        self.learner_like = learner  # its feature and mask layout (never its weights)
        self.agents = list(agents)
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def probs(
        self, obs: dict[str, torch.Tensor], action_mask: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        """Action probabilities [N, A, n] for every seat of every row."""
        logits = _masked(
            self.net.logits(self.features(obs, self.agents)), self.mask(action_mask, self.agents)
        )
        return torch.softmax(logits, -1)

    @torch.no_grad()
    def act(
        self,
        obs: dict[str, torch.Tensor],
        action_mask: dict[str, torch.Tensor] | None,
        seats: torch.Tensor,
    ) -> torch.Tensor:
        """Actions [E, A]: one forward pass over the instances where this snapshot plays a seat."""
        actions = torch.zeros(seats.shape, dtype=torch.long)
        rows, features, mask = seated_inputs(self.learner_like, self.agents, obs, action_mask, seats)
        if len(rows) == 0:
            return actions
        logits = _masked(self.net.logits(features), mask)
        if self.greedy:
            actions[rows] = logits.argmax(-1)
            return actions
        noise = torch.rand(logits.shape, generator=self.generator).clamp_(min=1e-20)
        actions[rows] = (logits - (-noise.log()).log()).argmax(-1)
        return actions

    def state_dict(self) -> dict[str, Any]:
        """Weights (cloned) and sampling stream."""
        return {
            "net": {k: v.clone() for k, v in self.net.state_dict().items()},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`."""
        self.net.load_state_dict(state["net"])
        self.generator.set_state(state["generator"])


class RandomPolicy:
    """Uniformly random legal actions in every seat (any env)."""

    def __init__(self, action_dims: list[int], agents: list[str], seed: int) -> None:
        self.action_dims = action_dims
        self.agents = list(agents)
        self.generator = torch.Generator().manual_seed(seed)

    def act(
        self,
        obs: dict[str, torch.Tensor],
        action_mask: dict[str, torch.Tensor] | None,
        seats: torch.Tensor,
    ) -> torch.Tensor:
        """Actions [E, A], uniform over each seat's legal actions."""
        e, a = seats.shape
        n = max(self.action_dims)
        legal = torch.arange(n) < torch.tensor(self.action_dims)[:, None]  # [A, n]
        legal = legal.expand(e, a, n).clone()
        if action_mask is not None:
            for i, agent in enumerate(self.agents):
                if agent in action_mask:
                    legal[:, i, : action_mask[agent].shape[1]] &= action_mask[agent].bool()
        keys = torch.rand(legal.shape, generator=self.generator).masked_fill(~legal, -1.0)
        return keys.argmax(-1)

    def state_dict(self) -> dict[str, Any]:
        """Sampling stream."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`."""
        self.generator.set_state(state["generator"])


class _BotPolicy:
    """An env's scripted bot with a checkpointable stream."""

    def __init__(self, bot: Any) -> None:
        self.bot = bot

    def act(self, obs, action_mask, seats) -> torch.Tensor:  # noqa: D102
        return self.bot.act(obs, action_mask, seats)

    def state_dict(self) -> dict[str, Any]:
        """Sampling stream."""
        return {"generator": self.bot.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`."""
        self.bot.generator.set_state(state["generator"])


class _Retired:
    """Fills a free slot of the policies list; never asked to act (no seat points at it)."""

    def act(self, obs, action_mask, seats) -> torch.Tensor:  # noqa: D102
        raise RuntimeError("a free population slot was asked to act")


MATRIX_GAMES = ("prisoners_dilemma", "stag_hunt", "chicken", "matrix_game")
MATRIX_GAME_BOTS = {"always_cooperate": 0, "always_defect": 1}
"""Constant bots of the matrix games: action 0 cooperates (C, stag, swerve), 1 defects (D, hare, straight)."""


class ConstantPolicy:
    """The same action in every seat it plays (a matrix game's `always_cooperate` / `always_defect`)."""

    def __init__(self, action: int) -> None:
        self.action = action

    def act(self, obs, action_mask, seats) -> torch.Tensor:  # noqa: D102
        return torch.full(seats.shape, self.action, dtype=torch.long)

    def state_dict(self) -> dict[str, Any]:
        """Nothing changes: no state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


def env_bot_ids(env_id: str) -> list[str]:
    """Fixed bot ids available for an env: `random` everywhere, plus the env's scripted bots."""
    if env_id == "connect_four":
        from incentive.envs.connect_four_bots import BOTS

        return ["random", *[name for name in BOTS if name != "random"]]
    if env_id in MATRIX_GAMES:
        return ["random", *MATRIX_GAME_BOTS]
    return ["random"]


def make_bot_policy(
    bot_id: str, *, env_id: str, agents: list[str], action_dims: list[int], seed: int, minimax_depth: int = 2
) -> Any:
    """The fixed policy `bot_id` for the env (ValueError for an unknown id)."""
    if bot_id not in env_bot_ids(env_id):
        raise ValueError(
            f"unknown bot {bot_id!r} for env {env_id!r}; available: {', '.join(env_bot_ids(env_id))}"
        )
    generator = torch.Generator().manual_seed(seed)
    if env_id == "connect_four":
        from incentive.envs.connect_four_bots import make_bot

        params = {"depth": minimax_depth} if bot_id == "minimax" else {}
        return _BotPolicy(make_bot(bot_id, generator=generator, **params))
    if bot_id in MATRIX_GAME_BOTS:
        return ConstantPolicy(MATRIX_GAME_BOTS[bot_id])
    return RandomPolicy(action_dims, agents, seed)


# --- evaluation games ------------------------------------------------------------


def play_matches(env: Any, first: Any, second: Any, *, seed: int, max_steps: int = 10_000) -> torch.Tensor:
    """One episode per instance of `env`: `first` in seat 0 of the first half, seat 1 of the rest.

    No training data is produced. Both policies act on every step (batched), each seat
    takes its own policy's action.

    Returns:
        [E, 2] float64: the return of `first` and of `second` in each instance's first episode.

    """
    e = env.num_envs
    ts = env.reset(seed=seed)
    first_seat = (torch.arange(e) >= e // 2).long()  # instances [0, e/2) seat 0, the rest seat 1
    seats_first = torch.zeros(e, 2, dtype=torch.bool)
    seats_first[torch.arange(e), first_seat] = True
    total = torch.zeros(e, 2, dtype=torch.float64)
    result = torch.full((e, 2), torch.nan, dtype=torch.float64)
    for _ in range(max_steps):
        a = first.act(ts.obs, ts.action_mask, seats_first)
        b = second.act(ts.obs, ts.action_mask, ~seats_first)
        ts = env.step(torch.where(seats_first, a, b))
        total += ts.reward.to(torch.float64)
        fresh = ts.done & result[:, 0].isnan()
        rows = torch.arange(e)
        mine = total[rows, first_seat]
        theirs = total[rows, 1 - first_seat]
        result[fresh] = torch.stack([mine, theirs], 1)[fresh]
        total[ts.done] = 0.0
        if not bool(result[:, 0].isnan().any()):
            return result
    raise IncentiveError(f"evaluation games did not end within {max_steps} steps")


def score(result: torch.Tensor) -> float:
    """Mean score of the first player (win 1, draw 1/2, loss 0) from `play_matches` results."""
    return float(
        ((result[:, 0] > result[:, 1]).double() + 0.5 * (result[:, 0] == result[:, 1]).double()).mean()
    )


def exact_game(env: Any) -> Any:
    """The env's exact game model (a poker env's `PokerGame`: exploitability, exact payoffs), or None."""
    return env.game if getattr(env, "game_name", "") else None


def matches_against_bot(
    run: RunContext,
    bot_id: str,
    *,
    games: int,
    seed: int,
    minimax_depth: int = 2,
    greedy: bool = False,
    policy: Any = None,
) -> torch.Tensor:
    """`play_matches` of the learner (or `policy`, a wrapper of it) against a fixed bot, half in each seat.

    The games are played with the env's `evaluation_params()`: without training-only devices such as
    Connect Four's random openings, so they measure the game itself, from its usual start.
    """
    env = type(run.env)(num_envs=games, params=run.env.evaluation_params())
    me = policy if policy is not None else SnapshotPolicy(run.learner, run.agents, seed, greedy=greedy)
    other = make_bot_policy(
        bot_id,
        env_id=run.recipe.env.id,
        agents=run.agents,
        action_dims=[int(run.env.action_spaces[a].n) for a in run.agents],
        seed=seed + 1,
        minimax_depth=minimax_depth,
    )
    return play_matches(env, me, other, seed=seed)


def score_against_bot(
    run: RunContext, bot_id: str, *, games: int, seed: int, minimax_depth: int = 2, greedy: bool = False
) -> float:
    """The learner's score (win 1, draw 1/2) against a fixed bot over `games` games, half in each seat."""
    return score(
        matches_against_bot(run, bot_id, games=games, seed=seed, minimax_depth=minimax_depth, greedy=greedy)
    )


# --- the population --------------------------------------------------------------


@dataclass
class Member:
    """A population member: a stable id, its policy, and the learner's record against it."""

    id: int
    kind: str  # "snapshot" | "bot" | a sampler's own kind (the league's "main", "exploiter")
    name: str
    policy: Any
    created: int
    elo: float
    protected: bool = False
    wins: float = 0.0
    draws: float = 0.0
    losses: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)  # derived data (poker tables), never saved


class Population:
    """Members, slots for the loop's policies list, payoff counts and ratings (see the module docstring)."""

    def __init__(self, *, run: RunContext, params: PopulationParams) -> None:
        self.run = run
        self.params = params
        self.members: list[Member] = []
        self.retired: list[Member] = []
        self.slots: list[int] = []  # slot -> member id (-1: free)
        self.in_play = torch.full((run.num_envs, len(run.agents)), LEARNER, dtype=torch.long)
        self.next_id = 0
        self.snapshots_taken = 0
        self.pending = self.in_play.clone()  # the seats of the latest assignment
        self.learner_elo = params.elo_start
        self.last_games = torch.zeros(3, dtype=torch.float64)  # this iteration's wins, draws, losses
        self.restore_policy: Any = None  # kind, name -> policy, for members of a sampler's own kinds

    # members

    def _seed(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self.run.generator))

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def add_bot(self, bot_id: str) -> Member:
        """Add the fixed bot `bot_id` (ValueError if the env has no such bot)."""
        run = self.run
        policy = make_bot_policy(
            bot_id,
            env_id=run.recipe.env.id,
            agents=run.agents,
            action_dims=[int(run.env.action_spaces[a].n) for a in run.agents],
            seed=self._seed(),
            minimax_depth=self.params.minimax_depth,
        )
        return self.add_member("bot", bot_id, policy)

    def add_member(self, kind: str, name: str, policy: Any) -> Member:
        """Add a member that is never evicted (a bot, or a sampler's own players such as exploiters)."""
        member = Member(self._new_id(), kind, name, policy, self.run.iteration, self.params.elo_start, True)
        self.members.append(member)
        return member

    def add_snapshot(
        self, iteration: int, *, source: Any = None, name: str | None = None, seed: int | None = None
    ) -> Member:
        """Freeze a deep copy of the learner (or of `source`); past the cap, evict the oldest unprotected.

        Args:
            iteration: when it is taken.
            source: what to copy (anything with `net`, `features`, `action_mask`; default the run's learner).
            name: the member's name (default `snapshot_<id>`).
            seed: seed of its sampling stream (default: drawn from the run's stream now).

        """
        member_id = self._new_id()
        seed = self._seed() if seed is None else seed
        policy = SnapshotPolicy(source or self.run.learner, self.run.agents, seed)
        first = self.snapshots_taken == 0
        self.snapshots_taken += 1
        member = Member(
            member_id,
            "snapshot",
            name or f"snapshot_{member_id}",
            policy,
            iteration,
            self.learner_elo,
            protected=first and self.params.keep_first,
        )
        self.members.append(member)
        snapshots = [m for m in self.members if m.kind == "snapshot"]
        if len(snapshots) > self.params.max_snapshots:
            older = snapshots[:-1]  # never the one just taken
            victim = next((m for m in older if not m.protected), older[0])
            self.members.remove(victim)
            self.retired.append(victim)
        return member

    def member(self, member_id: int) -> Member | None:
        """The member (current or retired) with this id."""
        for m in self.members + self.retired:
            if m.id == member_id:
                return m
        return None

    # seats

    def assign(self, ids: torch.Tensor) -> OpponentAssignment:
        """Seats [E, A] of member ids (-1 learner) -> the loop's assignment of slot indices."""
        in_play = set(self.in_play[self.in_play >= 0].tolist())
        for slot, member_id in enumerate(self.slots):  # free the slots of retired members nobody plays
            if member_id >= 0 and slot not in in_play and self.member_is_retired(member_id):
                self.slots[slot] = -1
        self.retired = [m for m in self.retired if m.id in self.slots]
        lookup = torch.full((self.next_id + 1,), LEARNER, dtype=torch.long)
        for member_id in sorted(set(ids[ids >= 0].tolist())):
            if member_id not in self.slots:
                free = self.slots.index(-1) if -1 in self.slots else len(self.slots)
                if free == len(self.slots):
                    self.slots.append(-1)
                self.slots[free] = member_id
            lookup[member_id] = self.slots.index(member_id)
        seats = torch.where(ids >= 0, lookup[ids.clamp(min=0)], LEARNER)
        if self.run.global_step == 0:  # the loop applies the first assignment at once
            self.in_play = seats.clone()
        self.pending = seats
        policies = [self._policy(member_id) for member_id in self.slots]
        return OpponentAssignment(policies=policies, seats=seats)

    def member_is_retired(self, member_id: int) -> bool:
        """Whether the member was evicted (it may still be finishing episodes)."""
        return any(m.id == member_id for m in self.retired)

    def _policy(self, member_id: int) -> Any:
        member = self.member(member_id) if member_id >= 0 else None
        return _Retired() if member is None else member.policy

    def observe(self, done: torch.Tensor) -> None:
        """Mirror the loop: instances that ended an episode this rollout now play the pending seats."""
        switched = done.bool().any(0)
        self.in_play = torch.where(switched[:, None], self.pending, self.in_play)

    # payoffs and ratings

    def record(self, results: EpisodeResults | None) -> dict[int, torch.Tensor]:
        """Decay every member's counts, add this iteration's games, update Elo.

        Returns:
            member id -> [wins, draws, losses] of the learner against it this iteration.

        """
        counts: dict[int, torch.Tensor] = {}
        if results is not None and results.seats.shape[1] == 2:
            seats, returns = results.seats, results.returns.to(torch.float64)
            learner = seats == LEARNER
            valid = learner.sum(1) == 1
        else:
            valid = torch.zeros(0, dtype=torch.bool)
        if bool(valid.any()):
            mine = returns[learner & valid[:, None]]
            theirs = returns[(~learner) & valid[:, None]]
            slot = seats[(~learner) & valid[:, None]]
            outcome = torch.stack([mine > theirs, mine == theirs, mine < theirs], 1).to(torch.float64)
            per_slot = torch.zeros(len(self.slots), 3, dtype=torch.float64).index_add_(0, slot, outcome)
            for s, member_id in enumerate(self.slots):
                if member_id >= 0 and bool(per_slot[s].sum() > 0):
                    counts[member_id] = per_slot[s]
        decay = self.params.decay
        for m in self.members:
            m.wins, m.draws, m.losses = decay * m.wins, decay * m.draws, decay * m.losses
        rated = [m for m in self.members if m.id in counts]
        for m in rated:
            w, d, l_ = counts[m.id].tolist()
            m.wins, m.draws, m.losses = m.wins + w, m.draws + d, m.losses + l_
        self.last_games = sum(counts.values(), torch.zeros(3, dtype=torch.float64))
        if rated:
            table = torch.stack([counts[m.id] for m in rated])
            new_learner, new = elo_update(
                self.learner_elo,
                torch.tensor([m.elo for m in rated], dtype=torch.float64),
                table[:, 0] + 0.5 * table[:, 1],
                table.sum(1),
                k=self.params.elo_k,
            )
            self.learner_elo = new_learner
            for m, rating in zip(rated, new.tolist(), strict=True):
                if m.kind != "bot":
                    m.elo = rating
        return counts

    def win_rate(self) -> torch.Tensor:
        """[K] the learner's decayed win rate against each current member (NaN: no games)."""
        if not self.members:
            return torch.zeros(0, dtype=torch.float64)
        col = lambda name: torch.tensor([getattr(m, name) for m in self.members], dtype=torch.float64)  # noqa: E731
        return win_rates(col("wins"), col("draws"), col("losses"))

    # checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything, as tensors and plain containers."""

        def one(m: Member) -> dict[str, Any]:
            return {
                "id": m.id,
                "kind": m.kind,
                "name": m.name,
                "created": m.created,
                "elo": m.elo,
                "protected": m.protected,
                "counts": [m.wins, m.draws, m.losses],
                "policy": m.policy.state_dict(),
            }

        return {
            "members": [one(m) for m in self.members],
            "retired": [one(m) for m in self.retired],
            "slots": list(self.slots),
            "in_play": self.in_play.clone(),
            "pending": self.pending.clone(),
            "next_id": self.next_id,
            "snapshots_taken": self.snapshots_taken,
            "learner_elo": self.learner_elo,
            "last_games": self.last_games.clone(),
        }

    def load_state_dict(self, state: dict[str, Any], *, where: str) -> None:
        """Restore `state_dict`; `where` (the checkpoint file) names the source of a broken snapshot."""

        def one(s: dict[str, Any]) -> Member:
            if s["kind"] == "snapshot":
                policy: Any = SnapshotPolicy(self.run.learner, self.run.agents, 0)
            elif s["kind"] != "bot":
                policy = self.restore_policy(s["kind"], s["name"])
            else:
                policy = make_bot_policy(
                    s["name"],
                    env_id=self.run.recipe.env.id,
                    agents=self.run.agents,
                    action_dims=[int(self.run.env.action_spaces[a].n) for a in self.run.agents],
                    seed=0,
                    minimax_depth=self.params.minimax_depth,
                )
            try:
                policy.load_state_dict(s["policy"])
            except Exception as exc:
                raise IncentiveError(
                    f"{where}: population member {s['name']!r} cannot be loaded "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
                ) from None
            w, d, l_ = s["counts"]
            return Member(
                s["id"], s["kind"], s["name"], policy, s["created"], s["elo"], s["protected"], w, d, l_
            )

        self.members = [one(s) for s in state["members"]]
        self.retired = [one(s) for s in state["retired"]]
        self.slots = list(state["slots"])
        self.in_play = state["in_play"].clone()
        self.pending = state["pending"].clone()
        self.next_id = state["next_id"]
        self.snapshots_taken = state["snapshots_taken"]
        self.learner_elo = state["learner_elo"]
        self.last_games = state["last_games"].clone()


# --- the sampler base --------------------------------------------------------------


class PopulationParams(BaseModel):
    """What every population sampler accepts."""

    model_config = ConfigDict(extra="forbid")
    snapshot_every: int | None = Field(
        10, ge=1, description="Freeze a snapshot of the learner every this many iterations (null: never)."
    )
    snapshot_gate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Also freeze one when the learner's win rate this iteration reaches this (null: off).",
    )
    gate_min_games: int = Field(32, ge=1, description="Games the win-rate gate needs in the iteration.")
    snapshot_at_start: bool = Field(True, description="Freeze the untrained learner as the first snapshot.")
    max_snapshots: int = Field(
        16, ge=1, description="Cap on snapshots; the oldest unprotected one is evicted."
    )
    keep_first: bool = Field(True, description="Never evict the first snapshot.")
    bots: list[str] = Field(
        default_factory=list, description="Fixed bots in the population: `random`, or the env's bots."
    )
    minimax_depth: int = Field(2, ge=1, le=5, description="Depth of the Connect Four `minimax` bot.")
    decay: float = Field(0.99, gt=0, le=1, description="Per-iteration decay of the win/draw/loss counts.")
    elo_k: float = Field(16.0, gt=0, description="Elo K factor (per member per iteration).")
    elo_start: float = Field(1000.0, description="Initial Elo rating.")
    evaluate_every: int = Field(
        0, ge=0, description="Designer metrics every this many iterations (0: never)."
    )
    eval_bots: list[str] = Field(
        default_factory=list,
        description="Bots the learner's `win_rate/<bot>` designer metric is measured on.",
    )
    eval_episodes: int = Field(256, ge=2, description="Evaluation games per bot (half in each seat).")
    eval_policy: Literal["sampled", "greedy"] = Field(
        "sampled",
        description="How the learner plays its evaluation games: sampling its actions, or greedy "
        "(the most likely legal action), as `evaluate.policy` does on held-out levels.",
    )


class PopulationSampler:
    """The base of the opponent-sampling plugins: a population, seats, payoffs, metrics, state.

    A plugin subclasses it with a `name`, a `Params` model (a `PopulationParams`) and
    `distribution`, and may extend `check`, `on_snapshot`, `extra_metrics`, `mixture_weights`
    and the state. The hooks are inherited (pluggy finds `@hookimpl` methods on base classes;
    `incentive plugins` reads the base from source too, without importing torch).
    """

    name = "population"
    Params = PopulationParams

    def __init__(self, params: PopulationParams) -> None:
        self.params = params
        self.population: Population | None = None
        self.last_probs: tuple[float, torch.Tensor] = (1.0, torch.zeros(0))  # of the latest pick
        self.designer_metrics = ["exploitability", "mixture_exploitability"] + [
            f"win_rate/{bot}" for bot in params.eval_bots
        ]

    # to override

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """(mirror share: probability an instance is the learner in every seat, [K] over members)."""
        raise NotImplementedError

    def on_snapshot(self, member: Member) -> None:
        """Called after a member joins (PSRO evaluates it against the others)."""

    def extra_metrics(self) -> dict[str, float]:
        """The sampler's own `population/...` metrics."""
        return {}

    def mixture_weights(self) -> torch.Tensor:
        """[K] weights over the members for `mixture_exploitability` (default: the sampling distribution)."""
        return self.distribution(self.population.run.iteration)[1]

    def extra_state(self) -> dict[str, Any]:
        """The sampler's own state for checkpoints."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore `extra_state`."""

    # hooks

    @hookimpl
    def incentive_setup(self, run: RunContext) -> None:
        """Check the env fits, build the population (bots, the first snapshot)."""
        plugin = self.name
        if len(run.agents) < 2:
            raise RecipeError(
                f"{run.recipe.source}: field 'opponents.plugin': {plugin!r} samples opponents from a "
                f"population and needs an env with at least two seats; env {run.recipe.env.id!r} has "
                f"{len(run.agents)} agent"
            )
        known = env_bot_ids(run.recipe.env.id)
        for field_name in ("bots", "eval_bots"):
            for index, bot in enumerate(getattr(self.params, field_name)):
                if bot not in known:
                    raise RecipeError(
                        f"{run.recipe.source}: field 'opponents.params.{field_name}.{index}': unknown bot "
                        f"{bot!r} for env {run.recipe.env.id!r}; available: {', '.join(known)}"
                    )
        self._check_objectives(run)
        self.check(run)
        self.population = Population(run=run, params=self.params)
        for bot in self.params.bots:
            self.on_snapshot(self.population.add_bot(bot))
        if self.params.snapshot_at_start and self.params.snapshot_every is not None:
            self.on_snapshot(self.population.add_snapshot(0))

    def _check_objectives(self, run: RunContext) -> None:
        """An objective on a population designer metric needs evaluations, and poker for exploitability."""
        recipe = run.recipe
        for index, objective in enumerate(recipe.objectives):
            metric = objective.name
            if objective.metric is None or metric not in self.designer_metrics:
                continue
            where = "objective" if not isinstance(recipe.objective, list) else f"objective.{index}"
            if self.params.evaluate_every == 0:
                raise RecipeError(
                    f"{recipe.source}: field 'opponents.params.evaluate_every': {where}.metric "
                    f"{objective.metric!r} is measured by periodic evaluations; set evaluate_every >= 1"
                )
            if "exploitability" in metric and exact_game(run.env) is None:
                raise RecipeError(
                    f"{recipe.source}: field '{where}.metric': {objective.metric!r} is computed exactly for "
                    f"Kuhn and Leduc poker only, not for env {recipe.env.id!r}"
                )

    def check(self, run: RunContext) -> None:
        """Further checks of the recipe against the env (subclasses)."""

    @hookimpl
    def incentive_pick_opponents(self, run: RunContext, iteration: int) -> OpponentAssignment:
        """Sample each instance's learner seat and opponents."""
        pop = self.population
        e, a = run.num_envs, len(run.agents)
        share, probs = self.distribution(iteration)
        self.last_probs = (share, probs)
        g = run.generator
        learner_seat = torch.randint(a, (e,), generator=g)
        ids = torch.full((e, a), LEARNER, dtype=torch.long)
        if len(pop.members) > 0 and bool(probs.sum() > 0) and share < 1.0:
            member_ids = torch.tensor([m.id for m in pop.members])
            picks = torch.multinomial(probs.to(torch.float64), e * a, replacement=True, generator=g)
            ids = member_ids[picks].view(e, a)
            mirror = torch.rand(e, generator=g) < share
            ids = torch.where((torch.arange(a) == learner_seat[:, None]) | mirror[:, None], LEARNER, ids)
        chosen = None if run.tasks is None else run.tasks.pending.get(OPPONENT)
        if chosen is not None:  # a curriculum over opponents: member ids per instance, -1 = the sampler's
            chosen = chosen.long()
            known = {m.id for m in pop.members}
            unknown = sorted(set(chosen[chosen >= 0].tolist()) - known)
            if unknown:
                raise ValueError(
                    f"task 'opponent': member id(s) {unknown} are not in the population (ids: "
                    + ", ".join(f"{m.id} {m.name}" for m in pop.members)
                    + ")"
                )
            fixed = chosen >= 0
            opponent_seats = torch.arange(a) != learner_seat[:, None]
            ids = torch.where(fixed[:, None] & opponent_seats, chosen[:, None], ids)
            ids = torch.where(fixed[:, None] & ~opponent_seats, LEARNER, ids)
        return pop.assign(ids)

    @hookimpl
    def incentive_collect_metrics(self, run: RunContext, rollout: Rollout) -> dict[str, float]:
        """Population stats every iteration; designer metrics when due."""
        pop = self.population
        pop.observe(rollout.done)
        share, probs = self.last_probs
        x = pop.win_rate()
        metrics = {
            "population/size": float(len(pop.members)),
            "population/snapshots": float(sum(m.kind == "snapshot" for m in pop.members)),
            "population/mirror_share": float(share),
            "population/elo/learner": float(pop.learner_elo),
        }
        games = pop.last_games
        if float(games.sum()) > 0:
            metrics["population/win_rate/last_iteration"] = float((games[0] + 0.5 * games[1]) / games.sum())
        for i, m in enumerate(pop.members):
            metrics[f"population/elo/{m.name}"] = float(m.elo)
            if not math.isnan(float(x[i])):
                metrics[f"population/win_rate/{m.name}"] = float(x[i])
            if i < len(probs):
                metrics[f"population/prob/{m.name}"] = float(probs[i]) * (1.0 - share)
        metrics.update(self.extra_metrics())
        every = self.params.evaluate_every
        if every and run.iteration % every == 0:
            metrics.update(self.designer_values(run))
        return metrics

    @hookimpl
    def incentive_update_population(self, iteration: int, results: EpisodeResults) -> None:
        """Count this iteration's games (decaying the old ones), then take a snapshot if one is due."""
        self.population.record(results)
        self.maybe_snapshot(iteration)

    def maybe_snapshot(self, iteration: int) -> None:
        """Snapshot every `snapshot_every` iterations, or when the gate opens."""
        params, pop = self.params, self.population
        due = params.snapshot_every is not None and iteration % params.snapshot_every == 0
        games = pop.last_games
        if params.snapshot_gate is not None and float(games.sum()) >= params.gate_min_games:
            due |= float((games[0] + 0.5 * games[1]) / games.sum()) >= params.snapshot_gate
        if due:
            self.on_snapshot(pop.add_snapshot(iteration))

    @hookimpl
    def incentive_state_dict(self) -> dict[str, Any]:
        """The population and the sampler's own state."""
        return {"population": self.population.state_dict(), "sampler": self.extra_state()}

    @hookimpl
    def incentive_load_state_dict(self, run: RunContext, state: dict[str, Any]) -> None:
        """Restore the population (naming the checkpoint file if a snapshot cannot be loaded)."""
        self.population.load_state_dict(state["population"], where=str(run.run_dir / "checkpoint.pt"))
        self.load_extra_state(state["sampler"])

    # designer metrics

    def designer_values(self, run: RunContext) -> dict[str, float]:
        """Exploitability (poker) and win rates against `eval_bots` (evaluation games, no training data)."""
        out: dict[str, float] = {}
        learner = run.learner
        game = exact_game(run.env)
        if game is not None:
            from incentive.exploitability import exploitability, mixture_exploitability, tabulate_seats

            live = SnapshotPolicy(learner, run.agents, 0)
            out["designer/exploitability"] = exploitability(game, tabulate_seats(game, live.probs))
            members = self.population.members  # every one is tabular in poker (the random bot: uniform)
            weights = self.mixture_weights()
            if members and float(weights.sum()) > 0:
                tables = torch.stack([self.table(game, m) for m in members])
                out["designer/mixture_exploitability"] = mixture_exploitability(game, tables, weights)
        for bot in self.params.eval_bots:
            out[f"designer/win_rate/{bot}"] = score_against_bot(
                run,
                bot,
                games=self.params.eval_episodes,
                seed=run.recipe.seed * 1_000_003 + run.iteration,
                minimax_depth=self.params.minimax_depth,
                greedy=self.params.eval_policy == "greedy",
            )
        return out

    @staticmethod
    def table(game: Any, member: Member) -> torch.Tensor:
        """A member's tabular poker policy (cached on the member; the random bot is uniform)."""
        from incentive.exploitability import tabulate_seats, uniform_policy

        if member.kind not in ("snapshot", "bot"):  # a policy that still changes: never cached
            return tabulate_seats(game, member.policy.probs)
        if "table" not in member.cache:
            if member.kind == "bot":
                member.cache["table"] = uniform_policy(game)
            else:
                member.cache["table"] = tabulate_seats(game, member.policy.probs)
        return member.cache["table"]
