"""Payments: zero-sum transfers under fixed contracts, checked against hand-computed numbers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from plugin_checks import close
from pydantic import ValidationError

from incentive.plugins.payments import Payments, transfers
from incentive.recipe import load_recipe
from incentive.runner import start_run

ESCAPE_ROOM_INFO = ("door_opened", "lever_pulls")


def agents(n):
    return [f"agent_{i}" for i in range(n)]


def make_run(n, info_keys=(), num_actions=3):
    space = SimpleNamespace(n=num_actions)
    env = SimpleNamespace(info_keys=tuple(info_keys), action_spaces={a: space for a in agents(n)})
    return SimpleNamespace(agents=agents(n), env=env, num_envs=1)


def make_step(*, actions=None, reward=None, info=None, acting=None):
    """A StepBatch-like step: [E, A] actions and rewards, info name -> [E]."""
    reward = torch.tensor(reward, dtype=torch.float32)
    actions = torch.zeros_like(reward, dtype=torch.long) if actions is None else torch.tensor(actions)
    acting = torch.ones_like(actions, dtype=torch.bool) if acting is None else torch.tensor(acting)
    info = {key: torch.tensor(value, dtype=torch.float32) for key, value in (info or {}).items()}
    return SimpleNamespace(actions=actions, reward=reward, info=info, acting=acting)


def plugin_for(n, *contracts, info_keys=ESCAPE_ROOM_INFO):
    plugin = Payments(Payments.Params(contracts=list(contracts)))
    plugin.incentive_setup(make_run(n, info_keys))
    return plugin


def pay(plugin, step):
    out = plugin.incentive_shape_reward(step)
    for name in [key.removesuffix("/received") for key in out if key.endswith("/received")]:
        total = out[f"{name}/received"] + out[f"{name}/paid"]
        torch.testing.assert_close(total.sum(1), torch.zeros(total.shape[0]))  # zero-sum per instance
        assert bool((out[f"{name}/received"] >= 0).all()) and bool((out[f"{name}/paid"] <= 0).all())
    return out


DOOR_PAYS_LEVER = {"name": "door", "payee": {"action": 0}, "payer": {"reward_at_least": 10}, "amount": 2.0}


# --- Escape Room: the door-goer pays the lever agents -------------------------------


def test_escape_room_two_agents_each_payer_pays_t():
    # amount_per payer, T = 2. ER(2, 1), actions 0 lever, 1 start, 2 door.
    # e0: agent_0 to the lever (-1), agent_1 through the open door (+10):
    #     u = [1, 0], p = [0, 1]: P = 1, U = 1 -> paid [0, -2], received [2 * 1 * 1/1, 0] = [2, 0]
    # e1: agent_0 stays at start (0), agent_1 walks to the closed door (-1): nobody pays -> zeros
    # e2: both at the lever (-1, -1): U = 2 but P = 0 -> zeros (payees receive nothing)
    plugin = plugin_for(2, {**DOOR_PAYS_LEVER, "amount_per": "payer"})
    out = pay(plugin, make_step(actions=[[0, 2], [1, 2], [0, 0]], reward=[[-1, 10], [0, -1], [-1, -1]]))
    close(out["door/paid"], [[0, -2], [0, 0], [0, 0]])
    close(out["door/received"], [[2, 0], [0, 0], [0, 0]])


def test_escape_room_three_agents_each_payer_pays_t():
    # amount_per payer, T = 3.
    # e0 (ER(3,2) solved): actions [0, 0, 2], r = [-1, -1, 10]: u = [1, 1, 0], P = 1, U = 2
    #     paid [0, 0, -3]; received 3 * 1 * [1, 1, 0] / 2 = [1.5, 1.5, 0]
    # e1 (as in ER(3,1)): actions [0, 2, 2], r = [-1, 10, 10]: u = [1, 0, 0], P = 2, U = 1
    #     paid [0, -3, -3]; received 3 * 2 * [1, 0, 0] / 1 = [6, 0, 0]
    # e2: one at the lever, door shut in ER(3,2): r = [-1, -1, -1], P = 0 -> zeros
    plugin = plugin_for(3, {**DOOR_PAYS_LEVER, "amount": 3.0, "amount_per": "payer"})
    step = make_step(
        actions=[[0, 0, 2], [0, 2, 2], [0, 2, 2]], reward=[[-1, -1, 10], [-1, 10, 10], [-1, -1, -1]]
    )
    out = pay(plugin, step)
    close(out["door/paid"], [[0, 0, -3], [0, -3, -3], [0, 0, 0]])
    close(out["door/received"], [[1.5, 1.5, 0], [6, 0, 0], [0, 0, 0]])


def test_escape_room_three_agents_per_payee_unit():
    # amount_per payee_unit, T = 3, same steps as above:
    # e0: U = 2, P = 1: received 3 * [1, 1, 0] = [3, 3, 0]; the payer's bill 3 * 2 / 1 = 6
    # e1: U = 1, P = 2: received [3, 0, 0]; bill 3 * 1 / 2 = 1.5 each for agent_1 and agent_2
    # e2: P = 0 -> zeros
    plugin = plugin_for(3, {**DOOR_PAYS_LEVER, "amount": 3.0, "amount_per": "payee_unit"})
    step = make_step(
        actions=[[0, 0, 2], [0, 2, 2], [0, 2, 2]], reward=[[-1, -1, 10], [-1, 10, 10], [-1, -1, -1]]
    )
    out = pay(plugin, step)
    close(out["door/received"], [[3, 3, 0], [3, 0, 0], [0, 0, 0]])
    close(out["door/paid"], [[0, 0, -6], [0, -1.5, -1.5], [0, 0, 0]])


def test_default_amount_per_is_payee_unit():
    # ER(2,1) solved, T = 2: received [2, 0], bill 2 * 1 / 1 = 2 -> paid [0, -2]
    out = pay(plugin_for(2, DOOR_PAYS_LEVER), make_step(actions=[[0, 2]], reward=[[-1, 10]]))
    close(out["door/received"], [[2, 0]])
    close(out["door/paid"], [[0, -2]])


def test_action_condition_needs_the_agent_to_act():
    # turn-based: agent_1's action 0 is a placeholder (not acting), so only agent_0 is a payee.
    # payee {action: 0}, payer {reward_at_least: 1}, T = 1: agent_2 (r = 1) pays 1 to agent_0.
    contract = {"name": "c", "payee": {"action": 0}, "payer": {"reward_at_least": 1.0}, "amount": 1.0}
    step = make_step(actions=[[0, 0, 1]], reward=[[0, 0, 1]], acting=[[True, False, True]])
    out = pay(plugin_for(3, contract), step)
    close(out["c/received"], [[1, 0, 0]])
    close(out["c/paid"], [[0, 0, -1]])


# --- Cleanup: per waste cell cleared, the others pay c ---------------------------------

CLEANUP_INFO_2 = ("apples_eaten", "waste_cleared", "waste_cleared_agent_0", "waste_cleared_agent_1")
CLEANUP_INFO_3 = (*CLEANUP_INFO_2, "waste_cleared_agent_2")
CLEANING = {"name": "cleaning", "payee": {"info": "waste_cleared"}, "payer": "others", "amount": 0.5}


def cleared(*per_agent):
    """info of a step: waste_cleared_agent_i = per_agent[i] (one value per instance)."""
    return {f"waste_cleared_agent_{i}": values for i, values in enumerate(per_agent)}


def test_cleanup_two_agents_others_pay_per_cell():
    # T = 0.5 per cell, payer: others (agents that cleared nothing this step).
    # e0: agent_0 cleared 2, agent_1 none: received [0.5 * 2, 0] = [1, 0]; agent_1 pays 1
    # e1: both cleared 1: everyone is a payee, no payer -> zeros
    # e2: nobody cleared: U = 0 -> zeros although both are payers
    plugin = plugin_for(2, CLEANING, info_keys=CLEANUP_INFO_2)
    out = pay(plugin, make_step(reward=[[0, 1], [0, 0], [1, 1]], info=cleared([2, 1, 0], [0, 1, 0])))
    close(out["cleaning/received"], [[1, 0], [0, 0], [0, 0]])
    close(out["cleaning/paid"], [[0, -1], [0, 0], [0, 0]])


def test_cleanup_three_agents_others_share_the_bill():
    # T = 0.5 per cell.
    # e0: cleared [3, 0, 0]: received [1.5, 0, 0]; payers agent_1, agent_2 share 1.5: 0.75 each
    # e1: cleared [1, 2, 0]: received [0.5, 1, 0]; agent_2 alone pays 0.5 * 3 = 1.5
    plugin = plugin_for(3, CLEANING, info_keys=CLEANUP_INFO_3)
    out = pay(plugin, make_step(reward=[[0, 0, 0]] * 2, info=cleared([3, 1], [0, 2], [0, 0])))
    close(out["cleaning/received"], [[1.5, 0, 0], [0.5, 1, 0]])
    close(out["cleaning/paid"], [[0, -0.75, -0.75], [0, 0, -1.5]])


def test_cleanup_three_agents_each_payer_pays_t():
    # amount_per payer, T = 0.9: every payer pays 0.9, shared among payees by cells cleared.
    # e0: cleared [3, 0, 0], P = 2: paid [0, -0.9, -0.9]; received [1.8, 0, 0]
    # e1: cleared [1, 2, 0], P = 1, U = 3: paid [0, 0, -0.9]; received 0.9 * [1/3, 2/3, 0] = [0.3, 0.6, 0]
    plugin = plugin_for(3, {**CLEANING, "amount": 0.9, "amount_per": "payer"}, info_keys=CLEANUP_INFO_3)
    out = pay(plugin, make_step(reward=[[0, 0, 0]] * 2, info=cleared([3, 1], [0, 2], [0, 0])))
    close(out["cleaning/paid"], [[0, -0.9, -0.9], [0, 0, -0.9]])
    close(out["cleaning/received"], [[1.8, 0, 0], [0.3, 0.6, 0]])


def test_info_payer_and_reward_payee():
    # payee {reward_at_least: 1} (whoever ate an apple), payer {info: waste_cleared} (whoever cleaned),
    # T = 1 per payee, payers share: r = [1, 0, 1], cleared [0, 2, 1]
    # u = [1, 0, 1], U = 2; p = [0, 1, 1], P = 2: received [1, 0, 1]; bill 2 / 2 = 1 each -> paid [0, -1, -1]
    # agent_2 is payee and payer: net 0.
    contract = {"name": "x", "payee": {"reward_at_least": 1}, "payer": {"info": "waste_cleared"}, "amount": 1}
    out = pay(
        plugin_for(3, contract, info_keys=CLEANUP_INFO_3),
        make_step(reward=[[1, 0, 1]], info=cleared([0], [2], [1])),
    )
    close(out["x/received"], [[1, 0, 1]])
    close(out["x/paid"], [[0, -1, -1]])


def test_several_contracts_give_separate_terms():
    # both contracts on ER(2,1) solved (actions [0, 2], r = [-1, 10]):
    # door (T = 2, payee_unit): received [2, 0], paid [0, -2]
    # stay (payee {action: 1}, payer others, T = 1): nobody at start -> zeros
    stay = {"name": "stay", "payee": {"action": 1}, "payer": "others", "amount": 1.0}
    out = pay(plugin_for(2, DOOR_PAYS_LEVER, stay), make_step(actions=[[0, 2]], reward=[[-1, 10]]))
    assert set(out) == {"door/received", "door/paid", "stay/received", "stay/paid"}
    close(out["door/received"], [[2, 0]])
    close(out["stay/received"] + out["stay/paid"], [[0, 0]])


def test_no_contracts_no_terms():
    assert pay(plugin_for(2), make_step(reward=[[1, 2]])) == {}


@pytest.mark.parametrize("amount_per", ["payee_unit", "payer"])
def test_transfers_are_zero_sum_on_random_steps(amount_per):
    g = torch.Generator().manual_seed(0)
    units = torch.randint(0, 4, (500, 5), generator=g).float() * (torch.rand(500, 5, generator=g) < 0.5)
    payers = torch.rand(500, 5, generator=g) < 0.4
    received, paid = transfers(units, payers, amount=0.7, amount_per=amount_per)
    torch.testing.assert_close((received + paid).sum(1), torch.zeros(500), atol=1e-5, rtol=0)
    assert bool((received[~payers.any(1)] == 0).all())  # no payers: nothing received
    assert bool((paid[units.sum(1) == 0] == 0).all())  # no payee units: nothing paid


# --- validation and set-up --------------------------------------------------------------


@pytest.mark.parametrize(
    ("contract", "fragment"),
    [
        ({"name": "c", "payee": {}, "payer": "others", "amount": 1}, "exactly one"),
        ({"name": "c", "payee": {"action": 0, "info": "x"}, "payer": "others", "amount": 1}, "exactly one"),
        ({"name": "c", "payee": {"action": 0}, "payer": "others", "amount": 0}, "amount"),
        ({"name": "c", "payee": {"action": 0}, "payer": "everyone", "amount": 1}, "payer"),
        ({"name": "c", "payee": "others", "payer": {"action": 1}, "amount": 1}, "payee"),
        (
            {"name": "c", "payee": {"action": 0}, "payer": "others", "amount": 1, "amount_per": "x"},
            "amount_per",
        ),
        ({"name": "c", "payee": {"action": 0}, "payer": "others", "amount": 1, "rate": 1}, "rate"),
        ({"name": "a/b", "payee": {"action": 0}, "payer": "others", "amount": 1}, "name"),
        ({"payee": {"action": 0}, "payer": "others", "amount": 1}, "name"),
    ],
)
def test_params_reject_bad_contracts(contract, fragment):
    with pytest.raises(ValidationError, match=fragment):
        Payments.Params(contracts=[contract])


def test_params_reject_repeated_names_and_unknown_keys():
    c = {"name": "c", "payee": {"action": 0}, "payer": "others", "amount": 1}
    with pytest.raises(ValidationError, match="unique.*c"):
        Payments.Params(contracts=[c, c])
    with pytest.raises(ValidationError, match="contract"):
        Payments.Params(contract=[c])


def test_unknown_info_key_names_contract_key_and_available_keys():
    contract = {"name": "cleaning", "payee": {"info": "waste_cleared"}, "payer": "others", "amount": 1}
    plugin = Payments(Payments.Params(contracts=[contract]))
    with pytest.raises(
        ValueError, match=r"'cleaning'.*'waste_cleared'.*Available info keys: door_opened, lever_pulls"
    ):
        plugin.incentive_setup(make_run(2, ESCAPE_ROOM_INFO))
    # a total without per-agent counters (Cleanup before `waste_cleared_<agent>`): says so
    with pytest.raises(ValueError, match="only as a total"):
        plugin.incentive_setup(make_run(2, ("apples_eaten", "waste_cleared")))
    plugin.incentive_setup(make_run(2, CLEANUP_INFO_2))  # fits


def test_payer_info_key_is_checked_too_and_action_range():
    bad_payer = {"name": "p", "payee": {"action": 0}, "payer": {"info": "cleaned"}, "amount": 1}
    with pytest.raises(ValueError, match=r"'p': payer info key 'cleaned'"):
        Payments(Payments.Params(contracts=[bad_payer])).incentive_setup(make_run(2, ESCAPE_ROOM_INFO))
    bad_action = {"name": "a", "payee": {"action": 3}, "payer": "others", "amount": 1}
    with pytest.raises(ValueError, match=r"'a': payee action 3.*0\.\.2"):
        Payments(Payments.Params(contracts=[bad_action])).incentive_setup(make_run(2, ESCAPE_ROOM_INFO))


def test_needs_two_agents():
    with pytest.raises(ValueError, match="at least two agents"):
        Payments(Payments.Params()).incentive_setup(make_run(1))


# --- end to end ------------------------------------------------------------------------------


def test_escape_room_run_logs_balanced_transfers(write_recipe):
    path = write_recipe(
        env={"id": "escape_room", "num_envs": 8, "params": {"num_agents": 2, "min_at_lever": 1}},
        incentives=[
            {"plugin": "payments", "params": {"contracts": [{**DOOR_PAYS_LEVER, "amount_per": "payer"}]}}
        ],
    )
    run_dir, _ = start_run(load_recipe(path))
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for metrics in lines:
        received, paid = metrics["incentive/payments/door/received"], metrics["incentive/payments/door/paid"]
        assert received >= 0 and received + paid == pytest.approx(0, abs=1e-6)
