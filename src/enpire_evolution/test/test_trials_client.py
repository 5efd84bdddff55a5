"""Evolution records the trials a cell reports: the rows the rollout node used to write."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from enpire_evolution.core.store import ExperimentStore, Revision
from enpire_evolution.ros.trials_port import RosTrialsPort, TrialsClient
from enpire_rollout.core.trial_record import TrialRecord

ROOT = Path(__file__).resolve().parents[3]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
EVAL_SEED = 100003   # push_t's evaluation seeds are 100000..100999

#: store column -> TrialRecord field.
COLUMNS = {'trial_id': 'trial_id', 'experiment': 'experiment_id', 'revision': 'revision_id',
           'cell': 'cell_id', 'seed': 'seed', 'outcome': 'outcome', 'success': 'success',
           'score': 'score', 'steps': 'steps', 'started_at': 'started_at',
           'ended_at': 'ended_at', 'duration_s': 'duration_s', 'reset_s': 'reset_s',
           'record_dir': 'record_dir', 'reason': 'reason'}


def finished(seed: int, success: bool) -> TrialRecord:
    return TrialRecord(
        experiment_id='', trial_id=f'cell_0-s{seed}-0a1b', revision_id='', cell_id='cell_0',
        task='push_t', seed=seed, index=0, outcome='success' if success else 'timeout',
        reason='verified success' if success else 'time limit', success=success,
        score=0.97 if success else 0.4, steps=120, duration_s=12.5, reset_s=1.25,
        started_at=1700000000.5, ended_at=1700000014.25, record_dir=f'/runs/t{seed}',
        verdicts=[{'view': 'top', 'backend': 'opencv-v1', 'success': success, 'score': 0.9},
                  {'view': 'fused', 'backend': 'all', 'success': success, 'score': 0.9}],
        attempts=[{'success': success}])


class FakeRolloutClient:
    """RolloutClient.run_trials as the cell answers it: feedback per trial, then the result
    (``missed``: trial indexes whose feedback never arrives)."""

    def __init__(self, records: list[TrialRecord], missed: tuple[int, ...] = ()) -> None:
        self.records, self.missed = records, missed
        self.goals: list[dict] = []

    def run_trials(self, *, count, revision_id, experiment_id, on_feedback=None, **goal):
        from enpire_interfaces.action import RunTrials
        from enpire_rollout.ros.conversions import trial_to_msg

        self.goals.append({'count': count, 'revision_id': revision_id, **goal})
        fb = RunTrials.Feedback(total=count, phase='reset')
        on_feedback(fb)   # before the first trial: an empty ``last``
        msgs = []
        for i, r in enumerate(self.records):
            msgs.append(trial_to_msg(dataclasses.replace(
                r, revision_id=revision_id, experiment_id=experiment_id or 'default')))
            if i not in self.missed:
                fb.last = msgs[-1]
                on_feedback(fb)
        return RunTrials.Result(trials=msgs, n_success=sum(r.success for r in self.records))


@pytest.fixture
def store(tmp_path):
    with ExperimentStore(f"sqlite:///{tmp_path / 'enpire.db'}") as s:
        yield s


def test_a_manual_run_of_a_policy_directory_is_stored_as_the_node_stored_it(tmp_path, store):
    records = [finished(5, True), finished(EVAL_SEED, False)]
    cell = FakeRolloutClient(records, missed=(1,))
    fed: list[str] = []
    client = TrialsClient(cell, home=tmp_path, store=store, wall=lambda: 1700000000.0)

    result = client.run_trials(count=2, policy_dir=str(SCRIPTED), experiment_id='manual',
                               seeds=[5, EVAL_SEED], on_feedback=lambda fb: fed.append(
                                   fb.last.trial_id if store.count_trials() else 'none'))

    rid = cell.goals[0]['revision_id']
    assert (tmp_path / 'revisions' / rid / 'revision.json').is_file()   # submitted here
    assert cell.goals[0]['seeds'] == [5, EVAL_SEED] and len(result.trials) == 2
    assert fed == ['none', records[0].trial_id]      # stored before the feedback is seen
    assert store.experiment('manual').task == 'push_t'
    assert store.branch('manual', 'manual').status == 'active'
    rev = store.revision('manual', rid)
    assert (rev.branch, rev.regime, rev.params['push_gain']) == ('manual', 'heuristic', 0.3)
    assert rev.hypothesis.startswith('Estimating the T pose')
    for r in records:
        row = store.trial(r.trial_id)
        expected = dataclasses.replace(r, experiment_id='manual', revision_id=rid)
        assert {c: getattr(row, c) for c in COLUMNS} == {
            c: getattr(expected, f) for c, f in COLUMNS.items()}
        assert (row.branch, row.is_eval) == ('manual', r.seed == EVAL_SEED)
        assert [(v.view, v.backend, v.success, v.score) for v in store.verdicts(r.trial_id)] \
            == [('fused', 'all', r.success, 0.9), ('top', 'opencv-v1', r.success, 0.9)]


def test_a_revision_prefix_is_resolved_before_it_is_sent(tmp_path, store):
    from enpire_agent_bridge.core.revisions import RevisionStore

    rev, _ = RevisionStore(tmp_path / 'revisions').submit(SCRIPTED)
    cell = FakeRolloutClient([finished(1, True)])
    TrialsClient(cell, home=tmp_path, store=store).run_trials(count=1,
                                                              revision_id=rev.id[:10])
    assert cell.goals[0]['revision_id'] == rev.id
    assert store.trial(finished(1, True).trial_id).experiment == 'default'


def test_the_agents_port_records_on_the_revisions_branch_before_each_outcome(tmp_path, store):
    from enpire_agent_bridge.core.revisions import RevisionStore

    rev, _ = RevisionStore(tmp_path / 'revisions').submit(SCRIPTED)
    store.create_experiment('exp', 'push_t', 0.0)
    store.add_branch('exp', 'b1')
    store.add_revision(Revision('exp', rev.id, branch='b1'))
    records = [finished(s, s % 2 == 0) for s in (1, 2, 3)]

    class Session:
        client = FakeRolloutClient(records, missed=(1,))
        closed = False

        def close(self):
            Session.closed = True

    port = RosTrialsPort(Session(), home=tmp_path, store=store)
    seen = []
    out = port.run(experiment_id='exp', revision_id=rev.id, revision_dir=rev.path,
                   seeds=[1, 2, 3], on_trial=lambda o: seen.append(
                       (o.seed, store.trial(o.trial_id).branch)))
    assert [o.seed for o in out] == [1, 2, 3]                  # in run order
    assert seen == [(1, 'b1'), (3, 'b1'), (2, 'b1')]            # each once, once stored
    assert [o.success for o in out] == [False, True, False]
    assert store.revision('exp', rev.id).branch == 'b1' and not store.branches('exp')[1:]
    port.close()
    assert Session.closed


def test_a_trials_session_is_a_cell_session_whose_client_records(tmp_path, monkeypatch):
    import enpire_rollout.client
    from enpire_evolution.ros.trials_port import TrialsSession

    class FakeCellSession:
        def __init__(self, *, home, **kw):
            self.client, self.stack, self.kw = FakeRolloutClient([finished(4, True)]), 'S', kw
            self.closed = False

        def close(self):
            self.closed = True

    monkeypatch.setattr(enpire_rollout.client, 'CellSession', FakeCellSession)
    session = TrialsSession(home=tmp_path, cell='cell_1', start=False)
    session.client.run_trials(count=1, policy_dir=str(SCRIPTED), experiment_id='e')
    assert session.stack == 'S'
    assert session.kw == {'task': 'push_t', 'cell': 'cell_1', 'start': False}
    session.close()
    assert session.closed
    with ExperimentStore.open(tmp_path) as store:
        assert [t.seed for t in store.trials_for('e')] == [4]
