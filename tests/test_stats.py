"""IQM, stratified bootstrap CIs and probability of improvement against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from incentive.stats import (
    bootstrap_band,
    interquartile_mean,
    probability_of_improvement,
    probability_of_improvement_ci,
    stratified_bootstrap_ci,
)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 2.5),  # n = 4: cut 1 each end, mean(2, 3)
        ([10.0, 1.0, 3.0, 2.0, 100.0], 5.0),  # n = 5: floor(1.25) = 1 cut, mean(2, 3, 10)
        ([1.0, 2.0, 9.0], 4.0),  # n = 3: floor(0.75) = 0 cut, plain mean
        ([5.0], 5.0),
        ([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0], 4.5),  # n = 8: cut 2, mean(3, 4, 5, 6)
        ([1.0, 2.0, 3.0, 4.0, 5.0, 60.0], 3.5),  # n = 6: floor(1.5) = 1 cut, mean(2, 3, 4, 5)
        ([[1.0, 100.0], [2.0, 3.0]], 2.5),  # tasks are pooled: [1, 2, 3, 100] -> mean(2, 3)
    ],
)
def test_interquartile_mean_by_hand(scores, expected):
    assert interquartile_mean(scores) == pytest.approx(expected)


def test_iqm_ignores_outliers_and_equals_mean_for_symmetric_middle():
    assert interquartile_mean([0.0, 1.0, 1.0, 1e9]) == 1.0


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        interquartile_mean([])
    with pytest.raises(ValueError, match="NaN"):
        interquartile_mean([1.0, float("nan")])
    with pytest.raises(ValueError, match="same number of tasks"):
        probability_of_improvement([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="confidence"):
        stratified_bootstrap_ci([1.0, 2.0], confidence=1.5)


def test_bootstrap_of_constant_scores_is_a_point():
    assert stratified_bootstrap_ci([3.0, 3.0, 3.0, 3.0]) == (3.0, 3.0)
    assert stratified_bootstrap_ci([7.0]) == (7.0, 7.0)


def test_bootstrap_of_two_runs_by_hand():
    # runs {0, 1}, n = 2 (no trimming): a replicate's IQM is 0 (p 1/4), 0.5 (p 1/2) or 1 (p 1/4),
    # so the 95% interval spans [0, 1] and the central 40% interval (30th-70th percentile) is 0.5
    assert stratified_bootstrap_ci([0.0, 1.0], reps=4000) == (0.0, 1.0)
    assert stratified_bootstrap_ci([0.0, 1.0], confidence=0.4, reps=4000) == (0.5, 0.5)


def test_bootstrap_is_seeded():
    scores = np.arange(10.0) ** 2
    assert stratified_bootstrap_ci(scores, seed=1) == stratified_bootstrap_ci(scores, seed=1)
    assert stratified_bootstrap_ci(scores, seed=1) != stratified_bootstrap_ci(scores, seed=2)
    low, high = stratified_bootstrap_ci(scores)
    assert low < interquartile_mean(scores) < high


def test_bootstrap_resamples_runs_within_each_task_independently():
    seen = []

    def capture(resampled):
        seen.append(resampled)
        return np.zeros(len(resampled))

    scores = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    stratified_bootstrap_ci(scores, capture, reps=3000)
    draws = seen[0]
    assert draws.shape == (3000, 3, 2)
    # strata never mix: task 0 only draws task 0's runs, task 1 only task 1's
    assert set(np.unique(draws[:, :, 0])) == {0.0, 1.0, 2.0}
    assert set(np.unique(draws[:, :, 1])) == {10.0, 11.0, 12.0}
    # independent per task: the same run is drawn for both tasks about 1/3 of the time, not always
    same_run = (draws[:, :, 1] - draws[:, :, 0] == 10.0).mean()
    assert 0.3 < same_run < 0.37


def test_probability_of_improvement_by_hand():
    # pairs (x, y): (1,2) 0, (1,2) 0, (2,2) 1/2, (2,2) 1/2, (3,2) 1, (3,2) 1 -> 3/6
    assert probability_of_improvement([1.0, 2.0, 3.0], [2.0, 2.0]) == 0.5
    assert probability_of_improvement([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert probability_of_improvement([1.0, 2.0], [3.0, 4.0]) == 0.0
    # (1,0) 1, (1,1) 1/2, (1,5) 0, (4,0) 1, (4,1) 1, (4,5) 0 -> 3.5 / 6
    assert probability_of_improvement([1.0, 4.0], [0.0, 1.0, 5.0]) == pytest.approx(3.5 / 6)
    # two tasks are averaged: task 0 gives 1, task 1 gives 0
    assert probability_of_improvement([[1.0, 0.0], [2.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]) == 0.5


def test_probability_of_improvement_is_complementary():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, size=7).astype(float), rng.integers(0, 4, size=5).astype(float)
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(1.0)
    assert probability_of_improvement(x, x) == 0.5


def test_probability_of_improvement_ci():
    assert probability_of_improvement_ci([5.0, 6.0, 7.0], [1.0, 2.0]) == (1.0, 1.0)
    assert probability_of_improvement_ci([2.0, 2.0], [2.0, 2.0, 2.0]) == (0.5, 0.5)
    low, high = probability_of_improvement_ci([1.0, 3.0, 5.0, 7.0], [2.0, 4.0, 6.0, 8.0], seed=4)
    assert 0.0 <= low < probability_of_improvement([1.0, 3.0, 5.0, 7.0], [2.0, 4.0, 6.0, 8.0]) < high <= 1.0
    assert (low, high) == probability_of_improvement_ci([1.0, 3.0, 5.0, 7.0], [2.0, 4.0, 6.0, 8.0], seed=4)


def test_bootstrap_band_by_hand():
    # two runs, curves [0, 2] and [1, 2]: at x0 replicate means are 0, 0.5, 1 -> band [0, 1];
    # at x1 both runs are 2 -> band [2, 2]
    low, high = bootstrap_band([[0.0, 2.0], [1.0, 2.0]], reps=4000)
    assert low.tolist() == [0.0, 2.0] and high.tolist() == [1.0, 2.0]
    # runs are resampled whole: curve points of one replicate come from the same runs
    low, high = bootstrap_band([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], reps=500, seed=3)
    assert np.array_equal(low, [low[0], low[0]]) and np.array_equal(high, [high[0], high[0]])
    assert 0.0 <= low[0] < 1.0 < high[0] <= 2.0
