"""Reading runs back, arms, final values, `incentive compare` and `incentive plot`, reproductions' table."""

from __future__ import annotations

import argparse
import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest
import torch
from synthetic_runs import write_run

from incentive.cli import main
from incentive.compare import comparison_table, improvement
from incentive.envs.navigation import NavigationParams, generate_layouts
from incentive.errors import IncentiveError
from incentive.plots import figure_size
from incentive.recipe import load_recipe
from incentive.results import RunData, expand_run_dirs, group_runs, load_run, load_runs

BENCHMARK = Path(__file__).parent.parent / "benchmarks" / "reproductions.py"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header, after checking the file decodes as an image."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert matplotlib.image.imread(path).shape[:2] == (height, width)
    return width, height


def two_arms(root: Path) -> Path:
    """Arm s = 0.5: final values 1, 2, 3, 10 (IQM 2.5); arm s = 1.0: 4, 5, 6 (IQM 5)."""
    runs = root / "runs" / "tiny"
    for seed, final in enumerate([1.0, 2.0, 3.0, 10.0]):
        # 20 iterations: the final value is the mean of the last 2 (10%); the 18 before it do not count
        write_run(runs / f"a{seed}", [-50.0] * 18 + [final - 1, final + 1], seed=seed, s=0.5)
    for seed, final in enumerate([4.0, 5.0, 6.0]):
        write_run(runs / f"b{seed}", [-50.0] * 18 + [final, final], seed=seed, s=1.0)
    return runs


def test_final_value_is_the_mean_of_the_last_tenth_of_reporting_iterations(tmp_path: Path):
    run = load_run(write_run(tmp_path / "r", [0.0] * 18 + [4.0, 6.0]))
    assert run.final("designer/collective_return") == 5.0
    # iterations without a finished episode do not count: 4 reporting iterations -> the last one
    run = load_run(write_run(tmp_path / "q", [None, 1.0, None, 2.0, None, 3.0, 9.0, None]))
    assert run.final("designer/collective_return") == 9.0
    assert run.final("designer/nothing") is None
    steps, values = run.series("designer/collective_return")
    assert steps.tolist() == [256, 512, 768, 896] and values.tolist() == [1.0, 2.0, 3.0, 9.0]


def test_a_cut_last_line_is_ignored_and_bad_json_named(tmp_path: Path):
    run_dir = write_run(tmp_path / "r", [1.0, 2.0])
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"train/iteration": 3, "desig')
    assert len(load_run(run_dir).lines) == 2
    (run_dir / "metrics.jsonl").write_text('{"a": 1}\nnot json\n')
    with pytest.raises(IncentiveError, match="line 2 is not valid JSON"):
        load_run(run_dir)


def test_arms_group_seeds_and_are_labelled_by_what_differs(tmp_path: Path):
    runs = two_arms(tmp_path)
    arms = group_runs(load_runs([str(runs)]))
    assert [arm.label for arm in arms] == ["incentives.0.params.s=0.5", "incentives.0.params.s=1.0"]
    assert [len(arm.runs) for arm in arms] == [4, 3]
    assert arms[0].finals("designer/collective_return").tolist() == [1.0, 2.0, 3.0, 10.0]
    # one arm: labelled by the recipe's name
    assert [arm.label for arm in group_runs(load_runs([str(runs / "b*")]))] == ["tiny"]


def test_objectives_skip_param_objectives(tmp_path: Path):
    # a search recipe's `param` objective is written as `metric: null` in the run's recipe.yaml
    objective = [
        {"metric": "own_coin_rate", "direction": "maximize"},
        {"metric": None, "param": "incentives.0.params.s", "direction": "minimize"},
    ]
    run = RunData(path=tmp_path, recipe={"objective": objective}, lines=[])
    assert run.objectives == ["designer/own_coin_rate"]


def test_expand_run_dirs(tmp_path: Path):
    runs = two_arms(tmp_path)
    assert len(expand_run_dirs([str(runs)])) == 7
    assert expand_run_dirs([str(runs / "a*"), str(runs / "a1")]) == [runs / f"a{i}" for i in range(4)]
    with pytest.raises(IncentiveError, match="no run directory there"):
        expand_run_dirs([str(tmp_path / "nothing")])


def test_table_shows_iqm_and_ci_and_improvement_by_hand(tmp_path: Path):
    arms = group_runs(load_runs([str(two_arms(tmp_path))]))
    text = comparison_table(arms, ["designer/collective_return"])
    lines = text.splitlines()
    assert "collective_return IQM [95% CI]" in lines[0]
    # each bootstrap bound sits on an extreme: P(IQM of 4 draws = 1) = P(at least three 1s) = 5% > 2.5%,
    # and P(mean of 3 draws from {4, 5, 6} = 4) = 1/27 = 3.7% > 2.5%
    cells = [[cell.strip() for cell in line.split(" | ")] for line in lines[2:]]
    assert cells == [
        ["incentives.0.params.s=0.5", "1", "4", "2.500 [1.000, 10.000]"],
        ["incentives.0.params.s=1.0", "2", "3", "5.000 [4.000, 6.000]"],
    ]
    # B beats A in 9 of 12 pairs: 4, 5 and 6 each beat 1, 2 and 3 and lose to 10
    found = improvement(arms[1], arms[0], "designer/collective_return")
    assert found.probability == 0.75 and 0.0 <= found.low <= 0.75 <= found.high <= 1.0


def test_compare_command(capsys, tmp_path: Path):
    runs = two_arms(tmp_path)
    assert main(["compare", str(runs), "--improvement", "2", "incentives.0.params.s=0.5"]) == 0
    out = capsys.readouterr().out
    assert "2.500 [" in out and "5.000 [" in out and "last 10% of its iterations" in out
    expected = "P(incentives.0.params.s=1.0 > incentives.0.params.s=0.5) on designer/collective_return: 0.750"
    assert expected in out
    assert main(["compare", str(runs), "--metric", "collective_return", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"] == ["designer/collective_return"]
    assert [arm["cells"]["designer/collective_return"]["iqm"] for arm in data["arms"]] == [2.5, 5.0]
    assert main(["compare", str(runs), "--metric", "nope"]) == 2
    assert "no run logged it" in capsys.readouterr().err
    assert main(["compare", str(runs), "--improvement", "1", "7"]) == 2
    assert "no arm '7'" in capsys.readouterr().err


def test_plot_command_writes_a_png_of_the_expected_size(capsys, tmp_path: Path):
    runs = two_arms(tmp_path)
    out = tmp_path / "two.png"
    assert (
        main(
            [
                "plot",
                str(runs),
                "--metric",
                "collective_return",
                "--metric",
                "return/player_0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "7 run(s) in 2 arm(s)" in capsys.readouterr().out
    assert png_size(out) == figure_size(2) == (800, 300)
    # default: the recipes' objective, one panel
    assert main(["plot", str(runs / "a0"), "--out", str(tmp_path / "one.png")]) == 0
    assert png_size(tmp_path / "one.png") == figure_size(1) == (400, 300)


def load_reproductions():
    spec = importlib.util.spec_from_file_location("reproductions", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproductions"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_reproductions_table_prints_iqm_and_ci(tmp_path: Path):
    reproductions = load_reproductions()
    arms = group_runs(load_runs([str(two_arms(tmp_path))]))
    experiment = reproductions.Experiment(
        arms=[], metrics=["collective_return"], threshold=("collective_return", 5.0)
    )
    results = []
    for arm in arms:
        for run in arm.runs:
            for i, line in enumerate(run.lines):
                line["seconds"] = float(i)
        crossings = [reproductions.first_crossing(run.lines, "collective_return", 5.0) for run in arm.runs]
        results.append(reproductions.ArmResult(runs=arm, walls=[2.0] * len(arm.runs), crossings=crossings))
    lines = reproductions.table(experiment, results).splitlines()
    assert lines[0].split(" | ")[:3] == [
        "arm                      ",
        "runs",
        "collective_return IQM [95% CI]",
    ]
    # arm s = 0.5: only the seed ending at 10 reaches 5, with 9 at its 19th iteration (2,432 steps, 18 s)
    assert lines[2].split(" | ")[2].strip() == "2.500 [1.000, 10.000]"
    assert lines[2].endswith("never, never, never, 2,432 (18s)")
    assert lines[3].split(" | ")[2].strip() == "5.000 [4.000, 6.000]"
    assert lines[3].endswith("never, 2,432 (18s), 2,432 (18s)")
    assert [cell.strip() for cell in lines[2].split(" | ")[3:5]] == ["2,560", "2.0"]


def test_compare_of_runs_without_finished_episodes_says_so(capsys, tmp_path: Path):
    write_run(tmp_path / "runs" / "r", [None, None])
    assert main(["compare", str(tmp_path / "runs")]) == 2
    assert "no designer metric in these runs" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "runs"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no run logged it" in capsys.readouterr().err


def test_plot_of_an_arm_whose_runs_share_no_step(capsys, tmp_path: Path):
    write_run(tmp_path / "runs" / "a", [1.0, None], seed=0)
    write_run(tmp_path / "runs" / "b", [None, 2.0], seed=1)
    assert main(["plot", str(tmp_path / "runs"), "--out", str(tmp_path / "x.png")]) == 0
    assert "2 run(s) in 1 arm(s)" in capsys.readouterr().out
    assert png_size(tmp_path / "x.png") == (400, 300)


def test_reproductions_windows_curves_and_conditional_crossings_by_hand(tmp_path: Path):
    reproductions = load_reproductions()
    # two seeds, 10 iterations each at steps 128 ... 1280
    runs = [
        write_run(tmp_path / "runs" / "a0", [float(i) for i in range(10)], seed=0),
        write_run(tmp_path / "runs" / "a1", [10.0 + i for i in range(10)], seed=1),
    ]
    arm = group_runs(load_runs([str(tmp_path / "runs")]))[0]
    assert [run.path for run in arm.runs] == runs
    # the window (30%, 40%] of 1280 steps holds step 512 only (iteration 4: values 3 and 13)
    cut = reproductions.window_run(arm.runs[0], 0.3, 0.4)
    assert [line["train/global_step"] for line in cut.lines] == [512]
    experiment = reproductions.Experiment(
        arms=[], metrics=["collective_return"], windows=[("early", 0.3, 0.4), ("late", 0.8, 1.0)],
        curve_metric="collective_return",
    )  # fmt: skip
    result = reproductions.ArmResult(runs=arm)
    lines = reproductions.window_table(experiment, [result]).splitlines()
    early, late = (line.split(" | ") for line in lines[2:4])
    assert early[2].strip() == "3.00 13.00" and early[3].strip().startswith("8.000 [3.000, 13.000]")
    # late: steps 1152 and 1280 (values 8, 9 and 18, 19): means 8.5 and 18.5
    assert late[2].strip() == "8.50 18.50" and late[3].strip().startswith("13.500")
    # the curve: the last value at or before 20%, 40%, ... of the steps (256: 1 and 11, 512: 3 and 13, ...)
    curve = reproductions.curve_table(experiment, [result]).splitlines()[2].split(" | ")
    assert [cell.strip().split(" ")[0] for cell in curve[1:]] == [
        "6.000",
        "8.000",
        "10.000",
        "12.000",
        "14.000",
    ]
    # a crossing counts only where the `when` metric is high enough in the iteration and the one
    # before: stage 1 is handed out from iteration 5, so iteration 6 is the first that counts
    lines_ = [
        {"train/global_step": 100 * i, "seconds": i, "designer/x": i, "stage": i // 5} for i in range(10)
    ]
    assert reproductions.first_crossing(lines_, "x", 2.0) == (200, 2)
    assert reproductions.first_crossing(lines_, "x", 2.0, when=("stage", 1.0)) == (600, 6)
    assert reproductions.first_crossing(lines_, "x", 20.0, when=("stage", 1.0)) is None


def test_first_crossing_needs_iterations_in_a_row_on_the_hard_task():
    reproductions = load_reproductions()
    # x per iteration (None: no finished episode); the stage falls back to 0 at iteration 6
    xs = [0.9, 0.2, 0.6, None, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.1, 0.9]
    stages = [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1]
    lines_ = []
    for i, (x, stage) in enumerate(zip(xs, stages, strict=True)):
        line = {"train/global_step": 100 * i, "seconds": 10 * i, "stage": stage}
        if x is not None:
            line["designer/x"] = x
        lines_.append(line)
    # one in a row: iteration 0 (no `when`: no previous iteration needed)
    assert reproductions.first_crossing(lines_, "x", 0.5) == (0, 0)
    # 3 in a row: 0.6, (no report), 0.7, 0.8 -> iterations 2, 4, 5: the gap neither counts nor breaks
    assert reproductions.first_crossing(lines_, "x", 0.5, for_iterations=3) == (500, 50)
    # 4 in a row: 2, 4, 5 and 6 (0.9; without `when` its stage does not matter)
    assert reproductions.first_crossing(lines_, "x", 0.5, for_iterations=4) == (600, 60)
    # with `when`: iteration 0 has no previous iteration, iteration 6 (stage 0) and iteration 7
    # (stage 0 before it) break the streak; 8, 9 count, 10 falls to 0.1, then only 11 is left
    when = ("stage", 1.0)
    assert reproductions.first_crossing(lines_, "x", 0.5, when=when) == (200, 20)
    assert reproductions.first_crossing(lines_, "x", 0.5, when=when, for_iterations=3) == (500, 50)
    assert reproductions.first_crossing(lines_, "x", 0.5, when=when, for_iterations=4) is None
    assert reproductions.first_crossing(lines_, "x", 0.85, when=when, for_iterations=2) == (900, 90)


@pytest.mark.parametrize(
    ("name", "hard", "stages", "steps"),
    [
        ("schedule_navigation", 7, [4, 5, 6, 7], 1_700_000),
        ("schedule_navigation_6x6", 6, [4, 5, 6], 1_200_000),
    ],
)
def test_schedule_navigation_compares_equal_budgets_on_one_hard_task(name, hard, stages, steps):
    reproductions = load_reproductions()
    experiment = reproductions.EXPERIMENTS[name]
    direct, staged = (
        load_recipe(reproductions.RECIPES / arm.recipe, arm.overrides) for arm in experiment.arms
    )
    assert direct.env == staged.env and direct.learner == staged.learner and direct.train == staged.train
    assert direct.env.params["max_size"] == hard and direct.train.total_steps == steps
    direct_sizes = [stage["set"]["size"] for stage in direct.curriculum.params["stages"]]
    staged_sizes = [stage["set"]["size"] for stage in staged.curriculum.params["stages"]]
    assert direct_sizes == [hard] and staged_sizes == stages
    # one advance rule for every stage: the plugin's metric condition, the same threshold and K
    rules = {str(stage.get("advance")) for stage in staged.curriculum.params["stages"][:-1]}
    assert len(rules) == 1 and "designer/success" in rules.pop()
    # the crossing is counted on the hard task only, the task both arms end on
    assert experiment.threshold_when == ("curriculum/param/size", float(hard))
    assert experiment.threshold_for == 3
    assert experiment.speedup_against == experiment.arms[0].label


def test_schedule_horizon_keeps_the_rooms_and_schedules_only_the_episode_length():
    reproductions = load_reproductions()
    experiment = reproductions.EXPERIMENTS["schedule_horizon"]
    direct, staged = (
        load_recipe(reproductions.RECIPES / arm.recipe, arm.overrides) for arm in experiment.arms
    )
    assert direct.env == staged.env and direct.learner == staged.learner and direct.train == staged.train
    assert direct.env.params["max_size"] == 7 and direct.train.total_steps == 1_700_000
    stages = [stage["set"] for stage in staged.curriculum.params["stages"]]
    assert [stage["size"] for stage in stages] == [7, 7, 7]  # the same rooms in every stage
    assert [stage["max_steps"] for stage in stages] == [120, 60, 30]
    assert direct.curriculum.params["stages"] == [{"set": {"size": 7, "max_steps": 30}}]
    rules = {str(stage.get("advance")) for stage in staged.curriculum.params["stages"][:-1]}
    assert len(rules) == 1 and "designer/success" in rules.pop()
    # the direct arm is schedule_navigation's: the same env, learner, budget and 7 x 7 rooms of 30 steps
    other = reproductions.EXPERIMENTS["schedule_navigation"].arms[0]
    size_direct = load_recipe(reproductions.RECIPES / other.recipe, other.overrides)
    assert size_direct.env == direct.env and size_direct.learner == direct.learner
    assert size_direct.train == direct.train and size_direct.seed == direct.seed
    assert direct.env.params["max_steps"] == 30
    assert experiment.threshold_when == ("curriculum/param/max_steps", 30.0)
    assert experiment.threshold_for == 3 and experiment.speedup_against == experiment.arms[0].label


def test_schedule_reverse_keeps_the_rooms_and_schedules_only_the_spawn_room():
    reproductions = load_reproductions()
    experiment = reproductions.EXPERIMENTS["schedule_reverse"]
    direct, staged = (
        load_recipe(reproductions.RECIPES / arm.recipe, arm.overrides) for arm in experiment.arms
    )
    assert direct.env == staged.env and direct.learner == staged.learner and direct.train == staged.train
    assert direct.env.params["max_size"] == 7 and direct.train.total_steps == 4_000_000
    stages = [stage["set"] for stage in staged.curriculum.params["stages"]]
    assert [stage["size"] for stage in stages] == [7, 7, 7]  # the same rooms in every stage
    assert [stage["spawn_doors"] for stage in stages] == [0, 1, 2]
    assert direct.curriculum.params["stages"] == [{"set": {"size": 7, "spawn_doors": 2}}]
    rules = [stage.get("advance") for stage in staged.curriculum.params["stages"]]
    assert rules[:-1] == [{"metric": "designer/success", "threshold": 0.5, "for_iterations": 2}] * 2
    assert rules[-1] is None
    # 7 x 7 rooms have at most two walls, so 2 doors back is the leftmost room, the default: the direct
    # arm is schedule_navigation's, the same env, learner, seed and 7 x 7 rooms of 30 steps, with a
    # longer budget (a constant learning rate: the same run up to schedule_navigation's budget)
    params = NavigationParams(**direct.env.params)
    levels = torch.arange(1000)
    sizes = torch.full((1000,), 7)
    assert generate_layouts(levels, sizes, params).num_walls.max() == 2
    two_doors = generate_layouts(levels, sizes, params, torch.full((1000,), 2))
    assert all(
        torch.equal(a, b) for a, b in zip(generate_layouts(levels, sizes, params), two_doors, strict=True)
    )
    other = reproductions.EXPERIMENTS["schedule_navigation"].arms[0]
    size_direct = load_recipe(reproductions.RECIPES / other.recipe, other.overrides)
    assert size_direct.env == direct.env and size_direct.learner == direct.learner
    assert size_direct.seed == direct.seed and not direct.learner.anneal_lr
    assert size_direct.train.model_copy(update={"total_steps": 4_000_000}) == direct.train
    assert size_direct.curriculum.params["stages"] == [{"set": {"size": 7}}]
    assert direct.env.params["max_steps"] == 30
    assert experiment.threshold == ("success", 0.5)
    assert experiment.threshold_when == ("curriculum/param/spawn_doors", 2.0)
    assert experiment.threshold_for == 3 and experiment.speedup_against == experiment.arms[0].label


def test_first_crossing_of_the_reverse_schedule_counts_only_the_leftmost_start():
    reproductions = load_reproductions()
    # the goal's room for iterations 0-3, 1 door for 4-5, 2 doors from 6; success 0.8 throughout:
    # iteration 6 hands 2 out (its predecessor did not), so 7, 8, 9 are the first three that count
    doors = [0] * 4 + [1] * 2 + [2] * 5
    lines_ = [
        {"train/global_step": 100 * i, "seconds": i, "designer/success": 0.8, "doors": float(d)}
        for i, d in enumerate(doors)
    ]
    when = ("doors", 2.0)
    assert reproductions.first_crossing(lines_, "success", 0.5, when=when, for_iterations=3) == (900, 9)
    assert reproductions.first_handed_out(lines_, when) == 600
    assert reproductions.first_crossing(lines_[:9], "success", 0.5, when=when, for_iterations=3) is None


def test_first_crossing_counts_only_the_hard_task_when_the_schedule_goes_down_to_it():
    reproductions = load_reproductions()
    # 120-step episodes for iterations 0-2, 60 for 3-5, 30 from 6; success 0.8 throughout
    lengths = [120] * 3 + [60] * 3 + [30] * 6
    lines_ = [
        {"train/global_step": 100 * i, "seconds": i, "designer/x": 0.8, "max_steps": float(length)}
        for i, length in enumerate(lengths)
    ]
    when = ("max_steps", 30.0)
    # iteration 6 hands 30 out (its predecessor did not): 7, 8, 9 are the first three that count
    assert reproductions.first_crossing(lines_, "x", 0.5, when=when, for_iterations=3) == (900, 9)
    assert reproductions.first_handed_out(lines_, when) == 600
    assert reproductions.first_handed_out(lines_[:6], when) is None


def test_speedup_is_censored_at_the_budget():
    speedup = load_reproductions().speedup
    assert speedup(800_000, 400_000, 1_700_000, 1_700_000) == "2.00"
    assert speedup(518_144, 225_280, 1_200_000, 1_200_000) == "2.30"
    # the baseline never crossed: at least 1.7M / 700k = 2.428...
    assert speedup(None, 700_000, 1_700_000, 1_700_000) == "> 2.43"
    # ... and a baseline still training (900k steps so far): at least 900k / 700k = 1.285...
    assert speedup(None, 700_000, 900_000, 1_700_000) == "> 1.29"
    # the arm never crossed: at most 600k / 1.7M = 0.352...
    assert speedup(600_000, None, 1_700_000, 1_700_000) == "< 0.35"
    assert speedup(None, None, 1_700_000, 1_700_000) == "-"


def test_speedup_table_per_seed_with_the_hard_task_start(tmp_path: Path):
    reproductions = load_reproductions()
    when = ("size", 7.0)
    assert (
        reproductions.first_handed_out(
            [{"train/global_step": 100 * i, "size": 4 + i} for i in range(5)], when
        )
        == 300
    )
    assert reproductions.first_handed_out([{"train/global_step": 0, "size": 6}], when) is None

    def lines(successes, sizes):
        return [
            {"train/global_step": 100 * (i + 1), "seconds": i, "designer/success": x, "size": size}
            for i, (x, size) in enumerate(zip(successes, sizes, strict=True))
        ]

    direct = [lines([0.0] * 10, [7] * 10), lines([0.0] * 6 + [0.6] * 4, [7] * 10)]
    staged = [lines([0.6, 0.7, 0.1, 0.5, 0.5, 0.5, 0.9, 0.9, 0.9, 0.9], [6, 6] + [7] * 8),
              lines([0.6] * 10, [6] * 10)]  # fmt: skip
    experiment = reproductions.Experiment(
        arms=[], metrics=["success"], threshold=("success", 0.5), threshold_when=when, threshold_for=3,
        speedup_against="direct",
    )  # fmt: skip
    results = []
    for label, runs in (("direct", direct), ("staged", staged)):
        result = reproductions.ArmResult(runs=reproductions.RunsOfArm(label=label))
        for run_lines in runs:
            result.runs.runs.append(RunData(path=tmp_path, recipe={}, lines=run_lines))
            result.crossings.append(
                reproductions.first_crossing(run_lines, "success", 0.5, when=when, for_iterations=3)
            )
        results.append(result)
    rows = reproductions.speedup_table(experiment, results).splitlines()[2:]
    cells = [[cell.strip() for cell in row.split("|")] for row in rows]
    # seed 0: 7 x 7 from step 300 (iteration 3 has 7 and its predecessor too: 400, 500, 600 count);
    # the direct arm never crosses in 1,000 steps: > 1000 / 600
    assert cells[0] == ["staged", "0", "300", "600", "never (> 1,000)", "> 1.67"]
    # seed 1: the schedule never reaches 7 x 7; the direct arm crosses at 900 (700, 800, 900)
    assert cells[1] == ["staged", "1", "never", "never (> 1,000)", "900", "< 0.90"]


def test_every_reproduction_arm_loads_as_a_recipe_and_plr_arms_share_their_budget():
    reproductions = load_reproductions()
    for name, experiment in reproductions.EXPERIMENTS.items():
        recipes = [load_recipe(reproductions.RECIPES / arm.recipe, arm.overrides) for arm in experiment.arms]
        if name.startswith("plr_"):  # equal steps and the same levels in every arm
            assert len({r.train.total_steps for r in recipes}) == 1, name
            assert len({str(r.env.params["levels"]) for r in recipes}) == 1, name
    gap = [
        load_recipe(reproductions.RECIPES / arm.recipe, arm.overrides)
        for arm in reproductions.EXPERIMENTS["plr_levels_gap"].arms
    ]
    assert gap[0].env.params["levels"] == {"train": "0-49", "test": "10000-10999"}
    assert gap[0].train.total_steps == 400_000 and gap[0].curriculum is None
    official = gap[1].curriculum.params
    assert (official["temperature"], official["staleness_coef"]) == (0.1, 0.1)
    assert official["strategy"] == "value_l1" and gap[2].curriculum.params["temperature"] == 1.0
    # the Robust PLR / ACCEL scores: the label names the strategy and the temperature
    for arm, recipe in zip(reproductions.EXPERIMENTS["plr_levels_gap"].arms[3:7], gap[3:7], strict=True):
        params = recipe.curriculum.params
        assert params["strategy"].replace("_", " ") in arm.label.replace("_", " "), arm.label
        assert ("beta = 0.3" in arm.label) == (params.get("temperature", 0.1) == 0.3), arm.label
    # the conv arms: the first two arms with the image observation and one layer of 32 3 x 3 filters
    labels = [arm.label for arm in reproductions.EXPERIMENTS["plr_levels_gap"].arms]
    assert labels[7:] == ["uniform levels (conv)", "PLR (official defaults, conv)"]
    for mlp, conv in zip(gap[:2], gap[7:], strict=True):
        assert conv.env.params["observation"] == "image" and "observation" not in mlp.env.params
        assert (conv.learner.conv_channels, conv.learner.conv_kernel) == ([32], 3)
        mlp_data, conv_data = mlp.model_dump(), conv.model_dump()
        del conv_data["env"]["params"]["observation"], conv_data["learner"]["conv_channels"]
        del conv_data["learner"]["conv_kernel"], mlp_data["learner"]["conv_channels"]
        del mlp_data["learner"]["conv_kernel"]
        assert conv_data == mlp_data


def test_connect_four_random_openings_arm_is_the_bot_share_arm_with_openings_and_greedy_games():
    reproductions = load_reproductions()
    arms = {arm.label: arm for arm in reproductions.EXPERIMENTS["connect_four_opponents"].arms}
    base, openings = (
        load_recipe(reproductions.RECIPES / arms[label].recipe, arms[label].overrides).model_dump()
        for label in ("PFSP + 10% bot share", "PFSP + 10% bot share, random openings")
    )
    assert base["opponents"]["params"]["bot_share"] == 0.1
    assert openings["env"]["params"] == {"random_opening": 6} and base["env"]["params"] == {}
    assert openings["opponents"]["params"].pop("eval_policy") == "greedy"
    assert "eval_policy" not in base["opponents"]["params"]
    openings["env"]["params"] = {}
    assert openings == base


def test_the_connect_four_entropy_arm_is_the_bot_share_arm_with_more_entropy_and_greedy_evaluations():
    reproductions = load_reproductions()
    arms = {arm.label: arm for arm in reproductions.EXPERIMENTS["connect_four_opponents"].arms}
    base, entropy = (
        load_recipe(reproductions.RECIPES / arms[label].recipe, arms[label].overrides).model_dump()
        for label in ("PFSP + 10% bot share", "PFSP + 10% bot share, entropy 0.05")
    )
    assert (base["learner"]["ent_coef"], entropy["learner"]["ent_coef"]) == (0.01, 0.05)
    assert entropy["opponents"]["params"].pop("eval_policy") == "greedy"
    entropy["learner"]["ent_coef"] = 0.01
    assert entropy == base


def test_reproductions_tables_from_earlier_run_directories(tmp_path: Path):
    reproductions = load_reproductions()
    experiment = reproductions.Experiment(
        arms=[reproductions.Arm("arm a", "x.yaml"), reproductions.Arm("arm a (b)", "x.yaml")],
        metrics=["collective_return"],
    )
    # two earlier commands: seeds 0 of both arms in the first, seeds 1 and 2 of "arm a" in the second
    runs = [(tmp_path / "first", "arm_a-0", 1.0), (tmp_path / "first", "arm_a_(b)-0", 7.0)]
    runs += [(tmp_path / "second", "arm_a-1", 2.0), (tmp_path / "second", "arm_a-2", 6.0)]
    for root, name, final in runs:
        run_dir = write_run(root / "exp" / "tiny" / name, [0.0] * 9 + [final])
        perf = [json.dumps({"perf/steps_per_s": 64.0}) + "\n"] * 10  # 8 x 16 steps: 2 s an iteration
        (run_dir / "perf.jsonl").write_text("".join(perf))
    args = argparse.Namespace(arms=None, tables_from=[str(tmp_path / "first"), str(tmp_path / "second")])
    results = reproductions.collect_experiment("exp", experiment, args)
    assert [r.runs.label for r in results] == ["arm a", "arm a (b)"]
    assert [run.final("designer/collective_return") for run in results[0].runs.runs] == [1.0, 2.0, 6.0]
    assert results[0].walls == [20.0] * 3 and len(results[1].runs.runs) == 1
    lines = reproductions.table(experiment, results).splitlines()
    # the IQM of three runs trims none of them (25% of 3 rounds down to 0): (1 + 2 + 6) / 3
    assert [cell.strip() for cell in lines[2].split(" | ")[1:3]] == ["3", "3.000 [1.000, 6.000]"]
    args.arms = ["arm a (b)"]
    assert [r.runs.label for r in reproductions.collect_experiment("exp", experiment, args)] == ["arm a (b)"]


def test_tables_from_reads_the_runs_left_behind_even_one_still_training(capsys, tmp_path: Path):
    reproductions = load_reproductions()
    experiment = reproductions.Experiment(
        arms=[reproductions.Arm("direct", "x.yaml"), reproductions.Arm("staged", "x.yaml")],
        metrics=["collective_return"], threshold=("collective_return", 5.0), threshold_for=2,
        speedup_against="direct", seeds=3,
    )  # fmt: skip
    root = tmp_path / "out" / "exp" / "recipe-name"

    def run(arm: str, seed: int, values: list[float], perf_lines: int) -> None:
        run_dir = write_run(root / f"{arm}-{seed}", values, seed=seed)
        perf = [json.dumps({"perf/steps_per_s": 64.0}) for _ in range(perf_lines)]
        (run_dir / "perf.jsonl").write_text("\n".join(perf) + "\n")

    # 128 steps per iteration (tiny recipe: 2 s each at 64 steps/s)
    run("direct", 0, [0, 0, 0, 0, 0, 0], 6)
    run("direct", 1, [0, 6, 6, 0, 0], 6)  # still training: a perf line before its metrics line
    run("staged", 0, [0, 6, 7, 1, 1, 1], 6)
    run("staged", 1, [0, 0, 0, 6, 9], 4)  # still training: the last iteration has no perf line yet
    # no seed 2 of either arm yet
    args = reproductions.argparse.Namespace(arms=None, tables_from=[tmp_path / "out"])
    results = reproductions.collect_experiment("exp", experiment, args)
    assert [len(result.runs.runs) for result in results] == [2, 2]
    assert [run.lines[-1]["train/global_step"] for run in results[1].runs.runs] == [768, 512]
    assert results[0].crossings == [None, (384, 6.0)] and results[1].crossings == [(384, 6.0), None]
    assert results[1].walls == [12.0, 8.0]  # training seconds of the last line read
    rows = reproductions.speedup_table(experiment, results).splitlines()[2:]
    cells = [[cell.strip() for cell in row.split("|")] for row in rows]
    assert cells[0] == ["staged", "0", "0", "384", "never (> 768)", "> 2.00"]
    # seed 1: the schedule has not crossed in its 512 steps so far: at most 384 / 512
    assert cells[1] == ["staged", "1", "0", "never (> 512)", "384", "< 0.75"]
    assert "staged-1 (512 of" in capsys.readouterr().err
    with pytest.raises(IncentiveError, match="no runs of other"):
        reproductions.collect_experiment("other", experiment, args)
