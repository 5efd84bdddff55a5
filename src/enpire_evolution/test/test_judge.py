"""The built-in agent's judge (successive halving, typed result) and evaluator (held-out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from enpire_common.clock import FakeClock
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.candidate_writer import Candidate
from enpire_evolution.core.config import CompareConfig
from enpire_evolution.core.evaluator import Evaluator, SeedsExhausted
from enpire_evolution.core.fakes import FAKE_START_S, ScriptedTrialsPort
from enpire_evolution.core.judge import Judge, TrialSummary
from enpire_evolution.core.ledger import EVALUATION_DONE, Ledger
from enpire_evolution.core.store import ExperimentStore, Revision
from enpire_evolution.core.trial_runner import Budget, TrialRunner

EXP = 'e'
BEST, CAND = 'b' * 64, 'c' * 64
EVAL = (100, 104)


class World:
    """A store with two revisions, a scripted port and the judge and evaluator on them."""

    def __init__(self, home: Path, script: dict[str, object], **cfg) -> None:
        self.config = BuiltinAgentConfig(**{
            'stages': (4, 8, 12), 'eval_min_trials': 8, 'eval_min_ci_low': 0.6,
            'goal_consecutive': 3, **cfg})
        self.store = ExperimentStore.open(home)
        self.store.create_experiment(EXP, 'push_t', FAKE_START_S)
        for rid in (BEST, CAND):
            self.store.add_revision(Revision(EXP, rid, 'agent-0'))
        self.clock = FakeClock()
        self.port = ScriptedTrialsPort(self.store, lambda r, s: _pick(script[r], s),
                                       clock=self.clock, evaluation_seeds=EVAL)
        self.ledger = Ledger(self.store, EXP, 'builtin', wall=lambda: FAKE_START_S)
        budget = Budget(self.clock, self.config.budget_s)
        budget.start()
        self.lines: list[str] = []
        runner = TrialRunner(self.ledger, self.port, lambda _r: None, budget,
                             self.lines.append, max_stalls=2)
        seeds = range(1, 13)
        self.judge = Judge(self.config, self.ledger, runner, seeds, CompareConfig(min_trials=4))
        self.evaluator = Evaluator(self.config, self.ledger, runner, EVAL, seeds,
                                   self.lines.append)

    def candidate(self, parent: str | None = BEST) -> Candidate:
        return Candidate(1, CAND, Path('.'), parent, 'trial 1: x', {})

    def best(self) -> Revision:
        return self.store.revision(EXP, BEST)

    def seeds_run(self, revision: str) -> list[int]:
        return [s for r, seeds, _l in self.port.calls if r == revision for s in seeds]


def _pick(rule, seed: int):
    return rule(seed) if callable(rule) else rule


@pytest.fixture
def world(tmp_path):
    made: list[World] = []

    def make(script, **cfg) -> World:
        made.append(World(tmp_path / f'home{len(made)}', script, **cfg))
        return made[-1]

    yield make
    for w in made:
        w.store.close()


def test_the_baseline_runs_the_second_stage_and_is_kept(world):
    w = world({CAND: lambda s: s % 2 == 0})
    j = w.judge.judge(w.candidate(parent=None), None)
    assert j.decision == 'baseline' and j.reason == 'baseline: the seed policy'
    assert w.seeds_run(CAND) == list(range(1, 9))
    assert j.comparison.best == TrialSummary.of([])
    assert (j.comparison.candidate.successes, j.comparison.candidate.n) == (4, 8)
    # The objective told to optuna: success rate + score_weight * mean score.
    assert j.comparison.value == pytest.approx(0.5 + 0.1 * (4 * 1.0 + 4 * 0.4) / 8)


def test_a_candidate_far_behind_after_the_first_stage_is_screened_out(world):
    w = world({BEST: True, CAND: False})
    j = w.judge.judge(w.candidate(), w.best())
    assert j.decision == 'revert'
    assert j.reason == 'screened out after 4 seeds: 0 vs best 4 (slack 1)'
    assert w.seeds_run(CAND) == w.seeds_run(BEST) == [1, 2, 3, 4]


def test_a_clearly_better_candidate_is_kept_at_the_second_stage(world):
    w = world({BEST: False, CAND: True})
    j = w.judge.judge(w.candidate(), w.best())
    assert j.decision == 'keep' and 'Fisher exact' in j.reason
    assert (j.comparison.candidate.n, j.comparison.best.successes) == (8, 0)
    assert j.comparison.significant and j.comparison.rate_delta == 1.0
    assert max(w.seeds_run(CAND)) == 8


def test_an_inconclusive_candidate_behind_the_best_is_reverted_without_more_trials(world):
    w = world({BEST: lambda s: s != 5, CAND: lambda s: s not in (5, 6)})
    j = w.judge.judge(w.candidate(), w.best())
    assert j.decision == 'revert' and j.comparison.decision == 'inconclusive'
    assert j.comparison.rate_delta < 0 and max(w.seeds_run(CAND)) == 8


def test_a_candidate_level_with_a_good_best_goes_on_to_the_last_stage(world):
    w = world({BEST: True, CAND: True})
    j = w.judge.judge(w.candidate(), w.best())
    assert j.decision == 'revert' and j.comparison.candidate.n == 12
    assert w.seeds_run(BEST) == w.seeds_run(CAND) == list(range(1, 13))


def test_the_gate_extends_a_promising_best_then_opens_one_attempt(world):
    w = world({BEST: True})
    w.port.run(experiment_id=EXP, revision_id=BEST, revision_dir=None, seeds=[1, 2, 3, 4])
    assert w.evaluator.gate(w.best())  # 4/4 -> 8/8, Wilson low 0.68 >= 0.6
    assert w.seeds_run(BEST) == list(range(1, 9))
    attempt = w.evaluator.start(w.best())
    assert (attempt.attempt, attempt.first_seed, attempt.goal) == (1, 100, 3)
    assert w.evaluator.unfinished() == attempt
    assert not w.evaluator.gate(w.best())  # max_eval_attempts=1


def test_an_evaluation_stops_at_the_first_failure_and_the_next_one_takes_fresh_seeds(world):
    w = world({BEST: lambda s: s != 101, CAND: True})
    first = w.evaluator.start(w.best())
    w.evaluator.run(first)
    done = w.ledger.events(EVALUATION_DONE)[-1].data
    assert (done['streak'], done['n'], done['last_seed'], done['goal_met']) == (1, 2, 101,
                                                                                False)
    assert w.evaluator.unfinished() is None and not w.evaluator.goal_met()
    second = w.evaluator.start(w.store.revision(EXP, CAND))
    assert second.first_seed == 102
    w.evaluator.run(second)
    assert w.evaluator.goal_met() and w.seeds_run(CAND) == [102, 103, 104]
    assert w.evaluator.time_to_success_s(FAKE_START_S) == pytest.approx(50.0)
    assert w.lines[-1].endswith('3 consecutive / goal 3 over 3 held-out seed(s): GOAL MET')


def test_an_evaluation_runs_one_seed_per_cell_at_a_time(world):
    w = world({BEST: True}, cells=2)
    w.evaluator.run(w.evaluator.start(w.best()))
    assert [seeds for _r, seeds, _l in w.port.calls] == [(100, 101), (102,)]


def test_running_out_of_evaluation_seeds_closes_the_attempt(world):
    w = world({BEST: True}, goal_consecutive=6)
    with pytest.raises(SeedsExhausted):
        w.evaluator.run(w.evaluator.start(w.best()))
    done = w.ledger.events(EVALUATION_DONE)[-1].data
    assert done['seeds_exhausted'] and done['streak'] == 5 and not done['goal_met']
