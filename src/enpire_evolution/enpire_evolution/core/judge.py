"""The built-in agent's judge: successive halving against the best, on common random numbers.

A candidate is tried on the common tuning seed block in stages (``config.stages``, e.g. 6
then 20 then 40 seeds); the best runs the same seeds (only those it lacks), and each stage
compares the two with :func:`core.compare.compare`:

* stage 1 screens: the candidate goes on only if its successes are at least the best's minus
  ``promising_slack``;
* later stages: 'keep' or 'revert' as compare decides; when it is inconclusive, the candidate
  goes on to the next stage while it is ahead (or level at a high rate), else it is reverted.

The baseline (the seed policy, no best yet) runs the second stage's seeds and is kept. The
result is a :class:`Judgement`, typed, with the objective told to optuna.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.candidate_writer import Candidate
from enpire_evolution.core.compare import TrialLike, compare, summarise
from enpire_evolution.core.config import CompareConfig
from enpire_evolution.core.ledger import Ledger
from enpire_evolution.core.store import Revision
from enpire_evolution.core.trial_runner import TrialRunner


@dataclass(frozen=True)
class TrialSummary:
    """Successes of a set of trials with the Wilson interval of the rate."""

    n: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_score: float | None

    @classmethod
    def of(cls, trials: Sequence[TrialLike]) -> TrialSummary:
        return cls.from_dict(summarise(trials))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialSummary:
        # No coercion: the values go into stored events as compare computed them.
        return cls(d['n'], d['successes'], d['success_rate'], d['ci_low'], d['ci_high'],
                   d['mean_score'])


@dataclass(frozen=True)
class Comparison:
    """The best and a candidate on the same seeds (:func:`core.compare.compare`, typed).

    Attributes:
        best: the best's trials on the seeds (no trials for the baseline).
        candidate: the candidate's trials on the seeds.
        p_value: two-sided Fisher exact test of the two success rates.
        significant: p_value < alpha.
        rate_delta: candidate's success rate minus the best's.
        decision: compare's rule: 'keep', 'revert' or 'inconclusive'.
        reason: why, in words.
        value: the objective told to optuna: the candidate's success rate +
            ``score_weight`` * its mean score.
    """

    best: TrialSummary
    candidate: TrialSummary
    p_value: float
    significant: bool
    rate_delta: float
    decision: str
    reason: str
    value: float


@dataclass(frozen=True)
class Judgement:
    """The judge's verdict on a candidate.

    Attributes:
        decision: 'baseline' (the seed policy, always kept), 'keep' or 'revert'.
        comparison: the last comparison made, its ``reason`` the reason of the decision.
    """

    decision: str
    comparison: Comparison

    @property
    def reason(self) -> str:
        return self.comparison.reason


class Judge:
    """Runs a candidate's stages and decides keep or revert.

    Args:
        config: the agent's config (stages, promising_slack, eval_min_ci_low, score_weight).
        ledger: the tuning trials of each revision.
        runner: gets the missing trials run.
        tuning_seeds: the common tuning seed block (as long as the last stage).
        compare_config: the keep/revert rule of each comparison.
    """

    def __init__(self, config: BuiltinAgentConfig, ledger: Ledger, runner: TrialRunner,
                 tuning_seeds: Sequence[int], compare_config: CompareConfig) -> None:
        self.config = config
        self.ledger = ledger
        self.runner = runner
        self.tuning_seeds = tuple(tuning_seeds)
        self.compare_config = compare_config

    def compare(self, best: str | None, candidate: str, seeds: Sequence[int]) -> Comparison:
        """Compare the stored tuning trials of ``best`` and ``candidate`` on ``seeds``."""
        chosen = set(seeds)
        c_trials = [t for s, t in sorted(self.ledger.tuning(candidate).items()) if s in chosen]
        b_trials = ([t for s, t in sorted(self.ledger.tuning(best).items()) if s in chosen]
                    if best else [])
        result = compare(b_trials, c_trials, self.compare_config)
        cand = TrialSummary.from_dict(result['b'])
        return Comparison(
            best=TrialSummary.from_dict(result['a']), candidate=cand,
            p_value=result['p_value'], significant=result['significant'],
            rate_delta=result['rate_delta'], decision=result['decision'],
            reason='baseline: the seed policy' if best is None else result['reason'],
            value=cand.success_rate + self.config.score_weight * (cand.mean_score or 0.0))

    def judge(self, cand: Candidate, best: Revision | None) -> Judgement:
        """Run the stages of ``cand`` against ``best`` (None: it is the baseline).

        Raises:
            OutOfBudget, Stopped, TrialsStalledError: from the trial runner; the candidate
                stays open and a resumed run judges it again from the trials stored.
        """
        cfg = self.config
        stages = cfg.stages
        if best is None:
            seeds = self.tuning_seeds[:stages[1]]
            self.runner.ensure(cand.revision, seeds)
            return Judgement('baseline', self.compare(None, cand.revision, seeds))
        for i, n in enumerate(stages):
            seeds = self.tuning_seeds[:n]
            self.runner.ensure(cand.revision, seeds)
            self.runner.ensure(best.id, seeds)
            result = self.compare(best.id, cand.revision, seeds)
            b, c = result.best, result.candidate
            if i == 0:
                if c.successes < b.successes - cfg.promising_slack:
                    return Judgement('revert', replace(result, reason=(
                        f'screened out after {n} seeds: {c.successes} vs best {b.successes} '
                        f'(slack {cfg.promising_slack})')))
                continue
            if result.decision in ('keep', 'revert'):
                return Judgement(result.decision, result)
            delta = result.rate_delta
            go_on = delta > 0 or (delta == 0 and c.success_rate >= cfg.eval_min_ci_low)
            if i + 1 < len(stages) and go_on:
                continue
            return Judgement('revert', result)
        raise AssertionError('unreachable: the last stage always decides')  # pragma: no cover
