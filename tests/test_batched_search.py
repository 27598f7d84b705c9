"""`incentive search --batch K`: K designs (and their repeats) trained as one batch, each scored as alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from optuna.trial import TrialState

from incentive.recipe import validate_recipe
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
