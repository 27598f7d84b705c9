"""Bad curriculum input: one clear message naming the field, exit code 2 (through the CLI)."""

from __future__ import annotations

import pytest
from test_cli import assert_clean_error, run_recipe_briefly


@pytest.mark.parametrize(
    ("recipe", "override", "fragments"),
    [
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.advance.metric=designer/sucess",
            ["'curriculum.params.stages.0.advance.metric'", "unknown designer metric 'designer/sucess'"],
        ),
        (
            "ipd_sharing_annealed.yaml",
            "curriculum.params.stages.1.set={incentives.0.params.q: 0.0}",
            ["'curriculum.params.stages.1.set.incentives.0.params.q'", "has no parameter 'q'"],
        ),
        (
            "ipd_sharing_annealed.yaml",
            "curriculum.params.stages.1.set={incentives.3.params.s: 0.0}",
            ["'curriculum.params.stages.1.set.incentives.3.params.s'", "no plugin at 'incentives.3'"],
        ),
        (
            "ipd_sharing_annealed.yaml",
            "curriculum.params.stages.1.set={incentives.0.params.aggregate: 0.0}",
            ["parameter 'aggregate' of plugin 'reward_sharing' is not a number"],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={wall_density: 0.1}",
            [
                "'curriculum.params.stages.0.set.wall_density'",
                "cannot change 'wall_density' per instance",
                "level, size, max_steps, spawn_doors",
            ],
        ),
        (
            "navigation_plr.yaml",
            "env.params.levels.test=150-299",
            [
                "env.params.levels",
                "levels.train ('0-199') and levels.test ('150-299') overlap in 50 level(s)",
            ],
        ),
        (
            "navigation_plr.yaml",
            "env.params.levels.train=0-3000000000",
            ["env.params.levels", "levels.train: level ids must lie in 0..2147483647"],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={level: -5}",
            ["schedule", "incentive_next_task", "task 'level': level ids must lie in 0..2147483647"],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={level: 10050}",
            ["level 10050 is a held-out test level (env.params.levels.test)"],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={size: 12}",
            ["task 'size': sizes must lie in 5..9"],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={max_steps: -3}",
            [
                "schedule",
                "incentive_next_task",
                "task 'max_steps': episode lengths must lie in 1..1000000000, "
                "or be 0 (env.params.max_steps, 40), got [-3]",
            ],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={max_steps: 2000000000}",
            ["task 'max_steps': episode lengths must lie in 1..1000000000", "got [2000000000]"],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={spawn_doors: -2}",
            [
                "schedule",
                "incentive_next_task",
                "task 'spawn_doors': door counts must lie in 0..3 (the most walls a level of max_size 9 "
                "can have), or be -1 (the leftmost room), got [-2]",
            ],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={spawn_doors: 4}",
            ["task 'spawn_doors': door counts must lie in 0..3", "got [4]"],
        ),
        (
            "navigation_schedule.yaml",
            "curriculum.params.stages.0.set={spawn_doors: .nan}",
            ["task 'spawn_doors': expected finite numbers"],
        ),
        (
            "navigation_schedule.yaml",
            "env.params.max_steps=2000000000",
            ["env.params.max_steps", "less than or equal to 1000000000"],
        ),
        (
            "navigation_plr.yaml",
            "curriculum.params.candidates={incentives.0.params.s: [0.0, 1.0]}",
            ["'curriculum.params.candidates'", "no plugin at 'incentives.0'"],
        ),
        (
            "ipd_sharing_annealed.yaml",
            "evaluate.every=1",
            ["'evaluate.every'", "no held-out test levels"],
        ),
    ],
)
def test_bad_curriculum_input_is_one_clear_error(capsys, tmp_path, recipe, override, fragments):
    code, err = run_recipe_briefly(capsys, tmp_path, recipe, override)
    assert_clean_error(code, err, *fragments)
