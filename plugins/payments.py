"""Payments: fixed contracts under which agents pay each other for what they do.

A contract says who earns a payment on a step (the payees), who pays it (the
payers) and how much. Every payment moves reward from payers to payees, so
the transfers of every contract sum to zero over the agents of an instance
on every step (up to float rounding): nothing is created or destroyed.
These are hand-written, fixed side payments: the counterpart of learned
incentives (LIO, Yang et al. 2020; the `learned_incentives` plugin), in the
spirit of the zero-sum, outcome-conditioned transfers of formal contracting
(Christoffersen et al. 2023, "Get It in Writing: Formal Contracts Mitigate
Social Dilemmas in Multi-Agent RL"), with the contract fixed by the recipe
rather than negotiated. REFERENCES.md's Cleanup calibration uses such a
cleaning payment. The rule below is exact; nothing is approximated.

Conditions, evaluated per agent i and env instance on the step just taken
(u_i is i's number of units, p_i whether i is a payer):

| condition              | u_i, i's units as payee                              | p_i, i pays if |
| ---------------------- | ---------------------------------------------------- | -------------- |
| `{action: k}`          | 1 if i acted this step and took action k, else 0     | u_i > 0        |
| `{info: "name"}`       | max(info["name_<agent i>"], 0), the env's per-agent  | u_i > 0        |
|                        | counter (e.g. waste cells i cleared this step)       |                |
| `{reward_at_least: x}` | 1 if i's extrinsic reward r_i >= x this step, else 0 | u_i > 0        |
| `others` (payer only)  | (not a payee condition)                              | i earns no     |
|                        |                                                      | unit as payee  |

With T = `amount`, U = sum_i u_i (units earned in the instance this step)
and P = sum_i p_i (number of payers):

- `amount_per: payee_unit` (default): T is paid per payee unit, the payers
  share the bill equally:
      received_i = T * u_i                 if P > 0, else 0
      paid_i     = -T * U / P * p_i        (0 when P = 0)
- `amount_per: payer`: every payer pays T in total, shared among the payees
  in proportion to their units (equally when the condition is an action or
  a reward threshold, whose units are 0 or 1):
      paid_i     = -T * p_i                if U > 0, else 0
      received_i = T * P * u_i / U         (0 when U = 0)

If there is nobody to pay (P = 0) or nobody to pay for (U = 0), nothing is
paid and nothing is received. An agent may be payee and payer of the same
contract on the same step (both terms are then non-zero for it).

Terms, per contract: `<name>/received` (>= 0) and `<name>/paid` (<= 0),
logged as `incentive/<plugin>/<name>/received` and `.../paid`. Only the
extrinsic reward is seen by `reward_at_least`, never other plugins' terms.

Examples of contracts:

- Escape Room (LIO's ER): "the agent that gets through the door pays T,
  split among the agents at the lever" (only an agent at the open door earns
  +10):

      contracts:
        - name: door_pays_lever
          payee: {action: 0}            # went to (or stayed at) the lever
          payer: {reward_at_least: 10}  # went through the open door
          amount: 2.0
          amount_per: payer

- Cleanup: "per waste cell cleared, the other agents pay c" (needs the
  env's per-agent `waste_cleared_<agent>` counters):

      contracts:
        - name: cleaning
          payee: {info: waste_cleared}
          payer: others
          amount: 0.5

Parameters:

- `contracts` (default: none, the plugin then does nothing): each with
  `name` (term label, unique), `payee`, `payer`, `amount` (T > 0) and
  `amount_per` (`payee_unit` or `payer`).

Checked at set-up (ValueError naming the contract): an `info` condition
needs the counter `<info>_<agent>` for every agent in the env's `info_keys`;
an `action` must exist in every agent's action space; two agents at least.
Transfers apply to every seat, whoever plays it (learner or opponent). The
plugin keeps no state between steps.

Per-instance values: each contract's `amount` may vary by env instance (a
curriculum task `incentives.<i>.params.contracts.<k>.amount`, adopted at
each instance's next reset); the transfers stay one batched call.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from incentive import hookimpl
from incentive.tasks import instance_param

__all__ = ["Condition", "Contract", "Payments", "transfers"]


class Condition(BaseModel):
    """What earns (or triggers) a payment: exactly one of `action`, `info`, `reward_at_least`."""

    model_config = ConfigDict(extra="forbid")
    action: int | None = Field(None, ge=0, description="The agent took this action index this step.")
    info: str | None = Field(
        None,
        min_length=1,
        description="Per-agent info counter `<info>_<agent>`; its value is the agent's units.",
    )
    reward_at_least: float | None = Field(
        None, description="The agent's extrinsic reward this step is at least this."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        given = [key for key in ("action", "info", "reward_at_least") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                "a condition needs exactly one of action, info, reward_at_least, "
                f"got {', '.join(given) if given else 'none'}"
            )
        return self

    def units(self, step, agents: list[str]) -> torch.Tensor:
        """[E, A] float: every agent's units on this step (0 where the condition fails)."""
        if self.action is not None:
            took = step.actions == self.action
            acting = getattr(step, "acting", None)
            return (took if acting is None else took & acting).to(step.reward.dtype)
        if self.info is not None:
            counters = torch.stack([step.info[f"{self.info}_{agent}"] for agent in agents], 1)
            return counters.to(step.reward.dtype).clamp(min=0)
        return (step.reward >= self.reward_at_least).to(step.reward.dtype)


class Contract(BaseModel):
    """One payment rule: payees earn `amount` from payers when their condition holds."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Term label: terms are `<name>/received` and `<name>/paid`.",
    )
    payee: Condition = Field(description="Condition that earns a payment, with its units.")
    payer: Condition | Literal["others"] = Field(
        description="Condition that makes an agent pay, or `others`: every agent that is not a payee."
    )
    amount: float = Field(gt=0, description="T: paid per payee unit, or by each payer (`amount_per`).")
    amount_per: Literal["payee_unit", "payer"] = Field(
        "payee_unit",
        description="`payee_unit`: T per payee unit, payers share the bill; "
        "`payer`: each payer pays T, shared among payees by units.",
    )


def transfers(
    units: torch.Tensor, payers: torch.Tensor, *, amount: float | torch.Tensor, amount_per: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The zero-sum transfers of one contract on one step.

    Args:
        units: [E, A] payee units u (>= 0).
        payers: [E, A] bool, p.
        amount: T, a number or an [E, 1] tensor (one T per instance).
        amount_per: "payee_unit" or "payer" (formulas in the module docstring).

    Returns:
        (received [E, A] >= 0, paid [E, A] <= 0); received + paid sums to 0
        over the agents of every instance.

    """
    p = payers.to(units.dtype)
    num_payers = p.sum(1, keepdim=True)  # P [E, 1]
    total_units = units.sum(1, keepdim=True)  # U [E, 1]
    active = (num_payers > 0) & (total_units > 0)
    if amount_per == "payee_unit":
        received = amount * units * active
        bill = amount * total_units / num_payers.clamp(min=1)
        paid = -bill * p * active
    elif amount_per == "payer":
        paid = -amount * p * active
        share = units / torch.where(total_units > 0, total_units, torch.ones_like(total_units))
        received = amount * num_payers * share * active
    else:
        raise ValueError(f"amount_per must be 'payee_unit' or 'payer', got {amount_per!r}")
    return received, paid


class Payments:
    """Zero-sum side payments between agents under fixed contracts."""

    name = "payments"
    task_params = ("contracts.*.amount",)

    class Params(BaseModel):
        """Parameters: the list of contracts."""

        model_config = ConfigDict(extra="forbid")
        contracts: list[Contract] = Field(
            default_factory=list, description="The payment contracts (none: no transfers)."
        )

        @model_validator(mode="after")
        def _unique_names(self) -> Payments.Params:
            names = [contract.name for contract in self.contracts]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"contract names must be unique, repeated: {', '.join(repeated)}")
            return self

    def __init__(self, params: Params) -> None:
        self.params = params
        self.agents: list[str] | None = None
        self.tasks = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Check every contract against the env's agents, actions and info counters.

        Raises:
            ValueError: fewer than two agents, an action index outside an
                agent's action space, or an info counter the env lacks.

        """
        agents = list(run.agents)
        if len(agents) < 2:
            raise ValueError(f"payments need at least two agents, the env has {len(agents)}")
        available = list(run.env.info_keys)
        for contract in self.params.contracts:
            for role in ("payee", "payer"):
                condition = getattr(contract, role)
                if not isinstance(condition, Condition):
                    continue
                if condition.info is not None:
                    missing = [
                        f"{condition.info}_{a}" for a in agents if f"{condition.info}_{a}" not in available
                    ]
                    if missing:
                        hint = (
                            f" ({condition.info!r} exists only as a total over agents; a contract needs "
                            f"the per-agent counters '{condition.info}_<agent>')"
                            if condition.info in available
                            else ""
                        )
                        raise ValueError(
                            f"contract {contract.name!r}: {role} info key {condition.info!r} needs the "
                            f"counters {', '.join(missing)}, which the env does not provide{hint}. "
                            f"Available info keys: {', '.join(available) or 'none'}."
                        )
                if condition.action is not None:
                    for agent in agents:
                        n = int(run.env.action_spaces[agent].n)
                        if condition.action >= n:
                            raise ValueError(
                                f"contract {contract.name!r}: {role} action {condition.action} is not an "
                                f"action of {agent}, which has actions 0..{n - 1}"
                            )
        self.agents = agents
        self.tasks = getattr(run, "tasks", None)

    @hookimpl
    def incentive_shape_reward(self, step) -> dict[str, torch.Tensor]:
        """`<name>/received` and `<name>/paid` of every contract."""
        if self.agents is None:
            raise RuntimeError("payments: incentive_setup was not called")
        terms: dict[str, torch.Tensor] = {}
        envs = step.reward.shape[0]
        for index, contract in enumerate(self.params.contracts):
            amount = instance_param(self.tasks, self, f"contracts.{index}.amount", num_envs=envs)
            units = contract.payee.units(step, self.agents)
            if contract.payer == "others":
                payers = units <= 0
            else:
                payers = contract.payer.units(step, self.agents) > 0
            received, paid = transfers(
                units, payers, amount=amount.to(units.dtype)[:, None], amount_per=contract.amount_per
            )
            terms[f"{contract.name}/received"] = received
            terms[f"{contract.name}/paid"] = paid
        return terms
