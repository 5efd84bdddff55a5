from __future__ import annotations

import pytest

from enpire_evolution.core import metrics as m


def test_success_rate_and_mean_score_of_nothing():
    assert m.success_rate([]) == 0.0
    assert m.mean_score([]) is None
    assert m.success_rate([True, False, True, True]) == 0.75
    assert m.mean_score([0.5, 1.0]) == 0.75


def test_rolling_success_uses_a_shorter_window_at_the_start():
    assert m.rolling_success([True, False, True, True, False], window=2) == [
        1.0, 0.5, 0.5, 1.0, 0.5]
    assert m.rolling_success([True, False, False], window=50) == pytest.approx(
        [1.0, 0.5, 1 / 3])


def test_longest_run_and_current_streak():
    outcomes = [True, True, False, True, True, True, False, True, True]
    assert m.longest_consecutive_successes(outcomes) == 3
    assert m.current_streak(outcomes) == 2
    assert m.current_streak([True, False]) == 0
    assert m.longest_consecutive_successes([]) == 0


def test_time_to_success_finds_the_first_consecutive_run():
    events = [(30.0, True), (10.0, True), (20.0, False), (40.0, True), (50.0, True)]
    # Sorted: 10 T, 20 F, 30 T, 40 T, 50 T -> three in a row first at t=50.
    assert m.time_to_success(events, consecutive=3, start_s=5.0) == 45.0
    assert m.time_to_success(events, consecutive=4) is None


def test_time_to_success_with_a_rolling_window_goal():
    events = [(1.0, True), (2.0, False), (3.0, False), (4.0, True), (5.0, True)]
    assert m.time_to_success(events, window=3, min_successes=2) == 5.0
    assert m.time_to_success(events, window=5, min_successes=2) == 4.0


def test_time_to_success_needs_exactly_one_goal():
    with pytest.raises(ValueError, match='exactly one goal'):
        m.time_to_success([], consecutive=2, window=3, min_successes=1)
    with pytest.raises(ValueError, match='1 <= min_successes <= window'):
        m.time_to_success([], window=3, min_successes=4)


def test_mru_merges_overlapping_intervals_and_clips_to_the_span():
    busy = [(0.0, 10.0), (5.0, 15.0), (30.0, 40.0), (90.0, 120.0)]
    # Busy within [0, 100]: 0-15, 30-40, 90-100 = 35 s.
    assert m.mru(busy, 0.0, 100.0) == pytest.approx(0.35)
    assert m.mru([], 0.0, 100.0) == 0.0
    assert m.mru(busy, 5.0, 5.0) == 0.0


def test_mru_by_cell_reports_each_cell_and_the_mean():
    summary = m.mru_by_cell({'cell_1': [(0.0, 50.0)], 'cell_0': [(0.0, 100.0)]}, 0.0, 100.0)
    assert summary.per_cell == {'cell_0': 1.0, 'cell_1': 0.5}
    assert summary.mean == 0.75


def test_the_shared_metrics_are_the_common_ones():
    from enpire_common import metrics as common

    assert (m.wilson_interval, m.pass_at_k, m.fisher_exact) == (
        common.wilson_interval, common.pass_at_k, common.fisher_exact)
