"""Policy-space response oracles (PSRO, Lanctot et al. 2017).

The population's members (frozen snapshots of the learner, and any listed
`bots`) form a symmetric two-player meta-game: `M[i, j]` is member i's mean
return against member j, half with i in each seat, computed once when a
member joins. `payoffs` says how:

| `payoffs` | M[i, j]                                                               |
| --------- | --------------------------------------------------------------------- |
| `sampled` | the mean over `meta_episodes` evaluation games (no training data)     |
| `exact`   | the expected chips by a traversal of the game tree                    |
|           | (`incentive.exploitability.payoff_matrix`; Kuhn and Leduc poker)      |
| `auto`    | `exact` where the env has an exact game model (poker), else `sampled` |

Exact payoffs remove the sampling noise that an LP Nash solver would
otherwise fit (a sampled payoff's standard error falls only as
1 / sqrt(`meta_episodes`)).
A meta-solver turns (M, M^T) into a meta-strategy sigma over the members:

| `meta_solver` | solver (`incentive.meta_solvers`)                              |
| ------------- | -------------------------------------------------------------- |
| `uniform`     | uniform sigma: PSRO becomes fictitious play                    |
| `nash`        | an exact Nash equilibrium by linear programming; two-player    |
|               | zero-sum games only (the env must declare `zero_sum`)          |
| `rd`          | replicator dynamics (general sum)                              |
| `prd`         | projected replicator dynamics, floor `prd_gamma` / n (general) |

The learner trains as a best response against sigma: each instance's
opponent is drawn from sigma. Every `snapshot_every` iterations the learner
is frozen into the population (it keeps training from its current weights),
the meta-game grows by one row and column, and sigma is solved again.
Metrics: `population/nash/<member>` (sigma) and
`population/nash/meta_exploitability` (half the NashConv of sigma in the
empirical meta-game). `mixture_exploitability` (poker) is that of sigma over
the snapshots. Parameters: `meta_solver`, `payoffs`, `meta_episodes`, `prd_gamma`, plus
those of `incentive.population.PopulationParams`.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from incentive.errors import RecipeError
from incentive.exploitability import payoff_matrix
from incentive.meta_solvers import meta_game_exploitability, solve
from incentive.population import Member, PopulationParams, PopulationSampler, exact_game, play_matches
from incentive.types import RunContext

__all__ = ["PSRO"]

SOLVERS = {
    "uniform": ("uniform", {}),
    "nash": ("nash", {}),
    "rd": ("replicator_dynamics", {"steps": 5_000, "dt": 0.05, "average_last": 1000}),
    "prd": ("projected_replicator_dynamics", {"steps": 5_000, "dt": 0.05, "average_last": 1000}),
}


class PSROParams(PopulationParams):
    """The meta-solver and the evaluation budget."""

    meta_solver: Literal["uniform", "nash", "rd", "prd"] = Field(
        "nash", description="Meta-solver over the empirical payoff matrix."
    )
    payoffs: Literal["auto", "exact", "sampled"] = Field(
        "auto", description="Meta-game payoffs: by game-tree traversal (poker), by evaluation games, or auto."
    )
    meta_episodes: int = Field(256, ge=2, description="Evaluation games per pair of members (sampled).")
    prd_gamma: float = Field(1e-3, ge=0, le=1, description="Exploration floor of `prd`.")


class PSRO(PopulationSampler):
    """Opponents from the meta-strategy over the population's empirical payoff matrix."""

    name = "psro"
    Params = PSROParams

    def __init__(self, params: PSROParams) -> None:
        super().__init__(params)
        self.ids: list[int] = []
        self.matrix = torch.zeros(0, 0, dtype=torch.float64)
        self.sigma = torch.zeros(0, dtype=torch.float64)

    def check(self, run: RunContext) -> None:
        """Exact Nash needs a two-player zero-sum game."""
        if self.params.meta_solver == "nash" and (
            len(run.agents) != 2 or not getattr(run.env, "zero_sum", False)
        ):
            raise RecipeError(
                f"{run.recipe.source}: field 'opponents.params.meta_solver': 'nash' is an exact linear "
                f"program for two-player zero-sum games, and env {run.recipe.env.id!r} is not one "
                f"({len(run.agents)} agents, zero_sum={getattr(run.env, 'zero_sum', False)}); use 'rd' or "
                f"'prd' (replicator dynamics) or 'uniform'"
            )
        self.game = exact_game(run.env)
        if self.params.payoffs == "exact" and self.game is None:
            raise RecipeError(
                f"{run.recipe.source}: field 'opponents.params.payoffs': 'exact' needs an env with an exact "
                f"game model (kuhn_poker, leduc_poker), and {run.recipe.env.id!r} has none; use 'sampled' "
                f"or 'auto'"
            )
        self.exact = self.params.payoffs != "sampled" and self.game is not None
        self.run = run

    # the meta-game

    def _match(self, a: Member, b: Member) -> torch.Tensor:
        run = self.run
        env = type(run.env)(num_envs=self.params.meta_episodes, params=run.env.params)
        seed = run.recipe.seed * 1_000_003 + 7919 * a.id + b.id
        return play_matches(env, a.policy, b.policy, seed=seed)

    def on_snapshot(self, member: Member) -> None:
        """Evaluate the new member against every member (itself included) and solve sigma again."""
        pop = self.population
        current = [m for m in pop.members if m.id in self.ids]
        keep = [self.ids.index(m.id) for m in current]
        n = len(current) + 1
        matrix = torch.zeros(n, n, dtype=torch.float64)
        matrix[: n - 1, : n - 1] = self.matrix[keep][:, keep]
        if self.exact:
            tables = torch.stack([self.table(self.game, m) for m in [*current, member]])
            row = payoff_matrix(self.game, tables[-1:], tables)[0]
            matrix[n - 1], matrix[:, n - 1] = row, -row  # zero-sum, seats averaged: antisymmetric
            matrix[n - 1, n - 1] = 0.0
        else:
            for j, other in enumerate(current):
                result = self._match(member, other)
                matrix[n - 1, j] = result[:, 0].mean()
                matrix[j, n - 1] = result[:, 1].mean()
            own = self._match(member, member)
            matrix[n - 1, n - 1] = own.mean()
        self.ids = [m.id for m in current] + [member.id]
        self.matrix = matrix
        self._solve()

    def _solve(self) -> None:
        name, options = SOLVERS[self.params.meta_solver]
        if self.params.meta_solver == "prd":
            options = {**options, "gamma": self.params.prd_gamma}
        x, _ = solve(name, self.matrix.numpy(), self.matrix.T.numpy(), **options)
        self.sigma = torch.as_tensor(x, dtype=torch.float64).clamp(min=0)
        self.sigma = self.sigma / self.sigma.sum()

    def distribution(self, iteration: int) -> tuple[float, torch.Tensor]:
        """(0, sigma over the current members)."""
        pop = self.population
        if not pop.members:
            return 1.0, torch.zeros(0, dtype=torch.float64)
        weights = {member_id: float(w) for member_id, w in zip(self.ids, self.sigma.tolist(), strict=True)}
        return 0.0, torch.tensor([weights.get(m.id, 0.0) for m in pop.members], dtype=torch.float64)

    def extra_metrics(self) -> dict[str, float]:
        """Sigma per member and the meta-game exploitability of sigma."""
        pop = self.population
        names = {m.id: m.name for m in pop.members}
        out = {
            f"population/nash/{names[i]}": float(w)
            for i, w in zip(self.ids, self.sigma.tolist(), strict=True)
            if i in names
        }
        if len(self.ids) > 0:
            x = self.sigma.numpy()
            out["population/nash/meta_exploitability"] = float(
                meta_game_exploitability(self.matrix.numpy(), self.matrix.T.numpy(), x, x)
            )
        return out

    def extra_state(self) -> dict[str, Any]:
        """The meta-game and sigma."""
        return {"ids": list(self.ids), "matrix": self.matrix.clone(), "sigma": self.sigma.clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore `extra_state`."""
        self.ids = list(state["ids"])
        self.matrix = state["matrix"].clone()
        self.sigma = state["sigma"].clone()
