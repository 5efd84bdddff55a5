"""Wilson interval, pass@k and the Fisher exact test (enpire_common.metrics)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enpire_common import metrics as m


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
