"""The store's contract, run against SQLite and a real PostgreSQL server alike.

The ``store_url`` fixture (conftest.py) runs a test on each backend; the PostgreSQL cases use
the session's throwaway server (root conftest ``postgres_url``: a fresh database per test)
and skip where PostgreSQL is not installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import socket
import threading

import pytest
import sqlalchemy as sa

from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError, EnpireTimeoutError, UnknownNameError
from enpire_evolution.core import store as store_module
from enpire_evolution.core.config import StoreConfig
from enpire_evolution.core.fakes import make_trial, populate_fake_experiment, revision_id
from enpire_evolution.core.store import AgentSession, ExperimentStore, Revision, Verdict


@pytest.fixture
def store(store_url):  # store_url: every backend (conftest.py)
    with ExperimentStore(store_url) as s:
        yield s


@pytest.fixture
def pg_url(postgres_url):
    return postgres_url


def _rev(exp: str, name: str, branch: str = 'main', **kw) -> Revision:
    return Revision(experiment=exp, id=revision_id(name), branch=branch, **kw)


def test_open_uses_enpire_home_and_creates_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path / 'home'))
    with ExperimentStore.open() as s:
        s.create_experiment('e1', 'push_t', 1.0)
    assert (tmp_path / 'home' / 'enpire.db').is_file()
    with ExperimentStore.open(tmp_path / 'home') as s:
        assert [e.id for e in s.experiments()] == ['e1']


def test_sqlite_store_runs_in_wal_mode(tmp_path):
    with ExperimentStore(f'sqlite:///{tmp_path / "enpire.db"}') as store, \
            store.engine.connect() as conn:
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


def _write_trials(url: str, worker: int, barrier, midway=None) -> None:
    try:
        with ExperimentStore(url, config=StoreConfig(busy_timeout_s=60.0)) as s:
            barrier.wait(timeout=60)
            for i in range(50):
                if midway is not None and i == 25:
                    midway.wait(timeout=60)  # here: every writer holds an open connection
                    midway.wait(timeout=60)  # the test has ended them all
                s.record_trial(make_trial('e1', 'r' * 64, f'b{worker}', i, i % 2 == 0))
    except BaseException:
        if midway is not None:
            midway.abort()  # the test fails now, not when the barrier times out
        raise


def test_four_processes_writing_fifty_trials_each_store_two_hundred_rows(store_url):
    url = store_url
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


# --- the same values come back from every backend ---------------------------------------------
def test_ids_sort_byte_wise_on_every_backend(store):
    # A server collating by locale would give a, A, _b, b, B; SQLite sorts bytes.
    store.create_experiment('e1', 'push_t', 0.0)
    names = ['b', 'B', 'a', 'A', '_b', 'a_b', 'ab']
    for name in names:
        store.add_agent('e1', name, 'builtin')
        store.add_branch('e1', name)
    assert [a.id for a in store.agents('e1')] == sorted(names)
    assert [b.name for b in store.branches('e1')] == sorted(names)


def test_json_floats_times_and_long_strings_round_trip_on_every_backend(store):
    config = {'nested': {'k': [1, 2.5, None, 'x']}, 'worst': float('-inf'),
              'bad': float('nan'), 'unicode': 'Düsen ✓'}
    exp = store.create_experiment('e1', 'push_t', 1717171717.123456, config)
    assert exp.created_at == 1717171717.123456
    stored = store.experiment('e1').config
    assert math.isnan(stored.pop('bad'))
    assert stored == {k: v for k, v in config.items() if k != 'bad'}
    store.add_event('e1', 'candidate_done', 2.0, {'value': float('inf')})
    assert store.events('e1')[0].data == {'value': float('inf')}
    # Longer than the declared VARCHAR lengths, which SQLite never enforced.
    session = AgentSession('e1', 's' * 250, 'a0', 'claude', cell='c' * 150,
                           stop_reason='error: ' + 'x' * 200, input_tokens=2**40,
                           cost_usd=0.1 + 0.2)
    assert store.put_agent_session(session) == session
    assert store.agent_sessions('e1') == [session]
    trial = dataclasses.replace(make_trial('e1', 'r' * 64, 'main', 0, True), seed=2**62,
                                score=1 / 3, reason='r' * 1000)
    store.record_trial(trial)
    assert store.trial(trial.trial_id) == trial


def test_revision_stats_aggregate_the_same_on_every_backend(store):
    fake = populate_fake_experiment(store, 'e1', trials_per_revision=5, eval_trials=2)
    stats = store.revision_stats('e1')
    assert [s.revision for s in stats] == sorted(s.revision for s in stats)
    assert sum(s.n for s in stats) == len(fake.trials)
    for s in stats:
        mine = store.trials_for('e1', revision=s.revision)
        assert (s.n, s.successes) == (len(mine), sum(t.success for t in mine))
        assert s.mean_score == pytest.approx(sum(t.score for t in mine) / len(mine))
        assert isinstance(s.n, int) and isinstance(s.mean_score, float)


# --- PostgreSQL: driver, URL, schema ----------------------------------------------------------
class _DriverError(Exception):
    def __init__(self, text: str, sqlstate: str | None = None) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(('backend', 'error', 'orig', 'invalidated', 'expected'), [
    ('sqlite', sa.exc.OperationalError, _DriverError('database is locked'), False, 'conflict'),
    ('sqlite', sa.exc.OperationalError, _DriverError('no such table: x'), False, None),
    ('postgresql', sa.exc.OperationalError, _DriverError('x', '40001'), False, 'conflict'),
    ('postgresql', sa.exc.OperationalError, _DriverError('x', '40P01'), False, 'conflict'),
    ('postgresql', sa.exc.OperationalError, _DriverError('x', '57P01'), False, 'connection'),
    ('postgresql', sa.exc.OperationalError, _DriverError('x', '08006'), False, 'connection'),
    ('postgresql', sa.exc.IntegrityError, _DriverError('dup', '23505'), False, None),
    ('postgresql', sa.exc.DataError, _DriverError('bad', '22P02'), False, None),
    ('postgresql', sa.exc.OperationalError,
     _DriverError('connection failed: ... Connection refused'), False, 'connection'),
    ('postgresql', sa.exc.OperationalError,
     _DriverError('connection failed: FATAL:  the database system is starting up'), False,
     'connection'),
    ('postgresql', sa.exc.OperationalError,
     _DriverError('connection failed: FATAL:  password authentication failed for user "u"'),
     False, 'refused'),
    ('postgresql', sa.exc.OperationalError, _DriverError('server closed the connection'), True,
     'connection'),
])
def test_failures_are_retried_by_kind(backend, error, orig, invalidated, expected):
    exc = error('SELECT 1', {}, orig, connection_invalidated=invalidated)
    assert store_module._failure(exc, backend) == expected


def test_a_plain_postgresql_url_uses_psycopg3_when_psycopg2_is_absent(monkeypatch):
    monkeypatch.setattr(store_module, 'find_spec',
                        lambda name: None if name == 'psycopg2' else object())
    url = store_module._engine_url(sa.engine.make_url('postgresql://u:pw@db/enpire'), '')
    assert url.drivername == 'postgresql+psycopg'


def test_a_postgresql_url_without_a_driver_is_a_config_error(monkeypatch):
    monkeypatch.setattr(store_module, 'find_spec', lambda name: None)
    with pytest.raises(ConfigError, match=r"store url 'postgresql://u:\*\*\*@db/enpire' needs "
                                          r"the PostgreSQL driver psycopg.*pip install"):
        ExperimentStore('postgresql://u:secret@db/enpire')


def test_a_plain_postgresql_url_opens_the_store(pg_url):
    plain = pg_url.replace('postgresql+psycopg://', 'postgresql://')
    with ExperimentStore(plain) as s:
        assert s.engine.dialect.driver in ('psycopg', 'psycopg2')
        s.create_experiment('e1', 'push_t', 0.0)
        assert [e.id for e in s.experiments()] == ['e1']


def test_an_unknown_database_is_a_config_error_naming_the_url_without_password(
        postgres_server):
    url = postgres_server.url('no_such_db', password='hunter2')
    with pytest.raises(ConfigError, match=r'store postgresql\+psycopg://postgres:\*\*\*@.*'
                                          r'/no_such_db: the server refused the connection: .*'
                                          r'"no_such_db" does not exist') as err:
        ExperimentStore(url, config=StoreConfig(reconnect_deadline_s=60.0))
    assert 'hunter2' not in str(err.value)


def test_hosts_opening_a_new_database_at_once_create_the_schema_once(pg_url):
    barrier, errors = threading.Barrier(4), []

    def open_store() -> None:
        try:
            barrier.wait(timeout=30)
            with ExperimentStore(pg_url) as s:
                s.create_experiment('e1', 'push_t', 0.0)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []


# --- PostgreSQL: dropped connections and a server that goes away ------------------------------
def _database(url: str) -> str:
    return sa.engine.make_url(url).database


def test_writes_continue_after_the_server_drops_every_connection(postgres_server, pg_url):
    with ExperimentStore(pg_url) as s:
        s.create_experiment('e1', 'push_t', 0.0)
        trials = [make_trial('e1', 'r' * 64, 'main', i, i % 3 == 0) for i in range(20)]
        for t in trials[:10]:
            assert s.record_trial(t, [Verdict(t.trial_id, 'top', 'v1', t.success, t.score)])
        assert postgres_server.terminate_connections(_database(pg_url)) >= 1
        for t in trials[10:]:
            assert s.record_trial(t, [Verdict(t.trial_id, 'top', 'v1', t.success, t.score)])
        postgres_server.terminate_connections(_database(pg_url))
        # A writer that lost track replays everything: nothing is stored twice.
        assert not any(s.record_trial(t) for t in trials)
        assert s.trial_ids('e1') == {t.trial_id for t in trials}
        assert s.count_trials('e1') == 20
        assert sum(len(v) for v in s.verdicts_for('e1').values()) == 20


def test_a_connection_dropped_mid_transaction_is_retried_and_stores_each_row_once(
        postgres_server, pg_url):
    with ExperimentStore(pg_url) as s:
        s.create_experiment('e1', 'push_t', 0.0)
        trial = make_trial('e1', 'r' * 64, 'main', 0, True)
        verdicts = [Verdict(trial.trial_id, v, 'v1', True, 1.0) for v in ('side', 'top')]
        killed = []

        @sa.event.listens_for(s.engine, 'before_cursor_execute')
        def _kill(conn, cursor, statement, *args):
            # The trial row is written; the connection dies before the first verdict is.
            if statement.startswith('INSERT INTO verdicts') and not killed:
                killed.append(postgres_server.terminate_connections(_database(pg_url)))

        assert s.record_trial(trial, verdicts)
        assert killed == [1]
        assert s.trial_ids('e1') == {trial.trial_id}
        assert s.verdicts(trial.trial_id) == verdicts


def test_a_write_waits_out_a_server_restart(postgres_server, pg_url):
    pauses = []

    def sleep(seconds: float) -> None:  # the server is back after the third pause
        pauses.append(seconds)
        if len(pauses) == 3:
            postgres_server.start()

    with ExperimentStore(pg_url, config=StoreConfig(reconnect_deadline_s=60.0),
                         sleep=sleep) as s:
        s.create_experiment('e1', 'push_t', 0.0)
        postgres_server.stop()
        assert s.record_trial(make_trial('e1', 'r' * 64, 'main', 0, True))
        assert pauses == [0.05, 0.1, 0.2]
        assert s.count_trials('e1') == 1


def test_a_server_that_stays_down_fails_after_the_deadline_naming_the_url_without_password(
        postgres_server, pg_url):
    clock = FakeClock()
    url = pg_url.replace('postgres@', 'postgres:hunter2@')
    with ExperimentStore(url, config=StoreConfig(reconnect_deadline_s=5.0), clock=clock) as s:
        s.create_experiment('e1', 'push_t', 0.0)
        postgres_server.stop()
        with pytest.raises(EnpireTimeoutError, match=(
                r'store postgresql\+psycopg://postgres:\*\*\*@127\.0\.0\.1:\d+/\w+ '
                r'unreachable for 5\.0 s \(reconnect_deadline_s=5\): .*Connection refused.*; '
                r'check that the database server is up')) as err:
            s.record_trial(make_trial('e1', 'r' * 64, 'main', 0, True))
        assert 'hunter2' not in str(err.value)
        assert clock.now_s() == 5.0
        postgres_server.start()
        assert s.count_trials('e1') == 0


def test_opening_a_store_where_no_server_listens_fails_after_the_deadline():
    pytest.importorskip('psycopg')
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    clock = FakeClock()
    with pytest.raises(EnpireTimeoutError, match=rf'store postgresql://u:\*\*\*@127\.0\.0\.1:'
                                                 rf'{port}/enpire unreachable for 2\.0 s'):
        ExperimentStore(f'postgresql://u:pw@127.0.0.1:{port}/enpire',
                        config=StoreConfig(reconnect_deadline_s=2.0), clock=clock)


def test_writers_whose_connections_keep_dropping_store_every_trial_exactly_once(
        postgres_server, pg_url):
    with ExperimentStore(pg_url) as s:
        s.create_experiment('e1', 'push_t', 0.0)
    database = _database(pg_url)
    ctx = multiprocessing.get_context('fork')
    barrier, midway = ctx.Barrier(4), ctx.Barrier(5)
    procs = [ctx.Process(target=_write_trials, args=(pg_url, w, barrier, midway))
             for w in range(4)]
    done, ended = threading.Event(), []

    def kill_at_random() -> None:  # sessions end mid-transaction, mid-connect, anywhere
        while not done.wait(0.05):
            ended.append(postgres_server.terminate_connections(database))
    for p in procs:  # forked before the killer thread exists
        p.start()
    killer = threading.Thread(target=kill_at_random)
    killer.start()
    try:
        with contextlib.suppress(threading.BrokenBarrierError):  # a writer failed: see below
            midway.wait(timeout=60)
            ended.append(postgres_server.terminate_connections(database))
            midway.wait(timeout=60)
        for p in procs:
            p.join(timeout=120)
    finally:
        done.set()
        killer.join(timeout=30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert sum(ended) >= 1  # midway, each writer's connection was ended by one or the other
    with ExperimentStore(pg_url) as s:
        assert s.count_trials('e1') == 200
        assert len(s.trial_ids('e1')) == 200
