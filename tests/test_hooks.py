"""Every hook is documented, and the loop calls each with its documented arguments."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import optuna
import pytest
import torch

from incentive import LEARNER, OpponentAssignment, PluginError, hookimpl, hookspecs
from incentive.cli import main
from incentive.plugin_manager import FAMILIES, Hooks, make_plugin_manager, refuse_wrappers
from incentive.recipe import load_recipe, validate_recipe
from incentive.runner import resume_run, start_run
from incentive.search import trial_recipe
from incentive.types import EpisodeResults, Rollout, RunContext, StepBatch

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("incentive_"))


def test_every_hook_is_documented_and_has_a_family():
    assert set(HOOKS) == set(FAMILIES)
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc, name
        for section in ("Args:", "Returns:", "Example::", "@hookimpl"):
            assert section in doc, f"{name} lacks {section}"
        for arg in inspect.signature(getattr(hookspecs, name)).parameters:
            assert f"{arg}:" in doc, f"{name} does not document {arg}"


class Recorder:
    """Implements every hook and records what it was given."""

    def __init__(self) -> None:
        self.calls: dict[str, list] = {name: [] for name in HOOKS}

    @hookimpl
    def incentive_setup(self, run):
        self.calls["incentive_setup"].append(run)

    @hookimpl
    def incentive_next_task(self, run, iteration):
        self.calls["incentive_next_task"].append(iteration)

    @hookimpl
    def incentive_pick_opponents(self, run, iteration):
        self.calls["incentive_pick_opponents"].append(iteration)

    @hookimpl
    def incentive_shape_reward(self, run, step):
        self.calls["incentive_shape_reward"].append(step)
        return {"zero": torch.zeros_like(step.reward)}

    @hookimpl
    def incentive_update_curriculum(self, run, rollout):
        self.calls["incentive_update_curriculum"].append(rollout)

    @hookimpl
    def incentive_update_population(self, run, iteration, results, rollout):
        self.calls["incentive_update_population"].append((iteration, results, rollout))

    @hookimpl
    def incentive_collect_metrics(self, run, rollout):
        self.calls["incentive_collect_metrics"].append(rollout)
        return {"custom/answer": 42}

    @hookimpl
    def incentive_iteration_end(self, run, iteration, metrics):
        self.calls["incentive_iteration_end"].append((iteration, dict(metrics)))

    @hookimpl
    def incentive_run_end(self, run, status, metrics):
        self.calls["incentive_run_end"].append(status)

    @hookimpl
    def incentive_state_dict(self, run):
        self.calls["incentive_state_dict"].append(run.iteration)
        return {"iteration": run.iteration}

    @hookimpl
    def incentive_load_state_dict(self, run, state):
        self.calls["incentive_load_state_dict"].append(state)

    @hookimpl
    def incentive_search_space(self, trial, recipe):
        self.calls["incentive_search_space"].append((trial, recipe))
        return {"learner.epochs": trial.suggest_int("epochs", 1, 3)}


def test_population_update_comes_every_iteration_even_when_no_episode_ends(write_recipe):
    # 16-step rollouts in 40-step episodes: iterations 1 and 2 end no episode, iteration 3 one per env
    recipe = load_recipe(write_recipe(), ["env.params.episode_length=40", "train.total_steps=384"])
    recorder = Recorder()
    start_run(recipe, run_id="no-episodes", extra_plugins=[("recorder", recorder)])
    calls = recorder.calls["incentive_update_population"]
    assert [i for i, _, _ in calls] == [1, 2, 3]
    assert [len(results.returns) for _, results, _ in calls] == [0, 0, 8]
    assert all(results.returns.shape[1] == 2 and results.seats.shape[1] == 2 for _, results, _ in calls)


def test_loop_calls_every_hook_with_documented_arguments(write_recipe):
    recipe = load_recipe(write_recipe())
    recorder = Recorder()
    run_dir, metrics = start_run(recipe, run_id="hooks", extra_plugins=[("recorder", recorder)])
    calls = recorder.calls
    iterations, steps, envs, agents = 3, 16, 8, 2

    (run,) = calls["incentive_setup"]
    assert isinstance(run, RunContext)
    assert run.agents == ["player_0", "player_1"] and run.num_envs == envs and run.run_dir == run_dir
    assert calls["incentive_next_task"] == [1, 2, 3]
    assert calls["incentive_pick_opponents"] == [1, 2, 3]

    shaped = calls["incentive_shape_reward"]
    assert len(shaped) == iterations * steps  # once per batched step, never per env
    for step in shaped:
        assert isinstance(step, StepBatch)
        assert step.reward.shape == (envs, agents) and step.actions.shape == (envs, agents)
        assert step.done.shape == (envs,) and step.acting.shape == (envs, agents)
        assert step.obs["player_0"].shape == (envs, 5) and step.learner_seats.all()
    # episodes of 5 steps: the episode step counter runs 0..4 and dones fall on step 4
    assert [int(s.episode_step[0]) for s in shaped[:6]] == [0, 1, 2, 3, 4, 0]
    assert [bool(s.done[0]) for s in shaped[:6]] == [False, False, False, False, True, False]

    for hook in ("incentive_update_curriculum", "incentive_collect_metrics"):
        assert len(calls[hook]) == iterations
        rollout = calls[hook][0]
        assert isinstance(rollout, Rollout)
        assert rollout.advantages.shape == (steps, envs, agents) and rollout.done.shape == (steps, envs)

    assert [i for i, _, _ in calls["incentive_update_population"]] == [1, 2, 3]
    _, results, rollout = calls["incentive_update_population"][0]
    assert isinstance(results, EpisodeResults)
    # 16 steps over 5-step episodes: 3 episodes finish in each of 8 envs
    assert results.returns.shape == (24, agents) and (results.seats == LEARNER).all()
    assert rollout is calls["incentive_collect_metrics"][0]

    assert [i for i, _ in calls["incentive_iteration_end"]] == [1, 2, 3]
    last = calls["incentive_iteration_end"][-1][1]
    assert (
        last["custom/answer"] == 42.0
        and "perf/steps_per_s" in last
        and last["incentive/recorder/zero"] == 0.0
    )
    assert calls["incentive_state_dict"] == [1, 2, 3]  # checkpoint_every: 1
    assert calls["incentive_run_end"] == ["completed"]
    assert calls["incentive_load_state_dict"] == []

    # resume (with the budget raised by one iteration): state comes back to the plugin that saved it
    resumed = Recorder()
    longer = (
        (run_dir / "recipe.yaml")
        .read_text()
        .replace(f"total_steps: {3 * 8 * 16}", f"total_steps: {4 * 8 * 16}")
    )
    (run_dir / "recipe.yaml").write_text(longer)
    resume_run(run_dir, extra_plugins=[("recorder", resumed)])
    assert resumed.calls["incentive_load_state_dict"] == [{"iteration": 3}]
    assert len(resumed.calls["incentive_shape_reward"]) == steps  # the one iteration left

    # search: the trial recipe merges the recipe's space and the plugins' suggestions
    pm = make_plugin_manager(recipe)
    pm.register(Recorder(), name="recorder")
    data = recipe.model_dump(mode="json")
    data["search"] = {"space": {"learner.lr": {"low": 0.001, "high": 0.01, "log": True}}}
    searched = validate_recipe(data, source="searched")
    trial = optuna.trial.FixedTrial({"epochs": 3, "learner.lr": 0.005})
    chosen = trial_recipe(trial, searched, Hooks(pm))
    assert (chosen.learner.epochs, chosen.learner.lr) == (3, 0.005)
    data["search"]["space"]["learner.epochs"] = {"low": 1, "high": 2, "int": True}
    clash = validate_recipe(data, source="clash")
    with pytest.raises(PluginError, match="already searched"):
        trial_recipe(
            optuna.trial.FixedTrial({"epochs": 3, "learner.lr": 0.005, "learner.epochs": 2}), clash, Hooks(pm)
        )


class FailingShaper:
    def __init__(self, bad) -> None:
        self.bad = bad

    @hookimpl
    def incentive_shape_reward(self, step):
        if int(step.episode_step[0]) == 3 and self.bad == "raise":
            raise RuntimeError("boom")
        if self.bad == "nan" and int(step.episode_step[0]) == 3:
            return {"broken": torch.full_like(step.reward, float("nan"))}
        if self.bad == "shape":
            return {"wide": torch.zeros(step.reward.shape[0], 7)}
        return {"fine": torch.zeros_like(step.reward)}


@pytest.mark.parametrize(
    ("bad", "fragments"),
    [
        ("raise", ["plugin 'shaper'", "incentive_shape_reward", "RuntimeError: boom"]),
        ("nan", ["plugin 'shaper'", "term 'broken'", "NaN or inf"]),
        ("shape", ["plugin 'shaper'", "term 'wide'", "shape (8, 2)"]),
    ],
)
def test_bad_plugin_output_stops_the_run_naming_plugin_and_term(write_recipe, bad, fragments):
    recipe = load_recipe(write_recipe(train__total_steps=8 * 16 * 40))
    with pytest.raises(PluginError) as error:
        start_run(recipe, run_id=bad, extra_plugins=[("shaper", FailingShaper(bad))])
    for fragment in fragments:
        assert fragment in str(error.value)


def test_failing_plugin_keeps_metrics_and_checkpoint(tmp_path: Path, write_recipe, capsys, monkeypatch):
    """A plugin that fails mid-run: exit 2, a clear message, earlier output untouched."""
    plugin_file = tmp_path / "late_failure.py"
    plugin_file.write_text(
        "import torch\n"
        "from incentive import hookimpl\n"
        "class LateFailure:\n"
        "    calls = 0\n"
        "    @hookimpl\n"
        "    def incentive_shape_reward(self, step):\n"
        "        LateFailure.calls += 1\n"
        "        if LateFailure.calls > 40:\n"
        "            return {'late': torch.full_like(step.reward, float('inf'))}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import late_failure

    recipe = load_recipe(write_recipe())
    with pytest.raises(PluginError):
        start_run(recipe, run_id="late", extra_plugins=[("late", late_failure.LateFailure())])
    run_dir = tmp_path / "runs" / "tiny" / "late"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # iterations 1 and 2 finished (32 steps) before step 41 failed
    assert [json.loads(line)["train/iteration"] for line in lines] == [1, 2]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert checkpoint["iteration"] == 2

    # through the CLI: one paragraph, exit code 2
    LateFailure = late_failure.LateFailure
    LateFailure.calls = 0
    from incentive import runner

    original = runner._training

    def with_plugin(recipe, run_dir, extra):
        return original(recipe, run_dir, [*extra, ("late", LateFailure())])

    monkeypatch.setattr(runner, "_training", with_plugin)
    code = main(["run", str(write_recipe()), "--quiet", "--run-id", "cli"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "plugin 'late' failed in incentive_shape_reward" in err and "term 'late'" in err


class FixedDefector:
    """A bot that always defects."""

    def act(self, obs, action_mask, seats):
        return torch.ones(seats.shape, dtype=torch.long)


class BotOpponent:
    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    @hookimpl
    def incentive_pick_opponents(self, run, iteration):
        seats = torch.full((run.num_envs, 2), LEARNER)
        seats[:, 1] = 0
        return OpponentAssignment(policies=[FixedDefector()], seats=seats)

    @hookimpl
    def incentive_shape_reward(self, step):
        self.seen.append((step.actions.clone(), step.learner_seats.clone()))


def test_opponent_seats_play_the_bot_and_do_not_train(write_recipe):
    recipe = load_recipe(write_recipe())
    opponent = BotOpponent()
    start_run(recipe, run_id="bot", extra_plugins=[("bot", opponent)])
    for actions, learner_seats in opponent.seen:
        assert (actions[:, 1] == 1).all()
        assert learner_seats[:, 0].all() and not learner_seats[:, 1].any()


class PayoffCurriculum:
    """Gives instance e the prisoner's dilemma scaled by (e + 1), and by 10 (e + 1) from iteration 2."""

    def __init__(self) -> None:
        self.rewards: list[torch.Tensor] = []

    @hookimpl
    def incentive_next_task(self, run, iteration):
        base = torch.tensor([[[-1.0, -1.0], [-3.0, 0.0]], [[0.0, -3.0], [-2.0, -2.0]]])
        scale = torch.arange(1, run.num_envs + 1, dtype=torch.float32) * (1 if iteration == 1 else 10)
        return {"payoffs": base * scale[:, None, None, None]}

    @hookimpl
    def incentive_shape_reward(self, step):
        self.rewards.append(step.reward.clone())


def test_curriculum_tasks_reach_each_instance_at_its_next_reset(write_recipe):
    recipe = load_recipe(write_recipe())
    curriculum = PayoffCurriculum()
    start_run(recipe, run_id="tasks", extra_plugins=[("curriculum", curriculum)])
    rewards = torch.stack(curriculum.rewards)  # [48 steps, 8 envs, 2]
    # the run starts at an episode boundary: the first task applies from the first step; the
    # second, set at step 16 in the middle of the episode that began at step 15, from step 20
    for e in range(8):
        first = set(rewards[:20, e].flatten().tolist())
        later = set(rewards[20:, e].flatten().tolist())
        assert first <= {-1.0 * (e + 1), -3.0 * (e + 1), 0.0, -2.0 * (e + 1)}
        assert later <= {-10.0 * (e + 1), -30.0 * (e + 1), 0.0, -20.0 * (e + 1)}


class _Named:
    """A plugin whose `incentive_run_end` answers with its name, marked as asked."""

    def __init__(self, name: str, **marker) -> None:
        self.name = name

        @hookimpl(**marker)
        def incentive_run_end(run, status):
            return self.name

        self.incentive_run_end = incentive_run_end


def test_tryfirst_and_trylast_order_the_calls_and_the_rest_keep_recipe_order():
    pm = make_plugin_manager()
    for name, marker in [
        ("late", {"trylast": True}),
        ("a", {}),
        ("early", {"tryfirst": True}),
        ("b", {}),
        ("early2", {"tryfirst": True}),
    ]:
        pm.register(_Named(name, **marker), name=name)
    results = Hooks(pm).call("incentive_run_end", run=None, status="completed")
    assert [name for name, _ in results] == ["early", "early2", "a", "b", "late"]
    assert [value for _, value in results] == ["early", "early2", "a", "b", "late"]
    assert Hooks(pm).first("incentive_run_end", run=None, status="completed") == ("early", "early")


def test_a_hook_wrapper_is_refused_at_registration_naming_the_plugin():
    class Wrapper:
        @hookimpl(wrapper=True)
        def incentive_run_end(self, run, status):
            return (yield)

    pm = make_plugin_manager()
    plugin = Wrapper()
    pm.register(plugin, name="wrapped")
    with pytest.raises(
        PluginError, match="plugin 'wrapped' failed in register: its incentive_run_end is a hook"
    ):
        refuse_wrappers(pm, plugin, "wrapped")
    refuse_wrappers(pm, _Named("plain"), "plain")  # a plain plugin passes
