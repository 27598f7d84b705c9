"""League training with AlphaStar's roles (Vinyals et al. 2019): a main agent and its exploiters.

Several learners train in one run. The main agent is the run's own learner
(the loop's PPO, the one the designer metrics measure). Each exploiter is a
learner of its own (`incentive.league.TrainedOpponent`: own network,
optimiser and stream, the recipe's learner settings): it sits in opponent
seats, records what it does there, and after each rollout takes one PPO
update on those seats (rewards and acting mask from the rollout).

Instances are split between the learners: the first `main_share` of them
train the main agent (its seat is a learner seat), the rest go round-robin
to the exploiters (no learner seat: the main agent takes no data from them).
Each instance's opponent is then drawn from its trainee's distribution
(`incentive.league`, where the formulas are):

| role             | plays                                                                    |
| ---------------- | ------------------------------------------------------------------------ |
| main agent       | 50% PFSP `hard` over all historical players, 15% verification against    |
|                  | main-exploiter snapshots it cannot beat or own snapshots it forgot,      |
|                  | 35% self-play (and the verification share when there is nothing to check)|
| main exploiter   | the current main agent (a copy refreshed from the learner at every       |
|                  | iteration) while it wins > 10% against it, else PFSP `variance` over the |
|                  | main's snapshots                                                         |
| league exploiter | PFSP `linear_capped` over all historical players                         |

Snapshots and resets (AlphaStar's rules, with iterations for its 2e9 / 4e9
steps): a player is checkpointed once at least `checkpoint_min_iterations`
have passed since its last snapshot and either its win rate reaches
`checkpoint_win_rate` (0.7) against every opponent it answers to (main agent
and league exploiters: every historical player; main exploiters: the main
agent) or `checkpoint_max_iterations` have passed. Then a main exploiter is
reset to its initial weights, a league exploiter with probability
`league_reset_prob` (0.25); the main agent never is. The untrained main
agent is the first snapshot. Snapshots are named `<player>@<iteration>`;
`max_snapshots` caps them all (oldest evicted first, the first one kept).

Payoffs between every pair of players (`incentive.league.Payoffs`), decayed
by `decay` per iteration, drive all of the above. Metrics: those of every
population sampler (the main agent's view, `population/...`), plus
`population/league/<player>/win_rate_main` and `.../entropy` for each
exploiter. Exact `mixture_exploitability` (poker) is that of the main agent's
sampling distribution over the snapshots and bots.

Limits: one main agent (the run's learner; `main_agents` must be 1, and a
league without one is an error); two-seat games; exploiters are trained one
after the other (a loop over the few exploiters, each one batched over its
instances). The exploiters train in `incentive_update_population`, which
receives the rollout, after the iteration's metrics are written.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator, model_validator

from incentive import hookimpl
from incentive.errors import RecipeError
from incentive.league import (
    Payoffs,
    TrainedOpponent,
    league_exploiter_probs,
    main_exploiter_probs,
    main_probs,
)
from incentive.population import PopulationParams, PopulationSampler, SnapshotPolicy
from incentive.types import LEARNER, EpisodeResults, OpponentAssignment, Rollout, RunContext

__all__ = ["League"]

MAIN = "main"


class LeagueParams(PopulationParams):
    """Roles, their shares of instances, and AlphaStar's snapshot rules."""

    snapshot_every: int | None = Field(
        None, description="Not used by the league: its checkpoint rules decide (leave null)."
    )
    main_agents: int = Field(1, description="Main agents: exactly 1, the run's learner.")
    main_exploiters: int = Field(1, ge=0, le=16, description="Main exploiters (learners of their own).")
    league_exploiters: int = Field(1, ge=0, le=16, description="League exploiters (learners of their own).")
    main_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of the instances that train the main agent; the rest, the exploiters.",
    )
    pfsp_share: float = Field(
        0.5, ge=0, le=1, description="Main agent: share of PFSP over all historical players."
    )
    verification_share: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Main agent: share of checks against exploiters and forgotten snapshots.",
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
    def _one_main_agent(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                f"a league needs exactly one main agent, the run's learner (given {value}); "
                + (
                    "without a main agent there is nobody for the exploiters to exploit"
                    if value < 1
                    else "several main agents would need several run learners, which the loop does not have"
                )
            )
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
    """A main agent (the run's learner), main exploiters and league exploiters, trained together."""

    name = "league"
    Params = LeagueParams

    def __init__(self, params: LeagueParams) -> None:
        super().__init__(params)
        self.payoffs = Payoffs()
        self.exploiters: dict[str, TrainedOpponent] = {}
        self.main_since_checkpoint = 0
        self.trainee: torch.Tensor | None = None  # per instance: 0 the main agent, 1 + i exploiter i
        self.last_entropy: dict[str, float | None] = {}  # each exploiter's policy entropy at its last update

    # set-up

    def check(self, run: RunContext) -> None:
        """Payoffs are between two seats."""
        if len(run.agents) != 2:
            raise RecipeError(
                f"{run.recipe.source}: field 'opponents.plugin': 'league' keeps win rates between two "
                f"players and needs a two-seat game; env {run.recipe.env.id!r} has {len(run.agents)} agents"
            )

    @hookimpl
    def incentive_setup(self, run: RunContext) -> None:
        """The population (bots), the main agent's first snapshot, its live copy and the exploiters."""
        super().incentive_setup(run)
        pop = self.population
        pop.restore_policy = self._restore_policy
        if self.params.snapshot_at_start:
            pop.add_snapshot(0, name=f"{MAIN}@0")
        pop.add_member(MAIN, MAIN, SnapshotPolicy(run.learner, run.agents, pop._seed()))
        names = [f"main_exploiter_{i}" for i in range(self.params.main_exploiters)]
        names += [f"league_exploiter_{i}" for i in range(self.params.league_exploiters)]
        for name in names:
            self.exploiters[name] = TrainedOpponent(run=run, config=run.recipe.learner, seed=pop._seed())
            pop.add_member("exploiter", name, self.exploiters[name])
        e = run.num_envs
        mains = max(1, round(self.params.main_share * e)) if names else e
        trainee = torch.zeros(e, dtype=torch.long)
        trainee[mains:] = 1 + torch.arange(e - mains) % max(1, len(names))
        self.trainee = trainee

    def _restore_policy(self, kind: str, name: str) -> Any:
        if kind == MAIN:
            return SnapshotPolicy(self.population.run.learner, self.population.run.agents, 0)
        return self.exploiters[name]

    # who is who

    def _player(self, member_id: int) -> int:
        """Payoff id of a member: the main agent's live copy counts as the main agent (LEARNER)."""
        member = self.population.member(member_id)
        return LEARNER if member is not None and member.kind == MAIN else member_id

    def _masks(self) -> dict[str, torch.Tensor]:
        members = self.population.members
        kinds = [m.kind for m in members]
        parents = [m.name.split("@")[0] if m.kind == "snapshot" else "" for m in members]
        historical = torch.tensor([k in ("snapshot", "bot") for k in kinds], dtype=torch.bool)
        return {
            "historical": historical,
            "main_snapshots": torch.tensor([p == MAIN for p in parents], dtype=torch.bool),
            "exploiter_snapshots": torch.tensor(
                [p.startswith("main_exploiter") for p in parents], dtype=torch.bool
            ),
        }

    def _trainee_ids(self) -> list[int]:
        by_name = {m.name: m.id for m in self.population.members}
        return [LEARNER] + [by_name[name] for name in self.exploiters]

    # the distributions

    def trainee_probs(self) -> torch.Tensor:
        """[1 + exploiters, 1 + K]: per trainee, P(the current main agent) (column 0) and P(each member)."""
        pop = self.population
        ids = [m.id for m in pop.members]
        masks = self._masks()
        rows = []
        x = self.payoffs.win_rate(LEARNER, ids)
        own = [i for i, m in enumerate(pop.members) if bool(masks["main_snapshots"][i])]
        mirror, probs = main_probs(
            x,
            historical=masks["historical"],
            exploiter_snapshots=masks["exploiter_snapshots"],
            own_snapshots=own,
            pfsp_share=self.params.pfsp_share,
            verification_share=self.params.verification_share,
        )
        rows.append(torch.cat([torch.tensor([mirror], dtype=torch.float64), probs]))
        for name, member_id in zip(self.exploiters, self._trainee_ids()[1:], strict=True):
            x = self.payoffs.win_rate(member_id, ids)
            if name.startswith("main_exploiter"):
                x_main = float(self.payoffs.win_rate(member_id, [LEARNER])[0])
                main, probs = main_exploiter_probs(x_main, x, main_snapshots=masks["main_snapshots"])
            else:
                main, probs = league_exploiter_probs(x, historical=masks["historical"])
            rows.append(torch.cat([torch.tensor([main], dtype=torch.float64), probs]))
        return torch.stack(rows)

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """The main agent's (self-play share, [K] over the members)."""
        row = self.trainee_probs()[0]
        return float(row[0]), row[1:]

    # hooks

    @hookimpl
    def incentive_pick_opponents(self, run: RunContext, iteration: int) -> OpponentAssignment:
        """Each instance: its trainee's seat, and an opponent from the trainee's distribution."""
        pop = self.population
        e, a = run.num_envs, len(run.agents)
        main_copy = next(m for m in pop.members if m.kind == MAIN)
        main_copy.policy.net.load_state_dict(run.learner.net.state_dict())  # the current main agent
        probs = self.trainee_probs()
        self.last_probs = (float(probs[0, 0]), probs[0, 1:])
        g = run.generator
        target = torch.multinomial(probs[self.trainee], 1, replacement=True, generator=g)[:, 0]
        seat = torch.randint(a, (e,), generator=g)
        member_ids = torch.tensor([m.id for m in pop.members], dtype=torch.long)
        trainee_ids = torch.tensor(self._trainee_ids(), dtype=torch.long)[self.trainee]
        main_for_exploiters = torch.full((e,), main_copy.id, dtype=torch.long)
        main_target = torch.where(self.trainee == 0, LEARNER, main_for_exploiters)
        opponent = torch.where(target == 0, main_target, member_ids[(target - 1).clamp(min=0)])
        ids = torch.where(torch.arange(a) == seat[:, None], trainee_ids[:, None], opponent[:, None])
        for exploiter in self.exploiters.values():
            exploiter.begin()
        return pop.assign(ids)

    @hookimpl
    def incentive_collect_metrics(self, run: RunContext, rollout: Rollout) -> dict[str, float]:
        """The population's metrics, the league's, and each exploiter's entropy at its last update."""
        metrics = {
            f"population/league/{name}/entropy": entropy
            for name, entropy in self.last_entropy.items()
            if entropy is not None
        }
        metrics.update(super().incentive_collect_metrics(run, rollout))
        return metrics

    def extra_metrics(self) -> dict[str, float]:
        """Each exploiter's win rate against the main agent."""
        out = {}
        for name, member_id in zip(self.exploiters, self._trainee_ids()[1:], strict=True):
            x = float(self.payoffs.win_rate(member_id, [LEARNER])[0])
            if x == x:
                out[f"population/league/{name}/win_rate_main"] = x
        return out

    @hookimpl
    def incentive_update_population(self, iteration: int, results: EpisodeResults, rollout: Rollout) -> None:
        """Train each exploiter on its seats of the rollout, count the games, snapshot and reset."""
        for name, exploiter in self.exploiters.items():
            self.last_entropy[name] = exploiter.train(rollout).get("entropy")
        self.record_games(results)
        super().incentive_update_population(iteration, results)  # the learner's counts and Elo
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
        ids = [m.id for m in pop.members]
        historical = self._masks()["historical"]
        hist_ids = [i for i, h in zip(ids, historical.tolist(), strict=True) if h]

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
        for name, member_id in zip(self.exploiters, self._trainee_ids()[1:], strict=True):
            exploiter = self.exploiters[name]
            exploiter.since_checkpoint += 1
            answers_to = [LEARNER] if name.startswith("main_exploiter") else hist_ids
            if not ready(exploiter.since_checkpoint, self.payoffs.win_rate(member_id, answers_to)):
                continue
            pop.add_snapshot(iteration, source=exploiter, name=f"{name}@{iteration}")
            exploiter.since_checkpoint = 0
            reset = name.startswith("main_exploiter") or bool(
                torch.rand((), generator=pop.run.generator) < params.league_reset_prob
            )
            if reset:
                exploiter.reset()

    def extra_state(self) -> dict[str, Any]:
        """Payoffs, the main agent's iterations since its last snapshot, exploiters' last entropies.

        The exploiters themselves are members of the population, saved with it.
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
