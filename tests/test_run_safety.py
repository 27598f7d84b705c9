"""Runs under hostile conditions: crafted checkpoints, misbehaving plugins, cut files, stops."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from incentive import PluginError, hookimpl, runner
from incentive import plugin_manager as plugin_manager_module
from incentive.cli import main
from incentive.plugin_manager import PluginInfo
from incentive.recipe import load_recipe
from incentive.runner import resume_run, start_run


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def with_extra(monkeypatch, *plugins) -> None:
    """Register `plugins` (name, object) in every run the CLI starts."""
    original = runner._training

    def training(recipe, run_dir, extra):
        return original(recipe, run_dir, [*extra, *plugins])

    monkeypatch.setattr(runner, "_training", training)


# --- checkpoints -------------------------------------------------------------------------


class Payload:
    """Unpickling this creates the marker directory: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.marker),))


def test_a_pickle_payload_in_a_checkpoint_never_runs(capsys, write_recipe, tmp_path: Path):
    path = write_recipe(train__total_steps=8 * 16 * 5)
    run_dir, _ = start_run(load_recipe(path), run_id="crafted")
    marker = tmp_path / "pwned"
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state["iteration"] = 1
    state["plugins"] = {"reward_sharing": Payload(marker)}
    torch.save(state, run_dir / "checkpoint.pt")
    code, _, err = run_cli(capsys, "run", "--resume", str(run_dir), "--quiet")
    assert code == 2 and "Traceback" not in err
    assert str(run_dir / "checkpoint.pt") in err.replace("\n", "") and "refused" in err
    assert not marker.exists()


def test_a_plugin_state_that_would_not_load_is_refused_when_saved(write_recipe):
    class Keeps:
        @hookimpl
        def incentive_state_dict(self):
            return {"counts": {1, 2}}

    with pytest.raises(PluginError, match="plugin 'keeps' failed in incentive_state_dict.*builtins.set"):
        start_run(load_recipe(write_recipe()), run_id="set", extra_plugins=[("keeps", Keeps())])


def test_pettingzoo_runs_resume_exactly_from_plain_data(write_recipe, tmp_path: Path):
    changes = {
        "env": {"id": "pettingzoo", "num_envs": 4, "params": {"module": "pettingzoo.classic.rps_v2"}},
        "incentives": [],
        "train__checkpoint_every": 1,
    }
    whole, _ = start_run(load_recipe(write_recipe(train__total_steps=4 * 16 * 5, **changes)), run_id="whole")
    part, _ = start_run(load_recipe(write_recipe(train__total_steps=4 * 16 * 2, **changes)), run_id="part")
    state = torch.load(part / "checkpoint.pt", weights_only=True)  # plain data, no pickle
    assert "envs" not in state["env"] and state["env"]["episode_seeds"].shape == (4,)
    recipe = yaml.safe_load((part / "recipe.yaml").read_text())
    recipe["train"]["total_steps"] = 4 * 16 * 5
    (part / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    resume_run(part)
    assert (part / "metrics.jsonl").read_bytes() == (whole / "metrics.jsonl").read_bytes()


# --- validate never runs what the recipe names ------------------------------------------------


def test_validate_does_not_import_the_pettingzoo_module(capsys, write_recipe, tmp_path: Path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "marker_env.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {"id": "pettingzoo", "num_envs": 2, "params": {"module": "marker_env", "kwargs": {"x": 1}}}
    code, out, err = run_cli(capsys, "validate", str(write_recipe(env=env, incentives=[])))
    assert code == 0, err
    assert "not built" in out
    assert not marker.exists()
    assert "marker_env" not in sys.modules


def test_a_callable_import_path_is_refused_and_nothing_runs(capsys, write_recipe, tmp_path: Path):
    marker = tmp_path / "shell-ran"
    for params in (
        {"import_path": "os:system", "kwargs": {"command": f"touch {marker}"}},
        {"module": "os:system", "kwargs": {"command": f"touch {marker}"}},
    ):
        env = {"id": "pettingzoo", "num_envs": 1, "params": params}
        for command in ("validate", "run"):
            code, _, err = run_cli(capsys, command, str(write_recipe(env=env)))
            assert code == 2 and "Traceback" not in err and "env.params" in err
    assert not marker.exists()


def test_a_module_that_is_not_a_pettingzoo_env_is_named(capsys, write_recipe):
    env = {"id": "pettingzoo", "num_envs": 1, "params": {"module": "json"}}
    code, _, err = run_cli(capsys, "run", str(write_recipe(env=env, incentives=[])), "--quiet")
    assert code == 2 and "Traceback" not in err
    assert "module 'json' is not a PettingZoo env module" in err


# --- misbehaving plugins ----------------------------------------------------------------------


class GradTerm:
    def __init__(self) -> None:
        self.weight = torch.nn.Parameter(torch.tensor(0.5))

    @hookimpl
    def incentive_shape_reward(self, step):
        return {"graph": self.weight * step.reward}


def test_a_shaping_term_with_a_graph_is_detached(write_recipe):
    _, metrics = start_run(load_recipe(write_recipe()), run_id="grad", extra_plugins=[("grad", GradTerm())])
    assert metrics["train/iteration"] == 3 and "incentive/grad/graph" in metrics


class Exits:
    def __init__(self, exception: BaseException) -> None:
        self.exception = exception

    @hookimpl
    def incentive_iteration_end(self, iteration):
        if iteration == 2:
            raise self.exception


@pytest.mark.parametrize("exception", [SystemExit(0), SystemExit(3), GeneratorExit()])
def test_a_plugin_may_not_end_the_process(capsys, write_recipe, monkeypatch, exception):
    with_extra(monkeypatch, ("quitter", Exits(exception)))
    code, _, err = run_cli(capsys, "run", str(write_recipe()), "--quiet", "--run-id", "quit")
    assert code == 2
    assert "plugin 'quitter' failed in incentive_iteration_end" in err
    assert "test_run_safety.py:" in err


def test_a_plugin_error_shows_the_plugins_file_and_line(capsys, write_recipe, tmp_path: Path, monkeypatch):
    (tmp_path / "faulty_plugin.py").write_text(
        "from incentive import hookimpl\n"
        "\n"
        "def helper(step):\n"
        "    return step.reward[99]\n"
        "\n"
        "class Faulty:\n"
        "    @hookimpl\n"
        "    def incentive_shape_reward(self, step):\n"
        "        return {'x': helper(step)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import faulty_plugin

    with_extra(monkeypatch, ("faulty", faulty_plugin.Faulty()))
    code, _, err = run_cli(capsys, "run", str(write_recipe()), "--quiet", "--run-id", "f1")
    flat = err.replace("\n", "")
    assert code == 2 and "Traceback" not in err
    assert "plugin 'faulty' failed in incentive_shape_reward: IndexError" in flat
    here = str(tmp_path / "faulty_plugin.py")
    assert f"{here}:9 in incentive_shape_reward" in flat and f"{here}:4 in helper" in flat
    assert "--debug" in err

    code, _, err = run_cli(capsys, "--debug", "run", str(write_recipe()), "--quiet", "--run-id", "f2")
    assert code == 2 and "Traceback" in err and "return step.reward[99]" in err


class FakeInfo(PluginInfo):
    def load(self) -> type:
        return {"shaper": GradTerm, "quitter": Exits}[self.name]


@pytest.mark.parametrize("section", ["curriculum", "opponents"])
def test_a_plugin_must_implement_the_family_of_its_section(capsys, write_recipe, monkeypatch, section):
    real = plugin_manager_module.available_plugins()
    fake = {"shaper": FakeInfo(name="shaper", value="tests:GradTerm", source="tests")}
    monkeypatch.setattr(plugin_manager_module, "available_plugins", lambda: {**real, **fake})
    path = write_recipe(**{section: {"plugin": "shaper"}})
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and "Traceback" not in err
    assert f"field '{section}.plugin'" in err and "reward shaping" in err
    # listed as an incentive it is fine
    assert run_cli(capsys, "validate", str(write_recipe(incentives=[{"plugin": "shaper"}])))[0] == 0


def test_a_logger_listed_as_an_incentive_is_refused(capsys, write_recipe):
    code, _, err = run_cli(capsys, "validate", str(write_recipe(incentives=[{"plugin": "wandb"}])))
    assert code == 2 and "field 'incentives.0.plugin'" in err


# --- files and directories ------------------------------------------------------------------


def test_a_cut_last_line_is_dropped_on_resume(write_recipe):
    path = write_recipe(train__total_steps=8 * 16 * 3)
    run_dir, _ = start_run(load_recipe(path), run_id="cut")
    for name in ("metrics.jsonl", "perf.jsonl"):
        text = (run_dir / name).read_text()
        (run_dir / name).write_text(text[: -len(text.splitlines()[-1]) // 2 - 1])  # half the last line
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["train"]["total_steps"] = 8 * 16 * 5
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    resume_run(run_dir)
    for name in ("metrics.jsonl", "perf.jsonl"):
        lines = (run_dir / name).read_text().splitlines()
        iterations = [json.loads(line)["train/iteration"] for line in lines]  # every line is JSON
        assert iterations == [1, 2, 4, 5]


class FailsAtSetup:
    @hookimpl
    def incentive_setup(self):
        raise RuntimeError("no")


def test_a_run_that_fails_before_its_first_iteration_leaves_no_directory(capsys, write_recipe, monkeypatch):
    path = write_recipe()
    root = Path(load_recipe(path).log.dir)
    with_extra(monkeypatch, ("early", FailsAtSetup()))
    code, _, _ = run_cli(capsys, "run", str(path), "--quiet", "--run-id", "early")
    assert code == 2
    assert not (root / "tiny" / "early").exists() and not (root / "tiny").exists()


def test_resuming_a_finished_run_says_so_and_opens_no_wandb_run(capsys, write_recipe):
    path = write_recipe(log__wandb={"mode": "offline"})
    assert run_cli(capsys, "run", str(path), "--quiet", "--run-id", "done")[0] == 0
    run_dir = Path(load_recipe(path).log.dir) / "tiny" / "done"
    before = sorted(p.name for p in (run_dir / "wandb").iterdir())
    code, out, _ = run_cli(capsys, "run", "--resume", str(run_dir), "--quiet")
    assert code == 0
    assert "already finished (iteration 3)" in out.replace("\n", "") and "nothing to do" in out
    assert sorted(p.name for p in (run_dir / "wandb").iterdir()) == before


class Interrupts:
    @hookimpl
    def incentive_iteration_end(self, iteration):
        if iteration == 2:
            raise KeyboardInterrupt


def test_start_prints_the_run_directory_and_ctrl_c_names_the_resume_command(
    capsys, write_recipe, monkeypatch
):
    path = write_recipe()
    run_dir = Path(load_recipe(path).log.dir) / "tiny" / "stop"
    with_extra(monkeypatch, ("stopper", Interrupts()))
    code, out, err = run_cli(capsys, "run", str(path), "--quiet", "--run-id", "stop")
    assert code == 130
    assert f"run directory: {run_dir}" in out.replace("\n", "")
    assert f"incentive run --resume {run_dir}" in err.replace("\n", "")


def test_rounded_budget_and_runs_too_short_for_an_episode_are_explained(capsys, write_recipe):
    # 100 steps asked, iterations of 8 x 16 = 128; episodes of 200 steps never finish
    path = write_recipe(train__total_steps=100, env__params={"episode_length": 200})
    code, out, _ = run_cli(capsys, "run", str(path), "--quiet", "--run-id", "short")
    flat = " ".join(out.split())
    assert code == 0
    assert "train.total_steps 100 is rounded up to whole iterations: 1 x 128" in flat
    assert "no episode finished" in flat and "need longer runs" in flat
