"""Curriculum plugins: schedule, prioritized level replay, learning progress, against hand numbers."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import pytest
import torch

from incentive import hookimpl
from incentive.plugins.learning_progress import LearningProgress, progress_distribution
from incentive.plugins.prioritized_level_replay import (
    PrioritizedLevelReplay,
    count_draws,
    level_scores,
    max_mc_step_scores,
    raise_max_returns,
    rank_weights,
    replay_distribution,
    step_scores,
)
from incentive.plugins.reward_sharing import RewardSharing
from incentive.plugins.schedule import Schedule, interpolate
from incentive.tasks import TaskState, step_values


class LevelEnv:
    """A stand-in env with procedural levels (task key `level`)."""

    task_keys = ("level", "size")
    possible_agents = ["a", "b"]
    metric_names = ("success",)

    def __init__(self, levels: int) -> None:
        self.train_levels = torch.arange(100, 100 + levels)
        self.set: dict[str, torch.Tensor] = {}

    def set_task(self, task):
        self.set = task

    def level_difficulty(self, levels):
        return levels.double() - 100


def make_run(num_envs: int, levels: int = 4, seed: int = 0):
    env = LevelEnv(levels)
    sharing = RewardSharing(RewardSharing.Params(s=0.5))
    tasks = TaskState(num_envs=num_envs, env=env, plugins={"incentives.0": sharing})
    return SimpleNamespace(
        num_envs=num_envs,
        env=env,
        tasks=tasks,
        agents=env.possible_agents,
        generator=torch.Generator().manual_seed(seed),
        global_step=0,
    )


def rollout(advantages, done, reward=None, learn=None, values=None):
    adv = torch.tensor(advantages, dtype=torch.float32)
    if adv.dim() == 2:
        adv = adv[..., None]
    return SimpleNamespace(
        advantages=adv,
        done=torch.as_tensor(done, dtype=torch.float32),  # as the loop holds them
        reward=torch.zeros_like(adv) if reward is None else torch.tensor(reward, dtype=torch.float32),
        learn_mask=torch.ones_like(adv, dtype=torch.bool) if learn is None else torch.tensor(learn),
        values=torch.zeros_like(adv) if values is None else torch.tensor(values, dtype=torch.float32),
    )


# --- prioritized level replay: formulas ---------------------------------------


def test_rank_weights_by_hand():
    h = rank_weights(torch.tensor([0.5, 2.0, 1.0, 1.0]), temperature=0.1)
    # ranks 4, 1, 2, 3 (the tie goes to the lower index)
    expected = torch.tensor([4.0**-10, 1.0, 2.0**-10, 3.0**-10], dtype=torch.float64)
    torch.testing.assert_close(h, expected, rtol=1e-12, atol=0)


def test_replay_distribution_by_hand():
    scores = torch.tensor([0.5, 2.0, 1.0, 0.0])
    seen = torch.tensor([True, True, True, False])
    staleness = torch.tensor([3, 0, 1, 5])
    p = replay_distribution(scores, staleness, seen, temperature=1.0, staleness_coef=0.1)
    # h = 1/rank = [1/3, 1, 1/2, (unseen) 0] -> P_S = [2, 6, 3, 0] / 11; P_C = [3, 0, 1, 0] / 4
    expected = [0.9 * 2 / 11 + 0.1 * 0.75, 0.9 * 6 / 11, 0.9 * 3 / 11 + 0.1 * 0.25, 0.0]
    torch.testing.assert_close(p, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    # power transform: h = S^(1/beta) = [0.25, 4, 1] with beta = 0.5, and no staleness
    p = replay_distribution(scores, staleness, seen, temperature=0.5, staleness_coef=0.0, transform="power")
    torch.testing.assert_close(p, torch.tensor([0.25, 4, 1, 0], dtype=torch.float64) / 5.25)


def test_replay_distribution_without_staleness_renormalises():
    seen = torch.tensor([True, True])
    p = replay_distribution(
        torch.tensor([1.0, 2.0]), torch.zeros(2), seen, temperature=1.0, staleness_coef=0.1
    )
    torch.testing.assert_close(p, torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))


def test_level_scores_average_steps_and_instances():
    per_step = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [5.0, 4.0]])
    levels = torch.tensor([[0, 0], [0, 2], [1, -1]])
    score, played = level_scores(per_step, levels, num_levels=3)
    assert played.tolist() == [True, True, False]
    torch.testing.assert_close(score, torch.tensor([2.0, 5.0, 0.0], dtype=torch.float64))


# --- prioritized level replay: the plugin ----------------------------------------


def plr(run, **params):
    plugin = PrioritizedLevelReplay(PrioritizedLevelReplay.Params(**params))
    plugin.incentive_setup(run)
    return plugin


def test_plr_scores_each_level_on_the_steps_it_was_played():
    run = make_run(2, levels=4)
    plugin = plr(run)
    task = plugin.incentive_next_task(run, 1)
    assert task["level"].tolist() == (plugin.pending + 100).tolist()
    plugin.running = torch.tensor([0, 1])
    plugin.pending = torch.tensor([2, 3])
    run.global_step = 8
    # instance 0 ends its episode at t = 1 and starts level 2; instance 1 never ends
    advantages = [[[1.0, -3.0], [2.0, 0.0]], [[-1.0, 1.0], [2.0, 2.0]], [[0.5, 0.5], [-4.0, 0.0]]]
    plugin.incentive_update_curriculum(run, rollout(advantages, [[0, 0], [1, 0], [0, 0]]))
    # value_l1 per step (mean over 2 seats): e0: 2, 1, 0.5; e1: 1, 2, 2
    torch.testing.assert_close(plugin.scores, torch.tensor([1.5, 5 / 3, 0.5, 0.0], dtype=torch.float64))
    assert plugin.seen.tolist() == [True, True, True, False]
    assert plugin.running.tolist() == [2, 1]  # instance 0 adopted its pending level


def test_staleness_counts_draws_as_the_official_sampler_does():
    # the official sampler, draw by draw: staleness + 1 for every level, 0 for the drawn one
    staleness = [7, 3, 10, 0, 5]  # c = 10, C = [3, 7, 0, 10, 5]
    for level in (2, 0, 2, 4):
        staleness = [0 if i == level else s + 1 for i, s in enumerate(staleness)]
    assert staleness == [2, 7, 1, 4, 0]
    last, count = count_draws(torch.tensor([3, 7, 0, 10, 5]), torch.tensor(10), torch.tensor([2, 0, 2, 4]))
    assert int(count) == 14 and last.tolist() == [12, 7, 13, 10, 14]
    assert (count - last).tolist() == staleness


def test_plr_counts_every_draw_for_staleness_and_reports_the_top_share():
    run = make_run(4, levels=5)
    plugin = plr(run)
    plugin.seen[:] = True
    plugin.scores = torch.tensor([0.1, 0.2, 0.9, 0.3, 0.4], dtype=torch.float64)
    plugin.last_draw = torch.tensor([3, 7, 0, 10, 5])
    plugin.draws = torch.tensor(10)
    task = plugin.incentive_next_task(run, 3)
    drawn = plugin.pending
    assert task["level"].tolist() == (drawn + 100).tolist() and int(plugin.draws) == 14
    for level in range(5):  # C_i: the number (11..14) of level i's last draw, else unchanged
        numbers = [11 + j for j in range(4) if int(drawn[j]) == level]
        assert int(plugin.last_draw[level]) == (max(numbers) if numbers else [3, 7, 0, 10, 5][level])
    top = torch.bincount(drawn).max().item()
    assert plugin.incentive_collect_metrics()["curriculum/plr/top_share"] == top / 4


def test_plr_positive_value_loss_and_alpha():
    run = make_run(1, levels=2)
    plugin = plr(run, strategy="positive_value_loss", alpha=0.5)
    plugin.running = torch.tensor([1])
    plugin.pending = torch.tensor([1])
    plugin.scores = torch.tensor([0.0, 4.0], dtype=torch.float64)
    plugin.incentive_update_curriculum(run, rollout([[-2.0], [1.0], [3.0], [0.0]], [[0], [0], [0], [0]]))
    # mean max(A, 0) = (0 + 1 + 3 + 0) / 4 = 1; S = 0.5 * 4 + 0.5 * 1
    assert plugin.scores.tolist() == [0.0, 2.5]


def test_plr_policy_entropy_scores_by_hand():
    run = make_run(2, levels=3)
    plugin = plr(run, strategy="policy_entropy")
    plugin.running = torch.tensor([0, 2])
    plugin.pending = torch.tensor([1, 2])
    # two actions: pi = (1/2, 1/2) -> H = ln 2; pi = (1, 0) -> H = 0; pi = (1/4, 3/4) -> H below
    h_quarter = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    entropy = torch.tensor(
        [
            [[math.log(2), 0.0], [h_quarter, h_quarter]],
            [[0.0, 0.0], [math.log(2), math.log(2)]],
            [[math.log(2), math.log(2)], [0.0, 0.0]],
        ]
    )
    data = rollout(torch.zeros(3, 2, 2).tolist(), [[0, 0], [1, 0], [0, 0]])
    data.entropy = entropy
    plugin.incentive_update_curriculum(run, data)
    # instance 0: level 0 on steps 0-1 (means ln2/2 and 0), level 1 on step 2 (ln 2);
    # instance 1: level 2 on all three steps (h_quarter, ln 2, 0)
    expected = [math.log(2) / 4, math.log(2), (h_quarter + math.log(2)) / 3]
    torch.testing.assert_close(plugin.scores, torch.tensor(expected, dtype=torch.float64))
    # the seats that did not learn do not count
    plugin.running = torch.tensor([0, 0])
    data.learn_mask = torch.tensor([[True, False]]).expand(3, 2, 2)
    plugin.incentive_update_curriculum(run, data)
    # level 0 now: instance 0 steps 0-1 (ln 2, 0), instance 1 steps 0-2 (h_quarter, ln 2, 0)
    expected[0] = (math.log(2) + h_quarter + math.log(2)) / 5
    assert plugin.scores[0].item() == pytest.approx(expected[0], rel=1e-6)  # float32 entropies


# max_mc by hand: 3 steps, 2 instances, 2 seats. Instance 0 plays level 0 (with a return of [1, 0]
# carried in from the previous rollout), ends it at t = 1, then starts level 2; instance 1 plays
# level 1 and ends it at t = 2. Seat 1 of instance 1 does not learn at t = 1.
MC_REWARD = [[[0, 1], [0, 0]], [[2, 0], [1, 1]], [[0.5, 0.25], [3, 0]]]
MC_DONE = [[0, 0], [1, 0], [0, 1]]
MC_LEVELS = [[0, 1], [0, 1], [2, 1]]
MC_VALUES = [[[0.5, 0.25], [1, 2]], [[1, 1], [0, 0]], [[0.3, 0.3], [4, 0.5]]]
MC_LEARN = [[[True, True], [True, True]], [[True, True], [True, False]], [[True, True], [True, True]]]
INF = float("inf")


def test_max_mc_raises_each_levels_best_return_by_hand():
    r_max = torch.tensor([[-INF, -INF], [5.0, 0.0], [-INF, -INF]], dtype=torch.float64)
    carried = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    r_max, carried = raise_max_returns(
        r_max, torch.tensor(MC_REWARD), torch.tensor(MC_DONE), torch.tensor(MC_LEVELS), carried
    )
    # level 0: seat 0 1 + 0 + 2 = 3, seat 1 0 + 1 + 0 = 1; level 1: seat 0 0 + 1 + 3 = 4 (below the
    # 5 it had), seat 1 0 + 1 + 0 = 1; level 2: no episode ended; instance 0 carries level 2's start
    expected = torch.tensor([[3.0, 1.0], [5.0, 1.0], [-INF, -INF]], dtype=torch.float64)
    assert torch.equal(r_max, expected)
    assert torch.equal(carried, torch.tensor([[0.5, 0.25], [0.0, 0.0]], dtype=torch.float64))


def test_max_mc_step_scores_by_hand():
    r_max = torch.tensor([[3.0, 1.0], [5.0, 1.0], [-INF, -INF]], dtype=torch.float64)
    per_step = max_mc_step_scores(
        torch.tensor(MC_VALUES), torch.tensor(MC_LEARN), torch.tensor(MC_LEVELS), r_max
    )
    # t0: ((3 - 0.5) + (1 - 0.25)) / 2, ((5 - 1) + (1 - 2)) / 2; t1: ((3 - 1) + (1 - 1)) / 2, seat 0
    # only: 5 - 0; t2: level 2 has no R_max yet (NaN), ((5 - 4) + (1 - 0.5)) / 2
    expected = torch.tensor([[1.625, 1.5], [1.0, 5.0], [float("nan"), 0.75]], dtype=torch.float64)
    torch.testing.assert_close(per_step, expected, equal_nan=True, rtol=1e-6, atol=1e-6)  # float32 values


def test_plr_max_mc_scores_levels_once_an_episode_on_them_ended():
    run = make_run(2, levels=3)
    plugin = plr(run, strategy="max_mc")
    plugin.running = torch.tensor([0, 1])
    plugin.pending = torch.tensor([2, 1])
    plugin.r_max[1] = torch.tensor([5.0, 0.0], dtype=torch.float64)
    plugin.carried[0] = torch.tensor([1.0, 0.0], dtype=torch.float64)
    data = rollout(torch.zeros(3, 2, 2).tolist(), MC_DONE, MC_REWARD, MC_LEARN, MC_VALUES)
    plugin.incentive_update_curriculum(run, data)
    assert plugin.r_max[:2].tolist() == [[3.0, 1.0], [5.0, 1.0]]
    # level 0: steps t0, t1 of instance 0; level 1: all of instance 1; level 2: not scored, unseen
    expected = [(1.625 + 1.0) / 2, (1.5 + 5.0 + 0.75) / 3, 0.0]
    torch.testing.assert_close(plugin.scores, torch.tensor(expected, dtype=torch.float64))
    assert plugin.seen.tolist() == [True, True, False]
    # the next rollout: instance 0 ends level 2 at once with the return 0.5 + 1 in seat 0, 0.25 in seat 1
    data = rollout(
        torch.zeros(1, 2, 2).tolist(), [[1, 0]], [[[1.0, 0.0], [0.0, 0.0]]], values=[[[0.5, 0.0], [0.0, 0.0]]]
    )
    plugin.incentive_update_curriculum(run, data)
    assert plugin.r_max[2].tolist() == [1.5, 0.25]
    # level 2: ((1.5 - 0.5) + (0.25 - 0)) / 2; level 1: ((5 - 0) + (1 - 0)) / 2
    assert plugin.scores.tolist() == [(1.625 + 1.0) / 2, 3.0, 0.625]
    assert plugin.seen.all()


def test_plr_policy_entropy_needs_entropies_in_the_rollout():
    run = make_run(1, levels=2)
    plugin = plr(run, strategy="policy_entropy")
    with pytest.raises(ValueError, match="policy_entropy"):
        plugin.incentive_update_curriculum(run, rollout([[1.0]], [[0]]))


def test_plr_draws_unseen_levels_until_the_minimum_seen_fraction():
    run = make_run(1000, levels=10)
    plugin = plr(run)  # min_seen_fraction 1.0 (the official default)
    plugin.seen[:5] = True
    plugin.scores[:5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    plugin.incentive_next_task(run, 2)
    assert not plugin.replayed.any()
    assert (plugin.pending >= 5).all()  # only unseen levels


def test_plr_replays_with_probability_equal_to_the_seen_fraction():
    run = make_run(10_000, levels=10)
    plugin = plr(run, min_seen_fraction=0.0, temperature=1.0, staleness_coef=0.0)
    plugin.seen[:4] = True
    plugin.scores[:4] = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    plugin.incentive_next_task(run, 2)
    share = plugin.replayed.double().mean().item()
    assert abs(share - 0.4) < 0.02
    replays = plugin.pending[plugin.replayed]
    assert (replays < 4).all() and (plugin.pending[~plugin.replayed] >= 4).all()
    # replays follow P_S = (1/rank) / (1 + 1/2 + 1/3 + 1/4)
    freq = torch.bincount(replays, minlength=4).double() / len(replays)
    expected = torch.tensor([1, 1 / 2, 1 / 3, 1 / 4], dtype=torch.float64) / (25 / 12)
    assert (freq - expected).abs().max() < 0.03


def test_plr_once_every_level_is_seen_every_draw_is_a_replay():
    run = make_run(64, levels=3)
    plugin = plr(run)
    plugin.seen[:] = True
    plugin.incentive_next_task(run, 5)
    assert plugin.replayed.all()
    metrics = plugin.incentive_collect_metrics()
    assert metrics["curriculum/plr/seen_fraction"] == 1.0
    assert metrics["curriculum/plr/replay_share"] == 1.0
    assert "curriculum/level_difficulty" in metrics


@pytest.mark.parametrize("strategy", ["value_l1", "max_mc"])
def test_plr_state_round_trip_continues_identically(strategy):
    def data():
        return rollout(
            torch.randn(5, 8, 2).tolist(), torch.rand(5, 8) < 0.3, torch.rand(5, 8, 2).tolist(),
            values=torch.randn(5, 8, 2).tolist(),
        )  # fmt: skip

    run = make_run(8, levels=6, seed=1)
    plugin = plr(run, min_seen_fraction=0.0, strategy=strategy)
    plugin.incentive_next_task(run, 1)
    plugin.incentive_update_curriculum(run, data())
    state = plugin.incentive_state_dict()
    generator_state = run.generator.get_state()
    torch.manual_seed(3)
    later = data()
    plugin.incentive_update_curriculum(run, later)
    first = plugin.incentive_next_task(run, 2)["level"]
    other = plr(make_run(8, levels=6), min_seen_fraction=0.0, strategy=strategy)
    other.incentive_load_state_dict(state)
    run.generator.set_state(generator_state)
    other.incentive_update_curriculum(run, later)
    assert torch.equal(other.incentive_next_task(run, 2)["level"], first)
    for key, value in plugin.incentive_state_dict().items():
        assert torch.equal(other.incentive_state_dict()[key], value), key
    if strategy == "max_mc":
        assert torch.isfinite(plugin.r_max).any() and plugin.carried.abs().sum() > 0


def test_plr_bookkeeping_over_10000_levels_is_cheap():
    run = make_run(256, levels=10_000)
    plugin = plr(run, min_seen_fraction=0.0)
    plugin.seen[::2] = True
    plugin.scores = torch.rand(10_000, dtype=torch.float64)
    data = rollout(torch.randn(128, 256, 2).tolist(), (torch.rand(128, 256) < 0.05).tolist())
    started = time.perf_counter()
    for iteration in range(5):
        plugin.incentive_next_task(run, iteration + 2)
        plugin.incentive_update_curriculum(run, data)
        plugin.incentive_collect_metrics()
    per_iteration = (time.perf_counter() - started) / 5
    assert per_iteration < 0.1, per_iteration  # an iteration of this size takes seconds


def test_plr_over_explicit_candidates_checks_their_keys():
    run = make_run(4)
    plugin = plr(run, candidates={"incentives.0.params.s": [0.0, 0.5, 1.0]})
    task = plugin.incentive_next_task(run, 1)
    assert set(task) == {"incentives.0.params.s"} and task["incentives.0.params.s"].dtype == torch.float64
    with pytest.raises(ValueError, match=r"curriculum\.params\.candidates.*'incentives\.0\.params\.q'"):
        plr(run, candidates={"incentives.0.params.q": [0.0]})
    no_levels = make_run(4)
    no_levels.env.train_levels = None
    with pytest.raises(ValueError, match="has no procedural levels"):
        plr(no_levels)


# --- learning progress -------------------------------------------------------


def test_progress_distribution_by_hand():
    fast = torch.tensor([0.5, 0.2, 0.1, 0.0], dtype=torch.float64)
    slow = torch.tensor([0.2, 0.2, 0.3, 0.0], dtype=torch.float64)
    p = progress_distribution(fast, slow, floor=0.2)
    # LP = [0.3, 0, 0.2, 0] -> 0.8 * [0.6, 0, 0.4, 0] + 0.2 / 4
    torch.testing.assert_close(p, torch.tensor([0.53, 0.05, 0.37, 0.05], dtype=torch.float64))
    assert progress_distribution(slow, slow, floor=0.2).tolist() == [0.25] * 4


def test_learning_progress_updates_success_averages_of_the_tasks_played():
    run = make_run(2, levels=3)
    plugin = LearningProgress(LearningProgress.Params(fast=0.5, slow=0.25, success_return=1.0))
    plugin.incentive_setup(run)
    plugin.running = torch.tensor([0, 1])
    plugin.pending = torch.tensor([2, 2])
    plugin.carried = torch.tensor([0.5, 0.0], dtype=torch.float64)
    # instance 0: episode ends at t=1 with 0.5 + 1 + 0 = 1.5 (success, level 0), then 0 + 0 at t=3
    # (failure, level 2); instance 1: ends at t=2 with 0 (failure, level 1), then 2 unfinished.
    reward = [
        [[1.0, 0.0], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, 0.0]],
        [[0.0, 0.0], [1.0, 1.0]],
    ]
    done = [[0, 0], [1, 0], [0, 1], [1, 0]]
    plugin.incentive_update_curriculum(run, rollout(torch.zeros(4, 2, 2).tolist(), done, reward=reward))
    assert plugin.fast_rate.tolist() == [0.5, 0.0, 0.0]
    assert plugin.slow_rate.tolist() == [0.25, 0.0, 0.0]
    assert plugin.episodes.tolist() == [1, 1, 1]
    assert plugin.carried.tolist() == [0.0, 2.0]
    assert plugin.running.tolist() == [2, 2]
    metrics = plugin.incentive_collect_metrics()
    assert metrics["curriculum/lp/max"] == 0.25 and metrics["curriculum/lp/tasks_tried"] == 1.0
    # the next draws follow 0.9 * [1, 0, 0] + 0.1 / 3
    run.num_envs = 30_000
    plugin.incentive_next_task(run, 2)
    freq = torch.bincount(plugin.pending, minlength=3).double() / 30_000
    assert (freq - torch.tensor([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3], dtype=torch.float64)).abs().max() < 0.01


def test_learning_progress_fast_must_exceed_slow():
    with pytest.raises(ValueError, match="fast"):
        LearningProgress.Params(fast=0.01, slow=0.1)


# --- schedule ----------------------------------------------------------------


def test_interpolation_by_hand():
    assert interpolate(1.0, 0.0, 0.25, "linear") == 0.75
    assert interpolate(1.0, 0.0, 0.25, "cosine") == pytest.approx(1 - (1 - math.cos(math.pi / 4)) / 2)
    assert interpolate(1.0, 0.0, 0.25, "step") == 0.0
    assert interpolate(1.0, 0.0, 3.0, "linear") == 0.0


def schedule(run, stages):
    plugin = Schedule(Schedule.Params(stages=stages))
    plugin.incentive_setup(run)
    return plugin


def test_schedule_advances_after_k_iterations_at_the_threshold_and_interpolates():
    run = make_run(3)
    plugin = schedule(
        run,
        [
            {
                "set": {"incentives.0.params.s": 1.0},
                "advance": {"metric": "success", "threshold": 0.5, "for_iterations": 2},
            },
            {"set": {"incentives.0.params.s": 0.0}, "interpolation": "linear", "over_steps": 100},
        ],
    )
    assert plugin.incentive_next_task(run)["incentives.0.params.s"].tolist() == [1.0] * 3
    for value in (0.6, 0.4, 0.7):  # a miss resets the streak
        plugin.incentive_iteration_end(run, {"designer/success": value})
        assert plugin.stage == 0
    plugin.incentive_iteration_end(run, {})  # no episodes, no designer metrics: the streak holds
    run.global_step = 40
    plugin.incentive_iteration_end(run, {"designer/success": 0.5})
    assert plugin.stage == 1 and plugin.stage_start == 40
    run.global_step = 65
    assert plugin.incentive_next_task(run)["incentives.0.params.s"].tolist() == [0.75] * 3
    assert plugin.incentive_collect_metrics() == {
        "curriculum/stage": 1.0,
        "curriculum/param/incentives.0.params.s": 0.75,
    }


def test_schedule_advances_after_n_steps_and_regresses_on_failure():
    run = make_run(2)
    stages = [
        {"set": {"size": 5}, "advance": {"steps": 100}},
        {"set": {"size": 9}, "regress": {"metric": "collective_return", "below": 1.0, "for_iterations": 2}},
    ]
    plugin = schedule(run, stages)
    run.global_step = 99
    plugin.incentive_iteration_end(run, {})
    assert plugin.stage == 0
    run.global_step = 100
    plugin.incentive_iteration_end(run, {})
    assert plugin.stage == 1
    plugin.incentive_next_task(run)
    assert run.env.set == {} and plugin.values == {"size": 9.0}
    plugin.incentive_iteration_end(run, {"designer/collective_return": 0.5})
    assert plugin.stage == 1
    run.global_step = 150
    plugin.incentive_iteration_end(run, {"designer/collective_return": 0.0})
    assert plugin.stage == 0 and plugin.stage_start == 150
    state = plugin.incentive_state_dict()
    other = schedule(run, stages)
    other.incentive_load_state_dict(state)
    assert (other.stage, other.stage_start) == (0, 150)


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (
            {"set": {"s": 1.0}},
            r"field 'curriculum\.params\.stages\.0\.set\.s'.*cannot change 's' per instance",
        ),
        (
            {"set": {"incentives.0.params.x": 1.0}},
            r"stages\.0\.set\.incentives\.0\.params\.x'.*no parameter 'x'",
        ),
        ({"set": {"incentives.0.params.aggregate": 1.0}}, "is not a number"),
        (
            {"set": {"size": 5}, "regress": {"metric": "designer/colective_return", "below": 1}},
            r"stages\.0\.regress\.metric'.*unknown designer metric 'designer/colective_return'",
        ),
    ],
)
def test_schedule_bad_input_names_the_field(stage, message):
    with pytest.raises(ValueError, match=message):
        schedule(make_run(2), [stage])


def test_schedule_stages_before_the_last_need_a_condition():
    with pytest.raises(ValueError, match="stage 0 needs an 'advance' condition"):
        Schedule.Params(stages=[{"set": {"size": 5}}, {"set": {"size": 6}}])
    with pytest.raises(ValueError, match="needs over_steps"):
        Schedule.Params(stages=[{"set": {"size": 5}, "interpolation": "linear"}])


# --- checkpoints written before per-instance tasks ------------------------------


def _cut_run_without_tasks(tmp_path, data, run_id):
    """Train 2 of 4 iterations, drop the checkpoint's 'tasks' entry, and give the run its 4 back."""
    from incentive.checkpoint import load_checkpoint, save_checkpoint
    from incentive.recipe import validate_recipe
    from incentive.runner import CHECKPOINT, RECIPE_FILE, start_run

    short = {**data, "train": {**data["train"], "total_steps": 8 * 16 * 2}}
    run_dir, _ = start_run(validate_recipe(short, source="test"), run_id=run_id)
    state = load_checkpoint(run_dir / CHECKPOINT)
    del state["tasks"]
    save_checkpoint(run_dir / CHECKPOINT, state)
    recipe_file = run_dir / RECIPE_FILE
    text = recipe_file.read_text().replace(f"total_steps: {8 * 16 * 2}", f"total_steps: {8 * 16 * 4}")
    recipe_file.write_text(text)
    return run_dir


def test_a_checkpoint_without_tasks_resumes_as_a_run_that_never_set_one(tmp_path):
    import json

    from conftest import tiny_recipe_data

    from incentive.recipe import validate_recipe
    from incentive.runner import resume_run, start_run

    data = tiny_recipe_data(tmp_path / "runs", train__total_steps=8 * 16 * 4)
    whole, _ = start_run(validate_recipe(data, source="test"), run_id="whole")
    cut = _cut_run_without_tasks(tmp_path, data, "cut")
    resume_run(cut)
    read = lambda d: [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert read(cut) == read(whole)


def test_a_checkpoint_without_tasks_cannot_resume_a_curriculum(tmp_path):
    from conftest import tiny_recipe_data

    from incentive.errors import IncentiveError
    from incentive.runner import resume_run

    schedule = {"plugin": "schedule", "params": {"stages": [{"set": {"incentives.0.params.s": 1.0}}]}}
    data = tiny_recipe_data(tmp_path / "runs", train__total_steps=8 * 16 * 4, curriculum=schedule)
    cut = _cut_run_without_tasks(tmp_path, data, "cut")
    with pytest.raises(IncentiveError, match=r"no 'tasks' entry.*'schedule'.*start the run afresh"):
        resume_run(cut)


def test_plr_policy_entropy_through_the_loop_reads_the_learner_entropies(tmp_path):
    import json

    from conftest import tiny_recipe_data

    from incentive.recipe import validate_recipe
    from incentive.runner import start_run

    data = tiny_recipe_data(
        tmp_path / "runs",
        env={"id": "navigation", "num_envs": 8, "params": {"max_steps": 10, "levels": {"train": "0-9"}}},
        incentives=[],
        curriculum={"plugin": "prioritized_level_replay", "params": {"strategy": "policy_entropy"}},
    )
    run_dir, _ = start_run(validate_recipe(data, source="test"), run_id="entropy")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # a fresh policy over 5 actions is close to uniform: entropies just below ln 5
    assert 0.9 * math.log(5) < lines[0]["curriculum/plr/score_p50"] <= math.log(5)


class LevelRecorder:
    """Records the level every instance played at every step, and checks PLR's view of it."""

    def __init__(self, plr_plugin: PrioritizedLevelReplay) -> None:
        self.plr = plr_plugin
        self.after: list[torch.Tensor] = []  # env.level after each step of the rollout
        self.before = None  # env.level after the last step of the previous rollout
        self.checked = 0

    @hookimpl
    def incentive_shape_reward(self, run, step):
        if not self.after:  # the rollout's first step: what PLR holds for this rollout
            self.running, self.pending = self.plr.running.clone(), self.plr.pending.clone()
            self.scores = self.plr.scores.clone()
        self.after.append(run.env.level.clone())

    @hookimpl
    def incentive_update_curriculum(self, run, rollout):
        """PLR's step levels must be the levels the env played (whichever of the two runs first)."""
        after = torch.stack(self.after)  # [T, E]
        done = rollout.done.bool()
        # a step ran on the level its instance showed after the step, unless the step ended the
        # episode (the env already restarted): then on the level it showed after the step before
        previous = torch.cat([after[:1] if self.before is None else self.before[None], after[:-1]])
        played = torch.where(done, previous, after)
        known = ~done[0] if self.before is None else torch.ones_like(done[0])
        index = step_values(self.running, self.pending, done)
        claimed = self.plr.candidates.table["level"][index]
        assert torch.equal(claimed[1:], played[1:]) and torch.equal(claimed[0][known], played[0][known])
        # and its scores are the mean |advantage| over exactly those steps
        per_step = step_scores(rollout, "value_l1")
        score, played_any = level_scores(per_step, index, num_levels=len(self.scores))
        self.expected = torch.where(played_any, score, self.scores)
        self.before = after[-1]
        self.after = []
        self.checked += 1


@pytest.mark.filterwarnings("ignore:.*shorter than one episode")  # on purpose: episodes span rollouts
def test_plr_in_the_loop_scores_the_levels_the_env_actually_played(tmp_path):
    from conftest import tiny_recipe_data

    from incentive.recipe import validate_recipe
    from incentive.runner import start_run

    # episodes of up to 20 steps in 16-step rollouts: some instances restart, some do not
    data = tiny_recipe_data(
        tmp_path / "runs",
        env={"id": "navigation", "num_envs": 8, "params": {"max_steps": 20, "levels": {"train": "0-5"}}},
        incentives=[],
        train={"total_steps": 8 * 16 * 6, "checkpoint_every": 6},
    )
    plugin = PrioritizedLevelReplay(PrioritizedLevelReplay.Params(min_seen_fraction=0.0))
    recorder = LevelRecorder(plugin)
    start_run(
        validate_recipe(data, source="test"), run_id="levels",
        extra_plugins=[("curriculum", plugin), ("recorder", recorder)],
    )  # fmt: skip
    assert recorder.checked == 6
    torch.testing.assert_close(plugin.scores, recorder.expected)


def test_a_schedule_over_max_steps_shortens_the_episodes_and_logs_the_length(tmp_path):
    import json

    from conftest import tiny_recipe_data

    from incentive.recipe import validate_recipe
    from incentive.runner import start_run

    # 4-step episodes for 3 iterations of 8 x 16 steps, then 2-step ones; the param's 16 is never used
    stages = [
        {"set": {"size": 7, "max_steps": 4}, "advance": {"steps": 8 * 16 * 3}},
        {"set": {"size": 7, "max_steps": 2}},
    ]
    data = tiny_recipe_data(
        tmp_path / "runs",
        env={"id": "navigation", "num_envs": 8, "params": {"max_size": 7, "max_steps": 16}},
        incentives=[],
        curriculum={"plugin": "schedule", "params": {"stages": stages}},
        train={"total_steps": 8 * 16 * 6, "checkpoint_every": 6},
        objective={"metric": "success"},
    )
    run_dir, _ = start_run(validate_recipe(data, source="test"), run_id="horizon")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["curriculum/param/max_steps"] for line in lines] == [4.0] * 3 + [2.0] * 3
    lengths = [line["designer/episode_length"] for line in lines]
    # iteration 3 hands out 2 steps, adopted at each instance's next reset: from iteration 4 on,
    # every finished episode began under the new length (iteration 3 still ends 4-step ones)
    assert all(2.0 < length <= 4.0 for length in lengths[:3]), lengths
    assert 2.0 < lengths[3] < 4.0 and all(length <= 2.0 for length in lengths[4:]), lengths


def test_a_schedule_over_spawn_doors_starts_near_the_goal_then_farther_and_logs_it(tmp_path):
    import json

    from conftest import tiny_recipe_data

    from incentive.recipe import validate_recipe
    from incentive.runner import start_run

    # the goal's room for 3 iterations of 8 x 16 steps, then the leftmost room (2 doors in 7 x 7)
    stages = [
        {"set": {"size": 7, "spawn_doors": 0}, "advance": {"steps": 8 * 16 * 3}},
        {"set": {"size": 7, "spawn_doors": 2}},
    ]
    data = tiny_recipe_data(
        tmp_path / "runs",
        env={"id": "navigation", "num_envs": 8, "params": {"min_size": 4, "max_size": 7, "max_steps": 16}},
        incentives=[],
        curriculum={"plugin": "schedule", "params": {"stages": stages}},
        train={"total_steps": 8 * 16 * 6, "checkpoint_every": 6},
        objective={"metric": "success"},
    )
    run_dir, _ = start_run(validate_recipe(data, source="test"), run_id="reverse")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["curriculum/param/spawn_doors"] for line in lines] == [0.0] * 3 + [2.0] * 3
