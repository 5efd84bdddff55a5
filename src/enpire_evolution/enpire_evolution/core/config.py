"""Config dataclasses of the evolution module (store, compare, prune, report, retention)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from enpire_common.config import require
from enpire_common.paths import enpire_home

DB_FILENAME = 'enpire.db'


def default_store_url(home: str | Path | None = None) -> str:
    """``sqlite:///<home>/enpire.db`` for :func:`enpire_home` ``(home)``."""
    return f'sqlite:///{enpire_home(home) / DB_FILENAME}'


@dataclass(frozen=True)
class StoreConfig:
    """How the experiment store talks to its database.

    Attributes:
        url: any SQLAlchemy URL; empty means ``sqlite:///$ENPIRE_HOME/enpire.db``.
        busy_timeout_s: how long SQLite waits for another writer's lock before failing.
        max_retries: extra attempts of a transaction that lost a conflict: 'database is
            locked' (SQLite), a serialization failure or deadlock (PostgreSQL).
        retry_backoff_s: first pause between attempts (doubles each time, capped at 1 s).
        reconnect_deadline_s: how long a read or write keeps retrying while the database
            server is unreachable or dropped its connection (a restart, a network cut), from
            its first failure; then it fails with EnpireTimeoutError naming the server.
        connect_timeout_s: how long one connection attempt to a database server may take.
    """

    url: str = ''
    busy_timeout_s: float = 30.0
    max_retries: int = 8
    retry_backoff_s: float = 0.05
    reconnect_deadline_s: float = 30.0
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        require(self.busy_timeout_s > 0, 'busy_timeout_s', self.busy_timeout_s, 'must be > 0')
        require(self.max_retries >= 0, 'max_retries', self.max_retries, 'must be >= 0')
        require(self.retry_backoff_s >= 0, 'retry_backoff_s', self.retry_backoff_s,
                'must be >= 0')
        require(self.reconnect_deadline_s >= 0, 'reconnect_deadline_s',
                self.reconnect_deadline_s, 'must be >= 0')
        require(self.connect_timeout_s > 0, 'connect_timeout_s', self.connect_timeout_s,
                'must be > 0')


@dataclass(frozen=True)
class CompareConfig:
    """The decision rule of :func:`enpire_evolution.core.compare.compare`.

    Attributes:
        alpha: significance level of the two-sided Fisher exact test.
        z: normal quantile of the Wilson intervals (1.96 = 95 %).
        min_trials: below this many trials on either side the decision is 'inconclusive'.
    """

    alpha: float = 0.05
    z: float = 1.96
    min_trials: int = 10

    def __post_init__(self) -> None:
        require(0 < self.alpha < 1, 'alpha', self.alpha, 'must be in (0, 1)')
        require(self.z > 0, 'z', self.z, 'must be > 0')
        require(self.min_trials >= 1, 'min_trials', self.min_trials, 'must be >= 1')


@dataclass(frozen=True)
class PruneConfig:
    """When :func:`enpire_evolution.core.compare.prune` drops a branch.

    Attributes:
        min_trials: a branch needs this many trials before it can be pruned or be the best.
        z: normal quantile of the Wilson intervals (1.96 = 95 %).
    """

    min_trials: int = 20
    z: float = 1.96

    def __post_init__(self) -> None:
        require(self.min_trials >= 1, 'min_trials', self.min_trials, 'must be >= 1')
        require(self.z > 0, 'z', self.z, 'must be > 0')


@dataclass(frozen=True)
class ReportConfig:
    """What the experiment report computes.

    Attributes:
        rolling_window: episodes in the rolling success rate (DESIGN section 7: 50).
        z: normal quantile of the Wilson intervals (1.96 = 95 %).
        goal_consecutive: consecutive successes that count as 'solved' for time to success.
    """

    rolling_window: int = 50
    z: float = 1.96
    goal_consecutive: int = 5

    def __post_init__(self) -> None:
        require(self.rolling_window >= 1, 'rolling_window', self.rolling_window, 'must be >= 1')
        require(self.z > 0, 'z', self.z, 'must be > 0')
        require(self.goal_consecutive >= 1, 'goal_consecutive', self.goal_consecutive,
                'must be >= 1')


@dataclass(frozen=True)
class RetentionConfig:
    """What ``enpire gc`` thins (:mod:`enpire_evolution.core.retention`).

    Attributes:
        keep_per_revision: routine successes of a revision that keep their videos, newest
            first; the older ones lose them (trial.json always stays).
        bags: thin the bags (``episode/``) of those trials too, not only their MP4s.
    """

    keep_per_revision: int = 3
    bags: bool = False

    def __post_init__(self) -> None:
        require(self.keep_per_revision >= 0, 'keep_per_revision', self.keep_per_revision,
                'must be >= 0 (0 thins every routine success)')
