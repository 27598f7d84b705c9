"""Batched trials (`incentive run --seeds`): each seed's metrics are byte for byte those of its lone run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from incentive import hookimpl
from incentive.batched import BatchedTraining, parse_seeds, resume_seeds, start_seeds
from incentive.cli import main
from incentive.errors import RecipeError, StopRun
from incentive.ppo import PPO, Batch
from incentive.recipe import LearnerSpec, validate_recipe
from incentive.runner import start_run


def _recipe(tmp_path: Path, env: dict[str, Any], learner: dict[str, Any], incentives=(), **extra) -> Any:
    data = {
        "name": f"batched_{env['id']}",
        "seed": 0,
        "env": env,
        "learner": {"epochs": 2, "minibatches": 4, "hidden_sizes": [32, 32], **learner},
        "incentives": list(incentives),
        "objective": {"metric": "collective_return", "direction": "maximize"},
        "train": {"total_steps": 0, "checkpoint_every": 2},
        "log": {"dir": str(tmp_path / "runs"), "wandb": {"mode": "disabled"}},
        **extra,
    }
    return data


CASES = {
    "matrix_game": (
        {"id": "prisoners_dilemma", "num_envs": 16, "params": {"episode_length": 10}},
        {"rollout_steps": 20, "lr": 0.005},
        [{"plugin": "reward_sharing", "params": {"s": 0.3}}],
        1600,
    ),
    "coin_game": (
        {"id": "coin_game", "num_envs": 16, "params": {"episode_length": 12}},
        {"rollout_steps": 16, "lr": 0.0005},
        [],
        1280,
    ),
    "cleanup_inequity_aversion": (
        {"id": "cleanup", "num_envs": 4, "params": {"map": "lio_7x7"}},
        {"rollout_steps": 25, "lr": 0.001},
        [{"plugin": "inequity_aversion", "params": {"alpha": 5.0, "beta": 0.05}}],
        500,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_seed_matches_its_lone_run_byte_for_byte(tmp_path: Path, case: str):
    env, learner, incentives, steps = CASES[case]
    data = _recipe(tmp_path, env, learner, incentives)
    data["train"]["total_steps"] = steps
    seeds = [0, 5, 2]
    run_dirs, last = start_seeds(validate_recipe(data, source=case), seeds, run_id="batch")
    assert [d.name for d in run_dirs] == ["batch-seed0", "batch-seed5", "batch-seed2"]
    for seed, run_dir in zip(seeds, run_dirs, strict=True):
        lone, _ = start_run(validate_recipe({**data, "seed": seed}, source=case), run_id=f"lone{seed}")
        batched = (run_dir / "metrics.jsonl").read_bytes()
        assert batched == (lone / "metrics.jsonl").read_bytes()
        assert b"designer/collective_return" in batched  # episodes finished: designer metrics compared too
        assert (run_dir / "recipe.yaml").read_text() == (lone / "recipe.yaml").read_text()
    # the seeds really differ (the batch is not K copies of one run)
    first, second = ((d / "metrics.jsonl").read_bytes() for d in run_dirs[:2])
    assert first != second


class _Interrupt:
    """Stops the process (as Ctrl-C would) at one iteration."""

    def __init__(self, at: int) -> None:
        self.at = at

    @hookimpl
    def incentive_iteration_end(self, iteration: int) -> None:
        if iteration == self.at:
            raise KeyboardInterrupt


def test_resume_of_a_batch_continues_bit_for_bit(tmp_path: Path):
    env, learner, incentives, _ = CASES["cleanup_inequity_aversion"]
    data = _recipe(tmp_path, env, learner, incentives)
    data["train"]["total_steps"] = 700  # 7 iterations, checkpoints at 2, 4, 6, 7
    recipe = validate_recipe(data, source="resume")
    whole, _ = start_seeds(recipe, [1, 3], run_id="whole")
    with pytest.raises(KeyboardInterrupt):
        start_seeds(recipe, [1, 3], run_id="cut", extra_plugins=[[("stop", _Interrupt(5))], []])
    cut = [Path(str(d).replace("whole", "cut")) for d in whole]
    lines = (cut[0] / "metrics.jsonl").read_bytes().count(b"\n")
    assert lines == 5  # trial 0 logged iteration 5, then stopped; the last checkpoint is at 4
    resume_seeds(cut[1])
    for a, b in zip(whole, cut, strict=True):
        assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()


def test_shared_network_trials_update_as_lone_learners():
    """Three trials in one learner against three lone learners: equal stats and weights, dedup in one."""
    cfg = LearnerSpec(lr=5e-4, minibatches=4, epochs=2, hidden_sizes=[16, 16])
    seeds = [3, 5, 9]
    lone = [
        PPO(config=cfg, obs_dims=[12, 12], action_dims=[3, 3], generator=torch.Generator().manual_seed(s))
        for s in seeds
    ]
    batched = PPO(
        config=cfg,
        obs_dims=[12, 12],
        action_dims=[3, 3],
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    )
    g = torch.Generator().manual_seed(1)
    n = 256
    fields = []
    for k in range(3):  # trial 1 sees few distinct observations (dedup), the others many
        obs = (torch.rand(n, 2, 12, generator=g) > (0.995 if k == 1 else 0.5)).float()
        fields.append(
            {
                "features": lone[k].features({"a": obs[:, 0], "b": obs[:, 1]}, ["a", "b"]),
                "action_mask": None,
                "actions": torch.randint(0, 3, (n, 2), generator=g),
                "logprobs": -torch.rand(n, 2, generator=g) - 1,
                "values": torch.randn(n, 2, generator=g),
                "advantages": torch.randn(n, 2, generator=g),
                "returns": torch.randn(n, 2, generator=g),
                "policy_mask": torch.rand(n, 2, generator=g) > 0.2,
                "value_mask": torch.ones(n, 2, dtype=torch.bool),
            }
        )
    stats = [lone[k].update(Batch(**fields[k])) for k in range(3)]
    stacked = {
        key: None if fields[0][key] is None else torch.stack([f[key] for f in fields]) for key in fields[0]
    }
    assert batched.update_trials(Batch(**stacked)) == stats
    for k in range(3):
        for p, q in zip(batched.net.parameters(), lone[k].net.parameters(), strict=True):
            assert torch.equal(p[k : k + 1], q)


@pytest.mark.parametrize(
    ("text", "seeds"), [("0-3", [0, 1, 2, 3]), ("0,3,5", [0, 3, 5]), ("7", [7]), ("0-1, 9", [0, 1, 9])]
)
def test_parse_seeds(text: str, seeds: list[int]):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("3-1", "end is below its start"),
        ("a,b", "not a seed"),
        ("1,1", "more than once"),
        ("-2", "not a seed"),
        ("0-", "not a seed"),
    ],
)
def test_bad_seeds_are_clear_errors_with_exit_2(tmp_path: Path, capsys, text: str, message: str):
    env, learner, incentives, _ = CASES["matrix_game"]
    import yaml

    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(_recipe(tmp_path, env, learner, incentives) | {"train": {"total_steps": 320}})
    )
    assert main(["run", str(path), "--seeds", text, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--seeds" in err and message in err and "Traceback" not in err


def test_run_wide_plugins_are_refused_by_name(tmp_path: Path):
    env, learner, _, _ = CASES["matrix_game"]
    data = _recipe(tmp_path, env, learner)
    data["train"]["total_steps"] = 320
    data["opponents"] = {"plugin": "self_play"}
    with pytest.raises(RecipeError, match="field 'opponents'"):
        start_seeds(validate_recipe(data, source="refuse"), [0, 1], run_id="x")
    del data["opponents"]
    data["incentives"] = [{"plugin": "taxation"}]
    with pytest.raises(RecipeError, match="plugin 'taxation'.*incentive_collect_metrics"):
        start_seeds(validate_recipe(data, source="refuse"), [0, 1], run_id="y")


class _Prune:
    """A search pruner's stop, at one iteration."""

    def __init__(self, at: int) -> None:
        self.at = at

    @hookimpl
    def incentive_iteration_end(self, iteration: int) -> None:
        if iteration == self.at:
            raise StopRun("pruned", "test")


def test_a_pruned_trial_is_dropped_and_the_others_continue_as_alone(tmp_path: Path):
    env, learner, incentives, _ = CASES["cleanup_inequity_aversion"]
    data = _recipe(tmp_path, env, learner, incentives)
    data["train"]["total_steps"] = 500  # 5 iterations of 4 envs x 25 steps
    seeds = [0, 5, 2]
    recipes = [validate_recipe({**data, "seed": s}, source="prune") for s in seeds]
    dirs = [tmp_path / "batch" / str(s) for s in seeds]
    training = BatchedTraining(recipes, run_dirs=dirs, extra_plugins=[[], [("prune", _Prune(2))], []])
    training.run()
    assert training.trials == 2 and training.env.num_envs == 8  # seed 5's instances are gone
    assert training.statuses == ["completed", "completed"]
    assert (dirs[1] / "metrics.jsonl").read_bytes().count(b"\n") == 2
    for seed, run_dir in ((0, dirs[0]), (2, dirs[2])):
        lone, _ = start_run(recipes[seeds.index(seed)], run_id=f"lone{seed}")
        assert (run_dir / "metrics.jsonl").read_bytes() == (lone / "metrics.jsonl").read_bytes()


def test_per_agent_networks_agree_to_1e_6(tmp_path: Path):
    """Per-agent networks: not bytes (the last bias-gradient sum order), but every metric within 1e-6."""
    import json

    env, learner, incentives, steps = CASES["coin_game"]
    data = _recipe(tmp_path, env, {**learner, "share_parameters": False}, incentives)
    data["train"]["total_steps"] = steps
    run_dirs, _ = start_seeds(validate_recipe(data, source="per-agent"), [0, 4], run_id="batch")
    for seed, run_dir in zip([0, 4], run_dirs, strict=True):
        lone, _ = start_run(validate_recipe({**data, "seed": seed}, source="per-agent"), run_id=f"lone{seed}")
        ours = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        alone = [json.loads(line) for line in (lone / "metrics.jsonl").read_text().splitlines()]
        assert len(ours) == len(alone) == 5
        for a, b in zip(ours, alone, strict=True):
            assert a.keys() == b.keys()
            assert all(abs(a[key] - b[key]) <= 1e-6 for key in a)


def test_designs_with_different_params_and_a_plugin_off_match_their_lone_runs(tmp_path: Path):
    """Two designs in one batch: s = 0.3 with inequity aversion, s = 0.7 without (a zero term there)."""
    env, learner, _, steps = CASES["matrix_game"]
    sharing = {"plugin": "reward_sharing", "params": {"s": 0.3}}
    aversion = {"plugin": "inequity_aversion", "params": {"alpha": 2.0, "beta": 0.05}}
    first = _recipe(tmp_path, env, learner, [sharing, aversion])
    second = _recipe(tmp_path, env, learner, [{**sharing, "params": {"s": 0.7}}])
    for data in (first, second):
        data["train"]["total_steps"] = steps
    recipes = [validate_recipe(first, source="a"), validate_recipe({**second, "seed": 4}, source="b")]
    dirs = [tmp_path / "batch" / "a", tmp_path / "batch" / "b"]
    BatchedTraining(recipes, run_dirs=dirs).run()
    for recipe, run_dir, run_id in zip(recipes, dirs, ("lone-a", "lone-b"), strict=True):
        lone, _ = start_run(recipe, run_id=run_id)
        assert (run_dir / "metrics.jsonl").read_bytes() == (lone / "metrics.jsonl").read_bytes()
    assert b"inequity_aversion" not in (dirs[1] / "metrics.jsonl").read_bytes()
    assert b"incentive/inequity_aversion/envy" in (dirs[0] / "metrics.jsonl").read_bytes()
