"""`incentive search`: the space, the budget, scores, and real studies with real worker processes."""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from incentive.errors import IncentiveError, RecipeError
from incentive.recipe import Constraint, validate_recipe
from incentive.scores import constraint_value, run_score
from incentive.search import make_pruner, make_sampler, pareto_front, validate_search
from incentive.search_space import trial_recipe
from incentive.study import Budget

sys.path.insert(0, str(Path(__file__).parent))
from postgres import postgres_cluster  # noqa: E402

INCENTIVE = str(Path(sys.executable).parent / "incentive")


def search_data(log_dir: Path, **search) -> dict:
    """A search recipe whose trials train in well under a second: IPD, 8 envs, 4 iterations."""
    return {
        "name": "tiny_search",
        "seed": 1,
        "env": {"id": "prisoners_dilemma", "num_envs": 8, "params": {"episode_length": 5}},
        "learner": {"lr": 0.01, "rollout_steps": 10, "epochs": 2, "minibatches": 2, "hidden_sizes": [8]},
        "incentives": [{"plugin": "reward_sharing", "params": {"s": 0.5}}],
        "objective": {"metric": "collective_return"},
        "train": {"total_steps": 8 * 10 * 4, "checkpoint_every": 100},
        "log": {"dir": str(log_dir), "wandb": {"mode": "disabled"}},
        "search": {
            "trials": 4,
            "verify": 0,
            "pruner": "none",
            "space": {"incentives.0.params.s": {"low": 0.0, "high": 1.0}},
            **search,
        },
    }


def write(tmp_path: Path, data: dict, name: str = "search.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run_search(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
    result = subprocess.run([INCENTIVE, "search", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@functools.cache
def rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """One storage, so one connection pool, per server: a new one per poll of `wait_for` held its
    connections until garbage collection, and a long wait ran the server out of connections."""
    return optuna.storages.RDBStorage("postgresql+psycopg://" + url.split("://", 1)[1])


def load(study_dir: Path, name: str = "tiny_search", url: str | None = None) -> optuna.Study:
    if url is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))
    else:
        storage = rdb_storage(url)
    return optuna.load_study(study_name=name, storage=storage)


def counted(study: optuna.Study) -> list:
    return Budget(10**6).counted(study.get_trials())


# --- pure pieces, against hand numbers -------------------------------------------------


def rows(values):
    return [
        {"train/iteration": i + 1, **({"designer/x": v} if v is not None else {})}
        for i, v in enumerate(values)
    ]


def test_run_score_averages_the_last_fraction_of_iterations():
    ten = rows([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert run_score(ten, "x", 0.1) == 9  # last 1 of 10 iterations
    assert run_score(ten, "x", 0.3) == (7 + 8 + 9) / 3
    assert run_score(ten, "x", 0.25) == (7 + 8 + 9) / 3  # ceil(2.5) = 3 iterations
    assert run_score(ten, "designer/x", 1.0) == 4.5
    gaps = rows([1, None, 5, None, None, None, None, None, 8, None])
    assert run_score(gaps, "x", 0.2) == 8  # iterations 9 and 10: only 9 reported
    assert run_score(gaps, "x", 0.1) == 8  # none in the window: the last reported value
    with pytest.raises(IncentiveError, match="never reported"):
        run_score(rows([None, None]), "x", 0.5)


def test_constraint_values():
    data = [{"train/iteration": 1, "designer/collective_return": 40.0, "incentive/payments/paid": -2.0}]
    at_most = Constraint(metric="incentive/payments/paid", relative_to="collective_return", at_least=-0.1)
    assert constraint_value(data, at_most, 1.0) == pytest.approx(-0.1 - (-2.0 / 40.0))  # -0.05: feasible
    strict = Constraint(metric="collective_return", at_most=30.0)
    assert constraint_value(data, strict, 1.0) == 10.0  # infeasible
    zero = [{"train/iteration": 1, "designer/a": 1.0, "designer/b": 0.0}]
    assert constraint_value(zero, Constraint(metric="a", relative_to="b", at_most=1.0), 1.0) == math.inf


def test_objective_values_read_metrics_from_the_run_and_params_from_the_design():
    from incentive.recipe import Objective
    from incentive.scores import objective_values

    data = [{"train/iteration": i, "designer/x": float(i)} for i in (1, 2)]
    objectives = [
        Objective(metric="x", last_fraction=1.0),
        Objective(param="incentives.0.params.s", direction="minimize"),
    ]
    assert objective_values(objectives, data, {"incentives.0.params.s": 0.25}) == [1.5, 0.25]
    assert objective_values(objectives, data, {}) == [1.5, 0.0]  # the incentive is off: no cost


def test_a_constraint_on_a_plugin_that_is_off_costs_nothing():
    data = [{"train/iteration": 1, "designer/collective_return": 40.0}]
    paid = Constraint(metric="incentive/payments/paid", relative_to="collective_return", at_most=0.1)
    assert constraint_value(data, paid, 1.0, off=frozenset({"payments"})) == pytest.approx(-0.1)
    with pytest.raises(IncentiveError, match="never reported"):  # on, yet silent: a real error
        constraint_value(data, paid, 1.0)


def test_verification_reruns_only_the_seeds_that_had_not_finished(tmp_path):
    from incentive.search import SearchSettings, design_seeds, verify_designs

    recipe = validate_recipe(search_data(tmp_path / "runs", repeats=2, verify=1), source="v.yaml")
    settings = SearchSettings.of(recipe, study="v", workers=1)
    settings.study_dir = tmp_path / "study"
    study = optuna.create_study(direction="maximize")
    trial = create_trial(
        value=1.0,
        params={"incentives.0.params.s": 0.5},
        distributions={"incentives.0.params.s": FloatDistribution(0, 1)},
        user_attrs={"recipe": json.dumps(recipe.model_dump(mode="json") | {"search": None})},
    )
    study.add_trial(trial)
    first, second = design_seeds(recipe, 2, 2)
    study.set_user_attr(f"verify/0/{first}", [123.0])  # finished before an interruption
    results = verify_designs(recipe, settings, study, budget=Budget(10))
    runs = sorted(p.name for p in (settings.study_dir / "verify").iterdir())
    assert runs == [f"0000-seed-{second}"]  # only the missing seed was trained
    assert results[0]["per_seed"][0] == [123.0] and len(results[0]["per_seed"]) == 2
    assert study.user_attrs["verified/0"]["values"][0] == pytest.approx(
        (123.0 + results[0]["per_seed"][1][0]) / 2
    )
    assert verify_designs(recipe, settings, study, budget=Budget(10)) == results  # done: nothing re-runs


def frozen(number, state=TrialState.COMPLETE, value=1.0, **system):
    trial = create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        system_attrs=system,
    )
    trial.number = number
    return trial


def test_verification_spreads_over_a_pareto_front():
    from incentive.search import designs_to_verify

    ranked = [frozen(n) for n in range(7)]
    assert [t.number for t in designs_to_verify(ranked, 3, 1)] == [0, 1, 2]  # one objective: the top 3
    assert [t.number for t in designs_to_verify(ranked, 3, 2)] == [0, 3, 6]  # both ends and the middle
    assert [t.number for t in designs_to_verify(ranked, 2, 2)] == [0, 6]
    assert [t.number for t in designs_to_verify(ranked[:2], 3, 2)] == [0, 1]
    assert designs_to_verify(ranked, 0, 2) == []


def test_budget_counts_slots_once_and_reruns_keep_their_slot():
    # 0 and 1 done, 2 died and was re-run as 4 (retry_history [2]), 3 running, 5 is a newcomer
    trials = [
        frozen(0),
        frozen(1, TrialState.PRUNED),
        frozen(2, TrialState.FAIL),
        frozen(3, TrialState.RUNNING),
        frozen(4, TrialState.RUNNING, failed_trial=2, retry_history=[2]),
        frozen(5, TrialState.RUNNING),
    ]
    budget = Budget(4)
    assert [t.number for t in budget.counted(trials)] == [0, 1, 3, 4, 5]
    assert budget.slots(trials) == [0, 1, 2, 3, 5]
    assert budget.within(trials[4], trials)  # the re-run holds slot 2
    assert not budget.within(trials[5], trials)  # slot 5 ranks fifth: over a budget of 4
    assert budget.open_slots(trials) == 0
    assert Budget(6).open_slots(trials) == 1
    assert budget.finished(trials) == 2  # 0 complete, 1 pruned; 3 and 4 still run


def test_pareto_front_keeps_exactly_the_non_dominated():
    points = {0: (1.0, 5.0), 1: (2.0, 4.0), 2: (1.5, 3.0), 3: (2.0, 4.0), 4: (0.5, 6.0)}
    trials = []
    for number, values in points.items():
        t = create_trial(values=list(values), params={}, distributions={})
        t.number = number
        trials.append(t)
    # maximize the first, minimize the second: 2 (1.5, 3) dominates 0 and 4; 1 and 3 tie, undominated
    assert sorted(t.number for t in pareto_front(trials, [1, -1])) == [1, 2, 3]
    assert sorted(t.number for t in pareto_front(trials, [1, 1])) == [0, 1, 3, 4]


# --- the space ------------------------------------------------------------------------


def structure_data(tmp_path: Path) -> dict:
    data = search_data(tmp_path / "runs")
    data["incentives"] = [
        {
            "one_of": [
                "none",
                {"plugin": "reward_sharing", "search": {"s": {"low": 0.0, "high": 1.0}}},
                {"plugin": "inequity_aversion", "search": {"alpha": {"low": 0.0, "high": 5.0}}},
            ]
        },
        {"plugin": "social_value_orientation", "optional": True, "params": {}},
    ]
    data["search"]["space"] = {"learner.lr": {"low": 0.001, "high": 0.1, "log": True}}
    return data


def test_structure_search_builds_exactly_the_chosen_plugins(tmp_path):
    recipe = validate_recipe(structure_data(tmp_path), source="structure")
    chosen = trial_recipe(
        optuna.trial.FixedTrial(
            {
                "incentives.0": "inequity_aversion",
                "inequity_aversion.alpha": 2.5,
                "social_value_orientation.on": False,
                "learner.lr": 0.01,
            }
        ),
        recipe,
    )
    assert [(e.plugin, e.params) for e in chosen.incentives] == [("inequity_aversion", {"alpha": 2.5})]
    assert chosen.learner.lr == 0.01
    none = trial_recipe(
        optuna.trial.FixedTrial(
            {"incentives.0": "none", "social_value_orientation.on": True, "learner.lr": 0.01}
        ),
        recipe,
    )
    assert [e.plugin for e in none.incentives] == ["social_value_orientation"]
    # the trial recipe is plain: it runs as is
    assert "one_of" not in json.dumps(none.model_dump(mode="json")) and not none.incentives[0].optional


def test_structure_study_samples_conditional_params_only_for_chosen_plugins(tmp_path):
    recipe = validate_recipe(structure_data(tmp_path), source="structure")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        chosen = trial_recipe(trial, recipe)
        study.tell(trial, 0.0)
        plugins = [e.plugin for e in chosen.incentives]
        choice = trial.params["incentives.0"]
        assert (
            ("reward_sharing.s" in trial.params)
            == (choice == "reward_sharing")
            == ("reward_sharing" in plugins)
        )
        assert ("inequity_aversion.alpha" in trial.params) == (choice == "inequity_aversion")
        if choice == "inequity_aversion":
            entry = chosen.incentives[0]
            assert entry.plugin == "inequity_aversion" and entry.params == {
                "alpha": trial.params["inequity_aversion.alpha"]
            }
        assert ("social_value_orientation" in plugins) == trial.params["social_value_orientation.on"]
    assert {t.params["incentives.0"] for t in study.trials} == {"none", "reward_sharing", "inequity_aversion"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"space": {"learner.nope": {"low": 0, "high": 1}}}, "search.space.learner.nope"),
        (
            {"space": {"incentives.0.params.aggregate": {"choices": ["mean", "median"]}}},
            "search.space.incentives.0.params.aggregate",
        ),
        ({"space": {"incentives.0.params.s": {"low": 1.0, "high": 0.0}}}, "range is inverted"),
        ({"space": {"learner.lr": {"choices": []}}}, "must not be empty"),
        ({"space": {"learner.lr": {"low": 0.0, "high": 1.0, "log": True}}}, "log range needs low > 0"),
        ({"space": {}}, "nothing to search"),
        ({"sampler": "annealing"}, "search.sampler"),
        ({"pruner": "patient"}, "search.pruner"),
        ({"pruner": "wilcoxon"}, "set search.repeats to 2"),
        ({"sampler": "grid"}, "grid sampler needs finite values"),
        ({"sampler_params": {"bogus": 1}}, "search.sampler_params"),
        ({"study_name": "../escape"}, "plain name"),
        ({"constraints": [{"metric": "colective_return", "at_most": 1}]}, "search.constraints.0.metric"),
        (
            {"constraints": [{"metric": "x", "relative_to": "collective_return", "at_least": 0}]},
            "search.constraints.0.metric",
        ),
        (
            {"constraints": [{"metric": "collective_return", "relative_to": "nope", "at_most": 1}]},
            "search.constraints.0.relative_to",
        ),
        (
            {"constraints": [{"metric": "incentive/payments/paid", "at_most": 1}]},
            "names no incentive of this recipe",
        ),
        (
            {"constraints": [{"metric": "collective_return", "at_most": "nan"}]},
            "search.constraints.0.at_most",
        ),
        ({"constraints": [{"metric": "collective_return"}]}, "exactly one of at_most or at_least"),
        ({"objective": [{"metric": "collective_return"}, {"param": "learner.lr"}]}, "objective.1.param"),
        ({"objective": {"param": "incentives.0.params.s"}}, "at least one objective must be a designer"),
        ({"objective": {"metric": "collective_return", "param": "x"}}, "exactly one of `metric`"),
    ],
)
def test_bad_search_input_names_the_field(tmp_path, change, expected):
    objective = change.pop("objective", None)
    data = search_data(tmp_path / "runs", **change)
    if objective is not None:
        data["objective"] = objective
    with pytest.raises(RecipeError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        recipe = validate_recipe(data, source="bad.yaml")
        validate_search(recipe)


def test_multi_objective_refuses_pruning_and_cmaes(tmp_path):
    data = search_data(tmp_path, pruner="median")
    data["objective"] = [
        {"metric": "collective_return"},
        {"metric": "mutual_cooperation", "direction": "minimize"},
    ]
    recipe = validate_recipe(data, source="multi.yaml")
    with pytest.raises(RecipeError, match="cannot prune multi-objective"):
        make_pruner(recipe)
    data["search"]["sampler"] = "cmaes"
    with pytest.raises(RecipeError, match="cmaes optimises one objective"):
        make_sampler(validate_recipe(data, source="multi.yaml"), seed=0)


# --- real studies, real processes -------------------------------------------------------


def study_dir(tmp_path: Path, study: str = "tiny_search") -> Path:
    return tmp_path / "runs" / "tiny_search" / "studies" / study


def test_journal_study_with_two_workers_runs_exactly_its_budget_and_best_yaml_runs(tmp_path):
    path = write(tmp_path, search_data(tmp_path / "runs", trials=5, repeats=2, verify=1))
    result = run_search(str(path), "--workers", "2")
    out = study_dir(tmp_path)
    study = load(out)
    trials = counted(study)
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert not [t for t in study.trials if t.user_attrs.get("over_budget")] or len(study.trials) > 5
    for t in trials:  # the value is the mean over the repeats' scores
        per_seed = t.user_attrs["per_seed"]
        assert len(per_seed) == 2 and t.values[0] == pytest.approx(sum(s[0] for s in per_seed) / 2)
        assert len(list((out / "trials").glob(f"{t.number:04d}-seed-*"))) == 2
    verified = [k for k in study.user_attrs if k.startswith("verified/")]
    assert len(verified) == 1
    record = study.user_attrs[verified[0]]
    assert set(record["seeds"]).isdisjoint(trials[0].user_attrs["seeds"])  # fresh seeds
    assert "best design: trial" in result.stdout and "verified on fresh seeds" in result.stdout
    csv_lines = (out / "trials.csv").read_text().splitlines()
    assert len(csv_lines) == 6 and csv_lines[0].startswith("trial,state,collective_return")
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = out / "best.yaml"
    assert subprocess.run([INCENTIVE, "validate", str(best)], capture_output=True).returncode == 0
    ran = subprocess.run(
        [INCENTIVE, "run", str(best), "--quiet", "--set", f"log.dir={tmp_path / 'best'}"],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    # rerunning the finished study trains nothing more
    again = run_search(str(path), "--workers", "2")
    assert len(counted(load(out))) == 5 and "best design" in again.stdout
    shown = subprocess.run([INCENTIVE, "study", "show", str(out)], capture_output=True, text=True)
    assert shown.returncode == 0 and "complete" in shown.stdout


def test_pruning_is_observed_and_marked(tmp_path):
    data = search_data(
        tmp_path / "runs",
        trials=8,
        pruner="median",
        sampler="random",
        pruner_params={"n_startup_trials": 2, "n_warmup_steps": 3},
    )
    data["train"]["total_steps"] = 8 * 10 * 12
    data["objective"] = {"metric": "mutual_cooperation"}
    data["learner"]["lr"] = 0.03
    data["search"]["space"] = {"incentives.0.params.s": {"choices": [0.0, 1.0]}}
    path = write(tmp_path, data)
    result = run_search(str(path), "--workers", "1")
    study = load(study_dir(tmp_path))
    pruned = [t for t in counted(study) if t.state == TrialState.PRUNED]
    assert pruned, result.stdout
    assert all(t.params["incentives.0.params.s"] == 0.0 for t in pruned)  # the clearly worse design
    assert all(t.user_attrs["env_steps"] < 8 * 10 * 12 for t in pruned)  # stopped early
    assert "pruned" in result.stdout


def test_multi_objective_pareto_designs_are_non_dominated_and_valid(tmp_path):
    data = search_data(tmp_path / "runs", trials=5, sampler="nsga2", verify=0)
    data["objective"] = [
        {"metric": "collective_return"},
        {"metric": "mutual_cooperation", "direction": "minimize"},
        {"param": "incentives.0.params.s", "direction": "minimize"},
    ]
    run_search(str(write(tmp_path, data)), "--workers", "1")
    out = study_dir(tmp_path)
    study = load(out)
    complete = [t for t in counted(study) if t.state == TrialState.COMPLETE]
    files = sorted((out / "pareto").glob("trial-*.yaml"))
    assert files
    numbers = {int(f.stem.split("-")[1]) for f in files}
    signs = (1, -1, -1)
    for t in complete:  # a param objective is the design's own value
        assert t.values[2] == t.params["incentives.0.params.s"]
    for n in numbers:
        a = next(t for t in complete if t.number == n)
        for b in complete:
            at_least_as_good = all(s * x >= s * y for s, x, y in zip(signs, b.values, a.values, strict=True))
            assert not (at_least_as_good and b.values != a.values)
        assert (
            subprocess.run([INCENTIVE, "validate", str(out / "pareto" / f"trial-{n}.yaml")]).returncode == 0
        )


def wait_for(predicate, timeout: float = 300, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def running_trial(out: Path, url: str | None = None, name: str = "tiny_search"):
    def find():
        try:
            study = load(out, name, url)
        except Exception:
            return None
        for t in study.get_trials():
            if t.state == TrialState.RUNNING and "worker" in t.user_attrs and t.number >= 1:
                return t
        return None

    return find


def slow_trials(data: dict) -> dict:
    data["train"]["total_steps"] = 8 * 10 * 300  # a few seconds per trial: a signal lands mid-trial
    return data


def test_sigkill_of_a_worker_reruns_its_trial_once(tmp_path):
    path = write(tmp_path, slow_trials(search_data(tmp_path / "runs", trials=4)))
    command = subprocess.Popen(
        [INCENTIVE, "search", str(path), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = study_dir(tmp_path)
    victim = wait_for(running_trial(out), what="a running trial")
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    stdout, stderr = command.communicate(timeout=300)
    assert command.returncode == 0, stdout + stderr
    study = load(out)
    trials = counted(study)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    killed = next(t for t in study.trials if t.number == victim.number)
    assert killed.state == TrialState.FAIL
    reruns = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(reruns) == 1 and reruns[0].params == victim.params
    assert f"died (signal {signal.SIGKILL})" in stdout


def test_sigint_stops_and_rerun_resumes_the_budget(tmp_path):
    data = slow_trials(search_data(tmp_path / "runs", trials=4))
    # longer still: on a loaded machine the poll that sees trial 1 running can come so late that
    # the whole study has finished (exit 0) before the signal is sent
    data["train"]["total_steps"] *= 3
    path = write(tmp_path, data)
    command = subprocess.Popen(
        [INCENTIVE, "search", str(path), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = study_dir(tmp_path)
    wait_for(running_trial(out), what="trial 1 running")
    assert command.poll() is None, "the search ended before the signal: the trials are too short"
    command.send_signal(signal.SIGINT)
    stdout, stderr = command.communicate(timeout=120)
    assert command.returncode == 130, stdout + stderr
    assert "run the same command again to resume" in stderr
    before = load(out)
    done_before = [t for t in counted(before) if t.state == TrialState.COMPLETE]
    assert len(done_before) >= 1
    run_search(str(path), "--workers", "1")
    after = load(out)
    trials = counted(after)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in done_before:  # finished trials are kept as they were, not run again
        assert next(a for a in trials if a.number == t.number).values == t.values
    interrupted = [t for t in after.trials if t.user_attrs.get("interrupted")]
    assert interrupted and all(
        any(r.system_attrs.get("failed_trial") == t.number for r in after.trials) for t in interrupted
    )


def test_bad_storage_and_clashing_study_exit_2_and_keep_the_study(tmp_path):
    path = write(tmp_path, search_data(tmp_path / "runs", trials=2))
    result = run_search(str(path), "--storage", "postgresql://nobody@127.0.0.1:9/none", check=False)
    assert result.returncode == 2 and "cannot open the PostgreSQL study storage" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_search(str(path), "--storage", "sqlite:///x.db", check=False)
    assert result.returncode == 2 and "unsupported storage" in result.stderr
    run_search(str(path))
    data = search_data(tmp_path / "runs", trials=2)
    data["objective"] = {"metric": "mutual_cooperation"}
    clash = run_search(str(write(tmp_path, data, "other.yaml")), check=False)
    assert clash.returncode == 2 and "exists with other objectives" in clash.stderr
    assert len(counted(load(study_dir(tmp_path)))) == 2
    bad = search_data(tmp_path / "runs", trials=2)
    bad["search"]["space"] = {"learner.nope": {"low": 0, "high": 1}}
    result = run_search(str(write(tmp_path, bad, "bad.yaml")), check=False)
    assert result.returncode == 2 and "learner.nope" in result.stderr


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_cluster() as url:
        yield url


def test_postgres_study_with_two_workers(tmp_path, postgres_url):
    path = write(tmp_path, search_data(tmp_path / "runs", trials=5))
    run_search(str(path), "--workers", "2", "--storage", postgres_url, "--study", "pg_two_workers")
    study = load(None, "pg_two_workers", postgres_url)
    trials = counted(study)
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert (study_dir(tmp_path, "pg_two_workers") / "best.yaml").exists()
    shown = subprocess.run(
        [INCENTIVE, "study", "show", postgres_url, "--study", "pg_two_workers"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and "complete" in shown.stdout


def test_two_commands_started_together_on_a_new_database_share_one_study(tmp_path, postgres_url):
    """Optuna's pitfall: concurrent first commands race to create tables; the advisory lock serialises it."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE race")
    url = postgres_url.rsplit("/", 1)[0] + "/race"
    path = write(tmp_path, search_data(tmp_path / "runs", trials=4))
    args = [INCENTIVE, "search", str(path), "--workers", "1", "--storage", url, "--study", "race"]
    commands = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"
    ]
    for command in commands:
        stdout, stderr = command.communicate(timeout=300)
        assert command.returncode == 0, stdout + stderr
    study = load(None, "race", url)
    trials = counted(study)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)


def test_postgres_lost_machine_trial_goes_stale_and_is_rerun_once(tmp_path, postgres_url):
    """Two 'machines' (two commands) share a study; one dies whole; the heartbeat re-runs its trial."""
    data = slow_trials(search_data(tmp_path / "runs", trials=4, heartbeat_interval=1, grace_period=3))
    path = write(tmp_path, data)
    args = [
        INCENTIVE,
        "search",
        str(path),
        "--workers",
        "1",
        "--storage",
        postgres_url,
        "--study",
        "pg_lost",
        "--verify",
        "0",
    ]
    first = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    victim = wait_for(running_trial(None, postgres_url, "pg_lost"), what="a running trial")
    second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.killpg(first.pid, signal.SIGKILL)  # the whole machine: command and worker
    first.communicate()
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stdout + stderr
    study = load(None, "pg_lost", postgres_url)
    trials = counted(study)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    reruns = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(reruns) == 1
    assert next(t for t in study.trials if t.number == victim.number).state == TrialState.FAIL


# --- samplers, pruners, constraints, W&B ---------------------------------------------------


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes", "nsga2", "gp"])
def test_every_sampler_drives_the_structure_space(tmp_path, sampler):
    data = structure_data(tmp_path)
    data["incentives"][0]["one_of"][1]["search"]["s"]["step"] = 0.5
    data["incentives"][0]["one_of"][2]["search"]["alpha"]["step"] = 2.5
    data["search"]["space"] = {"learner.lr": {"choices": [0.001, 0.01]}}
    data["search"]["sampler"] = sampler
    recipe = validate_recipe(data, source="samplers")
    study = optuna.create_study(sampler=make_sampler(recipe, seed=0))
    for _ in range(4):
        trial = study.ask()
        chosen = trial_recipe(trial, recipe)
        study.tell(trial, float(len(chosen.incentives)))
    assert len(study.trials) == 4 and all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize(
    ("pruner", "cls"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("wilcoxon", optuna.pruners.WilcoxonPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_every_pruner_is_built(tmp_path, pruner, cls):
    recipe = validate_recipe(search_data(tmp_path, pruner=pruner, repeats=2), source="pruners")
    assert isinstance(make_pruner(recipe), cls)


def test_trials_are_wandb_runs_in_the_study_group_with_constraints(tmp_path):
    from wandb_records import read_records, run_config

    bound = [{"metric": "collective_return", "at_most": 1e6}]
    data = search_data(tmp_path / "runs", trials=2, constraints=bound)
    data["log"]["wandb"] = {"mode": "offline"}
    run_search(str(write(tmp_path, data)), "--workers", "1", "--study", "logged")
    out = study_dir(tmp_path, "logged")
    study = load(out, "logged")
    for t in counted(study):
        assert t.user_attrs["constraints"]["c0"] < 0  # feasible: far below the bound
        assert any(key.startswith("constraints") for key in t.system_attrs)  # Optuna's set_constraint
        files = list((out / "trials").glob(f"{t.number:04d}-seed-*/wandb/offline-run-*/run-*.wandb"))
        assert len(files) == 1
        records = read_records(files[0])
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        assert run.run_group == "logged" and run.job_type == "trial"
        config = run_config(records)
        assert json.loads(config["trial"]) == t.number and json.loads(config["study"]) == "logged"
    summary = list(out.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(summary) == 1
    tables = [r for r in read_records(summary[0]) if r.WhichOneof("record_type") == "history"]
    assert tables, "the study's summary run logs its tables"
