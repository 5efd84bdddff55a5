from __future__ import annotations

import dataclasses
import multiprocessing

import pytest

from enpire_common.errors import ConfigError, UnknownNameError
from enpire_evolution.core.config import StoreConfig
from enpire_evolution.core.fakes import make_trial, populate_fake_experiment, revision_id
from enpire_evolution.core.store import ExperimentStore, Revision, Verdict


@pytest.fixture
def store(tmp_path):
    with ExperimentStore(f'sqlite:///{tmp_path / "enpire.db"}') as s:
        yield s


def _rev(exp: str, name: str, branch: str = 'main', **kw) -> Revision:
    return Revision(experiment=exp, id=revision_id(name), branch=branch, **kw)


def test_open_uses_enpire_home_and_creates_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path / 'home'))
    with ExperimentStore.open() as s:
        s.create_experiment('e1', 'push_t', 1.0)
    assert (tmp_path / 'home' / 'enpire.db').is_file()
    with ExperimentStore.open(tmp_path / 'home') as s:
        assert [e.id for e in s.experiments()] == ['e1']


def test_sqlite_store_runs_in_wal_mode(store):
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql('PRAGMA journal_mode').scalar() == 'wal'
        assert conn.exec_driver_sql('PRAGMA busy_timeout').scalar() == 30000


def test_bad_url_is_a_config_error():
    with pytest.raises(ConfigError, match="store url 'not a url' is not a SQLAlchemy URL"):
        ExperimentStore('not a url')


def test_create_experiment_is_idempotent_and_keeps_the_first_config(store):
    first = store.create_experiment('e1', 'push_t', 10.0, {'budget': 5})
    again = store.create_experiment('e1', 'other', 99.0, {'budget': 7})
    assert again == first
    assert first.config == {'budget': 5} and first.status == 'running'


def test_unknown_experiment_suggests_the_closest_name(store):
    store.create_experiment('push_t_sweep', 'push_t', 1.0)
    with pytest.raises(UnknownNameError, match="did you mean 'push_t_sweep'"):
        store.experiment('push_t_swep')


def test_rerecording_a_trial_id_is_a_noop(store):
    store.create_experiment('e1', 'push_t', 0.0)
    trial = make_trial('e1', 'r' * 64, 'main', 0, True)
    assert store.record_trial(trial, [Verdict(trial.trial_id, 'top', 'opencv-v1', True, 1.0)])
    changed = dataclasses.replace(trial, success=False, score=0.0)
    assert not store.record_trial(changed, [Verdict(trial.trial_id, 'side', 'x', False, 0.0)])
    assert store.trial(trial.trial_id) == trial
    assert [v.view for v in store.verdicts(trial.trial_id)] == ['top']
    assert store.count_trials('e1') == 1


def test_verdicts_of_another_trial_are_rejected(store):
    trial = make_trial('e1', 'r' * 64, 'main', 0, True)
    with pytest.raises(ConfigError, match="verdict of trial 'other' passed with trial"):
        store.record_trial(trial, [Verdict('other', 'top', 'b', True, 1.0)])


def test_add_revision_of_an_existing_id_returns_the_stored_one(store):
    store.create_experiment('e1', 'push_t', 0.0)
    first = store.add_revision(_rev('e1', 'a', hypothesis='push harder', params={'k': 1}))
    again = store.add_revision(_rev('e1', 'a', hypothesis='something else'))
    assert again == first and again.hypothesis == 'push harder'
    assert store.revisions('e1') == [first]


def test_revision_lookup_accepts_a_unique_prefix_and_rejects_unknown_ones(store):
    store.create_experiment('e1', 'push_t', 0.0)
    rev = store.add_revision(_rev('e1', 'a'))
    assert store.revision('e1', rev.id[:8]) == rev
    with pytest.raises(UnknownNameError, match="unknown revision of experiment 'e1' 'zzzz"):
        store.revision('e1', 'zzzzzz')


def test_trials_for_filters_by_revision_branch_and_eval_flag(store):
    fake = populate_fake_experiment(store, 'e1', trials_per_revision=5, eval_trials=2)
    main0 = fake.revisions['main'][0]
    by_rev = store.trials_for('e1', revision=main0)
    assert len(by_rev) == 7
    assert len(store.trials_for('e1', revision=main0, is_eval=True)) == 2
    assert len(store.trials_for('e1', revision=main0, is_eval=False)) == 5
    assert len(store.trials_for('e1', branch='wide')) == 2 * 7
    assert len(store.trials_for('e1')) == len(fake.trials) == 5 * 7
    ends = [t.ended_at for t in store.trials_for('e1')]
    assert ends == sorted(ends)


def test_best_revision_ranks_by_wilson_lower_bound_not_raw_rate(store):
    store.create_experiment('e1', 'push_t', 0.0)
    lucky, solid = revision_id('lucky'), revision_id('solid')
    store.add_revision(_rev('e1', 'lucky'))
    store.add_revision(_rev('e1', 'solid'))
    for i in range(2):
        store.record_trial(make_trial('e1', lucky, 'main', i, True))
    for i in range(50):
        store.record_trial(make_trial('e1', solid, 'main', i, i < 45))
    assert store.best_revision('e1').id == solid
    assert store.best_revision('e1', min_trials=100) is None


def test_branch_status_changes_and_rejects_unknown_status(store):
    store.create_experiment('e1', 'push_t', 0.0)
    store.add_branch('e1', 'main', agent='a0')
    assert store.set_branch_status('e1', 'main', 'pruned', 'worse').pruned_reason == 'worse'
    assert store.branches('e1', status='active') == []
    with pytest.raises(UnknownNameError, match="unknown branch status 'gone'"):
        store.set_branch_status('e1', 'main', 'gone')
    with pytest.raises(UnknownNameError, match="unknown branch of experiment 'e1' 'mian'"):
        store.branch('e1', 'mian')


def test_events_come_back_in_time_order(store):
    store.create_experiment('e1', 'push_t', 0.0)
    store.add_event('e1', 'prune', 5.0, {'branch': 'b'})
    store.add_event('e1', 'start', 1.0)
    assert [(e.kind, e.ts) for e in store.events('e1')] == [('start', 1.0), ('prune', 5.0)]
    assert store.events('e1', kind='prune')[0].data == {'branch': 'b'}


def test_agents_are_registered_once(store):
    store.create_experiment('e1', 'push_t', 0.0)
    store.add_agent('e1', 'a0', 'builtin', 'cell_0')
    store.add_agent('e1', 'a0', 'claude', 'cell_1')
    assert [(a.id, a.kind) for a in store.agents('e1')] == [('a0', 'builtin')]


def _write_trials(url: str, worker: int, barrier) -> None:
    with ExperimentStore(url, config=StoreConfig(busy_timeout_s=60.0)) as s:
        barrier.wait(timeout=60)
        for i in range(50):
            s.record_trial(make_trial('e1', 'r' * 64, f'b{worker}', i, i % 2 == 0))


def test_four_processes_writing_fifty_trials_each_store_two_hundred_rows(tmp_path):
    url = f'sqlite:///{tmp_path / "enpire.db"}'
    with ExperimentStore(url) as s:
        s.create_experiment('e1', 'push_t', 0.0)
    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_write_trials, args=(url, w, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with ExperimentStore(url) as s:
        assert s.count_trials('e1') == 200
        assert len(s.trial_ids('e1')) == 200
