"""The experiment store's tables and row types (one frozen dataclass per table).

A trial's row is built from the rollout's one trial record (:meth:`Trial.from_record`,
:func:`verdicts_of`); :mod:`enpire_evolution.core.store` reads and writes these rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from enpire_rollout.core.trial_record import TrialRecord


class _JsonText(sa.types.TypeDecorator[Any]):
    """JSON kept as text, exactly as SQLite keeps it.

    PostgreSQL's ``json`` type rejects the NaN and Infinity that Python's json writes (a
    failed candidate's value, say), which SQLite stores and reads back; as text both
    backends hold the same values. ``data::jsonb`` still queries it in SQL.
    """

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else json.loads(value)


def _str(length: int | None = None) -> sa.types.TypeEngine[str]:
    """A text column, the same on every backend.

    SQLite never enforces a ``VARCHAR`` length, so PostgreSQL gets ``TEXT`` (a value that fits
    one store fits the other), collated ``"C"``: byte order, as SQLite sorts, not the server
    locale's (where 'a' < 'B' < 'b' and underscores are skipped), so ids and names come back
    in the same order from either store.
    """
    base: sa.types.TypeEngine[str] = sa.String(length) if length else sa.Text()
    return base.with_variant(sa.Text(collation='C'), 'postgresql')


_JSON = sa.JSON().with_variant(_JsonText(), 'postgresql')

metadata = sa.MetaData()

experiments_table = sa.Table(
    'experiments', metadata,
    sa.Column('id', _str(200), primary_key=True),
    sa.Column('task', _str(200), nullable=False),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('config', _JSON, nullable=False),
    sa.Column('status', _str(32), nullable=False),
)

agents_table = sa.Table(
    'agents', metadata,
    sa.Column('experiment', _str(200), sa.ForeignKey('experiments.id'), primary_key=True),
    sa.Column('id', _str(200), primary_key=True),
    sa.Column('kind', _str(100), nullable=False),
    sa.Column('cell', _str(100), nullable=False),
)

branches_table = sa.Table(
    'branches', metadata,
    sa.Column('experiment', _str(200), sa.ForeignKey('experiments.id'), primary_key=True),
    sa.Column('name', _str(200), primary_key=True),
    sa.Column('agent', _str(200), nullable=True),
    sa.Column('parent', _str(200), nullable=True),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('status', _str(16), nullable=False),
    sa.Column('pruned_reason', _str(), nullable=False),
)

revisions_table = sa.Table(
    'revisions', metadata,
    sa.Column('experiment', _str(200), sa.ForeignKey('experiments.id'), primary_key=True),
    sa.Column('id', _str(64), primary_key=True),
    sa.Column('branch', _str(200), nullable=False),
    sa.Column('parent', _str(64), nullable=True),
    sa.Column('commit', _str(64), nullable=False),
    sa.Column('hypothesis', _str(), nullable=False),
    sa.Column('regime', _str(32), nullable=False),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('params', _JSON, nullable=False),
    sa.Column('origin', _str(), nullable=False),
    sa.Column('status', _str(16), nullable=False),
    sa.Index('ix_revisions_branch', 'experiment', 'branch'),
)

trials_table = sa.Table(
    'trials', metadata,
    sa.Column('trial_id', _str(200), primary_key=True),
    sa.Column('experiment', _str(200), sa.ForeignKey('experiments.id'), nullable=False),
    sa.Column('revision', _str(64), nullable=False),
    sa.Column('branch', _str(200), nullable=False),
    sa.Column('cell', _str(100), nullable=False),
    sa.Column('seed', sa.BigInteger, nullable=False),
    sa.Column('outcome', _str(32), nullable=False),
    sa.Column('success', sa.Boolean, nullable=False),
    sa.Column('score', sa.Float, nullable=False),
    sa.Column('steps', sa.Integer, nullable=False),
    sa.Column('started_at', sa.Float, nullable=False),
    sa.Column('ended_at', sa.Float, nullable=False),
    sa.Column('duration_s', sa.Float, nullable=False),
    sa.Column('reset_s', sa.Float, nullable=False),
    sa.Column('record_dir', _str(), nullable=False),
    sa.Column('reason', _str(), nullable=False),
    sa.Column('is_eval', sa.Boolean, nullable=False),
    sa.Index('ix_trials_experiment', 'experiment', 'ended_at'),
    sa.Index('ix_trials_revision', 'experiment', 'revision'),
    sa.Index('ix_trials_branch', 'experiment', 'branch'),
)

verdicts_table = sa.Table(
    'verdicts', metadata,
    sa.Column('trial_id', _str(200), sa.ForeignKey('trials.trial_id'), primary_key=True),
    sa.Column('view', _str(100), primary_key=True),
    sa.Column('backend', _str(100), primary_key=True),
    sa.Column('success', sa.Boolean, nullable=False),
    sa.Column('score', sa.Float, nullable=False),
)

events_table = sa.Table(
    'events', metadata,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('ts', sa.Float, nullable=False),
    sa.Column('experiment', _str(200), nullable=False),
    sa.Column('kind', _str(100), nullable=False),
    sa.Column('data', _JSON, nullable=False),
    sa.Index('ix_events_experiment', 'experiment', 'ts'),
)

agent_sessions_table = sa.Table(
    'agent_sessions', metadata,
    sa.Column('experiment', _str(200), sa.ForeignKey('experiments.id'), primary_key=True),
    sa.Column('id', _str(200), primary_key=True),
    sa.Column('agent', _str(200), nullable=False),
    sa.Column('kind', _str(100), nullable=False),
    sa.Column('model', _str(200), nullable=False),
    sa.Column('cell', _str(100), nullable=False),
    sa.Column('branch', _str(200), nullable=False),
    sa.Column('run', sa.Integer, nullable=False),
    sa.Column('started_at', sa.Float, nullable=False),
    sa.Column('ended_at', sa.Float, nullable=True),
    sa.Column('input_tokens', sa.BigInteger, nullable=False),
    sa.Column('output_tokens', sa.BigInteger, nullable=False),
    sa.Column('cache_read_tokens', sa.BigInteger, nullable=False),
    sa.Column('cache_write_tokens', sa.BigInteger, nullable=False),
    sa.Column('cost_usd', sa.Float, nullable=True),
    sa.Column('turns', sa.Integer, nullable=False),
    sa.Column('stop_reason', _str(64), nullable=False),
    sa.Column('exit_code', sa.Integer, nullable=True),
    sa.Column('transcript', _str(), nullable=False),
    sa.Column('cli_session', _str(200), nullable=False),
    sa.Column('confinement', _str(64), nullable=False),
)

agent_usage_table = sa.Table(
    'agent_usage', metadata,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('experiment', _str(200), nullable=False),
    sa.Column('session', _str(200), nullable=False),
    sa.Column('ts', sa.Float, nullable=False),
    sa.Column('tokens', sa.BigInteger, nullable=False),
    sa.Column('cost_usd', sa.Float, nullable=True),
    sa.Column('turns', sa.Integer, nullable=False),
    sa.Index('ix_agent_usage_experiment', 'experiment', 'ts'),
)

agent_trials_table = sa.Table(
    'agent_trials', metadata,
    sa.Column('trial_id', _str(200), primary_key=True),
    sa.Column('experiment', _str(200), nullable=False),
    sa.Column('session', _str(200), nullable=False),
    sa.Index('ix_agent_trials_session', 'experiment', 'session'),
)


# --- row types -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Experiment:
    """One experiment: a task, a config and its status."""

    id: str
    task: str
    created_at: float
    config: dict[str, Any] = field(default_factory=dict)
    status: str = 'running'


@dataclass(frozen=True)
class Agent:
    """An agent taking part in an experiment (built-in, claude, codex, ...) and its cell."""

    experiment: str
    id: str
    kind: str
    cell: str = ''


@dataclass(frozen=True)
class Branch:
    """A line of revisions (a git branch of the policy workspace)."""

    experiment: str
    name: str
    agent: str | None = None
    parent: str | None = None
    created_at: float = 0.0
    status: str = 'active'
    pruned_reason: str = ''


@dataclass(frozen=True)
class Revision:
    """A policy revision (sha256 content id) with its commit, parent and hypothesis.

    ``origin`` says where an idea came from when it was not the branch's own, e.g.
    ``'borrowed from agent a1 revision 3f2c...'``.
    """

    experiment: str
    id: str
    branch: str
    parent: str | None = None
    commit: str = ''
    hypothesis: str = ''
    regime: str = 'heuristic'
    created_at: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    origin: str = ''
    status: str = 'proposed'


@dataclass(frozen=True)
class Trial:
    """One finished trial: the store's row of the rollout's ``TrialRecord``.

    ``is_eval`` separates held-out evaluation trials from tuning trials.
    """

    trial_id: str
    experiment: str
    revision: str
    branch: str
    cell: str
    seed: int
    outcome: str
    success: bool
    score: float
    steps: int = 0
    started_at: float = 0.0
    ended_at: float = 0.0
    duration_s: float = 0.0
    reset_s: float = 0.0
    record_dir: str = ''
    reason: str = ''
    is_eval: bool = False

    @classmethod
    def from_record(cls, record: TrialRecord, *, branch: str, is_eval: bool) -> Trial:
        """The row of a finished trial on ``branch`` (the revision's branch in the store)."""
        r = record
        return cls(trial_id=r.trial_id, experiment=r.experiment_id, revision=r.revision_id,
                   branch=branch, cell=r.cell_id, seed=r.seed, outcome=r.outcome,
                   success=r.success, score=r.score, steps=r.steps, started_at=r.started_at,
                   ended_at=r.ended_at, duration_s=r.duration_s, reset_s=r.reset_s,
                   record_dir=r.record_dir, reason=r.reason, is_eval=is_eval)


@dataclass(frozen=True)
class Verdict:
    """One verifier judgement of one view of a trial ('fused' for the fused one)."""

    trial_id: str
    view: str
    backend: str
    success: bool
    score: float


def verdicts_of(record: TrialRecord) -> list[Verdict]:
    """The verdict rows of a finished trial (its per-view verdicts, fused last)."""
    return [Verdict(trial_id=record.trial_id, view=str(v.get('view', '')),
                    backend=str(v.get('backend', '')), success=bool(v.get('success')),
                    score=float(v.get('score', 0.0))) for v in record.verdicts]


@dataclass(frozen=True)
class Event:
    """A free-form experiment event (agent decisions, prunes, errors)."""

    ts: float
    experiment: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RevisionStats:
    """Trial counts of one revision, as aggregated by the database."""

    revision: str
    branch: str
    n: int
    successes: int
    mean_score: float | None

    @property
    def success_rate(self) -> float:
        return self.successes / self.n if self.n else 0.0


@dataclass(frozen=True)
class AgentSession:
    """One run of a coding agent's process (a restart is a new session, ``run`` + 1).

    Tokens follow one convention for every agent: ``input_tokens`` are the uncached prompt
    tokens, ``cache_read_tokens`` / ``cache_write_tokens`` the prompt tokens read from / written
    to the provider's cache, ``output_tokens`` the generated ones (reasoning included);
    :attr:`tokens` is their sum. ``cost_usd`` is None when the agent reports no cost.
    """

    experiment: str
    id: str
    agent: str
    kind: str
    model: str = ''
    cell: str = ''
    branch: str = ''
    run: int = 0
    started_at: float = 0.0
    ended_at: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    turns: int = 0
    stop_reason: str = 'running'
    exit_code: int | None = None
    transcript: str = ''
    cli_session: str = ''
    confinement: str = ''

    @property
    def tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_read_tokens
                + self.cache_write_tokens)

    @property
    def wall_s(self) -> float:
        return max(0.0, (self.ended_at or self.started_at) - self.started_at)


@dataclass(frozen=True)
class UsageSample:
    """A session's cumulative usage at ``ts`` (one per turn): the token-time curve."""

    experiment: str
    session: str
    ts: float
    tokens: int
    cost_usd: float | None
    turns: int
