"""Compare two sets of trials, and prune branches that are clearly worse than the best.

Decision rule of :func:`compare` (A is the baseline, B the candidate):

1. Fewer than ``min_trials`` on either side -> ``'inconclusive'``.
2. Two-sided Fisher exact test p < ``alpha``: ``'keep'`` if B's success rate is higher,
   ``'revert'`` if lower.
3. Not significant, but the intervals separate the point estimates: ``'keep'`` when B's rate
   is higher and B's Wilson lower bound is at least A's rate (A's estimate is implausible
   under B's interval); symmetrically ``'revert'`` when A's lower bound is at least B's rate.
   This is a hill climber's rule: it accepts a likely improvement before it is proven, and
   the held-out evaluation trials keep it honest.
4. Otherwise ``'inconclusive'`` (run more trials).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from enpire_common.metrics import fisher_exact, wilson_interval
from enpire_evolution.core.config import CompareConfig, PruneConfig
from enpire_evolution.core.metrics import mean_score


class TrialLike(Protocol):
    """Anything with a success flag and a score (a store ``Trial``)."""

    @property
    def success(self) -> bool: ...

    @property
    def score(self) -> float: ...


def summarise(trials: Sequence[TrialLike], z: float = 1.96) -> dict[str, Any]:
    """``n``, ``successes``, ``success_rate``, ``ci_low``, ``ci_high``, ``mean_score``."""
    n = len(trials)
    successes = sum(bool(t.success) for t in trials)
    low, high = wilson_interval(successes, n, z)
    return {'n': n, 'successes': successes, 'success_rate': successes / n if n else 0.0,
            'ci_low': low, 'ci_high': high, 'mean_score': mean_score(t.score for t in trials)}


def compare(a_trials: Sequence[TrialLike], b_trials: Sequence[TrialLike],
            config: CompareConfig | None = None) -> dict[str, Any]:
    """Compare baseline A with candidate B (see the module docstring for the rule).

    Returns:
        ``{'a': summary, 'b': summary, 'test': 'fisher_exact_two_sided', 'p_value',
        'significant', 'rate_delta', 'mean_score_delta', 'decision', 'reason'}`` where the
        deltas are B minus A (``mean_score_delta`` is None when a side has no trials).
    """
    cfg = config or CompareConfig()
    a, b = summarise(a_trials, cfg.z), summarise(b_trials, cfg.z)
    p_value = fisher_exact(a['successes'], a['n'], b['successes'], b['n'])
    significant = p_value < cfg.alpha
    rate_delta = b['success_rate'] - a['success_rate']
    score_delta = (None if a['mean_score'] is None or b['mean_score'] is None
                   else b['mean_score'] - a['mean_score'])
    if min(a['n'], b['n']) < cfg.min_trials:
        decision = 'inconclusive'
        reason = (f"too few trials (A {a['n']}, B {b['n']}; need {cfg.min_trials} each)")
    elif significant and rate_delta != 0:
        decision = 'keep' if rate_delta > 0 else 'revert'
        reason = f'Fisher exact p={p_value:.4g} < alpha={cfg.alpha}'
    elif rate_delta > 0 and b['ci_low'] >= a['success_rate']:
        decision = 'keep'
        reason = (f"not significant (p={p_value:.4g}) but B's Wilson lower bound "
                  f"{b['ci_low']:.3f} >= A's rate {a['success_rate']:.3f}")
    elif rate_delta < 0 and a['ci_low'] >= b['success_rate']:
        decision = 'revert'
        reason = (f"not significant (p={p_value:.4g}) but A's Wilson lower bound "
                  f"{a['ci_low']:.3f} >= B's rate {b['success_rate']:.3f}")
    else:
        decision = 'inconclusive'
        reason = f'no clear difference (p={p_value:.4g}); run more trials'
    return {'a': a, 'b': b, 'test': 'fisher_exact_two_sided', 'p_value': p_value,
            'significant': significant, 'alpha': cfg.alpha, 'rate_delta': rate_delta,
            'mean_score_delta': score_delta, 'decision': decision, 'reason': reason}


@dataclass(frozen=True)
class PruneDecision:
    """Whether one branch is pruned, with its interval and why."""

    branch: str
    n: int
    successes: int
    ci_low: float
    ci_high: float
    eligible: bool
    prune: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(branch_trials: Mapping[str, Sequence[TrialLike]],
          config: PruneConfig | None = None) -> list[PruneDecision]:
    """Pick the branches to prune: Wilson upper bound below the best branch's lower bound.

    Only branches with at least ``min_trials`` trials are eligible, both to be pruned and to
    be the best (the one with the highest Wilson lower bound).

    Returns:
        One decision per branch, in the order given.
    """
    cfg = config or PruneConfig()
    stats = {}
    for name, trials in branch_trials.items():
        st = summarise(trials, cfg.z)
        stats[name] = (st['n'], st['successes'], st['ci_low'], st['ci_high'])
    eligible = {name: st for name, st in stats.items() if st[0] >= cfg.min_trials}
    best = max(eligible, key=lambda k: (eligible[k][2], eligible[k][1] / eligible[k][0]),
               default=None)
    out = []
    for name, (n, s, low, high) in stats.items():
        ok = name in eligible
        if not ok:
            do, why = False, f'only {n} trials (need {cfg.min_trials})'
        elif name == best:
            do, why = False, 'best branch'
        else:
            best_low = eligible[best][2]  # type: ignore[index]
            do = high < best_low
            why = (f'Wilson upper bound {high:.3f} < best branch {best!r} lower bound '
                   f'{best_low:.3f}' if do else
                   f'interval overlaps best branch {best!r} (upper {high:.3f} >= '
                   f'{best_low:.3f})')
        out.append(PruneDecision(name, n, s, low, high, ok, do, why))
    return out


def prune_experiment(store: Any, experiment: str, config: PruneConfig | None = None, *,
                     apply: bool = True, now_s: float | None = None) -> list[PruneDecision]:
    """Run :func:`prune` over an experiment's active branches (all their trials).

    With ``apply`` the pruned branches are marked ``pruned`` with the reason, and a
    ``prune`` event is recorded at ``now_s`` (when given).
    """
    store.experiment(experiment)
    active = store.branches(experiment, status='active')
    trials = {b.name: store.trials_for(experiment, branch=b.name) for b in active}
    decisions = prune(trials, config)
    if apply:
        for d in decisions:
            if d.prune:
                store.set_branch_status(experiment, d.branch, 'pruned', d.reason)
                if now_s is not None:
                    store.add_event(experiment, 'prune', now_s, d.to_dict())
    return decisions
