"""The experiment store: experiments, agents, branches, revisions, trials, verdicts, events.

SQLAlchemy Core over SQLite by default (``sqlite:///$ENPIRE_HOME/enpire.db``); any SQLAlchemy
URL works (PostgreSQL for a fleet). Several processes may write at once: SQLite runs in WAL
mode with a busy timeout, every write is one short ``BEGIN IMMEDIATE`` transaction, and a
transaction that still hits 'database is locked' is retried with backoff.

Every insert is idempotent, keyed by its natural id, so an agent that crashed can replay its
log and resume: re-recording a ``trial_id`` is a no-op, ``add_revision`` of a known id returns
the stored one, and likewise for experiments, agents and branches. Times are floats (epoch
seconds) passed in by callers; the store never reads a clock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from enpire_common.errors import ConfigError, UnknownNameError
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

def _row(cls: type[T], row: Any) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _check(value: str, choices: Sequence[str], kind: str) -> None:
    if value not in choices:
        raise UnknownNameError(kind, value, choices)


def _is_locked(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return 'locked' in text or 'busy' in text


class ExperimentStore:
    """The experiment database. Thread- and process-safe; see the module docstring.

    Args:
        url: SQLAlchemy URL; empty/``None`` means ``config.url`` or the default SQLite file.
        config: timeouts and retries.
        sleep: pause function used between retries (injected for tests).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, url: str | None = None, *, config: StoreConfig | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config or StoreConfig()
        self.url = url or self.config.url or default_store_url()
        self._sleep = sleep
        try:
            parsed = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"store url '{self.url}' is not a SQLAlchemy URL ({exc}); "
                              "use e.g. sqlite:///runs/enpire.db") from None
        self._sqlite = parsed.get_backend_name() == 'sqlite'
        if self._sqlite and parsed.database not in (None, '', ':memory:'):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(parsed)
        if self._sqlite:
            self._setup_sqlite(self.engine)
        self._run(lambda conn: metadata.create_all(conn))

    @classmethod
    def open(cls, home: str | Path | None = None, **kwargs: Any) -> ExperimentStore:
        """The default store of a runtime directory (``--home``, ``$ENPIRE_HOME`` or ./runs)."""
        return cls(default_store_url(enpire_home(home)), **kwargs)

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
    def _run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one short transaction, retrying when the database is locked."""
        delay = self.config.retry_backoff_s
        for attempt in range(self.config.max_retries + 1):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except OperationalError as exc:
                if not _is_locked(exc) or attempt == self.config.max_retries:
                    raise
            self._sleep(delay)
            delay = min(1.0, delay * 2 if delay else 0.05)
        raise AssertionError('unreachable')  # pragma: no cover

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn.execution_options(**{_READ_ONLY: True})

    def _insert_ignore(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert unless the primary key exists; True if a row was inserted."""
        name = conn.dialect.name
        if name in ('sqlite', 'postgresql'):
            if name == 'sqlite':
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            result = conn.execute(insert(table).values(**values).on_conflict_do_nothing())
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
        with self._read() as conn:
            row = conn.execute(sa.select(experiments_table).where(
                experiments_table.c.id == experiment_id)).first()
            if row is None:
                ids = conn.execute(sa.select(experiments_table.c.id)).scalars().all()
                raise UnknownNameError('experiment', experiment_id, ids)
            return _row(Experiment, row)

    def experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        with self._read() as conn:
            rows = conn.execute(sa.select(experiments_table).order_by(
                experiments_table.c.created_at, experiments_table.c.id))
            return [_row(Experiment, r) for r in rows]

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
        with self._read() as conn:
            rows = conn.execute(sa.select(agents_table).where(
                agents_table.c.experiment == experiment).order_by(agents_table.c.id))
            return [_row(Agent, r) for r in rows]

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
        with self._read() as conn:
            return self._branch(conn, experiment, name)

    def branches(self, experiment: str, status: str | None = None) -> list[Branch]:
        """The branches of an experiment (optionally only one status), oldest first."""
        query = sa.select(branches_table).where(branches_table.c.experiment == experiment)
        if status is not None:
            _check(status, BRANCH_STATUSES, 'branch status')
            query = query.where(branches_table.c.status == status)
        with self._read() as conn:
            rows = conn.execute(query.order_by(branches_table.c.created_at,
                                               branches_table.c.name))
            return [_row(Branch, r) for r in rows]

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
        with self._read() as conn:
            return self._revision(conn, experiment, ref)

    def has_revision(self, experiment: str, revision_id: str) -> bool:
        """Whether the exact revision id is stored."""
        c = revisions_table.c
        with self._read() as conn:
            return conn.execute(sa.select(c.id).where(
                c.experiment == experiment, c.id == revision_id)).first() is not None

    def revisions(self, experiment: str, branch: str | None = None) -> list[Revision]:
        """The revisions of an experiment (or one branch), in creation order."""
        c = revisions_table.c
        query = sa.select(revisions_table).where(c.experiment == experiment)
        if branch is not None:
            query = query.where(c.branch == branch)
        with self._read() as conn:
            rows = conn.execute(query.order_by(c.created_at, c.id))
            return [_row(Revision, r) for r in rows]

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
            changes: replaying a log after a crash is safe).
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
        with self._read() as conn:
            row = conn.execute(sa.select(trials_table).where(
                trials_table.c.trial_id == trial_id)).first()
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
        with self._read() as conn:
            rows = conn.execute(query.order_by(c.ended_at, c.trial_id))
            return [_row(Trial, r) for r in rows]

    def trial_ids(self, experiment: str) -> set[str]:
        """Ids of the stored trials of an experiment (what a resuming agent can skip)."""
        with self._read() as conn:
            return set(conn.execute(sa.select(trials_table.c.trial_id).where(
                trials_table.c.experiment == experiment)).scalars())

    def count_trials(self, experiment: str | None = None) -> int:
        """Number of stored trials (of one experiment, or all)."""
        query = sa.select(sa.func.count()).select_from(trials_table)
        if experiment is not None:
            query = query.where(trials_table.c.experiment == experiment)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def verdicts(self, trial_id: str) -> list[Verdict]:
        """The verdicts of a trial, by view then backend."""
        c = verdicts_table.c
        with self._read() as conn:
            rows = conn.execute(sa.select(verdicts_table).where(c.trial_id == trial_id)
                                .order_by(c.view, c.backend))
            return [_row(Verdict, r) for r in rows]

    def verdicts_for(self, experiment: str) -> dict[str, list[Verdict]]:
        """Every verdict of an experiment's trials, grouped by trial id."""
        v, t = verdicts_table.c, trials_table.c
        query = (sa.select(verdicts_table).join(trials_table, v.trial_id == t.trial_id)
                 .where(t.experiment == experiment).order_by(v.trial_id, v.view, v.backend))
        out: dict[str, list[Verdict]] = {}
        with self._read() as conn:
            for r in conn.execute(query):
                out.setdefault(r.trial_id, []).append(_row(Verdict, r))
        return out

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
        with self._read() as conn:
            return [RevisionStats(r.revision, r.branch, int(r.n), int(r.successes or 0),
                                  None if r.mean_score is None else float(r.mean_score))
                    for r in conn.execute(query)]

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
        with self._read() as conn:
            return [_row(Event, r) for r in conn.execute(query.order_by(c.ts, c.id))]

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
        with self._read() as conn:
            return [_row(AgentSession, r)
                    for r in conn.execute(query.order_by(c.started_at, c.id))]

    def add_usage_sample(self, sample: UsageSample) -> None:
        """Append a session's cumulative usage at one turn."""
        self._run(lambda conn: conn.execute(
            agent_usage_table.insert().values(**dataclasses.asdict(sample))))

    def usage_samples(self, experiment: str) -> list[UsageSample]:
        """Every usage sample of an experiment, in time order."""
        c = agent_usage_table.c
        with self._read() as conn:
            rows = conn.execute(sa.select(agent_usage_table).where(
                c.experiment == experiment).order_by(c.ts, c.id))
            return [_row(UsageSample, r) for r in rows]

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
        with self._read() as conn:
            return {r.trial_id: r.session for r in conn.execute(query)}
