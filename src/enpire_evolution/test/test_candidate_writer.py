"""The built-in agent's candidate writer (git, manifest, stores) and its prefetcher."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from enpire_agent_bridge.core.contract import load_policy_manifest
from enpire_agent_bridge.core.revisions import RevisionStore
from enpire_common.errors import PolicyRejectedError
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.branches import PolicyWorkspace
from enpire_evolution.core.candidate_writer import Candidate, CandidateWriter, Rejection
from enpire_evolution.core.ledger import CANDIDATE_STARTED, Ledger
from enpire_evolution.core.prefetch import Prefetcher
from enpire_evolution.core.proposer import Proposer
from enpire_evolution.core.store import ExperimentStore

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
SEED_YAML = yaml.safe_load((SEED / 'policy.yaml').read_text())
EXP = 'improve-push_t'


class Validator:
    """Loads the manifest; rejects push_gain above ``max_gain``; counts its runs."""

    def __init__(self, max_gain: float = 1e9) -> None:
        self.max_gain = max_gain
        self.runs = 0

    def __call__(self, policy_dir: Path) -> None:
        self.runs += 1
        gain = load_policy_manifest(policy_dir).params['push_gain']
        if gain > self.max_gain:
            raise PolicyRejectedError(f'push_gain={gain} makes it fault')


class Parts:
    def __init__(self, home: Path, validate: Validator, **cfg) -> None:
        self.config = BuiltinAgentConfig(**cfg)
        self.store = ExperimentStore.open(home)
        self.store.create_experiment(EXP, 'push_t', 0.0)
        self.store.add_branch(EXP, self.config.branch, created_at=0.0)
        self.ledger = Ledger(self.store, EXP, 'builtin', wall=lambda: 7.0)
        self.validate = validate
        self.writer = CandidateWriter(self.config, self.ledger,
                                      RevisionStore(home / 'revisions'),
                                      PolicyWorkspace(home / 'workspace'), validate, home)
        self.writer.open(SEED)
        self.lines: list[str] = []
        self.proposer = Proposer(self.config, self.ledger, home, EXP)
        self.proposer.open(SEED_YAML['params'])
        self.prefetcher = Prefetcher(self.config, self.proposer, self.ledger, self.writer,
                                     self.lines.append)

    def baseline(self):
        cand = self.writer.write(0, None, dict(SEED_YAML['params']), '')
        self.ledger.candidate_done(0, cand.revision, 'keep', 0.5, {})
        return self.ledger.revision(cand.revision)


@pytest.fixture
def parts(tmp_path):
    made: list[Parts] = []

    def make(validate: Validator | None = None, **cfg) -> Parts:
        made.append(Parts(tmp_path / f'home{len(made)}', validate or Validator(), **cfg))
        return made[-1]

    yield make
    for p in made:
        p.store.close()


def test_a_proposal_is_committed_validated_and_stored_before_its_trials(parts):
    p = parts()
    best = p.baseline()
    assert best.parent is None and best.hypothesis.startswith('Estimating the T pose')
    params = {**SEED_YAML['params'], 'push_gain': 0.4}
    cand = p.writer.write(1, best, params, 'trial 1: push_gain 0.3 -> 0.4')
    assert isinstance(cand, Candidate) and cand.parent == best.id and cand.number == 1
    manifest = load_policy_manifest(cand.path)
    assert (manifest.version, manifest.parent, manifest.hypothesis) == (
        SEED_YAML['version'] + 1, best.id, 'trial 1: push_gain 0.3 -> 0.4')
    assert dict(manifest.params) == params
    row = p.store.revision(EXP, cand.revision)
    assert (row.status, row.branch, row.parent, row.created_at) == ('running', 'agent-0',
                                                                    best.id, 7.0)
    assert row.commit == p.writer.workspace.head(p.config.git_branch)
    assert p.writer.workspace.log(p.config.git_branch)[0].subject == manifest.hypothesis
    started = p.ledger.events(CANDIDATE_STARTED)[-1].data
    assert (started['optuna_trial'], started['revision'], started['commit']) == (
        1, cand.revision, row.commit)
    assert p.writer.unfinished() == cand
    p.ledger.candidate_done(1, cand.revision, 'revert', 0.0, {})
    assert p.writer.unfinished() is None


def test_a_rejected_proposal_is_stored_rejected_and_the_worktree_goes_back_to_the_best(parts):
    p = parts(Validator(max_gain=0.35))
    best = p.baseline()
    out = p.writer.write(1, best, {**SEED_YAML['params'], 'push_gain': 0.4}, 'trial 1: gain')
    assert isinstance(out, Rejection) and 'push_gain=0.4' in out.reason
    assert p.store.revision(EXP, out.revision).status == 'rejected'
    assert yaml.safe_load((p.writer.worktree / 'policy.yaml').read_text()) == SEED_YAML
    subject = p.writer.workspace.log(p.config.git_branch)[0].subject
    assert subject.startswith('revert: trial 1: gain (rejected: push_gain=0.4')


def test_a_rejected_seed_policy_is_an_error_not_a_candidate(parts):
    p = parts(Validator(max_gain=0.1))
    with pytest.raises(PolicyRejectedError, match='push_gain=0.3'):
        p.writer.write(0, None, dict(SEED_YAML['params']), '')


def test_a_content_rejected_ahead_of_time_is_not_validated_again(parts):
    p = parts(Validator(max_gain=0.35))
    best = p.baseline()
    runs = p.validate.runs
    params = {**SEED_YAML['params'], 'push_gain': 0.4}
    p.writer.prepare_ahead(best, params, 'trial 1: gain')
    assert p.validate.runs == runs + 1
    assert isinstance(p.writer.write(1, best, params, 'trial 1: gain'), Rejection)
    assert p.validate.runs == runs + 1


def test_a_prepared_proposal_is_used_only_on_the_best_it_was_built_on(parts):
    p = parts()
    p.proposer.tell(*_baseline_trial(p))
    best = p.baseline()
    p.prefetcher.start(best, candidates_run=1)
    p.prefetcher.wait(10.0)
    prep = p.prefetcher.claim(best)
    assert prep is not None and prep.parent == best.id and not prep.duplicate
    assert prep.hypothesis.startswith(f'trial {prep.number}: ') and '(0/0 tuning' in \
        prep.hypothesis
    runs = p.validate.runs
    cand = p.writer.write(prep.number, best, dict(prep.params), prep.hypothesis)
    assert isinstance(cand, Candidate) and p.validate.runs == runs  # the snapshot was found
    # Built on a best that is no longer the best: dropped, its optuna trial handed out again.
    p.prefetcher.start(best, candidates_run=1)
    p.prefetcher.join()
    p.ledger.candidate_done(prep.number, cand.revision, 'keep', 0.9, {})
    newer = p.ledger.best()
    dropped = max(t.number for t in p.proposer.study.get_trials(deepcopy=False))
    assert dropped > prep.number
    assert p.prefetcher.claim(newer) is None
    assert p.proposer.next()[0] == dropped


def test_nothing_is_prepared_without_pipelining_or_past_max_candidates(parts):
    for p, run in ((parts(pipeline=False), 0), (parts(max_candidates=2), 2)):
        best = p.baseline()
        asked = len(p.proposer.study.get_trials(deepcopy=False))
        p.prefetcher.start(best, candidates_run=run)
        assert p.prefetcher.claim(best) is None
        assert len(p.proposer.study.get_trials(deepcopy=False)) == asked


def test_a_failed_preparation_is_reported_and_costs_only_the_overlap(parts, monkeypatch):
    p = parts()
    best = p.baseline()

    def broken():
        raise RuntimeError('journal locked')

    monkeypatch.setattr(p.proposer, 'next', broken)
    p.prefetcher.start(best, candidates_run=0)
    assert p.prefetcher.claim(best) is None
    assert p.lines == ["preparing the next candidate ahead failed (RuntimeError('journal "
                       "locked')); it will be made when needed"]


def _baseline_trial(p: Parts) -> tuple[int, float]:
    number, _ = p.proposer.next()  # the enqueued seed policy
    return number, 0.5
