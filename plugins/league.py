"""League training with AlphaStar's roles (Vinyals et al. 2019): main agents and their exploiters.

Several learners train in one run. Main agent 0 is the run's own learner
(the loop's PPO, the one the designer metrics measure). With `main_agents: N`
(1 to 4), main agents 1 .. N-1 (`main_1`, `main_2`, ...) and every exploiter
are learners of their own (own network, optimiser and stream, the recipe's
learner settings): each sits in seats of its own instances, records what it
does there, and after each rollout takes one PPO update on those seats
(rewards and acting mask from the rollout). They train as one batched
learner (`incentive.league.LeagueLearners`: one forward pass per step and
one update per iteration for all of them, each computing what it would
alone); with `learner.conv_channels` each keeps a PPO of its own.

Instances are split between the learners and keep their trainee for the whole
run: the first `main_share` of them train the main agents, split evenly
between them (round-robin: instance k of that block trains main agent
k mod N, so the counts differ by at most one); the rest go round-robin to the
exploiters. Only main agent 0's instances have a learner seat (the run's
learner takes no data from the others). Every trainee needs at least one
instance: too many main agents for `main_share` of `env.num_envs` is an
error naming `main_agents`, too many exploiters for the rest one naming
`main_share`. Each instance's opponent is then drawn from its trainee's
distribution (`incentive.league`, where the formulas are), on the trainee's
own payoffs:

| role             | plays                                                                    |
| ---------------- | ------------------------------------------------------------------------ |
| main agent i     | 50% PFSP `hard` over all historical players, 15% verification against    |
|                  | main-exploiter snapshots it cannot beat or own snapshots it forgot,      |
|                  | 35% self-play: a mirror game of itself (and the verification share when  |
|                  | there is nothing to check)                                               |
| main exploiter   | a current main agent (drawn uniformly per instance at each pick) while it |
|                  | wins > 10% against that one, else PFSP `variance` over that main agent's |
|                  | snapshots                                                                |
| league exploiter | PFSP `linear_capped` over all historical players                         |

A main exploiter's main agent is drawn uniformly per instance, as AlphaStar
draws one per match: each exploiter meets every main agent even when it has
fewer instances than there are main agents, and the draw takes no random
number when `main_agents` is 1. "The current main agent" is a live copy of
it (`main` for agent 0, `main_<i>_copy` for the others), refreshed at each
pick and counted as that main agent in the payoffs: the main agents
themselves play only on their own instances, so they train only on those.
Self-play differs from AlphaStar's, where a main agent's self-play branch
draws any main agent as the opponent: here each main agent plays a mirror
of itself, and meets the others through their snapshots (historical
players), as the issue asks.

Snapshots and resets (AlphaStar's rules, with iterations for its 2e9 / 4e9
steps): a player is checkpointed once at least `checkpoint_min_iterations`
have passed since its last snapshot and either its win rate reaches
`checkpoint_win_rate` (0.7) against every opponent it answers to (main agents
and league exploiters: every historical player; main exploiters: every main
agent) or `checkpoint_max_iterations` have passed. Then a main exploiter is
reset to its initial weights, a league exploiter with probability
`league_reset_prob` (0.25); main agents never are. Each untrained main agent
is its first snapshot. Snapshots are named `<player>@<iteration>` (`main@...`
for agent 0, `main_<i>@...` for the others); `max_snapshots` caps them all
(oldest evicted first, the first one kept).

Payoffs between every pair of players (`incentive.league.Payoffs`, each main
agent a player of its own), decayed by `decay` per iteration, drive all of
the above. Metrics: those of every population sampler (main agent 0's view,
`population/...`), plus `population/league/<player>/entropy` for every other
learner, `population/league/<exploiter>/win_rate_main` (against main agent 0;
with several main agents also `win_rate_main_<i>`), and for each main agent
i >= 1 `population/league/main_<i>/mirror_share` and `.../win_rate_history`
(its decayed win rate over all historical players it played, pooled). Exact
`mixture_exploitability` (poker) is that of main agent 0's sampling
distribution over the snapshots and bots.

Limits: at most 4 main agents, and a league without one is an error;
two-seat games; the other learners are updated in
`incentive_update_population`, which receives the rollout, after the
iteration's metrics are written (so `perf/steps_per_s` leaves their update
out); each learner's update runs over all T * E samples of the rollout,
masked to its own seats, as a lone learner's did.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator, model_validator

from incentive import hookimpl
from incentive.errors import RecipeError
from incentive.league import (
    LeagueLearners,
    Payoffs,
    TrainedOpponent,
    league_exploiter_probs,
    main_exploiter_probs,
    main_probs,
)
from incentive.population import PopulationParams, PopulationSampler, SnapshotPolicy
from incentive.types import LEARNER, EpisodeResults, OpponentAssignment, Rollout, RunContext

__all__ = ["League"]

MAIN = "main"  # main agent 0's name, and the member kind of every main agent's live copy
MAIN_AGENT = "main_agent"  # member kind of main agents 1 .. N-1 (learners of their own)
COPY = "_copy"  # suffix of the live copies of main agents 1 .. N-1
MAX_MAIN_AGENTS = 4


class LeagueParams(PopulationParams):
    """Roles, their shares of instances, and AlphaStar's snapshot rules."""

    snapshot_every: int | None = Field(
        None, description="Not used by the league: its checkpoint rules decide (leave null)."
    )
    main_agents: int = Field(
        1,
        description="Main agents (1 to 4): agent 0 is the run's learner, the others learners of their own.",
    )
    main_exploiters: int = Field(1, ge=0, le=16, description="Main exploiters (learners of their own).")
    league_exploiters: int = Field(1, ge=0, le=16, description="League exploiters (learners of their own).")
    main_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of the instances that train the main agents (split evenly); the rest, exploiters.",
    )
    pfsp_share: float = Field(
        0.5, ge=0, le=1, description="Main agents: share of PFSP over all historical players."
    )
    verification_share: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Main agents: share of checks against exploiters and forgotten snapshots.",
    )
    checkpoint_min_iterations: int = Field(
        10, ge=1, description="Iterations between a player's snapshots, at least."
    )
    checkpoint_max_iterations: int = Field(
        20, ge=1, description="Iterations after which a player is snapshotted whatever its win rate."
    )
    checkpoint_win_rate: float = Field(
        0.7, ge=0, le=1, description="Win rate against every opponent it answers to that earns a snapshot."
    )
    league_reset_prob: float = Field(
        0.25, ge=0, le=1, description="Probability that a league exploiter is reset after its snapshot."
    )

    @field_validator("main_agents")
    @classmethod
    def _main_agents_in_range(cls, value: int) -> int:
        if value < 1:
            raise ValueError(
                f"a league needs at least one main agent, the run's learner (given {value}); without a "
                "main agent there is nobody for the exploiters to exploit"
            )
        if value > MAX_MAIN_AGENTS:
            raise ValueError(f"a league has at most {MAX_MAIN_AGENTS} main agents (given {value})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LeagueParams:
        if self.snapshot_every is not None or self.snapshot_gate is not None:
            raise ValueError(
                "snapshot_every and snapshot_gate are not used by the league: it snapshots players by "
                "AlphaStar's rules (checkpoint_min_iterations, checkpoint_max_iterations, "
                "checkpoint_win_rate)"
            )
        if self.pfsp_share + self.verification_share > 1:
            raise ValueError(
                f"pfsp_share + verification_share must be at most 1 (the rest is self-play), given "
                f"{self.pfsp_share} + {self.verification_share}"
            )
        if self.checkpoint_max_iterations < self.checkpoint_min_iterations:
            raise ValueError("checkpoint_max_iterations must be at least checkpoint_min_iterations")
        return self


class League(PopulationSampler):
    """Main agents (the run's learner first), main exploiters and league exploiters, trained together."""

    name = "league"
    Params = LeagueParams

    def __init__(self, params: LeagueParams) -> None:
        super().__init__(params)
        self.payoffs = Payoffs()
        self.mains: dict[str, TrainedOpponent] = {}  # main agents 1 .. N-1 (agent 0 is the run's learner)
        self.exploiters: dict[str, TrainedOpponent] = {}
        self.learner_groups: list[LeagueLearners] = []  # the learners above, batched (see the module)
        self.main_since_checkpoint = 0  # main agent 0's; the others count in their TrainedOpponent
        # per instance, its trainee: 0 .. N-1 the main agents, N + i exploiter i
        self.trainee: torch.Tensor | None = None
        self.last_mirror: dict[str, float] = {}  # main agents 1 .. N-1: self-play share at the latest pick
        self.last_entropy: dict[str, float | None] = {}  # the other learners' entropy at their last update

    # set-up

    def main_instances(self, num_envs: int) -> int:
        """How many of `num_envs` instances train the main agents (all of them without exploiters)."""
        if self.params.main_exploiters + self.params.league_exploiters == 0:
            return num_envs
        return max(1, round(self.params.main_share * num_envs))

    def check(self, run: RunContext) -> None:
        """Payoffs are between two seats; every trainee needs at least one instance."""
        source = run.recipe.source
        if len(run.agents) != 2:
            raise RecipeError(
                f"{source}: field 'opponents.plugin': 'league' keeps win rates between two "
                f"players and needs a two-seat game; env {run.recipe.env.id!r} has {len(run.agents)} agents"
            )
        e, params = run.num_envs, self.params
        mains = self.main_instances(e)
        if mains < params.main_agents:
            raise RecipeError(
                f"{source}: field 'opponents.params.main_agents': {params.main_agents} main agents need at "
                f"least one instance each, but main_share {params.main_share} of env.num_envs {e} gives "
                f"the main agents {mains}; lower main_agents or raise main_share or env.num_envs"
            )
        exploiters = params.main_exploiters + params.league_exploiters
        if e - mains < exploiters:
            raise RecipeError(
                f"{source}: field 'opponents.params.main_share': {exploiters} exploiters need at least one "
                f"instance each, but main_share {params.main_share} of env.num_envs {e} leaves them "
                f"{e - mains}; lower main_share or raise env.num_envs"
            )

    @hookimpl
    def incentive_setup(self, run: RunContext) -> None:
        """The population (bots), each main agent's first snapshot and live copy, the other learners."""
        super().incentive_setup(run)
        pop, params = self.population, self.params
        pop.restore_policy = self._restore_policy
        if params.snapshot_at_start:
            pop.add_snapshot(0, name=f"{MAIN}@0")
        pop.add_member(MAIN, MAIN, SnapshotPolicy(run.learner, run.agents, pop._seed()))
        e, n = run.num_envs, params.main_agents
        exploiters = [f"main_exploiter_{i}" for i in range(params.main_exploiters)]
        exploiters += [f"league_exploiter_{i}" for i in range(params.league_exploiters)]
        mains = self.main_instances(e)
        trainee = torch.arange(mains) % n
        self.trainee = torch.cat([trainee, n + torch.arange(e - mains) % max(1, len(exploiters))])
        # every seed in the order the members draw them: learner, live copy, first snapshot per main agent
        seeds: dict[str, list[int]] = {}
        for i in range(1, n):
            seeds[f"{MAIN}_{i}"] = [pop._seed() for _ in range(3 if params.snapshot_at_start else 2)]
        for name in exploiters:
            seeds[name] = [pop._seed()]
        names = list(seeds)
        homes = [(self.trainee == i + 1).nonzero().flatten() for i in range(len(names))]
        if run.recipe.learner.conv_channels:  # the batched learner runs MLPs only: one learner each
            groups = [[i] for i in range(len(names))]
        else:
            groups = [list(range(len(names)))] if names else []
        handles: dict[str, TrainedOpponent] = {}
        self.learner_groups = []
        for group in groups:
            learners = LeagueLearners(
                run=run,
                config=run.recipe.learner,
                seeds=[seeds[names[i]][0] for i in group],
                homes=[homes[i] for i in group],
                names=[names[i] for i in group],
            )
            self.learner_groups.append(learners)
            for trial, i in enumerate(group):
                handles[names[i]] = TrainedOpponent(learners, trial)
        for i in range(1, n):
            name = f"{MAIN}_{i}"
            main = self.mains[name] = handles[name]
            pop.add_member(MAIN_AGENT, name, main)
            pop.add_member(MAIN, name + COPY, SnapshotPolicy(main, run.agents, seeds[name][1]))
            if params.snapshot_at_start:
                pop.add_snapshot(0, source=main, name=f"{name}@0", seed=seeds[name][2])
        for name in exploiters:
            self.exploiters[name] = handles[name]
            pop.add_member("exploiter", name, self.exploiters[name])

    def _restore_policy(self, kind: str, name: str) -> Any:
        if kind == MAIN:
            return SnapshotPolicy(self.population.run.learner, self.population.run.agents, 0)
        if kind == MAIN_AGENT:
            return self.mains[name]
        return self.exploiters[name]

    # who is who

    def main_names(self) -> list[str]:
        """The main agents' names, agent 0 (`main`) first."""
        return [MAIN, *self.mains]

    def _ids(self) -> dict[str, int]:
        return {m.name: m.id for m in self.population.members}

    def _player(self, member_id: int) -> int:
        """Payoff id of a member: a main agent's live copy counts as that main agent (agent 0: LEARNER)."""
        member = self.population.member(member_id)
        if member is None or member.kind != MAIN:
            return member_id
        if member.name == MAIN:
            return LEARNER
        return self._ids()[member.name.removesuffix(COPY)]

    def _main_ids(self) -> list[int]:
        """Payoff ids of the main agents: LEARNER for agent 0, then the others' member ids."""
        ids = self._ids()
        return [LEARNER] + [ids[name] for name in self.mains]

    def _copy_ids(self) -> list[int]:
        """Member ids of the main agents' live copies, agent 0's first."""
        ids = self._ids()
        return [ids[MAIN]] + [ids[name + COPY] for name in self.mains]

    def _trainee_ids(self) -> list[int]:
        """Who sits in each trainee's seat: the main agents (LEARNER for agent 0), then the exploiters."""
        ids = self._ids()
        return self._main_ids() + [ids[name] for name in self.exploiters]

    def _parents(self) -> list[str]:
        """Per member, the player a snapshot was taken of ('' for the rest)."""
        return [m.name.split("@")[0] if m.kind == "snapshot" else "" for m in self.population.members]

    def _historical(self) -> torch.Tensor:
        """Per member, whether it is a historical player (a frozen snapshot or a fixed bot)."""
        kinds = [m.kind for m in self.population.members]
        return torch.tensor([k in ("snapshot", "bot") for k in kinds], dtype=torch.bool)

    # the distributions

    def matchmaking(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every trainee's opponent distribution, one row per (trainee, main agent it targets).

        Returns:
            rows [R, 1 + K]: column 0 is the trainee's first choice (a main agent: its mirror; an
            exploiter: the targeted main agent's live copy), then P(each member); and row_of
            [trainees, N]: the row of trainee t when its instance targets main agent j (only main
            exploiters' rows differ by target).

        """
        pop = self.population
        ids = [m.id for m in pop.members]
        parents = self._parents()
        historical = self._historical()
        main_exploiter_snapshots = [p.startswith("main_exploiter") for p in parents]
        exploiter_snapshots = torch.tensor(main_exploiter_snapshots, dtype=torch.bool)
        n = self.params.main_agents
        rows: list[torch.Tensor] = []
        row_of: list[list[int]] = []

        def add(first: float, probs: torch.Tensor) -> int:
            rows.append(torch.cat([torch.tensor([first], dtype=torch.float64), probs]))
            return len(rows) - 1

        for name, player in zip(self.main_names(), self._main_ids(), strict=True):
            mirror, probs = main_probs(
                self.payoffs.win_rate(player, ids),
                historical=historical,
                exploiter_snapshots=exploiter_snapshots,
                own_snapshots=[i for i, p in enumerate(parents) if p == name],
                pfsp_share=self.params.pfsp_share,
                verification_share=self.params.verification_share,
            )
            row_of.append([add(mirror, probs)] * n)
        for name, player in zip(self.exploiters, self._trainee_ids()[n:], strict=True):
            x = self.payoffs.win_rate(player, ids)
            if name.startswith("main_exploiter"):
                targets = []
                for main_name, main_player in zip(self.main_names(), self._main_ids(), strict=True):
                    x_main = float(self.payoffs.win_rate(player, [main_player])[0])
                    snapshots = torch.tensor([p == main_name for p in parents], dtype=torch.bool)
                    targets.append(add(*main_exploiter_probs(x_main, x, main_snapshots=snapshots)))
                row_of.append(targets)
            else:
                row_of.append([add(*league_exploiter_probs(x, historical=historical))] * n)
        return torch.stack(rows), torch.tensor(row_of, dtype=torch.long)

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """Main agent 0's (self-play share, [K] over the members)."""
        row = self.matchmaking()[0][0]
        return float(row[0]), row[1:]

    # hooks

    @hookimpl
    def incentive_pick_opponents(self, run: RunContext, iteration: int) -> OpponentAssignment:
        """Each instance: its trainee's seat, and an opponent from the trainee's distribution."""
        pop, n = self.population, self.params.main_agents
        e, a = run.num_envs, len(run.agents)
        copies = [pop.member(i) for i in self._copy_ids()]
        for copy, main in zip(copies, [run.learner, *self.mains.values()], strict=True):
            copy.policy.net.load_state_dict(main.net.state_dict())  # the current main agents
        rows, row_of = self.matchmaking()
        self.last_mirror = {name: float(rows[row_of[i, 0], 0]) for i, name in enumerate(self.mains, start=1)}
        self.last_probs = (float(rows[0, 0]), rows[0, 1:])
        g = run.generator
        target = torch.randint(n, (e,), generator=g) if n > 1 else torch.zeros(e, dtype=torch.long)
        pick = torch.multinomial(rows[row_of[self.trainee, target]], 1, replacement=True, generator=g)[:, 0]
        seat = torch.randint(a, (e,), generator=g)
        member_ids = torch.tensor([m.id for m in pop.members], dtype=torch.long)
        trainee_ids = torch.tensor(self._trainee_ids(), dtype=torch.long)[self.trainee]
        first = torch.where(self.trainee < n, trainee_ids, torch.tensor(self._copy_ids())[target])
        opponent = torch.where(pick == 0, first, member_ids[(pick - 1).clamp(min=0)])
        ids = torch.where(torch.arange(a) == seat[:, None], trainee_ids[:, None], opponent[:, None])
        for learners in self.learner_groups:
            learners.begin()
        return pop.assign(ids)

    @hookimpl
    def incentive_collect_metrics(self, run: RunContext, rollout: Rollout) -> dict[str, float]:
        """The population's metrics, the league's, and each other learner's entropy at its last update."""
        metrics = {
            f"population/league/{name}/entropy": entropy
            for name, entropy in self.last_entropy.items()
            if entropy is not None
        }
        metrics.update(super().incentive_collect_metrics(run, rollout))
        return metrics

    def extra_metrics(self) -> dict[str, float]:
        """Main agents 1 .. N-1: self-play share and win rate over history; exploiters: against the mains."""
        out = {}
        ids = self._ids()
        history = [m.id for m in self.population.members if m.kind in ("snapshot", "bot")]
        for name in self.mains:
            if name in self.last_mirror:
                out[f"population/league/{name}/mirror_share"] = self.last_mirror[name]
            pooled = self.payoffs.pooled_win_rate(ids[name], history)
            if pooled == pooled:
                out[f"population/league/{name}/win_rate_history"] = pooled
        main_ids = self._main_ids()
        for name in self.exploiters:
            for index, main in enumerate(main_ids):
                x = float(self.payoffs.win_rate(ids[name], [main])[0])
                if x == x:
                    out[f"population/league/{name}/win_rate_main" + (f"_{index}" if index else "")] = x
        return out

    @hookimpl
    def incentive_update_population(self, iteration: int, results: EpisodeResults, rollout: Rollout) -> None:
        """Train each other learner on its seats of the rollout, count the games, snapshot and reset."""
        for learners in self.learner_groups:
            for name, stats in zip(learners.names, learners.train(rollout), strict=True):
                self.last_entropy[name] = stats.get("entropy")
        self.record_games(results)
        super().incentive_update_population(iteration, results)  # the run learner's counts and Elo
        self._checkpoints(iteration)

    def record_games(self, results: EpisodeResults) -> None:
        """Decay the pairwise payoffs, then add this iteration's games between every pair of players."""
        self.payoffs.decay(self.params.decay)
        if len(results.returns) == 0:
            return
        slots = torch.tensor(self.population.slots, dtype=torch.long)
        players = torch.where(results.seats >= 0, slots[results.seats.clamp(min=0)], LEARNER)
        returns = results.returns.to(torch.float64)
        outcome = torch.stack(
            [returns[:, 0] > returns[:, 1], returns[:, 0] == returns[:, 1], returns[:, 0] < returns[:, 1]], 1
        ).to(torch.float64)
        pairs, where = torch.unique(players, dim=0, return_inverse=True)
        totals = torch.zeros(len(pairs), 3, dtype=torch.float64).index_add_(0, where, outcome)
        for (first, second), (w, d, l_) in zip(pairs.tolist(), totals.tolist(), strict=True):
            a = LEARNER if first == LEARNER else self._player(first)
            b = LEARNER if second == LEARNER else self._player(second)
            if a != b:
                self.payoffs.add(a, b, w, d, l_)

    def _checkpoints(self, iteration: int) -> None:
        params, pop = self.params, self.population
        ids = self._ids()
        hist_ids = [m.id for m in pop.members if m.kind in ("snapshot", "bot")]
        main_ids = self._main_ids()

        def ready(since: int, rates: torch.Tensor) -> bool:
            if since < params.checkpoint_min_iterations:
                return False
            beaten = (
                len(rates) > 0 and float(torch.nan_to_num(rates, nan=0.5).min()) >= params.checkpoint_win_rate
            )
            return beaten or since >= params.checkpoint_max_iterations

        self.main_since_checkpoint += 1
        if ready(self.main_since_checkpoint, self.payoffs.win_rate(LEARNER, hist_ids)):
            pop.add_snapshot(iteration, name=f"{MAIN}@{iteration}")
            self.main_since_checkpoint = 0
        for name, main in self.mains.items():
            main.since_checkpoint += 1
            if ready(main.since_checkpoint, self.payoffs.win_rate(ids[name], hist_ids)):
                pop.add_snapshot(iteration, source=main, name=f"{name}@{iteration}")
                main.since_checkpoint = 0
        for name, exploiter in self.exploiters.items():
            exploiter.since_checkpoint += 1
            answers_to = main_ids if name.startswith("main_exploiter") else hist_ids
            if not ready(exploiter.since_checkpoint, self.payoffs.win_rate(ids[name], answers_to)):
                continue
            pop.add_snapshot(iteration, source=exploiter, name=f"{name}@{iteration}")
            exploiter.since_checkpoint = 0
            reset = name.startswith("main_exploiter") or bool(
                torch.rand((), generator=pop.run.generator) < params.league_reset_prob
            )
            if reset:
                exploiter.reset()

    def extra_state(self) -> dict[str, Any]:
        """Payoffs, main agent 0's iterations since its last snapshot, the other learners' last entropies.

        The other learners themselves are members of the population, saved with it.
        """
        return {
            "payoffs": self.payoffs.state_dict(),
            "main_since_checkpoint": self.main_since_checkpoint,
            "last_entropy": dict(self.last_entropy),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore `extra_state`."""
        self.payoffs.load_state_dict(state["payoffs"])
        self.main_since_checkpoint = state["main_since_checkpoint"]
        self.last_entropy = dict(state.get("last_entropy", {}))  # older checkpoints: none yet
