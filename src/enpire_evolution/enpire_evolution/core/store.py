"""The experiment store: experiments, agents, branches, revisions, trials, verdicts, events.

SQLAlchemy Core over SQLite by default (``sqlite:///$ENPIRE_HOME/enpire.db``) or PostgreSQL
for a fleet (``postgresql://user:password@host/db``, driven by psycopg 3 unless psycopg2 is
installed; tested against a real server). Several processes may write at once: SQLite runs
in WAL mode with a busy timeout and every write is one short ``BEGIN IMMEDIATE``
transaction; a transaction that loses a conflict ('database is locked', a PostgreSQL
serialization failure or deadlock) is retried with backoff, ``max_retries`` times.

A PostgreSQL server may restart or drop connections: a pooled connection is checked before
use, and a read or write whose connection is lost (or that cannot connect) is retried with
backoff until ``reconnect_deadline_s`` has passed, then fails with EnpireTimeoutError naming
the server (never its password). A transaction that failed this way left nothing behind, or
(if the connection dropped during COMMIT) committed: retrying is safe because every insert
is idempotent, keyed by its natural id, so an agent that crashed can replay its log and
resume too: re-recording a ``trial_id`` is a no-op, ``add_revision`` of a known id returns
the stored one, and likewise for experiments, agents and branches. Events and usage samples
have no natural key: a COMMIT lost with its connection may store one of them twice.
Times are floats (epoch seconds) passed in by callers; the store never reads the wall clock.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import ConfigError, EnpireTimeoutError, UnknownNameError
from enpire_common.metrics import wilson_interval
from enpire_common.paths import enpire_home
from enpire_evolution.core.config import StoreConfig, default_store_url
from enpire_evolution.core.store_schema import (
    Agent,
    AgentSession,
    Branch,
    Event,
    Experiment,
    Revision,
    RevisionStats,
    Trial,
    UsageSample,
    Verdict,
    agent_sessions_table,
    agent_trials_table,
    agent_usage_table,
    agents_table,
    branches_table,
    events_table,
    experiments_table,
    metadata,
    revisions_table,
    trials_table,
    verdicts_of,
    verdicts_table,
)

__all__ = ['BRANCH_STATUSES', 'EXPERIMENT_STATUSES', 'REVISION_STATUSES', 'Agent',
           'AgentSession', 'Branch', 'UsageSample',
           'Event', 'Experiment', 'ExperimentStore', 'Revision', 'RevisionStats', 'Trial',
           'Verdict', 'verdicts_of']

T = TypeVar('T')

BRANCH_STATUSES = ('active', 'pruned', 'merged')
REVISION_STATUSES = ('proposed', 'running', 'kept', 'reverted', 'rejected')
EXPERIMENT_STATUSES = ('running', 'done', 'failed', 'stopped')

# Execution option marking a connection that only reads (deferred BEGIN on SQLite).
_READ_ONLY = 'enpire_read_only'
# pg_advisory_xact_lock key serialising schema creation by several hosts starting at once.
_SCHEMA_LOCK_KEY = 0x656E70697265  # 'enpire'
# PostgreSQL SQLSTATEs of a transaction that lost a conflict and may simply run again:
# serialization_failure, deadlock_detected, lock_not_available.
_PG_CONFLICT = frozenset({'40001', '40P01', '55P03'})
# ... and of a session the server ended or cannot take yet (class 08: connection exception;
# admin_shutdown, crash_shutdown, cannot_connect_now; too_many_connections).
_PG_DISCONNECT = frozenset({'57P01', '57P02', '57P03', '53300'})
# Connection refusals that the server states (FATAL) yet that pass: it is starting, stopping,
# recovering or full, or ended the new session (pg_terminate_backend, a restart). Any other
# FATAL at connect (no such database, bad password, pg_hba) will not pass by waiting.
_PG_TRANSIENT_FATAL = ('starting up', 'shutting down', 'recovery mode', 'too many clients',
                       'remaining connection slots', 'not yet accepting connections',
                       'terminating connection')

def _row(cls: type[T], row: Any) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _check(value: str, choices: Sequence[str], kind: str) -> None:
    if value not in choices:
        raise UnknownNameError(kind, value, choices)


def _is_locked(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return 'locked' in text or 'busy' in text


def _sqlstate(exc: DBAPIError) -> str:
    # psycopg 3 calls it sqlstate, psycopg2 pgcode; errors raised by the client itself
    # (connection refused, timed out) have none.
    return str(getattr(exc.orig, 'sqlstate', None) or getattr(exc.orig, 'pgcode', None) or '')


def _failure(exc: DBAPIError, backend: str) -> str | None:
    """Why a database call failed, if running it again may succeed.

    Returns:
        'conflict' (it lost a lock or serialization conflict), 'connection' (the connection
        was lost, or none could be made yet), 'refused' (the server turned the connection
        down for good: no such database, bad credentials), or None (a real error).
    """
    if exc.connection_invalidated:
        return 'connection'
    if backend == 'sqlite':
        return 'conflict' if isinstance(exc, sa.exc.OperationalError) and _is_locked(exc) \
            else None
    if backend != 'postgresql':
        return None
    code = _sqlstate(exc)
    if code in _PG_CONFLICT:
        return 'conflict'
    if code.startswith('08') or code in _PG_DISCONNECT:
        return 'connection'
    if code or not isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return None
    text = str(exc.orig)
    if 'FATAL' in text and not any(t in text for t in _PG_TRANSIENT_FATAL):
        return 'refused'
    return 'connection'


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, 'orig', None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


def _engine_url(url: URL, shown: str) -> URL:
    """``url`` with a PostgreSQL driver that is installed (plain postgresql:// -> psycopg 3)."""
    if url.get_backend_name() != 'postgresql':
        return url
    driver = url.drivername.partition('+')[2]
    if not driver:
        if find_spec('psycopg2') is not None:
            return url
        driver = 'psycopg'
        url = url.set(drivername='postgresql+psycopg')
    if driver == 'psycopg' and find_spec('psycopg') is None:
        raise ConfigError(f"store url '{shown}' needs the PostgreSQL driver psycopg, which is "
                          "not installed; pip install 'psycopg[binary]' (requirements.txt)")
    return url


class ExperimentStore:
    """The experiment database. Thread- and process-safe; see the module docstring.

    Args:
        url: SQLAlchemy URL; empty/``None`` means ``config.url`` or the default SQLite file.
            ``postgresql://`` uses psycopg 3 unless psycopg2 is installed.
        config: timeouts and retries.
        clock: times the reconnect deadline and, unless ``sleep`` is given, pauses between
            retries (a FakeClock in tests).
        sleep: pause function used between retries (injected for tests).

    Raises:
        ConfigError: the URL is not a SQLAlchemy URL, its driver is not installed, or the
            server refused the connection for good (no such database, bad credentials).
        EnpireTimeoutError: the server stayed unreachable for ``reconnect_deadline_s``.

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, url: str | None = None, *, config: StoreConfig | None = None,
                 clock: Clock | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.config = config or StoreConfig()
        self.url = url or self.config.url or default_store_url()
        self._clock = clock or SystemClock()
        self._sleep = sleep or self._clock.sleep_s
        try:
            parsed = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"store url '{self.url}' is not a SQLAlchemy URL ({exc}); "
                              "use e.g. sqlite:///runs/enpire.db") from None
        #: The URL with its password masked, for messages and logs.
        self.safe_url = parsed.render_as_string(hide_password=True)
        parsed = _engine_url(parsed, self.safe_url)
        self.backend = parsed.get_backend_name()
        self._sqlite = self.backend == 'sqlite'
        if self._sqlite and parsed.database not in (None, '', ':memory:'):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if self.backend == 'postgresql':
            # A pooled connection the server dropped (restart, idle cut) is replaced on
            # checkout instead of failing the next call.
            kwargs['pool_pre_ping'] = True
            kwargs['connect_args'] = {
                'connect_timeout': max(2, math.ceil(self.config.connect_timeout_s))}
        try:
            self.engine: Engine = sa.create_engine(parsed, **kwargs)
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            raise ConfigError(f"store url '{self.safe_url}': its database driver is not "
                              f'installed ({exc}); install it, or use sqlite:///<file> or '
                              "postgresql://... with pip install 'psycopg[binary]'") from None
        if self._sqlite:
            self._setup_sqlite(self.engine)
        self._run(self._create_schema)

    @staticmethod
    def _create_schema(conn: Connection) -> None:
        if conn.dialect.name == 'postgresql':
            # Hosts that start at once would race to CREATE the same tables (and lose on a
            # unique violation in the catalog); the first creates them, the rest see them.
            conn.execute(sa.text('SELECT pg_advisory_xact_lock(:key)'),
                         {'key': _SCHEMA_LOCK_KEY})
        metadata.create_all(conn)

    @classmethod
    def open(cls, home: str | Path | None = None, **kwargs: Any) -> ExperimentStore:
        """The store of a runtime directory: ``$ENPIRE_STORE_URL`` when set (a fleet's shared
        PostgreSQL store: every client on the host then writes where the CLIs do), else the
        SQLite file of ``home`` (``--home``, ``$ENPIRE_HOME`` or ./runs)."""
        url = os.environ.get('ENPIRE_STORE_URL', '').strip()
        return cls(url or default_store_url(enpire_home(home)), **kwargs)

    def _setup_sqlite(self, engine: Engine) -> None:
        busy_ms = int(self.config.busy_timeout_s * 1000)

        @sa.event.listens_for(engine, 'connect')
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # We emit BEGIN ourselves (below): pysqlite's implicit, deferred BEGIN would let
            # two readers both try to upgrade to a write lock, which fails at once with
            # 'database is locked' instead of waiting on the busy timeout.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f'PRAGMA busy_timeout = {busy_ms}')
            cur.execute('PRAGMA journal_mode = WAL')
            cur.execute('PRAGMA synchronous = NORMAL')
            cur.close()

        @sa.event.listens_for(engine, 'begin')
        def _on_begin(conn: Connection) -> None:
            # Writers take the write lock up front (waiting on busy_timeout); readers take a
            # WAL snapshot and never block writers.
            read_only = conn.get_execution_options().get(_READ_ONLY, False)
            conn.exec_driver_sql('BEGIN' if read_only else 'BEGIN IMMEDIATE')

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ------------------------------------------------------------------------
    def _run(self, work: Callable[[Connection], T], *, read_only: bool = False) -> T:
        """Run ``work`` in one short transaction, again while it fails for passing reasons.

        A lost conflict is retried ``max_retries`` times; a lost connection, or one that
        cannot be made yet, until ``reconnect_deadline_s`` after the first failure. ``work``
        must read everything it returns inside the transaction, and may run more than once.
        """
        cfg = self.config
        delay = cfg.retry_backoff_s
        conflicts = 0
        down_since: float | None = None
        while True:
            try:
                with self.engine.connect() as conn:
                    if read_only:
                        conn.execution_options(**{_READ_ONLY: True})
                    with conn.begin():
                        return work(conn)
            except DBAPIError as exc:
                why = _failure(exc, self.backend)
                if why is None:
                    raise
                if why == 'refused':
                    raise ConfigError(f'store {self.safe_url}: the server refused the '
                                      f'connection: {_first_line(exc)}') from exc
                if why == 'conflict':
                    conflicts += 1
                    if conflicts > cfg.max_retries:
                        raise
                    pause = delay
                else:
                    now = self._clock.now_s()
                    down_since = now if down_since is None else down_since
                    left = cfg.reconnect_deadline_s - (now - down_since)
                    if left <= 0:
                        raise EnpireTimeoutError(
                            f'store {self.safe_url} unreachable for {now - down_since:.1f} s '
                            f'(reconnect_deadline_s={cfg.reconnect_deadline_s:g}): '
                            f'{_first_line(exc)}; check that the database server is up '
                            'and reachable from this host') from exc
                    pause = min(delay, left)
            self._sleep(pause)
            delay = min(1.0, delay * 2 if delay else 0.05)

    def _read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one read-only transaction (retried like a write)."""
        return self._run(work, read_only=True)

    def _insert_ignore(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert unless the primary key exists; True if a row was inserted."""
        name = conn.dialect.name
        if name in ('sqlite', 'postgresql'):
            if name == 'sqlite':
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            # rowcount of an INSERT is only kept when asked for (psycopg's would read -1).
            result = conn.execute(insert(table).values(**values).on_conflict_do_nothing(),
                                  execution_options={'preserve_rowcount': True})
            return result.rowcount == 1
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(**values))
        except IntegrityError:
            return False
        return True

    # --- experiments ---------------------------------------------------------------------
    def create_experiment(self, experiment_id: str, task: str, created_at: float,
                          config: dict[str, Any] | None = None,
                          status: str = 'running') -> Experiment:
        """Create an experiment, or return the stored one with this id (idempotent)."""
        _check(status, EXPERIMENT_STATUSES, 'experiment status')
        exp = Experiment(experiment_id, task, float(created_at), dict(config or {}), status)

        def work(conn: Connection) -> Experiment:
            self._insert_ignore(conn, experiments_table, dataclasses.asdict(exp))
            row = conn.execute(sa.select(experiments_table).where(
                experiments_table.c.id == experiment_id)).one()
            return _row(Experiment, row)
        return self._run(work)

    def experiment(self, experiment_id: str) -> Experiment:
        """The experiment ``experiment_id``; UnknownNameError (did you mean) if absent."""
        def read(conn: Connection) -> Experiment:
            row = conn.execute(sa.select(experiments_table).where(
                experiments_table.c.id == experiment_id)).first()
            if row is None:
                ids = conn.execute(sa.select(experiments_table.c.id)).scalars().all()
                raise UnknownNameError('experiment', experiment_id, ids)
            return _row(Experiment, row)
        return self._read(read)

    def experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        query = sa.select(experiments_table).order_by(experiments_table.c.created_at,
                                                      experiments_table.c.id)
        return self._read(lambda conn: [_row(Experiment, r) for r in conn.execute(query)])

    def set_experiment_status(self, experiment_id: str, status: str) -> None:
        """Set an experiment's status (one of EXPERIMENT_STATUSES)."""
        _check(status, EXPERIMENT_STATUSES, 'experiment status')
        self.experiment(experiment_id)
        self._run(lambda conn: conn.execute(experiments_table.update().where(
            experiments_table.c.id == experiment_id).values(status=status)))

    # --- agents ------------------------------------------------------------------------------
    def add_agent(self, experiment: str, agent_id: str, kind: str, cell: str = '') -> Agent:
        """Register an agent, or return the stored one (idempotent)."""
        agent = Agent(experiment, agent_id, kind, cell)

        def work(conn: Connection) -> Agent:
            self._insert_ignore(conn, agents_table, dataclasses.asdict(agent))
            row = conn.execute(sa.select(agents_table).where(
                agents_table.c.experiment == experiment, agents_table.c.id == agent_id)).one()
            return _row(Agent, row)
        return self._run(work)

    def agents(self, experiment: str) -> list[Agent]:
        """The agents of an experiment, by id."""
        query = sa.select(agents_table).where(
            agents_table.c.experiment == experiment).order_by(agents_table.c.id)
        return self._read(lambda conn: [_row(Agent, r) for r in conn.execute(query)])

    # --- branches ---------------------------------------------------------------------------
    def add_branch(self, experiment: str, name: str, *, agent: str | None = None,
                   parent: str | None = None, created_at: float = 0.0) -> Branch:
        """Create an active branch, or return the stored one (idempotent)."""
        branch = Branch(experiment, name, agent, parent, float(created_at))

        def work(conn: Connection) -> Branch:
            self._insert_ignore(conn, branches_table, dataclasses.asdict(branch))
            return self._branch(conn, experiment, name)
        return self._run(work)

    def _branch(self, conn: Connection, experiment: str, name: str) -> Branch:
        row = conn.execute(sa.select(branches_table).where(
            branches_table.c.experiment == experiment, branches_table.c.name == name)).first()
        if row is None:
            names = conn.execute(sa.select(branches_table.c.name).where(
                branches_table.c.experiment == experiment)).scalars().all()
            raise UnknownNameError(f"branch of experiment '{experiment}'", name, names)
        return _row(Branch, row)

    def branch(self, experiment: str, name: str) -> Branch:
        """One branch; UnknownNameError if absent."""
        return self._read(lambda conn: self._branch(conn, experiment, name))

    def branches(self, experiment: str, status: str | None = None) -> list[Branch]:
        """The branches of an experiment (optionally only one status), oldest first."""
        query = sa.select(branches_table).where(branches_table.c.experiment == experiment)
        if status is not None:
            _check(status, BRANCH_STATUSES, 'branch status')
            query = query.where(branches_table.c.status == status)
        query = query.order_by(branches_table.c.created_at, branches_table.c.name)
        return self._read(lambda conn: [_row(Branch, r) for r in conn.execute(query)])

    def set_branch_status(self, experiment: str, name: str, status: str,
                          reason: str = '') -> Branch:
        """Mark a branch active, pruned (with the reason) or merged."""
        _check(status, BRANCH_STATUSES, 'branch status')

        def work(conn: Connection) -> Branch:
            self._branch(conn, experiment, name)
            conn.execute(branches_table.update().where(
                branches_table.c.experiment == experiment,
                branches_table.c.name == name).values(status=status, pruned_reason=reason))
            return self._branch(conn, experiment, name)
        return self._run(work)

    # --- revisions --------------------------------------------------------------------------
    def add_revision(self, revision: Revision) -> Revision:
        """Store a revision; if its id is already stored, return the stored one unchanged."""
        _check(revision.status, REVISION_STATUSES, 'revision status')

        def work(conn: Connection) -> Revision:
            self._insert_ignore(conn, revisions_table, dataclasses.asdict(revision))
            return self._revision(conn, revision.experiment, revision.id)
        return self._run(work)

    def _revision(self, conn: Connection, experiment: str, ref: str) -> Revision:
        c = revisions_table.c
        row = conn.execute(sa.select(revisions_table).where(
            c.experiment == experiment, c.id == ref)).first()
        if row is None and len(ref) >= 4:
            # A unique id prefix is enough (like git short shas).
            rows = conn.execute(sa.select(revisions_table).where(
                c.experiment == experiment, c.id.startswith(ref, autoescape=True))
                .limit(2)).all()
            if len(rows) > 1:
                raise ConfigError(f"revision prefix '{ref}' is ambiguous in experiment "
                                  f"'{experiment}'; give more characters")
            row = rows[0] if rows else None
        if row is None:
            ids = conn.execute(sa.select(c.id).where(c.experiment == experiment)).scalars()
            raise UnknownNameError(f"revision of experiment '{experiment}'", ref, list(ids))
        return _row(Revision, row)

    def revision(self, experiment: str, ref: str) -> Revision:
        """A revision by id or unique id prefix (>= 4 chars); UnknownNameError if absent."""
        return self._read(lambda conn: self._revision(conn, experiment, ref))

    def has_revision(self, experiment: str, revision_id: str) -> bool:
        """Whether the exact revision id is stored."""
        c = revisions_table.c
        query = sa.select(c.id).where(c.experiment == experiment, c.id == revision_id)
        return self._read(lambda conn: conn.execute(query).first() is not None)

    def revisions(self, experiment: str, branch: str | None = None) -> list[Revision]:
        """The revisions of an experiment (or one branch), in creation order."""
        c = revisions_table.c
        query = sa.select(revisions_table).where(c.experiment == experiment)
        if branch is not None:
            query = query.where(c.branch == branch)
        query = query.order_by(c.created_at, c.id)
        return self._read(lambda conn: [_row(Revision, r) for r in conn.execute(query)])

    def set_revision_status(self, experiment: str, revision_id: str, status: str) -> Revision:
        """Mark a revision proposed / running / kept / reverted / rejected."""
        _check(status, REVISION_STATUSES, 'revision status')

        def work(conn: Connection) -> Revision:
            rev = self._revision(conn, experiment, revision_id)
            conn.execute(revisions_table.update().where(
                revisions_table.c.experiment == experiment,
                revisions_table.c.id == rev.id).values(status=status))
            return dataclasses.replace(rev, status=status)
        return self._run(work)

    # --- trials -----------------------------------------------------------------------------
    def record_trial(self, trial: Trial, verdicts: Iterable[Verdict] = ()) -> bool:
        """Store a trial and its verdicts in one transaction.

        Returns:
            True if stored now, False if this ``trial_id`` was already stored (then nothing
            changes: replaying a log after a crash is safe). A call whose COMMIT was lost
            with its connection, retried, finds its own row and says False.
        """
        verdict_rows = [dataclasses.asdict(v) for v in verdicts]
        for v in verdict_rows:
            if v['trial_id'] != trial.trial_id:
                raise ConfigError(f"verdict of trial '{v['trial_id']}' passed with trial "
                                  f"'{trial.trial_id}'; verdicts must belong to the trial")

        def work(conn: Connection) -> bool:
            if not self._insert_ignore(conn, trials_table, dataclasses.asdict(trial)):
                return False
            for v in verdict_rows:
                self._insert_ignore(conn, verdicts_table, v)
            return True
        return self._run(work)

    def trial(self, trial_id: str) -> Trial:
        """One trial by id; UnknownNameError if absent."""
        row = self._read(lambda conn: conn.execute(sa.select(trials_table).where(
            trials_table.c.trial_id == trial_id)).first())
        if row is None:
            raise UnknownNameError('trial', trial_id, [])
        return _row(Trial, row)

    def trials_for(self, experiment: str, *, revision: str | None = None,
                   branch: str | None = None, is_eval: bool | None = None) -> list[Trial]:
        """Trials of an experiment, optionally of one revision and/or branch.

        Args:
            experiment: experiment id.
            revision: exact revision id, or None for all.
            branch: branch name, or None for all.
            is_eval: True for held-out evaluation trials, False for tuning, None for both.

        Returns:
            Trials ordered by end time (then id).
        """
        c = trials_table.c
        query = sa.select(trials_table).where(c.experiment == experiment)
        if revision is not None:
            query = query.where(c.revision == revision)
        if branch is not None:
            query = query.where(c.branch == branch)
        if is_eval is not None:
            query = query.where(c.is_eval == is_eval)
        query = query.order_by(c.ended_at, c.trial_id)
        return self._read(lambda conn: [_row(Trial, r) for r in conn.execute(query)])

    def trial_ids(self, experiment: str) -> set[str]:
        """Ids of the stored trials of an experiment (what a resuming agent can skip)."""
        query = sa.select(trials_table.c.trial_id).where(
            trials_table.c.experiment == experiment)
        return self._read(lambda conn: set(conn.execute(query).scalars()))

    def count_trials(self, experiment: str | None = None) -> int:
        """Number of stored trials (of one experiment, or all)."""
        query = sa.select(sa.func.count()).select_from(trials_table)
        if experiment is not None:
            query = query.where(trials_table.c.experiment == experiment)
        return self._read(lambda conn: int(conn.execute(query).scalar_one()))

    def verdicts(self, trial_id: str) -> list[Verdict]:
        """The verdicts of a trial, by view then backend."""
        c = verdicts_table.c
        query = sa.select(verdicts_table).where(c.trial_id == trial_id).order_by(c.view,
                                                                                 c.backend)
        return self._read(lambda conn: [_row(Verdict, r) for r in conn.execute(query)])

    def verdicts_for(self, experiment: str) -> dict[str, list[Verdict]]:
        """Every verdict of an experiment's trials, grouped by trial id."""
        v, t = verdicts_table.c, trials_table.c
        query = (sa.select(verdicts_table).join(trials_table, v.trial_id == t.trial_id)
                 .where(t.experiment == experiment).order_by(v.trial_id, v.view, v.backend))

        def read(conn: Connection) -> dict[str, list[Verdict]]:
            out: dict[str, list[Verdict]] = {}
            for r in conn.execute(query):
                out.setdefault(r.trial_id, []).append(_row(Verdict, r))
            return out
        return self._read(read)

    def revision_stats(self, experiment: str, *,
                       is_eval: bool | None = None) -> list[RevisionStats]:
        """Per-revision trial counts, successes and mean score (revisions with trials only)."""
        c = trials_table.c
        query = (sa.select(c.revision, sa.func.min(c.branch).label('branch'),
                           sa.func.count().label('n'),
                           sa.func.sum(sa.case((c.success, 1), else_=0)).label('successes'),
                           sa.func.avg(c.score).label('mean_score'))
                 .where(c.experiment == experiment).group_by(c.revision)
                 .order_by(c.revision))
        if is_eval is not None:
            query = query.where(c.is_eval == is_eval)
        return self._read(lambda conn: [
            RevisionStats(r.revision, r.branch, int(r.n), int(r.successes or 0),
                          None if r.mean_score is None else float(r.mean_score))
            for r in conn.execute(query)])

    def best_revision(self, experiment: str, *, is_eval: bool | None = None,
                      min_trials: int = 1, z: float = 1.96) -> Revision | None:
        """The revision with the highest Wilson lower bound of its success rate.

        Ranking by the lower bound (not the raw rate) keeps a lucky 2/2 from beating 45/50.
        Ties go to the higher rate, then more trials, then the older revision. Revisions with
        fewer than ``min_trials`` trials are not eligible; None if no revision is.
        """
        ranked = []
        for s in self.revision_stats(experiment, is_eval=is_eval):
            if s.n >= min_trials:
                low, _ = wilson_interval(s.successes, s.n, z)
                ranked.append((low, s.success_rate, s.n, s.revision))
        if not ranked:
            return None
        revs = {r.id: r for r in self.revisions(experiment)}
        ranked.sort(key=lambda x: (-x[0], -x[1], -x[2],
                                   revs[x[3]].created_at if x[3] in revs else 0.0))
        best = ranked[0][3]
        return revs.get(best) or Revision(experiment, best, branch='')

    # --- events -----------------------------------------------------------------------------
    def add_event(self, experiment: str, kind: str, ts: float,
                  data: dict[str, Any] | None = None) -> None:
        """Append an event (not deduplicated: carry your own key in ``data`` if needed)."""
        values = {'experiment': experiment, 'kind': kind, 'ts': float(ts),
                  'data': dict(data or {})}
        self._run(lambda conn: conn.execute(events_table.insert().values(**values)))

    def events(self, experiment: str, kind: str | None = None) -> list[Event]:
        """Events of an experiment in time order (then insertion order)."""
        c = events_table.c
        query = sa.select(events_table).where(c.experiment == experiment)
        if kind is not None:
            query = query.where(c.kind == kind)
        query = query.order_by(c.ts, c.id)
        return self._read(lambda conn: [_row(Event, r) for r in conn.execute(query)])

    # --- coding-agent sessions ---------------------------------------------------------------
    def put_agent_session(self, session: AgentSession) -> AgentSession:
        """Insert or update a coding agent's session row (keyed by experiment and id)."""
        values = dataclasses.asdict(session)
        c = agent_sessions_table.c

        def work(conn: Connection) -> AgentSession:
            if not self._insert_ignore(conn, agent_sessions_table, values):
                conn.execute(agent_sessions_table.update().where(
                    c.experiment == session.experiment, c.id == session.id).values(**values))
            return session
        return self._run(work)

    def agent_sessions(self, experiment: str, agent: str | None = None) -> list[AgentSession]:
        """The coding-agent sessions of an experiment, oldest first."""
        c = agent_sessions_table.c
        query = sa.select(agent_sessions_table).where(c.experiment == experiment)
        if agent is not None:
            query = query.where(c.agent == agent)
        query = query.order_by(c.started_at, c.id)
        return self._read(lambda conn: [_row(AgentSession, r) for r in conn.execute(query)])

    def add_usage_sample(self, sample: UsageSample) -> None:
        """Append a session's cumulative usage at one turn."""
        self._run(lambda conn: conn.execute(
            agent_usage_table.insert().values(**dataclasses.asdict(sample))))

    def usage_samples(self, experiment: str) -> list[UsageSample]:
        """Every usage sample of an experiment, in time order."""
        c = agent_usage_table.c
        query = sa.select(agent_usage_table).where(c.experiment == experiment).order_by(
            c.ts, c.id)
        return self._read(lambda conn: [_row(UsageSample, r) for r in conn.execute(query)])

    def add_agent_trials(self, experiment: str, session: str, trial_ids: Iterable[str]) -> int:
        """Note which session ran these trials (idempotent); the number newly noted."""
        ids = [str(t) for t in trial_ids if t]

        def work(conn: Connection) -> int:
            return sum(self._insert_ignore(conn, agent_trials_table, {
                'trial_id': t, 'experiment': experiment, 'session': session}) for t in ids)
        return self._run(work) if ids else 0

    def agent_trial_ids(self, experiment: str, session: str | None = None) -> dict[str, str]:
        """trial_id -> session for the trials coding agents ran in an experiment."""
        c = agent_trials_table.c
        query = sa.select(c.trial_id, c.session).where(c.experiment == experiment)
        if session is not None:
            query = query.where(c.session == session)
        return self._read(lambda conn: {r.trial_id: r.session for r in conn.execute(query)})
