"""Metrics that several packages need (DESIGN section 7): the Wilson interval of a success
rate, pass@k and the Fisher exact test of two rates. Pure functions, no I/O, no clock.

The rollout reports them with each run, evolution compares revisions with them; everything
else experiment-level lives in ``enpire_evolution.core.metrics``, which re-exports these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials; ``n == 0`` gives the uninformative ``(0.0, 1.0)``.
        z: normal quantile (1.96 for a 95 % interval).

    Returns:
        ``(low, high)`` with ``0 <= low <= successes / n <= high <= 1``.

    Raises:
        ValueError: on negative counts or ``successes > n``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f'wilson_interval needs 0 <= successes <= n, got {successes}/{n}')
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Clamp away rounding so that low <= p <= high holds exactly at p = 0 and p = 1.
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))

def pass_at_k(attempts: Sequence[Sequence[bool]], k: int) -> float:
    """Fraction of subtasks solved within their first ``k`` attempts.

    Args:
        attempts: per subtask, the outcomes of its in-context retries in order.
        k: attempts allowed, ``k >= 1``.

    Returns:
        Fraction in [0, 1]; 0.0 for no subtasks.
    """
    if k < 1:
        raise ValueError(f'pass_at_k needs k >= 1, got {k}')
    if not attempts:
        return 0.0
    return sum(any(a[:k]) for a in attempts) / len(attempts)

def fisher_exact(a_successes: int, a_n: int, b_successes: int, b_n: int) -> float:
    """Two-sided Fisher exact test p-value of two success proportions.

    Sums the probabilities of every 2x2 table with the same margins that is no more likely
    than the observed one (the usual 'minimum likelihood' two-sided rule, as in R and SciPy).
    Probabilities are compared as exact integers, so there is no tolerance fudge.
    """
    for s, n in ((a_successes, a_n), (b_successes, b_n)):
        if n < 0 or s < 0 or s > n:
            raise ValueError(f'fisher_exact needs 0 <= successes <= n, got {s}/{n}')
    total_successes = a_successes + b_successes
    lo, hi = max(0, total_successes - b_n), min(a_n, total_successes)
    # Hypergeometric weights C(a_n, x) * C(b_n, K - x); the common denominator cancels.
    weights = {x: math.comb(a_n, x) * math.comb(b_n, total_successes - x)
               for x in range(lo, hi + 1)}
    observed = weights[a_successes]
    denom = sum(weights.values())
    return min(1.0, sum(w for w in weights.values() if w <= observed) / denom)

