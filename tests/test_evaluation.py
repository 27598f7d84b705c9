"""Evaluation on held-out test levels: what it plays, what it reports, and that it never trains."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from incentive.envs.navigation import Navigation, NavigationParams
from incentive.errors import RecipeError
from incentive.evaluation import Evaluator
from incentive.recipe import load_recipe
from incentive.runner import start_run

NAV = {
    "id": "navigation",
    "num_envs": 8,
    "params": {"min_size": 5, "max_size": 6, "max_steps": 12, "levels": {"train": "0-49", "test": "500-509"}},
}


def toward_goal(planes: torch.Tensor) -> torch.Tensor:
    """Actions [E, A]: head for the goal column (down when a wall is in the way), then its row."""
    e, a, d = planes.shape
    side = int(round((d / 4) ** 0.5))
    maps = planes.reshape(e, a, 4, side * side)
    goal, me = maps[:, :, 1].argmax(-1), maps[:, :, 2].argmax(-1)
    dr, dc = goal // side - me // side, goal % side - me % side
    right_blocked = maps[:, :, 0].gather(2, (me + 1)[..., None])[..., 0] > 0
    toward_row = torch.where(dr > 0, 2, torch.where(dr < 0, 1, 0))
    return torch.where(dc > 0, torch.where(right_blocked, 2, 4), torch.where(dc < 0, 3, toward_row))


class GoalSeeker:
    """A stand-in learner whose greedy action heads for the goal."""

    def features(self, obs, agents):
        return torch.stack([obs[a] for a in agents], 1)

    def action_mask(self, masks, agents):
        return None

    net = SimpleNamespace(
        logits=lambda features: torch.nn.functional.one_hot(toward_goal(features), 5).float()
    )


def test_evaluation_plays_one_episode_on_every_test_level():
    params = NavigationParams(
        num_agents=1,
        min_size=5,
        max_size=6,
        max_steps=12,
        wall_density=1.0,  # a wall in every level
        levels={"train": "0-49", "test": "500-509"},
    )
    env = Navigation(num_envs=4, params=params)
    evaluator = Evaluator(env, agents=env.possible_agents, every=2, greedy=True, num_envs=3, seed=7)
    assert evaluator.metrics(GoalSeeker(), 1) == {}  # not due
    metrics = evaluator.metrics(GoalSeeker(), 2)
    # the same episodes played by hand, one level at a time
    returns, lengths, successes = [], [], []
    for level in range(500, 510):
        one = Navigation(num_envs=1, params=params)
        one.allow_test_levels = True
        one.set_task({"level": torch.tensor([level])})
        ts, total, steps = one.reset(seed=7), 0.0, 0
        while True:
            ts = one.step(toward_goal(ts.obs["agent_0"][:, None]))
            total += float(ts.reward.sum())
            steps += 1
            if bool(ts.done[0]):
                break
        returns.append(total)
        lengths.append(steps)
        successes.append(float(ts.terminated[0]))
    assert metrics["designer/test/collective_return"] == pytest.approx(sum(returns) / 10)
    assert metrics["designer/test/episode_length"] == pytest.approx(sum(lengths) / 10)
    assert metrics["designer/test/success"] == pytest.approx(sum(successes) / 10)
    assert 0 < sum(successes) < 10  # heading straight for the goal solves some levels: the test can fail


def test_training_never_meets_a_test_level():
    params = NavigationParams(levels={"train": "0-9", "test": "10-19"})
    env = Navigation(num_envs=256, params=params)
    env.reset(seed=0)
    seen = set(env.level.tolist())
    for _ in range(60):
        env.step(torch.randint(0, 5, (256, 2)))
        seen |= set(env.level.tolist())
    assert seen <= set(range(10))


def test_evaluation_does_not_change_training(write_recipe, tmp_path):
    base = {"env": NAV, "learner__rollout_steps": 16, "train__total_steps": 8 * 16 * 3, "incentives": []}
    plain, _ = start_run(load_recipe(write_recipe("a.yaml", **base)), run_id="plain")
    evaluated, last = start_run(
        load_recipe(write_recipe("b.yaml", **base, evaluate={"every": 1, "policy": "sampled"})), run_id="eval"
    )
    assert "designer/test/success" in last
    for a, b in zip(
        (plain / "metrics.jsonl").read_text().splitlines(),
        (evaluated / "metrics.jsonl").read_text().splitlines(),
        strict=True,
    ):
        b = {k: v for k, v in json.loads(b).items() if not k.startswith("designer/test/")}
        assert json.loads(a) == b


def test_a_test_metric_can_be_the_objective(write_recipe):
    recipe = load_recipe(
        write_recipe(env=NAV, objective={"metric": "test/success"}, evaluate={"every": 1}, incentives=[])
    )
    _, metrics = start_run(recipe, run_id="objective")
    assert 0.0 <= metrics["designer/test/success"] <= 1.0


def test_evaluating_an_env_without_test_levels_is_an_error(write_recipe):
    recipe = load_recipe(write_recipe(evaluate={"every": 2}))
    with pytest.raises(
        RecipeError, match=r"field 'evaluate.every': env 'prisoners_dilemma' has no held-out test"
    ):
        start_run(recipe, run_id="bad")


def test_a_test_objective_needs_evaluation(write_recipe):
    recipe = load_recipe(write_recipe(env=NAV, objective={"metric": "test/success"}, incentives=[]))
    with pytest.raises(RecipeError, match=r"field 'objective.metric': 'test/success' comes from evaluation"):
        start_run(recipe, run_id="off")
