"""`incentive search --batch K`: K designs (and their repeats) trained as one batch, each scored as alone."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from incentive.batched import plan_batch
from incentive.errors import RecipeError
from incentive.recipe import load_recipe, validate_recipe
from incentive.scores import run_score
from incentive.search import batch_space_problem, design_seeds, train_design

sys.path.insert(0, str(Path(__file__).parent))
from test_search import load, run_search, search_data, study_dir, write  # noqa: E402


def batched_data(tmp_path: Path) -> dict:
    """Sharing weight s searched, inequity aversion switched on/off with its alpha searched; 2 seeds each."""
    data = search_data(tmp_path / "runs", trials=3, repeats=2)
    data["incentives"] = [
        {"plugin": "reward_sharing", "params": {"s": 0.5}},
        {
            "plugin": "inequity_aversion",
            "optional": True,
            "params": {"beta": 0.05},
            "search": {"alpha": {"low": 0.0, "high": 5.0}},
        },
    ]
    data["search"]["sampler"] = "random"
    return data


def test_each_batched_trial_gets_the_objective_it_gets_alone(tmp_path: Path):
    data = batched_data(tmp_path)
    path = write(tmp_path, data)
    run_search(str(path), "--batch", "3")
    study = load(study_dir(tmp_path))
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.user_attrs["batch"] == 3 for t in trials)
    assert len({t.params["incentives.0.params.s"] for t in trials}) == 3  # three different designs
    base = validate_recipe(data, source="base")
    for trial in trials:
        recipe = validate_recipe(json.loads(trial.user_attrs["recipe"]), source="trial")
        scores = []
        for seed in design_seeds(base, 0, 2):
            alone_dir = tmp_path / "alone" / f"{trial.number}-{seed}"
            status, rows = train_design(recipe.model_copy(update={"seed": seed}), alone_dir)
            assert status == "completed"
            batched_dir = study_dir(tmp_path) / "trials" / f"{trial.number:04d}-seed-{seed}"
            assert (batched_dir / "metrics.jsonl").read_bytes() == (alone_dir / "metrics.jsonl").read_bytes()
            scores.append(run_score(rows, "collective_return", base.objectives[0].last_fraction))
        assert trial.value == sum(scores) / len(scores)


def test_a_non_batchable_space_names_the_field_and_runs_unbatched(tmp_path: Path):
    data = search_data(tmp_path / "runs", trials=2)
    data["search"]["space"]["learner.lr"] = {"low": 0.001, "high": 0.01}
    assert "search.space.learner.lr" in batch_space_problem(validate_recipe(data, source="x"))
    result = run_search(str(write(tmp_path, data)), "--batch", "2")
    assert "search.space.learner.lr" in result.stdout + result.stderr
    study = load(study_dir(tmp_path))
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
    assert all("batch" not in t.user_attrs for t in study.get_trials())


def test_batch_must_be_positive(tmp_path: Path):
    result = run_search(str(write(tmp_path, search_data(tmp_path / "runs"))), "--batch", "0", check=False)
    assert result.returncode == 2
    assert "--batch" in result.stderr and "Traceback" not in result.stderr


def test_space_of_per_instance_incentive_params_is_batchable(tmp_path: Path):
    recipe = validate_recipe(batched_data(tmp_path), source="x")
    assert batch_space_problem(recipe) is None


# --- nested per-instance parameters: the payments plugin's contract amounts -------------------

COOPERATION_PAYMENT = {"name": "cooperation", "payee": {"action": 0}, "payer": "others", "amount": 0.5}


def payment_data(tmp_path: Path, **search) -> dict:
    """The tiny IPD search with a payment: whoever cooperates is paid by the other; its amount searched."""
    data = search_data(tmp_path / "runs", **search)
    data["incentives"] = [{"plugin": "payments", "params": {"contracts": [dict(COOPERATION_PAYMENT)]}}]
    data["search"]["space"] = {"incentives.0.params.contracts.0.amount": {"low": 0.02, "high": 2.0}}
    data["search"]["sampler"] = "random"
    return data


def payment_recipe(tmp_path: Path, source: str, **contract) -> Any:
    data = payment_data(tmp_path)
    data["incentives"][0]["params"]["contracts"] = [{**COOPERATION_PAYMENT, **contract}]
    del data["search"]
    return validate_recipe(data, source=source)


def test_plan_batch_of_payment_amounts_gives_the_nested_per_instance_key(tmp_path: Path):
    recipes = [payment_recipe(tmp_path, f"t{i}", amount=a) for i, a in enumerate((0.25, 0.5, 1.75))]
    plan = plan_batch(recipes)
    assert plan.params == {"incentives.0.params.contracts.0.amount": [0.25, 0.5, 1.75]}
    assert plan.plugins == [{"payments"}] * 3
    # a field given in one trial and left to its default in another is the same design
    same = [payment_recipe(tmp_path, "a"), payment_recipe(tmp_path, "b", amount_per="payee_unit")]
    assert plan_batch(same).params == {}


@pytest.mark.parametrize(
    ("contract", "field"),
    [
        ({"name": "other"}, "incentives.0.params.contracts.0.name"),
        (
            {"payee": {"action": 1}},
            "incentives.0.params.contracts.0.payee.action",
        ),  # numeric, not per instance
        ({"payer": {"action": 1}}, "incentives.0.params.contracts.0.payer"),  # 'others' against a condition
        ({"amount_per": "payer"}, "incentives.0.params.contracts.0.amount_per"),
    ],
)
def test_plan_batch_refuses_a_contract_that_differs_beyond_its_amount(tmp_path: Path, contract, field):
    recipes = [payment_recipe(tmp_path, "first"), payment_recipe(tmp_path, "second", **contract)]
    with pytest.raises(RecipeError, match=rf"field '{re.escape(field)}' differs between batched trials"):
        plan_batch(recipes)


def test_plan_batch_refuses_contract_lists_of_different_lengths(tmp_path: Path):
    one = payment_recipe(tmp_path, "one")
    data = one.model_dump(mode="json")
    data["incentives"][0]["params"]["contracts"].append({**COOPERATION_PAYMENT, "name": "second"})
    two = validate_recipe(data, source="two")
    with pytest.raises(
        RecipeError, match=r"field 'incentives.0.params.contracts' differs .* lists of 1 and 2"
    ):
        plan_batch([one, two])


def test_the_payment_and_structure_searches_batch():
    root = Path(__file__).parent.parent / "recipes"
    assert batch_space_problem(load_recipe(root / "search_cleanup_payment.yaml")) is None
    assert batch_space_problem(load_recipe(root / "search_cleanup_structure.yaml")) is None


def _assert_each_trial_scores_as_alone(tmp_path: Path, data: dict, trials: list) -> None:
    """Each seed of each batched trial wrote its lone run's metrics; the trial's value is their score."""
    base = validate_recipe(data, source="base")
    for trial in trials:
        recipe = validate_recipe(json.loads(trial.user_attrs["recipe"]), source="trial")
        scores = []
        for seed in design_seeds(base, 0, base.search.repeats):
            alone_dir = tmp_path / "alone" / f"{trial.number}-{seed}"
            status, rows = train_design(recipe.model_copy(update={"seed": seed}), alone_dir)
            assert status == "completed"
            batched_dir = study_dir(tmp_path) / "trials" / f"{trial.number:04d}-seed-{seed}"
            assert (batched_dir / "metrics.jsonl").read_bytes() == (alone_dir / "metrics.jsonl").read_bytes()
            scores.append(run_score(rows, "collective_return", base.objectives[0].last_fraction))
        assert trial.value == sum(scores) / len(scores)


def test_each_batched_payment_trial_gets_the_objective_it_gets_alone(tmp_path: Path):
    data = payment_data(tmp_path, trials=3, repeats=2)
    run_search(str(write(tmp_path, data)), "--batch", "3")
    trials = load(study_dir(tmp_path)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.user_attrs["batch"] == 3 for t in trials)
    amounts = {t.params["incentives.0.params.contracts.0.amount"] for t in trials}
    assert len(amounts) == 3  # three different payments, trained as one batch
    first = (study_dir(tmp_path) / "trials" / "0000-seed-1" / "metrics.jsonl").read_text()
    assert "incentive/payments/cooperation/received" in first
    _assert_each_trial_scores_as_alone(tmp_path, data, trials)


def test_a_structure_search_with_a_payment_option_batches(tmp_path: Path):
    data = search_data(tmp_path / "runs", trials=4, repeats=1)
    data["seed"] = 8  # the random sampler's 4 draws at seed 8: reward sharing, payments twice, none
    data["incentives"] = [
        {
            "one_of": [
                "none",
                {"plugin": "reward_sharing", "search": {"s": {"low": 0.0, "high": 1.0}}},
                {
                    "plugin": "payments",
                    "params": {"contracts": [dict(COOPERATION_PAYMENT)]},
                    "search": {"contracts.0.amount": {"low": 0.02, "high": 2.0}},
                },
            ]
        }
    ]
    data["search"]["space"] = {}
    data["search"]["sampler"] = "random"
    assert batch_space_problem(validate_recipe(data, source="x")) is None
    run_search(str(write(tmp_path, data)), "--batch", "4")
    trials = load(study_dir(tmp_path)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert all(t.user_attrs["batch"] == 4 and "batch_fallback" not in t.user_attrs for t in trials)
    structures = sorted(t.params["incentives.0"] for t in trials)
    assert structures == ["none", "payments", "payments", "reward_sharing"]
    paid = [t for t in trials if t.params["incentives.0"] == "payments"]
    assert len({t.params["payments.contracts.0.amount"] for t in paid}) == 2  # two amounts, one batch
    _assert_each_trial_scores_as_alone(tmp_path, data, trials)


@pytest.mark.parametrize(
    ("trials", "workers", "share"), [(16, 2, 8), (15, 2, 8), (16, 1, 16), (1, 2, 1), (5, 3, 2)]
)
def test_a_batch_takes_at_most_a_workers_share_of_the_budget(trials, workers, share):
    from incentive.search import fair_share

    assert fair_share(trials, workers) == share


def test_two_workers_split_the_budget_into_even_batches_and_fail_no_ask(tmp_path: Path):
    data = batched_data(tmp_path)
    data["search"]["trials"] = 4
    path = write(tmp_path, data)
    run_search(str(path), "--batch", "4", "--workers", "2")
    trials = load(study_dir(tmp_path)).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # no ask beyond the budget
    assert [t.user_attrs["batch"] for t in trials] == [2, 2, 2, 2]
    assert len({t.user_attrs["worker"] for t in trials}) == 2
