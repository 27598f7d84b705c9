"""The contract every registered plugin keeps (one parametrized suite over the entry-point group).

For each plugin: its Params validate from defaults (or the minimal params in
PARAMS) and forbid unknown keys; it registers cleanly in a run's plugin
manager; a tiny run through it completes and reports its designer metrics;
the same seed gives byte-identical metrics.jsonl twice, once straight through
and once stopped at a checkpoint and resumed (so plugin state is saved).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from incentive.plugin_manager import available_plugins, hook_families, make_plugin_manager
from incentive.recipe import load_recipe
from incentive.runner import RECIPE_FILE, resume_run, start_run

SKIP = {"wandb"}  # the logger, configured by `log.wandb` and covered by test_wandb.py

# Minimal valid params of plugins that cannot run on defaults (helpers live in tests/).
PARAMS: dict[str, dict[str, Any]] = {
    "potential_shaping": {"potential": "shaping_potentials:mean_observation"},
    "payments": {},
    "learned_incentives": {},
}

# Opponent-sampling plugins run as the recipe's `opponents:`.
OPPONENT_SAMPLERS = ("self_play", "fictitious_self_play", "pfsp", "psro", "league")

# A tiny env suited to the plugin (default: the 2-agent prisoner's dilemma).
ENVS: dict[str, dict[str, Any]] = {
    "inequity_aversion": {"id": "escape_room", "params": {"num_agents": 3, "min_at_lever": 2}},
    "social_value_orientation": {"id": "escape_room", "params": {"num_agents": 3, "min_at_lever": 2}},
    "novelty_bonus": {"id": "coin_game", "params": {"episode_length": 5}},
    # opponent samplers: a two-player zero-sum game (PSRO's default meta-solver is the exact Nash LP)
    **{name: {"id": "kuhn_poker"} for name in OPPONENT_SAMPLERS},
}
DEFAULT_ENV: dict[str, Any] = {"id": "prisoners_dilemma", "params": {"episode_length": 5}}

# Curriculum plugins run as the recipe's `curriculum:` over reward sharing's s (the IPD has no levels).
SHARING = [{"plugin": "reward_sharing", "params": {"s": 0.5}}]
CURRICULA: dict[str, dict[str, Any]] = {
    "schedule": {
        "stages": [
            {"set": {"incentives.0.params.s": 1.0}, "advance": {"steps": 32}},
            {"set": {"incentives.0.params.s": 0.0}, "interpolation": "linear", "over_steps": 64},
        ]
    },
    "prioritized_level_replay": {"candidates": {"incentives.0.params.s": [0.0, 0.5, 1.0]}},
    "learning_progress": {"candidates": {"incentives.0.params.s": [0.0, 0.5, 1.0]}},
}

NUM_ENVS, ROLLOUT, ITERATIONS = 4, 8, 2

INSTALLED = available_plugins()
PLUGINS = sorted(name for name in INSTALLED if name not in SKIP)


def plugin_class(name: str) -> type:
    """The plugin's class; skips if the entry point's module does not exist yet."""
    info = INSTALLED[name]
    module = info.value.partition(":")[0]
    try:
        return info.load()
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            pytest.skip(
                f"{name}: entry point {info.value!r} is registered but module {module} does not exist yet"
            )
        raise


def recipe_changes(name: str, cls: type, *, iterations: int = ITERATIONS, **params: Any) -> dict[str, Any]:
    """write_recipe changes for a tiny run with this plugin as the only incentive."""
    env = {**ENVS.get(name, DEFAULT_ENV), "num_envs": NUM_ENVS}
    changes: dict[str, Any] = {
        "env": env,
        "learner__rollout_steps": ROLLOUT,
        "train__total_steps": NUM_ENVS * ROLLOUT * iterations,
        "train__checkpoint_every": 1,
        "incentives": [{"plugin": name, "params": {**PARAMS.get(name, {}), **params}}],
    }
    if name in CURRICULA:
        changes["incentives"] = SHARING
        changes["curriculum"] = {"plugin": name, "params": {**CURRICULA[name], **params}}
    if name in OPPONENT_SAMPLERS:
        changes["incentives"] = []
        changes["opponents"] = {"plugin": name, "params": {**PARAMS.get(name, {}), **params}}
    designer = tuple(getattr(cls, "designer_metrics", ()))
    if designer:  # the plugin's own metric must be accepted as an objective
        changes["objective"] = {"metric": designer[0]}
    return changes


@pytest.mark.parametrize("name", PLUGINS)
def test_params_validate_and_forbid_unknown_keys(name):
    cls = plugin_class(name)
    model = getattr(cls, "Params", None)
    if model is None:
        assert not PARAMS.get(name), f"{name} takes no parameters"
        return
    minimal = PARAMS.get(name, CURRICULA.get(name, {}))
    model.model_validate(minimal)
    with pytest.raises(ValidationError, match="no_such_key"):
        model.model_validate({**minimal, "no_such_key": 1})
    assert model.model_config.get("extra") == "forbid"
    for field, info in model.model_fields.items():
        assert info.description, f"{name}.Params.{field} has no description"


@pytest.mark.parametrize("name", PLUGINS)
def test_registers_cleanly(name, write_recipe):
    cls = plugin_class(name)
    recipe = load_recipe(write_recipe(**recipe_changes(name, cls)))
    pm = make_plugin_manager(recipe)
    assert isinstance(pm.get_plugin(name), cls)
    assert hook_families(cls), f"{name} implements no hook"


@pytest.mark.parametrize("name", PLUGINS)
def test_runs_reproducibly_and_resumes_bit_for_bit(name, write_recipe):
    # the same seed twice: once straight through, once stopped at a checkpoint after the
    # first iteration and resumed; both metrics.jsonl files must be byte-identical
    cls = plugin_class(name)
    recipe = load_recipe(write_recipe(**recipe_changes(name, cls)))
    whole, metrics = start_run(recipe, run_id="whole")
    expected = (whole / "metrics.jsonl").read_bytes()
    assert expected.count(b"\n") == ITERATIONS
    for metric in getattr(cls, "designer_metrics", ()):
        assert f"designer/{metric}" in metrics, f"{name} declares designer/{metric} but did not report it"

    short = load_recipe(write_recipe("short.yaml", **recipe_changes(name, cls, iterations=1)))
    stopped, _ = start_run(short, run_id="stopped")
    first_line = expected.split(b"\n")[0] + b"\n"
    assert (stopped / "metrics.jsonl").read_bytes() == first_line, "same seed, different metrics"
    saved = yaml.safe_load((stopped / RECIPE_FILE).read_text())
    saved["train"]["total_steps"] = NUM_ENVS * ROLLOUT * ITERATIONS
    (stopped / RECIPE_FILE).write_text(yaml.safe_dump(saved, sort_keys=False))
    resume_run(stopped)
    assert (stopped / "metrics.jsonl").read_bytes() == expected, "the resumed run differs from the whole run"
