"""The built-in agent's ledger (its view of the store), budget and trial runner."""

from __future__ import annotations

import pytest

from enpire_common.clock import FakeClock
from enpire_evolution.core.fakes import ScriptedTrialsPort
from enpire_evolution.core.ledger import CANDIDATE_DONE, Ledger
from enpire_evolution.core.store import ExperimentStore, Revision
from enpire_evolution.core.trial_runner import (
    Budget,
    OutOfBudget,
    Stopped,
    TrialRunner,
    TrialsStalledError,
)

EXP = 'e'
A, B, C = 'a' * 64, 'b' * 64, 'c' * 64


@pytest.fixture
def store(tmp_path):
    s = ExperimentStore.open(tmp_path)
    s.create_experiment(EXP, 'push_t', 0.0)
    for rid, gain in ((A, 0.3), (B, 0.6), (C, 0.3)):
        s.add_revision(Revision(EXP, rid, 'agent-0', params={'gain': gain}))
    yield s
    s.close()


def runner_for(store, port, *, clock=None, budget_s=600.0, stopped=lambda: False,
               max_stalls=2, batch=None, lines=None):
    ledger = Ledger(store, EXP, 'builtin', wall=lambda: 0.0)
    budget = Budget(clock or port.clock or FakeClock(), budget_s, stopped)
    budget.start()
    kwargs = {'batch': batch} if batch else {}
    return TrialRunner(ledger, port, lambda _rid: None, budget,
                       (lines if lines is not None else []).append, max_stalls=max_stalls,
                       **kwargs)


def test_the_ledger_sees_its_own_events_and_its_last_kept_revision_is_the_best(store):
    me = Ledger(store, EXP, 'builtin-0', wall=lambda: 5.0)
    peer = Ledger(store, EXP, 'builtin-1', wall=lambda: 6.0)
    me.candidate_done(0, A, 'keep', 0.5, {'reason': 'baseline'})
    peer.candidate_done(0, B, 'keep', 0.9, {})
    me.candidate_done(1, C, 'revert', 0.1, {})
    assert me.best().id == A and peer.best().id == B
    (first, second) = me.events(CANDIDATE_DONE)
    assert first.ts == 5.0 and first.data == {'reason': 'baseline', 'optuna_trial': 0,
                                              'revision': A, 'decision': 'keep', 'value': 0.5,
                                              'agent': 'builtin-0'}
    assert second.data['revision'] == C
    # Events written before events named their agent belong to the default agent.
    store.add_event(EXP, CANDIDATE_DONE, 1.0, {'revision': C, 'decision': 'keep'})
    assert Ledger(store, EXP, 'builtin', wall=lambda: 0.0).best().id == C


def test_tuning_trials_skip_void_outcomes_and_keep_the_first_trial_of_a_seed(store):
    script = {1: True, 2: 'aborted', 3: False}
    port = ScriptedTrialsPort(store, lambda _r, s: script[s])
    port.run(experiment_id=EXP, revision_id=A, revision_dir=None, seeds=[1, 2, 3])
    script[1] = False
    port.run(experiment_id=EXP, revision_id=A, revision_dir=None, seeds=[1])
    ledger = Ledger(store, EXP, 'builtin', wall=lambda: 0.0)
    tuning = ledger.tuning(A)
    assert sorted(tuning) == [1, 3] and tuning[1].success
    assert ledger.tally(A) == (1, 2)
    assert ledger.seeds_done(A, is_eval=False) == {1, 2, 3}


def test_a_duplicate_is_a_tried_candidate_with_the_same_params(store):
    ledger = Ledger(store, EXP, 'builtin', wall=lambda: 0.0)
    ledger.candidate_done(0, A, 'keep', 0.5, {})
    ledger.candidate_done(1, B, 'rejected', 0.0, {})
    assert ledger.duplicate_of({'gain': 0.3})['revision'] == A
    assert ledger.duplicate_of({'gain': 0.6}) is None  # rejected: never tried


def test_ensure_runs_only_the_seeds_the_store_lacks_within_the_remaining_budget(store):
    clock = FakeClock()
    port = ScriptedTrialsPort(store, lambda _r, s: s % 2 == 0, clock=clock)
    lines: list[str] = []
    runner = runner_for(store, port, lines=lines)
    runner.ensure(A, [1, 2, 3])
    runner.ensure(A, [1, 2, 3, 4, 5])
    assert [(seeds, limit) for _r, seeds, limit in port.calls] == [((1, 2, 3), 600.0),
                                                                   ((4, 5), 570.0)]
    assert lines[-1].strip().startswith(f'{A[:12]} trial 2/2 seed 5 tune: timeout')


def test_ensure_runs_the_batches_the_hook_chooses_until_every_seed_is_stored(store):
    port = ScriptedTrialsPort(store, lambda _r, _s: True, clock=FakeClock())
    asked: list[list[int]] = []

    def one_at_a_time(_rev, _seeds, missing):
        asked.append(list(missing))
        return missing[:1]

    runner_for(store, port, batch=one_at_a_time).ensure(A, [7, 8, 9])
    assert asked == [[7, 8, 9], [8, 9], [9]]
    assert [seeds for _r, seeds, _l in port.calls] == [(7,), (8,), (9,)]


def test_a_port_that_records_nothing_stalls_the_runner(store):
    port = ScriptedTrialsPort(store, lambda _r, _s: True, clock=FakeClock(), record=False)
    with pytest.raises(TrialsStalledError, match=r'recorded none of 2 trial\(s\) of revision '
                                                 r'aaaaaaaaaaaa in 3 attempts'):
        runner_for(store, port, max_stalls=3).ensure(A, [1, 2])
    assert len(port.calls) == 3


def test_the_budget_and_a_stop_end_the_runner_before_the_next_batch(store):
    clock = FakeClock()
    port = ScriptedTrialsPort(store, lambda _r, _s: True, clock=clock, trial_s=30.0)
    runner = runner_for(store, port, budget_s=60.0)
    runner.ensure(A, [1, 2])
    with pytest.raises(OutOfBudget):
        runner.ensure(A, [1, 2, 3])
    assert runner.budget.elapsed_s() == 60.0 and runner.budget.remaining_s() == 0.0
    with pytest.raises(Stopped):
        runner_for(store, port, clock=FakeClock(), stopped=lambda: True).ensure(B, [1])
    assert [r for r, _s, _l in port.calls] == [A]
