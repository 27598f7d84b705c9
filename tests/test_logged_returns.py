"""With no incentive plugin, the logged shaped return is the extrinsic return, exactly, on every env.

The learner's target bootstraps truncated episodes with gamma * V(final obs); that value is not a reward
anyone was paid and must not reach `incentive/return/<agent>` (it once made the shaped return of MPE's
simple spread drift to -40.8 against an extrinsic -25.2).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from incentive.envs import available_envs
from incentive.recipe import validate_recipe
from incentive.runner import start_run

HAS_MPE2 = importlib.util.find_spec("mpe2") is not None
PETTINGZOO = (
    {"module": "mpe2.simple_spread_v3", "kwargs": {"N": 2, "max_cycles": 7, "continuous_actions": False}}
    if HAS_MPE2
    else {"module": "pettingzoo.classic.rps_v2", "kwargs": {"num_actions": 3, "max_cycles": 7}}
)
# short episodes, so several end (by truncation, for the PettingZoo adapter) within two iterations
SHORT = {
    "prisoners_dilemma": {"episode_length": 5},
    "stag_hunt": {"episode_length": 5},
    "chicken": {"episode_length": 5},
    "matrix_game": {"episode_length": 5},
    "coin_game": {"episode_length": 9},
    "escape_room": {},
    "cleanup": {"episode_length": 9},
    "harvest": {"episode_length": 9},
    "pettingzoo": PETTINGZOO,
}


@pytest.mark.parametrize("env_id", sorted(available_envs()))
def test_shaped_return_equals_extrinsic_return_without_plugins(env_id, tmp_path):
    recipe = validate_recipe(
        {
            "name": f"plain-{env_id}",
            "seed": 1,
            "env": {"id": env_id, "num_envs": 3, "params": SHORT.get(env_id, {})},
            "learner": {"rollout_steps": 20, "epochs": 1, "minibatches": 1, "hidden_sizes": [8]},
            "train": {"total_steps": 3 * 20 * 2},
            "log": {"dir": str(tmp_path), "wandb": {"mode": "disabled"}},
        },
        source="test",
    )
    run_dir, _ = start_run(recipe, run_id="r")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    compared = 0
    for line in lines:
        for key, value in line.items():
            if key.startswith("designer/return/"):
                assert line[key.replace("designer/", "incentive/", 1)] == value, (env_id, key)
                compared += 1
    if env_id in SHORT:
        assert compared > 0, f"no episode of {env_id} finished"
