"""`incentive plugins` and `incentive envs`: full names, plain lines in pipes, --json, --details, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from incentive.cli import main
from incentive.listings import list_plugins, static_class
from incentive.plugin_manager import hook_families

BUILT_IN_ENVS = [
    ep.name for ep in entry_points(group="incentive.envs") if ep.value.startswith("incentive.envs.")
]


def test_plugins_in_a_pipe_are_plain_full_lines(capsys):
    assert main(["plugins"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    by_name = {row[0]: row for row in rows}
    assert all(len(row) == 4 for row in rows)
    assert by_name["social_value_orientation"][1] == "reward shaping, lifecycle, state"
    assert by_name["learned_incentives"][3] == "incentive.plugins.learned_incentives:LearnedIncentives"
    assert by_name["reward_sharing"][2] == "incentive 0.1.0"


def test_families_read_from_source_match_the_imported_classes():
    for row in list_plugins():
        ep = next(iter(entry_points(group="incentive.plugins", name=row.name)))
        assert static_class(ep.value) is not None, row.name  # read without importing
        assert row.families == hook_families(ep.load()), row.name


def test_a_class_with_a_base_inherits_the_hooks_read_from_the_base_source(tmp_path, monkeypatch):
    (tmp_path / "listing_base.py").write_text(
        "from incentive import hookimpl as mark\n"
        "class Base:\n"
        "    @mark\n"
        "    def incentive_setup(self, run): ...\n"
        "    @mark\n"
        "    def incentive_state_dict(self): ...\n"
    )
    (tmp_path / "listing_child.py").write_text(
        "import listing_base\n"
        "from incentive import hookimpl\n"
        "from listing_base import Base as Renamed\n"
        "class Middle(Renamed):\n"
        "    def incentive_state_dict(self): ...  # overridden without the marker: no longer a hook\n"
        "class Child(Middle):\n"
        "    'A child.'\n"
        "    @hookimpl\n"
        "    def incentive_pick_opponents(self, run, iteration): ...\n"
        "class Dotted(listing_base.Base):\n"
        "    pass\n"
        "class Loop(Loop):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    child = static_class("listing_child:Child")
    assert child is not None and child.docstring == "A child."
    assert child.hooks == ["incentive_pick_opponents", "incentive_setup"]
    assert static_class("listing_child:Middle").hooks == ["incentive_setup"]
    assert static_class("listing_child:Dotted") is None  # a base named through a module: import it
    assert static_class("listing_child:Loop") is None


def test_the_sampler_plugins_are_read_from_source_with_their_inherited_hooks():
    found = static_class("incentive.plugins.pfsp:PFSP")
    assert found is not None and "prioritised" in found.module_docstring.lower()
    assert "incentive_pick_opponents" in found.hooks and "incentive_load_state_dict" in found.hooks


def test_unreadable_classes_are_left_to_the_import():
    found = static_class("incentive.envs.matrix_games:StagHunt", inherited_hooks_matter=False)
    assert found is not None and "1 = hunt hare" in found.docstring
    assert static_class("incentive.envs.matrix_games:NoSuchClass") is None
    assert static_class("no_such_module_anywhere:X") is None


def test_plugins_and_envs_json(capsys):
    assert main(["plugins", "--json"]) == 0
    plugins = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert plugins["payments"]["families"] == ["reward shaping", "lifecycle"]
    assert plugins["wandb"]["error"] is None
    assert main(["envs", "--json"]) == 0
    envs = {row["id"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(BUILT_IN_ENVS) <= set(envs)
    assert "1 = defect" in envs["prisoners_dilemma"]["summary"]


def test_envs_lists_pettingzoo_by_what_it_needs(capsys):
    assert main(["envs"]) == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in capsys.readouterr().out.splitlines()}
    assert "params.module" in rows["pettingzoo"][1] and "fail" not in rows["pettingzoo"][1]
    assert main(["envs", "--details", "pettingzoo"]) == 0
    assert "module (str, required)" in capsys.readouterr().out


@pytest.mark.parametrize("env_id", BUILT_IN_ENVS)
def test_env_details_say_agents_actions_observations(capsys, env_id):
    assert main(["envs", "--details", env_id]) == 0
    out = capsys.readouterr().out
    for word in ("agents", "actions", "observation", "reward", "parameters (recipe: env.params)"):
        assert word in out, (env_id, word)
    if env_id != "pettingzoo":
        assert "with default parameters:" in out and "action Discrete(" in out


def test_ipd_details_say_which_action_defects(capsys):
    assert main(["envs", "--details", "prisoners_dilemma"]) == 0
    out = capsys.readouterr().out
    assert "0 = cooperate" in out and "1 = defect" in out
    assert "player_0: observation Box(0.0, 1.0, (5,), float32), action Discrete(2)" in out


def test_unknown_env_details(capsys):
    assert main(["envs", "--details", "prisoners_dilema"]) == 2
    assert "no env 'prisoners_dilema'" in capsys.readouterr().err


def test_a_narrow_terminal_never_cuts_names(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "social_value_orientation" in out and "learned_incentives" in out and "…" not in out.split("│")[1]
    assert main(["envs"]) == 0
    assert "prisoners_dilemma" in capsys.readouterr().out


def test_listing_commands_import_neither_torch_nor_wandb_nor_optuna():
    code = (
        "import sys, io, contextlib\n"
        "from incentive.cli import build_parser, main\n"
        "build_parser().format_help()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['plugins']) == 0 and main(['envs']) == 0 and main(['plugins', '--json']) == 0\n"
        "heavy = {'torch', 'wandb', 'optuna', 'matplotlib'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
