"""The built-in agent's proposer: a seeded optuna study over the seed policy's params."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.ledger import CANDIDATE_STARTED, Ledger
from enpire_evolution.core.proposer import Proposer
from enpire_evolution.core.store import ExperimentStore, Revision

SEED_PARAMS = {'gain': 0.3, 'step_px': 20.0, 'n': 40, 'flag': True, 'name': 'x'}


@pytest.fixture
def store(tmp_path):
    s = ExperimentStore.open(tmp_path)
    s.create_experiment('e', 'push_t', 0.0)
    yield s
    s.close()


def proposer(store, home, **cfg) -> Proposer:
    config = BuiltinAgentConfig(**{'n_startup_trials': 3, **cfg})
    p = Proposer(config, Ledger(store, 'e', 'builtin', wall=lambda: 0.0), home, 'study')
    p.open(SEED_PARAMS)
    return p


def objective(params) -> float:
    return -abs(params['gain'] - 0.5) - abs(params['step_px'] - 30.0) / 100


def propose_and_tell(p: Proposer, k: int) -> list[dict]:
    out = []
    for _ in range(k):
        number, sampled = p.next()
        params = p.params(sampled, best=Revision('e', 'r' * 64, 'b') if number else None)
        out.append(params)
        p.tell(number, objective(params))
    return out


def test_the_first_proposal_is_the_seed_policy_and_a_seeded_sampler_repeats_itself(
        tmp_path, store):
    first = propose_and_tell(proposer(store, tmp_path / 'one', sampler_seed=3), 8)
    again = propose_and_tell(proposer(store, tmp_path / 'two', sampler_seed=3), 8)
    other = propose_and_tell(proposer(store, tmp_path / 'three', sampler_seed=4), 8)
    assert first[0] == SEED_PARAMS
    assert first == again and first != other
    assert all(p['name'] == 'x' for p in first)  # held fixed: no scale to search around
    assert (tmp_path / 'one' / 'optuna' / 'study.journal').is_file()


def test_an_asked_but_unstarted_trial_is_handed_out_again_after_a_restart(tmp_path, store):
    p = proposer(store, tmp_path)
    p.tell(*_told(p))
    number, sampled = p.next()
    restarted = proposer(store, tmp_path)
    assert restarted.next() == (number, sampled)
    # Once its candidate started (it is on the cell), the next ask is a new trial.
    restarted.ledger.add(CANDIDATE_STARTED, {'optuna_trial': number})
    assert restarted.next()[0] == number + 1


def test_a_candidate_done_in_the_store_but_never_told_is_told_on_restart(tmp_path, store):
    p = proposer(store, tmp_path)
    p.tell(*_told(p))
    number, _ = p.next()
    p.ledger.candidate_done(number, 'r' * 64, 'revert', 0.25, {})  # killed before the tell
    restarted = proposer(store, tmp_path)
    assert restarted.next()[0] == number + 1
    trial = restarted.study.get_trials(deepcopy=False)[number]
    assert trial.state == TrialState.COMPLETE and trial.value == 0.25


def test_a_borrowed_candidate_has_no_optuna_trial_to_tell(tmp_path, store):
    p = proposer(store, tmp_path)
    before = [(t.number, t.state) for t in p.study.get_trials(deepcopy=False)]
    p.tell('borrow:abc', 1.0)
    assert [(t.number, t.state) for t in p.study.get_trials(deepcopy=False)] == before


def test_the_hypothesis_names_the_largest_changes_first_and_why(tmp_path, store):
    p = proposer(store, tmp_path)
    best = Revision('e', 'f' * 64, 'agent-0', params=dict(SEED_PARAMS))
    params = {**SEED_PARAMS, 'gain': 0.31, 'step_px': 40.0, 'n': 30, 'flag': False}
    text = p.hypothesis(1, best, params, (3, 8))
    # A switched bool counts as a full change, numbers by how far their ratio is from 1.
    assert text.startswith('trial 1: flag True -> False, step_px 20 -> 40, n 40 -> 30, gain '
                           '0.3 -> 0.31. Why: random start-up sample 1/2')
    assert text.endswith(f'against the best {"f" * 12} (3/8 tuning successes).')
    p.ledger.candidate_done(0, best.id, 'keep', 0.1, {})
    assert "optuna's TPE model of 1 finished candidate(s)" in p.hypothesis(5, best, params,
                                                                          (3, 8))


def _told(p: Proposer) -> tuple[int, float]:
    number, _ = p.next()
    return number, 0.5
