"""The classic incentive-design results, reproduced: same env, same budget, different incentives.

Each experiment trains several incentive structures side by side on one env,
with equal step budgets and several seeds, and prints the designer's metrics
through the table code of `incentive compare` (`incentive.compare`): each
run's final value (the mean over the last 10% of its iterations that report
the metric, at least one), then the interquartile mean over seeds with a 95%
stratified bootstrap confidence interval (Agarwal et al. 2021), and the wall
time. The runs stay in a temporary directory (printed), so `incentive compare`
and `incentive plot` can be pointed at them afterwards. Pick experiments by name:

    python benchmarks/reproductions.py ipd          # prisoner's dilemma, sharing weight s in 0..1
    python benchmarks/reproductions.py coin_game
    python benchmarks/reproductions.py escape_room cleanup_7x7 --seeds 3
    python benchmarks/reproductions.py kuhn_opponents --steps 100000
    python benchmarks/reproductions.py plr_navigation --set env.params.max_size=7
    python benchmarks/reproductions.py ipd_opponents
    python benchmarks/reproductions.py schedule_horizon --seeds 1 --jobs 2  # seed 0 of both arms at once
    python benchmarks/reproductions.py schedule_reverse --seeds 2 --first-seed 1 --jobs 2  # seeds 1, 2
    python benchmarks/reproductions.py --list
    python benchmarks/reproductions.py schedule_navigation --tables-from /tmp/reproductions-abc123  # tables only

Curricula (issue 10): `plr_navigation` (PLR vs uniform level sampling, mean
test-level return, with its curve; `plr_levels_gap` the same on 50 training
levels, where uniform sampling has a generalisation gap), `schedule_navigation`
(7 x 7 rooms after 4 x 4, 5 x 5 and 6 x 6 stages vs directly: env steps until the
success rate on 7 x 7 rooms stays at the threshold for 3 iterations, and per seed the
ratio of the direct arm's steps to the schedule's, censored as "> budget / steps" when
the direct arm never gets there; `schedule_navigation_6x6` the earlier 6 x 6 target), `schedule_horizon`
(the same 7 x 7 rooms throughout, with episodes of 120, then 60, then 30 steps vs 30 steps directly:
the same threshold counted on 30-step episodes only, and the same ratios), `schedule_reverse`
(a reverse curriculum: the same 7 x 7 rooms throughout, the agents starting in the goal's room, then
one door before it, then two (the leftmost room) vs the leftmost room directly: the same threshold
counted on iterations that start the agents two doors away only, and the same ratios), `annealing_ipd` and
`annealing_cleanup` (reward sharing s annealed 1 -> 0 vs s = 0 vs s = 1:
metrics per seed in a window before s leaves 1 and in the run's last 10%,
long after it reached 0).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from incentive import hookimpl
from incentive.compare import comparison_rows, format_table, summarise
from incentive.errors import IncentiveError, StopRun
from incentive.recipe import load_recipe
from incentive.results import Arm as RunsOfArm
from incentive.results import RunData, load_run
from incentive.runner import start_run

# sibling benchmark modules, however this file is loaded (as a script, or by path in the tests)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from connect_four_ladder import LADDER_FILE, MinimaxLadder, best_depth_beaten  # noqa: E402

RECIPES = Path(__file__).parent.parent / "recipes"


@dataclass
class Arm:
    """One incentive structure: a label, a recipe, and overrides."""

    label: str
    recipe: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    """Arms compared on one env with equal budgets; `metrics` are the columns printed."""

    arms: list[Arm]
    metrics: list[str]
    seeds: int = 3
    threshold: tuple[str, float] | None = None  # report the first env step where metric >= value
    curve: tuple[float, ...] = ()  # also print each metric at these fractions of the steps
    # the threshold only counts on iterations where this metric (full name) equals this value (the hard task)
    threshold_when: tuple[str, float] | None = None
    # ... and only once the metric was >= value in this many reporting iterations in a row
    threshold_for: int = 1
    # print, per seed, how many times fewer steps than this arm (label) each other arm took to the threshold
    speedup_against: str | None = None
    curve_metric: str | None = None  # print this metric's IQM over seeds at 5 evenly spaced points
    # (label, first, last): per seed, each metric's mean over the iterations in that fraction of the run
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    # Connect Four: play each finished learner up the minimax ladder (connect_four_ladder.py)
    ladder: bool = False


def sharing(s: float) -> str:
    return f"incentives=[{{plugin: reward_sharing, params: {{s: {s}}}}}]"


def payment(payee: str, payer: str, amount: float, per: str = "payee_unit") -> str:
    contract = f"{{name: pay, payee: {payee}, payer: {payer}, amount: {amount}, amount_per: {per}}}"
    return f"incentives=[{{plugin: payments, params: {{contracts: [{contract}]}}}}]"


PARTNERS = {
    "itself (self-play)": "opponents={plugin: self_play}",
    "past selves (FSP)": "opponents={plugin: fictitious_self_play, params: {snapshot_every: 5, max_snapshots: 50}}",
    "a fixed defector": "opponents={plugin: fictitious_self_play, params: {snapshot_every: null, bots: [always_defect]}}",
}
NAV_PLR = [
    "env.params.min_size=4",
    "env.params.max_size=7",
    "env.params.levels.test=10000-10999",  # 1000 held-out levels, as the official code's final evaluation
    "evaluate.policy=sampled",
    "evaluate.every=5",
    "train.total_steps=600000",
]
# the generalisation-gap regime: 50 training levels instead of 200 (uniform sampling then does worse
# on the held-out levels than on its training levels), 400k steps (195 iterations)
NAV_GAP = [*NAV_PLR, "env.params.levels.train=0-49", "train.total_steps=400000"]
# a policy that can transfer between layouts, as Procgen's CNN: one layer of 32 3 x 3 filters over the
# four planes as an image (a door or a goal looks the same wherever it is), before the same MLP
NAV_CONV = ["env.params.observation=image", "learner.conv_channels=[32]", "learner.conv_kernel=3"]
PVL = "curriculum.params.strategy=positive_value_loss"
MAX_MC = "curriculum.params.strategy=max_mc"

EXPERIMENTS: dict[str, Experiment] = {
    # LOLA's payoffs, u_i = r_i + s * r_j: against a cooperator C gives -1 - s and D gives -3s;
    # against a defector C gives -3 and D gives -2 - 2s. C beats D by 2s - 1 in both cases, so
    # cooperation is dominant for s > 0.5, defection for s < 0.5, and s = 0.5 is indifferent.
    "ipd": Experiment(
        arms=[Arm(f"s = {s}", "ipd_selfish.yaml", [f"incentives.0.params.s={s}"]) for s in (0, 0.25, 0.5, 0.75, 1)],
        metrics=["mutual_cooperation", "mutual_defection", "collective_return"],
        seeds=5,
    ),
    "stag_hunt": Experiment(
        arms=[Arm(f"s = {s}", "stag_hunt_prosocial.yaml", [f"incentives.0.params.s={s}"]) for s in (0, 0.25, 0.5, 1)],
        metrics=["mutual_cooperation", "mutual_defection", "collective_return"],
        seeds=5,
    ),
    "coin_game": Experiment(
        arms=[
            Arm("selfish (s = 0)", "coin_game_selfish.yaml"),
            Arm("sharing s = 0.5", "coin_game_selfish.yaml", [sharing(0.5)]),
            Arm("sharing s = 1", "coin_game_selfish.yaml", [sharing(1.0)]),
        ],
        metrics=["own_coin_rate", "coins_per_episode", "collective_return"],
        threshold=("own_coin_rate", 0.9),
    ),
    "escape_room": Experiment(
        arms=[
            Arm("independent", "escape_room_selfish.yaml"),
            Arm("sharing s = 1", "escape_room_selfish.yaml", [sharing(1.0)]),
            Arm("door pays T = 2", "escape_room_selfish.yaml", [payment("{action: 0}", "{reward_at_least: 10}", 2, "payer")]),
            Arm("door pays T = 5", "escape_room_selfish.yaml", [payment("{action: 0}", "{reward_at_least: 10}", 5, "payer")]),
        ],
        metrics=["collective_return", "door_opened", "lever_pulls"],
        seeds=5,
        threshold=("collective_return", 8.9),
    ),
    "escape_room_3_2": Experiment(
        arms=[
            Arm("independent", "escape_room_selfish.yaml", ["env.params.num_agents=3", "env.params.min_at_lever=2"]),
            Arm("sharing s = 1", "escape_room_selfish.yaml",
                ["env.params.num_agents=3", "env.params.min_at_lever=2", sharing(1.0)]),
            Arm("door pays T = 5", "escape_room_selfish.yaml",
                ["env.params.num_agents=3", "env.params.min_at_lever=2",
                 payment("{action: 0}", "{reward_at_least: 10}", 5, "payer")]),
        ],
        metrics=["collective_return", "door_opened"],
        seeds=3,
    ),
    "cleanup_7x7": Experiment(
        arms=[
            Arm("selfish", "cleanup_selfish.yaml"),
            Arm("sharing s = 1", "cleanup_selfish.yaml", [sharing(1.0)]),
            Arm("cleaning pays c = 0.25", "cleanup_selfish.yaml", [payment("{info: waste_cleared}", "others", 0.25)]),
            Arm("cleaning pays c = 0.5", "cleanup_selfish.yaml", [payment("{info: waste_cleared}", "others", 0.5)]),
            Arm("cleaning pays c = 1", "cleanup_selfish.yaml", [payment("{info: waste_cleared}", "others", 1.0)]),
            Arm("inequity aversion (beta only)", "cleanup_selfish.yaml",
                ["incentives=[{plugin: inequity_aversion, params: {alpha: 0.0, beta: 0.05}}]"]),
        ],
        metrics=["collective_return", "equality", "cleaning_actions_agent_0", "cleaning_actions_agent_1", "apples_eaten"],
    ),
    "cleanup_10x10": Experiment(
        arms=[
            Arm("selfish", "cleanup_selfish.yaml", ["env.params.map=lio_10x10"]),
            Arm("sharing s = 1", "cleanup_selfish.yaml", ["env.params.map=lio_10x10", sharing(1.0)]),
            Arm("cleaning pays c = 0.5", "cleanup_selfish.yaml",
                ["env.params.map=lio_10x10", payment("{info: waste_cleared}", "others", 0.5)]),
            Arm("inequity aversion", "cleanup_selfish.yaml",
                ["env.params.map=lio_10x10", "incentives=[{plugin: inequity_aversion, params: {alpha: 5.0, beta: 0.05}}]"]),
        ],
        metrics=["collective_return", "equality", "cleaning_actions", "apples_eaten"],
    ),
    "harvest": Experiment(
        arms=[
            Arm("selfish", "harvest_selfish.yaml"),
            Arm("sharing s = 1", "harvest_selfish.yaml", [sharing(1.0)]),
            Arm("inequity aversion", "harvest_selfish.yaml",
                ["incentives=[{plugin: inequity_aversion, params: {alpha: 5.0, beta: 0.05}}]"]),
        ],
        metrics=["collective_return", "final_apple_stock", "sustainability", "equality"],
    ),
    # PLR vs uniform level sampling on 200 training levels of 4 x 4 to 7 x 7 rooms with 0-2 walls
    # (from trivial to unsolvable-for-now: an untrained policy succeeds on 13% of the episodes in
    # 4 x 4 rooms and on under 1% in 6 x 6 and 7 x 7 ones, benchmarks/plr_levels.py); 600k steps
    # (293 iterations). The 1000 held-out test levels are played every 5 iterations with the sampled
    # policy (a greedy policy stuck against a wall never recovers), so the final value is over the
    # last 6 evaluations. Arms beyond the official defaults: the staleness weight of the authors'
    # MiniGrid runs (facebookresearch/dcd, 0.3), and a higher temperature, beta = 1 (P_S
    # proportional to 1 / rank): at beta = 0.1 about 90% of the draws go to the top-ranked level,
    # which with episodes of at most 30 steps in 64-step rollouts fills most of each batch
    # (curriculum/plr/top_share)
    "plr_navigation": Experiment(
        arms=[
            Arm("uniform levels", "navigation_uniform.yaml", NAV_PLR),
            Arm("PLR (official defaults)", "navigation_plr.yaml", NAV_PLR),
            Arm("PLR (staleness 0.3)", "navigation_plr.yaml", [*NAV_PLR, "curriculum.params.staleness_coef=0.3"]),
            Arm("PLR (beta = 1)", "navigation_plr.yaml", [*NAV_PLR, "curriculum.params.temperature=1.0"]),
        ],
        metrics=["test/collective_return", "test/success", "success"],
        seeds=3,
        curve_metric="test/collective_return",
    ),
    # PLR's claimed benefit is on held-out levels, but on 200 levels uniform sampling shows no
    # generalisation gap (train success 0.52, test 0.50). With 50 training levels it does (pilot, one
    # seed: success 0.58 on training levels against 0.32 on held-out ones at 600k steps), as Procgen's
    # 200 levels of a huge space do, and each level is the top-ranked one of about 4 of the 195
    # iterations (Procgen: about 8 of 1526 at 25M steps), closer to the regime of the paper.
    "plr_levels_gap": Experiment(
        arms=[
            Arm("uniform levels", "navigation_uniform.yaml", NAV_GAP),
            Arm("PLR (official defaults)", "navigation_plr.yaml", NAV_GAP),
            Arm("PLR (beta = 1)", "navigation_plr.yaml", [*NAV_GAP, "curriculum.params.temperature=1.0"]),
            # the scores of Robust PLR and ACCEL (Jiang et al. 2021b; Parker-Holder et al. 2022), high only
            # where returns beat the value's expectation (positive value loss) or fall short of the best
            # return seen on the level (max_mc)
            Arm("PLR (positive value loss)", "navigation_plr.yaml", [*NAV_GAP, PVL]),
            Arm("PLR (positive value loss, beta = 0.3)", "navigation_plr.yaml",
                [*NAV_GAP, PVL, "curriculum.params.temperature=0.3"]),
            Arm("PLR (max_mc)", "navigation_plr.yaml", [*NAV_GAP, MAX_MC]),
            Arm("PLR (max_mc, beta = 0.3)", "navigation_plr.yaml", [*NAV_GAP, MAX_MC, "curriculum.params.temperature=0.3"]),
            Arm("uniform levels (conv)", "navigation_uniform.yaml", [*NAV_GAP, *NAV_CONV]),
            Arm("PLR (official defaults, conv)", "navigation_plr.yaml", [*NAV_GAP, *NAV_CONV]),
        ],
        metrics=["test/collective_return", "test/success", "success"],
        seeds=3,
        curve_metric="test/collective_return",
    ),
    # the hard task: 7 x 7 rooms with up to two walls, where a random pair succeeds in 0.6% of its
    # episodes (6 x 6: 1.7%); the schedule goes through 4 x 4, 5 x 5 and 6 x 6 rooms, advancing at
    # success >= 0.5 for 2 iterations (recipes/navigation_schedule_7x7.yaml). The threshold counts only
    # on iterations that, with the one before, handed out 7 x 7 rooms, and needs 3 such in a row
    "schedule_navigation": Experiment(
        arms=[
            Arm("7 x 7 directly", "navigation_schedule_7x7.yaml", ["curriculum.params.stages=[{set: {size: 7}}]"]),
            Arm("4 x 4, 5 x 5, 6 x 6, then 7 x 7", "navigation_schedule_7x7.yaml"),
        ],
        metrics=["success"],
        seeds=3,
        threshold=("success", 0.5),
        threshold_when=("curriculum/param/size", 7.0),
        threshold_for=3,
        speedup_against="7 x 7 directly",
    ),
    # the earlier target, 6 x 6 rooms after 4 x 4 and 5 x 5 stages (1.2M steps; see the README)
    "schedule_navigation_6x6": Experiment(
        arms=[
            Arm("6 x 6 directly", "navigation_schedule_6x6.yaml", ["curriculum.params.stages=[{set: {size: 6}}]"]),
            Arm("4 x 4, 5 x 5, then 6 x 6", "navigation_schedule_6x6.yaml"),
        ],
        metrics=["success"],
        seeds=3,
        threshold=("success", 0.5),
        threshold_when=("curriculum/param/size", 6.0),
        threshold_for=3,
        speedup_against="6 x 6 directly",
    ),
    # the same hard task through longer episodes on the same rooms: every stage hands out the 7 x 7
    # rooms, with 120, then 60, then 30 steps (a random pair succeeds in 2.5%, 1.1% and 0.5% of such
    # episodes), advancing at success >= 0.5 for 2 iterations (recipes/navigation_schedule_horizon.yaml).
    # The direct arm trains as schedule_navigation's does, step for step. The threshold counts only
    # on iterations that, with the one before, handed out 30-step episodes, and needs 3 such in a row
    "schedule_horizon": Experiment(
        arms=[
            Arm("7 x 7, 30 steps directly", "navigation_schedule_horizon.yaml",
                ["curriculum.params.stages=[{set: {size: 7, max_steps: 30}}]"]),
            Arm("120, 60, then 30 steps", "navigation_schedule_horizon.yaml"),
        ],
        metrics=["success"],
        seeds=3,
        threshold=("success", 0.5),
        threshold_when=("curriculum/param/max_steps", 30.0),
        threshold_for=3,
        speedup_against="7 x 7, 30 steps directly",
    ),
    # the same hard task through nearer starts on the same rooms (a reverse curriculum, Florensa et al.
    # 2017): every stage hands out the 7 x 7 rooms of 30 steps, the agents starting in the goal's room,
    # then one door before it, then two (in 7 x 7 the leftmost room: the hard task); a random pair
    # succeeds in 9.0%, 0.59% and 0.52% of such episodes. Advancing at success >= 0.5 for 2 iterations
    # (recipes/navigation_schedule_reverse.yaml). The direct arm sets spawn_doors 2, which is the default
    # leftmost room in every 7 x 7 layout, so it trains as schedule_navigation's direct arm does, step
    # for step, and logs the value the threshold needs. The threshold counts only on iterations that,
    # with the one before, started the agents two doors away, and needs 3 such in a row. 4M env steps,
    # so that the direct arm's own crossing is measured (it has none by 1.7M)
    "schedule_reverse": Experiment(
        arms=[
            Arm("7 x 7 directly", "navigation_schedule_reverse.yaml",
                ["curriculum.params.stages=[{set: {size: 7, spawn_doors: 2}}]"]),
            Arm("goal room, 1 door, then 2 doors away", "navigation_schedule_reverse.yaml"),
        ],
        metrics=["success"],
        seeds=3,
        threshold=("success", 0.5),
        threshold_when=("curriculum/param/spawn_doors", 2.0),
        threshold_for=3,
        speedup_against="7 x 7 directly",
    ),
    # s = 1 for the first 40% of the steps, annealed linearly to 0 over the next 20%, then 0
    "annealing_ipd": Experiment(
        arms=[
            Arm("s = 0 throughout", "ipd_sharing_annealed.yaml", ["curriculum=null", "incentives.0.params.s=0.0"]),
            Arm("s = 1 throughout", "ipd_sharing_annealed.yaml", ["curriculum=null", "incentives.0.params.s=1.0"]),
            Arm("s annealed 1 -> 0", "ipd_sharing_annealed.yaml",
                ["curriculum.params.stages.0.advance={steps: 60000}", "curriculum.params.stages.1.over_steps=30000"]),
        ],
        metrics=["collective_return", "mutual_cooperation"],
        seeds=5,
        windows=[("s = 1 (30-40%)", 0.3, 0.4), ("s = 0 (last 10%)", 0.9, 1.0)],
    ),
    "annealing_cleanup": Experiment(
        arms=[
            Arm("s = 0 throughout", "cleanup_sharing_annealed.yaml", ["curriculum=null", "incentives.0.params.s=0.0"]),
            Arm("s = 1 throughout", "cleanup_sharing_annealed.yaml", ["curriculum=null", "incentives.0.params.s=1.0"]),
            Arm("s annealed 1 -> 0", "cleanup_sharing_annealed.yaml"),
        ],
        metrics=["collective_return", "cleaning_actions_agent_0", "cleaning_actions_agent_1"],
        seeds=3,
        windows=[("s = 1 (30-40%)", 0.3, 0.4), ("s = 0 (last 10%)", 0.9, 1.0)],
    ),
    # Whom the learner plays: equal env steps; the exact exploitability (NashConv / 2) of the learner
    # and of the population's mixture (FSP: uniform over snapshots; PFSP: its sampling weights;
    # PSRO: the Nash meta-strategy; league: the main agent's sampling distribution over the snapshots).
    # Latest-only self-play has no population, so no mixture. The league's main agent (the learner
    # measured) trains on half of the instances; its exploiters on the other half. With 2 main agents
    # the half is split between them: main agent 0, the one measured, trains on a quarter.
    "kuhn_opponents": Experiment(
        arms=[
            Arm("latest-only self-play", "kuhn_self_play.yaml"),
            Arm("fictitious self-play", "kuhn_fsp.yaml"),
            Arm("PFSP (hard)", "kuhn_pfsp.yaml", ["opponents.params.bots=[]"]),
            Arm("PSRO (Nash)", "kuhn_psro.yaml"),
            Arm("league (AlphaStar roles)", "kuhn_league.yaml"),
            Arm("league, 2 main agents", "kuhn_league.yaml", ["opponents.params.main_agents=2"]),
        ],
        metrics=["exploitability", "mixture_exploitability"],
        seeds=2,
        curve=(0.25, 0.5, 0.75, 1.0),
    ),
    # Leduc poker, the same four samplers as on Kuhn at equal env steps (the budget is set so that
    # each run takes about 30 CPU-minutes on this machine: see the README); exact exploitability
    "leduc_opponents": Experiment(
        arms=[
            Arm("latest-only self-play", "leduc_self_play.yaml"),
            Arm("fictitious self-play", "leduc_fsp.yaml"),
            Arm("PFSP (hard)", "leduc_pfsp.yaml"),
            Arm("PSRO (Nash)", "leduc_psro.yaml", ["opponents.params.meta_solver=nash"]),
        ],
        metrics=["exploitability", "mixture_exploitability"],
        seeds=1,
        curve=(0.25, 0.5, 0.75, 1.0),
    ),
    # Connect Four from the win/loss signal alone (no teaching): PFSP over snapshots and bots with
    # 35% mirror self-play, against latest-only self-play, at equal env steps (about 30 minutes of
    # one core each, run side by side with --jobs 2); scores count draws as half, both seats. The
    # random-openings arm is the bot-share arm whose training games start with 0-6 random plies (still
    # no teaching: only the win/loss signal), its evaluation games greedy and, as always, from the
    # empty board; the other arms evaluate sampled
    "connect_four_opponents": Experiment(
        arms=[
            Arm("PFSP (hard) + 35% self-play", "connect_four_pfsp.yaml"),
            Arm("PFSP + 10% bot share", "connect_four_pfsp.yaml", ["opponents.params.bot_share=0.1"]),
            Arm(
                "PFSP + 10% bot share, entropy 0.05",
                "connect_four_pfsp.yaml",
                ["opponents.params.bot_share=0.1", "learner.ent_coef=0.05", "opponents.params.eval_policy=greedy"],
            ),
            Arm(
                "PFSP + 10% bot share, random openings",
                "connect_four_pfsp.yaml",
                ["opponents.params.bot_share=0.1", "env.params.random_opening=6",
                 "opponents.params.eval_policy=greedy"],
            ),
            Arm(
                "latest-only self-play",
                "connect_four_pfsp.yaml",
                ["opponents={plugin: self_play, params: {evaluate_every: 20, eval_bots: [random, one_ply], "
                 "eval_episodes: 256}}"],
            ),
        ],
        metrics=["win_rate/random", "win_rate/one_ply"],
        seeds=1,
        threshold=("win_rate/one_ply", 0.6),
        curve=(0.25, 0.5, 0.75, 1.0),
        ladder=True,
    ),
    # Incentives meet opponents: the IPD learner with reward sharing u_i = r_i + s r_j (s = 1 makes C
    # dominant in the stage game, whoever the partner is) against itself, a population of its frozen past
    # selves, or a fixed defector. `cooperation` counts both seats: against the defector, the learner's own
    # cooperation rate is twice the number; `mutual_cooperation` needs both seats.
    "ipd_opponents": Experiment(
        arms=[
            Arm(f"{who}, s = {s}", "ipd_selfish.yaml", [f"incentives.0.params.s={s}", partner])
            for s in (0.0, 1.0)
            for who, partner in PARTNERS.items()
        ],
        metrics=["cooperation", "mutual_cooperation", "collective_return"],
        seeds=3,
    ),
}  # fmt: skip


@dataclass
class ArmResult:
    """An arm's runs (one per seed), their wall times and threshold crossings."""

    runs: RunsOfArm
    walls: list[float] = field(default_factory=list)
    crossings: list[tuple[int, float] | None] = field(default_factory=list)


class CpuBudget:
    """Ends a run cleanly (status "budget") once its training has used `minutes` of CPU time.

    The clock starts at set-up (imports and env construction excluded) and counts this
    process's CPU time, evaluations included; a run that stops this way keeps every line it
    wrote. Learning up to the stop is deterministic; where it stops depends on the machine.
    """

    def __init__(self, minutes: float) -> None:
        self.seconds = 60.0 * minutes
        self.started = 0.0

    @hookimpl
    def incentive_setup(self) -> None:
        """Start the clock."""
        self.started = time.process_time()

    @hookimpl
    def incentive_collect_metrics(self) -> dict[str, float]:
        """`budget/cpu_s`: CPU seconds of training so far (the time axis of budgeted runs)."""
        return {"budget/cpu_s": time.process_time() - self.started}

    @hookimpl
    def incentive_iteration_end(self, iteration: int) -> None:
        """Stop after the iteration that used up the budget."""
        used = time.process_time() - self.started
        if used >= self.seconds:
            raise StopRun("budget", f"{used / 60:.1f} CPU-minutes after iteration {iteration}")


def train_arm(
    arm: Arm,
    seed: int,
    out: str,
    steps: int | None,
    ladder: bool,
    cpu_minutes: float | None = None,
    overrides_for_all: list[str] | None = None,
) -> tuple[str, float, float]:
    """Train one seed of an arm: (run directory, wall seconds, CPU seconds of this process)."""
    torch.set_num_threads(1)  # one core per job: `--jobs 2` fills the 2 cores without oversubscribing
    overrides = [*arm.overrides, *(overrides_for_all or []), f"seed={seed}", f"log.dir={out}"]
    overrides.append("log.wandb.mode=disabled")
    if steps:
        overrides.append(f"train.total_steps={steps}")
    recipe = load_recipe(RECIPES / arm.recipe, overrides)
    extra = [("minimax_ladder", MinimaxLadder())] if ladder else []
    if cpu_minutes:
        extra.append(("cpu_budget", CpuBudget(cpu_minutes)))
    started, cpu = time.perf_counter(), time.process_time()
    run_dir, _ = start_run(recipe, run_id=run_id(arm.label, seed), extra_plugins=extra)
    return str(run_dir), time.perf_counter() - started, time.process_time() - cpu


def read_arm_run(run_dir: str) -> RunData:
    """A finished run; its metrics lines carry `seconds`: training time so far.

    The CPU time `budget/cpu_s` in runs with a CPU budget (so other jobs on the machine do not
    count), else the wall time of the iterations, from perf.jsonl.
    """
    run = load_run(run_dir)
    recipe = run.recipe
    perf = [json.loads(line) for line in (run.path / "perf.jsonl").read_text().splitlines()]
    # a run still training may have written one file's line of an iteration but not the other's yet
    run.lines, perf = run.lines[: len(perf)], perf[: len(run.lines)]
    per_iteration = recipe["env"]["num_envs"] * recipe["learner"]["rollout_steps"]
    seconds = 0.0
    for line, timing in zip(run.lines, perf, strict=True):
        seconds += per_iteration / timing["perf/steps_per_s"]
        line["seconds"] = line.get("budget/cpu_s", seconds)
    return run


def first_crossing(
    lines: list[dict],
    metric: str,
    value: float,
    when: tuple[str, float] | None = None,
    for_iterations: int = 1,
) -> tuple[int, float] | None:
    """(env step, training seconds) of the iteration that completes `for_iterations` in a row >= value.

    Iterations that report no value of the metric (no finished episode) neither count nor break
    the streak, as in the schedule plugin. With `when` (a full metric name and a value), an
    iteration counts only if that metric equals the value in it and in the iteration before
    (the schedule handing out the hard task: rooms of size 7 after smaller ones, or 30-step
    episodes after longer ones, so "at least" would not do): a task applies at each instance's
    next reset, so the iteration in which it is first handed out still finishes episodes of the
    old one; any other iteration breaks the streak.
    """
    streak = 0
    for index, line in enumerate(lines):
        if when is not None:
            previous = lines[index - 1] if index > 0 else {}
            if line.get(when[0]) != when[1] or previous.get(when[0]) != when[1]:
                streak = 0
                continue
        reached = line.get(f"designer/{metric}")
        if reached is None:
            continue
        streak = streak + 1 if reached >= value else 0
        if streak >= for_iterations:
            return line["train/global_step"], line["seconds"]
    return None


def speedup(baseline: int | None, arm: int | None, baseline_steps: int, arm_steps: int) -> str:
    """How many times fewer steps than the baseline an arm needed to the threshold, censored where runs end.

    A run that never crossed is right-censored at the steps it trained: if only the baseline
    never crossed, the ratio is at least baseline_steps / arm ("> 2.13"); if only the arm never
    crossed, at most baseline / arm_steps ("< 0.47"); if neither did, nothing is known ("-").

    Args:
        baseline: the baseline run's crossing step, or None if it never crossed.
        arm: the arm's crossing step, or None.
        baseline_steps: the env steps the baseline run trained (its budget, or so far).
        arm_steps: the env steps the arm's run trained.

    """
    if baseline is None and arm is None:
        return "-"
    if baseline is None:
        return f"> {baseline_steps / arm:.2f}"
    if arm is None:
        return f"< {baseline / arm_steps:.2f}"
    return f"{baseline / arm:.2f}"


def first_handed_out(lines: list[dict], when: tuple[str, float]) -> int | None:
    """The env step of the first iteration whose `when` metric (full name) equals its value, or None."""
    for line in lines:
        if line.get(when[0]) == when[1]:
            return line["train/global_step"]
    return None


def speedup_table(experiment: Experiment, results: list[ArmResult]) -> str:
    """Per seed and arm: the steps to the threshold, where the hard task began, and the speedup."""
    baseline = next(result for result in results if result.runs.label == experiment.speedup_against)
    headers = ["arm", "seed", "hard task from", "threshold at", f"{baseline.runs.label}: threshold at",
               "speedup (x fewer steps)"]  # fmt: skip
    body = []
    for result in results:
        if result is baseline:
            continue
        for seed, (run, crossed) in enumerate(zip(result.runs.runs, result.crossings, strict=True)):
            if seed >= len(baseline.runs.runs):
                break
            base_run, base_crossed = baseline.runs.runs[seed], baseline.crossings[seed]
            steps, base_steps = run.lines[-1]["train/global_step"], base_run.lines[-1]["train/global_step"]
            start = first_handed_out(run.lines, experiment.threshold_when) if experiment.threshold_when else 0
            body.append(
                [
                    result.runs.label,
                    str(seed),
                    "never" if start is None else f"{start:,}",
                    f"{crossed[0]:,}" if crossed else f"never (> {steps:,})",
                    f"{base_crossed[0]:,}" if base_crossed else f"never (> {base_steps:,})",
                    speedup(base_crossed and base_crossed[0], crossed and crossed[0], base_steps, steps),
                ]
            )
    return format_table(headers, body)


def window_run(run: RunData, first: float, last: float) -> RunData:
    """The run cut to the iterations in (first, last] fractions of its steps."""
    total = run.lines[-1]["train/global_step"]
    inside = [line for line in run.lines if first * total < line["train/global_step"] <= last * total]
    return RunData(path=run.path, recipe=run.recipe, lines=inside)


def window_table(experiment: Experiment, results: list[ArmResult]) -> str:
    """Per arm and seed, each metric's mean over each window of the run; IQM [95% CI] over seeds."""
    metrics = [f"designer/{m}" for m in experiment.metrics]
    headers = ["arm", "window", *(f"{m} per seed" for m in experiment.metrics),
               *(f"{m} IQM [95% CI]" for m in experiment.metrics)]  # fmt: skip
    body = []
    for result in results:
        for label, first, last in experiment.windows:
            cut = [window_run(run, first, last) for run in result.runs.runs]
            per_seed = [[_window_mean(run, m) for run in cut] for m in metrics]
            summary = {
                m: summarise(np.asarray([v for v in values if v is not None], dtype=np.float64))
                for m, values in zip(metrics, per_seed, strict=True)
            }
            body.append(
                [
                    result.runs.label,
                    label,
                    *(" ".join(f"{v:.2f}" if v is not None else "-" for v in values) for values in per_seed),
                    *(str(summary[m]) if summary[m] is not None else "-" for m in metrics),
                ]
            )
    return format_table(headers, body)


def _window_mean(run: RunData, metric: str) -> float | None:
    values = [line[metric] for line in run.lines if line.get(metric) is not None]
    return statistics.fmean(values) if values else None


def curve_table(experiment: Experiment, results: list[ArmResult], points: int = 5) -> str:
    """The curve metric's IQM [95% CI] over seeds at `points` evenly spaced fractions of the run."""
    metric = f"designer/{experiment.curve_metric}"
    fractions = [(i + 1) / points for i in range(points)]
    headers = ["arm", *(f"{experiment.curve_metric} at {f:.0%}" for f in fractions)]
    body = []
    for result in results:
        cells = []
        for fraction in fractions:
            # the last report at or before this fraction of the run's steps
            cut = [window_run(run, 0.0, fraction) for run in result.runs.runs]
            last = [[line[metric] for line in run.lines if metric in line][-1:] for run in cut]
            cell = summarise(np.asarray([values[0] for values in last if values], dtype=np.float64))
            cells.append(str(cell) if cell is not None else "-")
        body.append([result.runs.label, *cells])
    return format_table(headers, body)


def table(experiment: Experiment, results: list[ArmResult]) -> str:
    """The experiment's table: per arm, IQM [95% CI] over seeds of each metric's final value, and timings."""
    metrics = [f"designer/{m}" for m in experiment.metrics]
    headers = ["arm", "runs", *(f"{m} IQM [95% CI]" for m in experiment.metrics), "steps", "wall s/run"]
    if experiment.threshold:
        metric, value = experiment.threshold
        in_a_row = f" ({experiment.threshold_for} its in a row)" if experiment.threshold_for > 1 else ""
        headers.append(f"{metric} >= {value}{in_a_row}: step (s)")
    rows = comparison_rows([result.runs for result in results], metrics)
    body = []
    for result, row in zip(results, rows, strict=True):
        cells = [str(row["cells"][m]) if row["cells"][m] is not None else "-" for m in metrics]
        last_step = max(run.lines[-1]["train/global_step"] for run in result.runs.runs)
        line = [
            row["label"],
            str(row["runs"]),
            *cells,
            f"{last_step:,}",
            f"{statistics.fmean(result.walls):.1f}",
        ]
        if experiment.threshold:
            line.append(", ".join(f"{c[0]:,} ({c[1]:.0f}s)" if c else "never" for c in result.crossings))
        body.append(line)
    return format_table(headers, body)


def curve_tables(experiment: Experiment, results: list[ArmResult]) -> str:
    """Per metric: IQM [95% CI] over seeds at each fraction of the run (the runs cut there, then as `table`)."""
    out = []
    for metric in experiment.metrics:
        key = f"designer/{metric}"
        last = max(run.lines[-1]["train/global_step"] for result in results for run in result.runs.runs)
        points = [round(fraction * last) for fraction in experiment.curve]
        body = []
        for result in results:
            cells = []
            for point in points:
                cut = RunsOfArm(
                    label=result.runs.label,
                    runs=[
                        RunData(
                            run.path, run.recipe, [x for x in run.lines if x["train/global_step"] <= point]
                        )
                        for run in result.runs.runs
                    ],
                )
                cell = comparison_rows([cut], [key])[0]["cells"][key]
                cells.append("-" if cell is None else str(cell))
            body.append([result.runs.label, *cells])
        out.append(
            f"\n{metric} against env steps (IQM [95% CI] over seeds, last 10% of iterations up to the step)"
        )
        out.append(format_table(["arm", *(f"{point:,}" for point in points)], body))
    return "\n".join(out)


def ladder_table(results: list[ArmResult]) -> str:
    """Per arm, each rung's score per seed, and the deepest minimax each seed beats."""
    ladders = {
        result.runs.label: [json.loads((run.path / LADDER_FILE).read_text()) for run in result.runs.runs]
        for result in results
    }
    rungs = list(next(iter(ladders.values()))[0])
    body = [
        [label, *(" ".join(f"{seed_ladder[r]:.2f}" for seed_ladder in per_seed) for r in rungs),
         " ".join(str(best_depth_beaten(seed_ladder)) for seed_ladder in per_seed)]
        for label, per_seed in ladders.items()
    ]  # fmt: skip
    return format_table(["arm", *rungs, "deepest minimax beaten"], body)


def run_experiment(name: str, experiment: Experiment, args: argparse.Namespace, out: Path) -> list[ArmResult]:
    """Train every (arm, seed) of an experiment, `args.jobs` at a time, each job on one core."""
    seeds = args.seeds or experiment.seeds
    arms = [arm for arm in experiment.arms if not args.arms or arm.label in args.arms]
    first = args.first_seed
    jobs = [
        (arm, seed) for seed in range(first, first + seeds) for arm in arms
    ]  # seed by seed: every arm advances
    results = {arm.label: ArmResult(runs=RunsOfArm(label=arm.label)) for arm in arms}
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [
            pool.submit(
                train_arm,
                arm,
                seed,
                str(out / name),
                args.steps,
                experiment.ladder,
                args.cpu_minutes,
                args.set,
            )
            for arm, seed in jobs
        ]
        for (arm, seed), future in zip(jobs, futures, strict=True):
            run_dir, wall, cpu = future.result()
            add_run(experiment, results[arm.label], read_arm_run(run_dir), wall)
            print(
                f"{name}: {arm.label}, seed {seed}: {wall:.1f} s ({cpu:.1f} CPU s)",
                file=sys.stderr,
                flush=True,
            )
    return list(results.values())


def add_run(experiment: Experiment, result: ArmResult, run: RunData, wall: float) -> None:
    """Add one seed's run to its arm's result, with its threshold crossing."""
    result.runs.runs.append(run)
    result.walls.append(wall)
    if experiment.threshold:
        result.crossings.append(
            first_crossing(
                run.lines,
                *experiment.threshold,
                when=experiment.threshold_when,
                for_iterations=experiment.threshold_for,
            )
        )


def run_id(label: str, seed: int) -> str:
    """The run directory name of one seed of an arm."""
    return f"{label}-{seed}".replace(" ", "_").replace("/", "_")


def collect_experiment(name: str, experiment: Experiment, args: argparse.Namespace) -> list[ArmResult]:
    """The runs of an experiment found under `args.tables_from` (earlier runs of this script), no training.

    Each directory is a `runs in ...` directory this script printed; the arms (`--arms`, default
    all) are found by their run directory names, every seed of each (the first `--seeds` if given),
    from every directory given.
    A run still training counts as far as it got (its crossing, if any, is final: later iterations
    cannot move it; if none, it is censored at its last step). The wall column is then each run's
    training time from its own records (no evaluations).

    Raises:
        IncentiveError: no run of the experiment in any of the directories.

    """
    arms = [arm for arm in experiment.arms if not args.arms or arm.label in args.arms]
    results = []
    for arm in arms:
        result = ArmResult(runs=RunsOfArm(label=arm.label))
        prefix = run_id(arm.label, 0)[:-1]  # the name up to the seed
        found = [
            path
            for root in args.tables_from
            for path in sorted((Path(root) / name).glob("*/*"))
            if path.name.startswith(prefix) and path.name[len(prefix) :].isdigit()
        ]
        for path in found[: args.seeds] if getattr(args, "seeds", None) else found:
            run = read_arm_run(str(path))
            if not run.lines:
                continue
            add_run(experiment, result, run, run.lines[-1]["seconds"])
            steps, budget = run.lines[-1]["train/global_step"], run.recipe["train"]["total_steps"]
            print(f"{name}: {arm.label}: {path} ({steps:,} of {budget:,} steps)", file=sys.stderr)
        if result.runs.runs:
            results.append(result)
    if not results:
        roots = ", ".join(str(root) for root in args.tables_from)
        raise IncentiveError(
            f"{roots}: no runs of {name} there (expected `{name}/<recipe name>/<arm>-<seed>`)"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiments", nargs="*")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default: per experiment)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds run from this one (add seeds to an earlier run)"
    )
    parser.add_argument("--steps", type=int, default=None, help="override every arm's train.total_steps")
    parser.add_argument("--arms", nargs="+", default=None, help="run only these arms (labels, quoted)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once, one core each (default 1; 2 fills 2 cores)"
    )
    parser.add_argument(
        "--cpu-minutes",
        type=float,
        default=None,
        help="also end each run once its training used this much CPU time (the steps then differ per arm)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="PATH=VALUE", help="recipe override for every arm"
    )
    parser.add_argument(
        "--tables-from",
        nargs="+",
        default=None,
        metavar="DIR",
        help="train nothing: print the tables of the runs (finished or still training) in these earlier "
        "`runs in` directories",
    )
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list or not args.experiments:
        print("experiments:", ", ".join(EXPERIMENTS))
        return
    unknown = [name for name in args.experiments if name not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; available: {', '.join(EXPERIMENTS)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.cpu_minutes is not None and not args.cpu_minutes > 0:
        parser.error(f"--cpu-minutes must be positive, got {args.cpu_minutes}")
    if args.arms:
        labels = {arm.label for name in args.experiments for arm in EXPERIMENTS[name].arms}
        missing = [label for label in args.arms if label not in labels]
        if missing:
            parser.error(
                f"no arm {missing[0]!r} in {', '.join(args.experiments)}; arms: {', '.join(sorted(labels))}"
            )
    if args.tables_from is None:
        out = Path(tempfile.mkdtemp(prefix="reproductions-"))
        print(f"runs in {out}", file=sys.stderr)
    for name in args.experiments:
        experiment = EXPERIMENTS[name]
        try:
            if args.tables_from is not None:
                results = collect_experiment(name, experiment, args)
            else:
                results = run_experiment(name, experiment, args, out)
        except IncentiveError as exc:  # a bad --set, say, or no runs to read: the message says which
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        seeds = len(results[0].runs.runs) if results else 0
        print(f"\n## {name} ({seeds} seeds; IQM [95% CI] over seeds of each run's last 10% of iterations)")
        print(table(experiment, results), flush=True)
        labels = [result.runs.label for result in results]
        if experiment.speedup_against in labels and len(labels) > 1:
            print("\nper seed: env steps to the threshold, and the baseline's steps / the arm's")
            print(speedup_table(experiment, results), flush=True)
        if experiment.curve:
            print(curve_tables(experiment, results), flush=True)
        if experiment.curve_metric:
            print(
                f"\n{experiment.curve_metric} over training (IQM [95% CI] over seeds of the last report so far)"
            )
            print(curve_table(experiment, results), flush=True)
        if experiment.windows:
            print("\nby window of the run (mean over its iterations; per seed, then IQM [95% CI] over seeds)")
            print(window_table(experiment, results), flush=True)
        if experiment.ladder:
            print("\nminimax ladder of the final learners (score: wins + draws / 2, per seed)")
            print(ladder_table(results), flush=True)


if __name__ == "__main__":
    main()
