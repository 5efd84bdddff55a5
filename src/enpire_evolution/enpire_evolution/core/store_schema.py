"""The experiment store's tables and row types (one frozen dataclass per table).

A trial's row is built from the rollout's one trial record (:meth:`Trial.from_record`,
:func:`verdicts_of`); :mod:`enpire_evolution.core.store` reads and writes these rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from enpire_rollout.core.trial_record import TrialRecord

metadata = sa.MetaData()

experiments_table = sa.Table(
    'experiments', metadata,
    sa.Column('id', sa.String(200), primary_key=True),
    sa.Column('task', sa.String(200), nullable=False),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('config', sa.JSON, nullable=False),
    sa.Column('status', sa.String(32), nullable=False),
)

agents_table = sa.Table(
    'agents', metadata,
    sa.Column('experiment', sa.String(200), sa.ForeignKey('experiments.id'), primary_key=True),
    sa.Column('id', sa.String(200), primary_key=True),
    sa.Column('kind', sa.String(100), nullable=False),
    sa.Column('cell', sa.String(100), nullable=False),
)

branches_table = sa.Table(
    'branches', metadata,
    sa.Column('experiment', sa.String(200), sa.ForeignKey('experiments.id'), primary_key=True),
    sa.Column('name', sa.String(200), primary_key=True),
    sa.Column('agent', sa.String(200), nullable=True),
    sa.Column('parent', sa.String(200), nullable=True),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('status', sa.String(16), nullable=False),
    sa.Column('pruned_reason', sa.Text, nullable=False),
)

revisions_table = sa.Table(
    'revisions', metadata,
    sa.Column('experiment', sa.String(200), sa.ForeignKey('experiments.id'), primary_key=True),
    sa.Column('id', sa.String(64), primary_key=True),
    sa.Column('branch', sa.String(200), nullable=False),
    sa.Column('parent', sa.String(64), nullable=True),
    sa.Column('commit', sa.String(64), nullable=False),
    sa.Column('hypothesis', sa.Text, nullable=False),
    sa.Column('regime', sa.String(32), nullable=False),
    sa.Column('created_at', sa.Float, nullable=False),
    sa.Column('params', sa.JSON, nullable=False),
    sa.Column('origin', sa.Text, nullable=False),
    sa.Column('status', sa.String(16), nullable=False),
    sa.Index('ix_revisions_branch', 'experiment', 'branch'),
)

trials_table = sa.Table(
    'trials', metadata,
    sa.Column('trial_id', sa.String(200), primary_key=True),
    sa.Column('experiment', sa.String(200), sa.ForeignKey('experiments.id'), nullable=False),
    sa.Column('revision', sa.String(64), nullable=False),
    sa.Column('branch', sa.String(200), nullable=False),
    sa.Column('cell', sa.String(100), nullable=False),
    sa.Column('seed', sa.BigInteger, nullable=False),
    sa.Column('outcome', sa.String(32), nullable=False),
    sa.Column('success', sa.Boolean, nullable=False),
    sa.Column('score', sa.Float, nullable=False),
    sa.Column('steps', sa.Integer, nullable=False),
    sa.Column('started_at', sa.Float, nullable=False),
    sa.Column('ended_at', sa.Float, nullable=False),
    sa.Column('duration_s', sa.Float, nullable=False),
    sa.Column('reset_s', sa.Float, nullable=False),
    sa.Column('record_dir', sa.Text, nullable=False),
    sa.Column('reason', sa.Text, nullable=False),
    sa.Column('is_eval', sa.Boolean, nullable=False),
    sa.Index('ix_trials_experiment', 'experiment', 'ended_at'),
    sa.Index('ix_trials_revision', 'experiment', 'revision'),
    sa.Index('ix_trials_branch', 'experiment', 'branch'),
)

verdicts_table = sa.Table(
    'verdicts', metadata,
    sa.Column('trial_id', sa.String(200), sa.ForeignKey('trials.trial_id'), primary_key=True),
    sa.Column('view', sa.String(100), primary_key=True),
    sa.Column('backend', sa.String(100), primary_key=True),
    sa.Column('success', sa.Boolean, nullable=False),
    sa.Column('score', sa.Float, nullable=False),
)

events_table = sa.Table(
    'events', metadata,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('ts', sa.Float, nullable=False),
    sa.Column('experiment', sa.String(200), nullable=False),
    sa.Column('kind', sa.String(100), nullable=False),
    sa.Column('data', sa.JSON, nullable=False),
    sa.Index('ix_events_experiment', 'experiment', 'ts'),
)

agent_sessions_table = sa.Table(
    'agent_sessions', metadata,
    sa.Column('experiment', sa.String(200), sa.ForeignKey('experiments.id'), primary_key=True),
    sa.Column('id', sa.String(200), primary_key=True),
    sa.Column('agent', sa.String(200), nullable=False),
    sa.Column('kind', sa.String(100), nullable=False),
    sa.Column('model', sa.String(200), nullable=False),
    sa.Column('cell', sa.String(100), nullable=False),
    sa.Column('branch', sa.String(200), nullable=False),
    sa.Column('run', sa.Integer, nullable=False),
    sa.Column('started_at', sa.Float, nullable=False),
    sa.Column('ended_at', sa.Float, nullable=True),
    sa.Column('input_tokens', sa.BigInteger, nullable=False),
    sa.Column('output_tokens', sa.BigInteger, nullable=False),
    sa.Column('cache_read_tokens', sa.BigInteger, nullable=False),
    sa.Column('cache_write_tokens', sa.BigInteger, nullable=False),
    sa.Column('cost_usd', sa.Float, nullable=True),
    sa.Column('turns', sa.Integer, nullable=False),
    sa.Column('stop_reason', sa.String(64), nullable=False),
    sa.Column('exit_code', sa.Integer, nullable=True),
    sa.Column('transcript', sa.Text, nullable=False),
    sa.Column('cli_session', sa.String(200), nullable=False),
    sa.Column('confinement', sa.String(64), nullable=False),
)

agent_usage_table = sa.Table(
    'agent_usage', metadata,
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=True),
    sa.Column('experiment', sa.String(200), nullable=False),
    sa.Column('session', sa.String(200), nullable=False),
    sa.Column('ts', sa.Float, nullable=False),
    sa.Column('tokens', sa.BigInteger, nullable=False),
    sa.Column('cost_usd', sa.Float, nullable=True),
    sa.Column('turns', sa.Integer, nullable=False),
    sa.Index('ix_agent_usage_experiment', 'experiment', 'ts'),
)

agent_trials_table = sa.Table(
    'agent_trials', metadata,
    sa.Column('trial_id', sa.String(200), primary_key=True),
    sa.Column('experiment', sa.String(200), nullable=False),
    sa.Column('session', sa.String(200), nullable=False),
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
