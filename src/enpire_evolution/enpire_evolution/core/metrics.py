"""Experiment metrics (DESIGN section 7), implemented once; pure functions, no I/O, no clock.

Outcomes are sequences of booleans in episode order (``True`` = success). Times are floats in
seconds passed in by the caller. The metrics lower layers need too (Wilson interval, pass@k,
Fisher exact test) live in :mod:`enpire_common.metrics` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from enpire_common.metrics import fisher_exact, pass_at_k, wilson_interval

__all__ = [
    'MruSummary', 'current_streak', 'fisher_exact', 'longest_consecutive_successes',
    'mean_score', 'merge_intervals', 'mru', 'mru_by_cell', 'pass_at_k', 'rolling_success',
    'success_rate', 'time_to_success', 'wilson_interval',
]


def success_rate(outcomes: Iterable[bool]) -> float:
    """Fraction of successes; 0.0 for no episodes."""
    values = [bool(o) for o in outcomes]
    return sum(values) / len(values) if values else 0.0


def cumulative_success(outcomes: Iterable[bool]) -> list[float]:
    """Success rate of the episodes so far, one value per episode."""
    out: list[float] = []
    total = 0
    for i, ok in enumerate(outcomes, 1):
        total += bool(ok)
        out.append(total / i)
    return out


def rolling_success(outcomes: Sequence[bool], window: int = 50) -> list[float]:
    """Success rate over the last ``window`` episodes, one value per episode.

    Element ``i`` covers episodes ``max(0, i - window + 1) .. i`` (a shorter window at the
    start, so the series has one point per episode).
    """
    if window < 1:
        raise ValueError(f'rolling_success needs window >= 1, got {window}')
    out: list[float] = []
    total = 0
    for i, ok in enumerate(outcomes):
        total += bool(ok)
        if i >= window:
            total -= bool(outcomes[i - window])
        out.append(total / min(i + 1, window))
    return out


def longest_consecutive_successes(outcomes: Iterable[bool]) -> int:
    """Length of the longest run of consecutive successes."""
    best = run = 0
    for ok in outcomes:
        run = run + 1 if ok else 0
        best = max(best, run)
    return best


def current_streak(outcomes: Sequence[bool]) -> int:
    """Number of successes at the end of the sequence (0 if the last episode failed)."""
    n = 0
    for ok in reversed(outcomes):
        if not ok:
            break
        n += 1
    return n


def mean_score(scores: Iterable[float]) -> float | None:
    """Mean task score; ``None`` for no episodes."""
    values = [float(s) for s in scores]
    return sum(values) / len(values) if values else None


def time_to_success(events: Iterable[tuple[float, bool]], *, consecutive: int | None = None,
                    window: int | None = None, min_successes: int | None = None,
                    start_s: float = 0.0) -> float | None:
    """When a success goal was first met.

    Exactly one goal: ``consecutive=k`` (k successes in a row) or ``window=w,
    min_successes=k`` (at least k successes among the last w episodes).

    Args:
        events: ``(time_s, success)`` per episode (its end time); sorted here by time.
        consecutive: goal of k consecutive successes.
        window: episodes of the rolling goal.
        min_successes: successes needed within ``window``.
        start_s: subtracted from the result (pass the experiment start for a duration).

    Returns:
        ``time_s - start_s`` of the episode that first met the goal, or ``None``.
    """
    rolling = window is not None or min_successes is not None
    if (consecutive is None) == (not rolling):
        raise ValueError('time_to_success needs exactly one goal: consecutive=k, or '
                         'window=w with min_successes=k')
    if consecutive is not None and consecutive < 1:
        raise ValueError(f'consecutive must be >= 1, got {consecutive}')
    if rolling and (window is None or min_successes is None or window < 1
                    or not 1 <= min_successes <= window):
        raise ValueError(f'rolling goal needs 1 <= min_successes <= window, got '
                         f'window={window}, min_successes={min_successes}')
    ordered = sorted(events, key=lambda e: e[0])
    outcomes = [bool(ok) for _, ok in ordered]
    run = total = 0
    for i, (t, ok) in enumerate(ordered):
        if consecutive is not None:
            run = run + 1 if ok else 0
            if run >= consecutive:
                return t - start_s
        else:
            total += bool(ok)
            if i >= window:  # type: ignore[operator]
                total -= outcomes[i - window]  # type: ignore[operator]
            if total >= min_successes:  # type: ignore[operator]
                return t - start_s
    return None


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of ``[start, end]`` intervals as sorted, disjoint intervals (empty ones dropped)."""
    merged: list[list[float]] = []
    for start, end in sorted((float(a), float(b)) for a, b in intervals if b > a):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def mru(intervals: Iterable[tuple[float, float]], span_start_s: float,
        span_end_s: float) -> float:
    """Machine utilisation: fraction of the wall span a cell spent executing trials.

    Overlapping busy intervals count once; the parts outside the span are ignored.
    Returns 0.0 for an empty span.
    """
    span = span_end_s - span_start_s
    if span <= 0:
        return 0.0
    busy = 0.0
    for start, end in merge_intervals(intervals):
        busy += max(0.0, min(end, span_end_s) - max(start, span_start_s))
    return min(1.0, busy / span)


@dataclass(frozen=True)
class MruSummary:
    """MRU per cell and the mean over cells."""

    per_cell: dict[str, float]
    mean: float


def mru_by_cell(intervals_by_cell: Mapping[str, Iterable[tuple[float, float]]],
                span_start_s: float, span_end_s: float) -> MruSummary:
    """:func:`mru` of each cell over one common wall span, and their mean (0.0 for none)."""
    per_cell = {cell: mru(iv, span_start_s, span_end_s)
                for cell, iv in sorted(intervals_by_cell.items())}
    mean = sum(per_cell.values()) / len(per_cell) if per_cell else 0.0
    return MruSummary(per_cell=per_cell, mean=mean)
