from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enpire_evolution.core import metrics as m


@pytest.mark.parametrize(('successes', 'n', 'low', 'high'), [
    # Reference values: Newcombe (1998) table / statsmodels proportion_confint(method='wilson').
    (8, 10, 0.4902, 0.9433),
    (0, 10, 0.0, 0.2775),
    (1, 10, 0.0179, 0.4042),
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_matches_the_reference_table(successes, n, low, high):
    got = m.wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=5e-4)


def test_wilson_interval_of_no_trials_is_uninformative():
    assert m.wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_rejects_more_successes_than_trials():
    with pytest.raises(ValueError, match='needs 0 <= successes <= n, got 3/2'):
        m.wilson_interval(3, 2)


@given(st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.floats(0.5, 3.5))
def test_wilson_interval_brackets_the_rate_inside_zero_one(sn, z):
    s, n = sn
    low, high = m.wilson_interval(s, n, z)
    p = s / n if n else low
    assert 0.0 <= low <= p <= high <= 1.0


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


def test_pass_at_k_counts_subtasks_solved_within_k_attempts():
    attempts = [[True], [False, True], [False, False, True], [False, False, False]]
    assert m.pass_at_k(attempts, 1) == 0.25
    assert m.pass_at_k(attempts, 2) == 0.5
    assert m.pass_at_k(attempts, 3) == 0.75
    assert m.pass_at_k([], 3) == 0.0
    with pytest.raises(ValueError, match='k >= 1'):
        m.pass_at_k(attempts, 0)


@pytest.mark.parametrize(('a', 'an', 'b', 'bn', 'p'), [
    (3, 4, 1, 4, 0.4857),        # Fisher's tea-tasting table
    (1, 10, 11, 14, 0.002759),   # Wikipedia's worked example (R: fisher.test)
    (5, 10, 5, 10, 1.0),
    (0, 20, 20, 20, 2 / 137846528820),
])
def test_fisher_exact_matches_known_p_values(a, an, b, bn, p):
    assert m.fisher_exact(a, an, b, bn) == pytest.approx(p, rel=1e-3)


@given(st.integers(0, 40), st.integers(0, 40), st.data())
def test_fisher_exact_is_a_probability_and_symmetric(an, bn, data):
    a = data.draw(st.integers(0, an))
    b = data.draw(st.integers(0, bn))
    p = m.fisher_exact(a, an, b, bn)
    assert 0.0 < p <= 1.0
    assert p == pytest.approx(m.fisher_exact(b, bn, a, an))
