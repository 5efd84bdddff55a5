"""Config dataclasses of enpire_reset."""

from __future__ import annotations

from dataclasses import dataclass

from enpire_common.config import require
from enpire_common.tasks import DEFAULT_TASK, TaskSpec


@dataclass(frozen=True)
class ResetConfig:
    """How one reset runs and what counts as a verified start.

    Attributes:
        strategy: reset strategy id (registry), e.g. ``sim_place``.
        fallback: a strategy tried once when every attempt of ``strategy`` failed ('' =
            none), recorded as ``<method> (fallback)``: a simulated arm cell's
            ``sim_place`` behind its robot-executed reset.
        max_attempts: placements tried before ResetFailedError (re-resets included).
        timeout_s: wall budget of the whole reset, seconds.
        settle_s: wait after placing before verifying (scene at rest, fresh frame out).
        call_timeout_s: bound of each place / verify call, seconds.
        retry_backoff_s: wait before a retry (a late frame or a starting verifier), seconds.
        pose_tolerance_px: largest position error between requested and observed pose.
        pose_tolerance_rad: largest angle error between requested and observed pose.
        not_solved_max_score: a start whose verified score exceeds this counts as already
            solved and is re-reset with a derived seed.
        pause_after_failures: consecutive failed reset attempts (across goals) after which
            the cell pauses with an alert and refuses resets until resumed (0 = never;
            :mod:`enpire_reset.core.pause`).
    """

    strategy: str = 'sim_place'
    fallback: str = ''
    max_attempts: int = 3
    timeout_s: float = 10.0
    settle_s: float = 0.2
    call_timeout_s: float = 3.0
    retry_backoff_s: float = 0.5
    pose_tolerance_px: float = 6.0
    pose_tolerance_rad: float = 0.12
    not_solved_max_score: float = 0.95
    pause_after_failures: int = 6

    def __post_init__(self) -> None:
        require(bool(self.strategy), 'strategy', self.strategy, 'must name a reset strategy')
        require(self.max_attempts >= 1, 'max_attempts', self.max_attempts, 'must be >= 1')
        require(self.timeout_s > 0, 'timeout_s', self.timeout_s, 'must be > 0 s')
        require(self.settle_s >= 0, 'settle_s', self.settle_s, 'must be >= 0 s')
        require(self.call_timeout_s > 0, 'call_timeout_s', self.call_timeout_s,
                'must be > 0 s')
        require(self.retry_backoff_s >= 0, 'retry_backoff_s', self.retry_backoff_s,
                'must be >= 0 s')
        require(self.pose_tolerance_px > 0, 'pose_tolerance_px', self.pose_tolerance_px,
                "must be > 0 (the task's position unit)")
        require(self.pose_tolerance_rad > 0, 'pose_tolerance_rad', self.pose_tolerance_rad,
                'must be > 0 rad')
        require(0.0 < self.not_solved_max_score <= 1.0, 'not_solved_max_score',
                self.not_solved_max_score, 'must be in (0, 1]')
        require(self.pause_after_failures >= 0, 'pause_after_failures',
                self.pause_after_failures, 'must be >= 0 (0 = never pause)')

    @classmethod
    def from_task(cls, task: TaskSpec, **overrides: object) -> ResetConfig:
        """The task's ``reset`` section, with explicit overrides (unset/0 values ignored)."""
        r = task.section('reset')
        values = {k: r[k] for k in ('strategy', 'max_attempts', 'timeout_s',
                                    'pose_tolerance_px', 'pose_tolerance_rad',
                                    'not_solved_max_score', 'fallback',
                                    'pause_after_failures') if k in r}
        if 'pose_tolerance' in r:   # in the task's position unit (px, m); Push-T says _px
            values['pose_tolerance_px'] = r['pose_tolerance']
        values.update({k: v for k, v in overrides.items() if v not in (None, '', 0, 0.0)})
        return cls(**values)


@dataclass(frozen=True)
class ResetServerConfig:
    """Parameters of the ``reset_server`` node (empty / 0 = the task's reset section).

    Attributes:
        task: task id from the task registry.
        strategy: default strategy when a goal names none.
        max_attempts: default attempts when a goal says 0.
        timeout_s: default reset budget when a goal says 0, seconds.
        settle_s: wait after placing before verifying, seconds.
        call_timeout_s: bound of each place and verify_success call, seconds.
        retry_backoff_s: wait before a retry, seconds.
        server_wait_s: how long to wait for place and verify_success to appear, seconds.
        pause_after_failures: consecutive failed attempts that pause the cell (-1 = the
            task's value, 0 = never).
    """

    task: str = DEFAULT_TASK
    strategy: str = ''
    max_attempts: int = 0
    timeout_s: float = 0.0
    settle_s: float = 0.2
    call_timeout_s: float = 3.0
    retry_backoff_s: float = 0.5
    server_wait_s: float = 5.0
    pause_after_failures: int = -1

    def __post_init__(self) -> None:
        require(bool(self.task), 'task', self.task, 'must name a task (config/tasks/<task>/)')
        require(self.max_attempts >= 0, 'max_attempts', self.max_attempts,
                'must be >= 0 (0 = the task default)')
        require(self.timeout_s >= 0, 'timeout_s', self.timeout_s,
                'must be >= 0 s (0 = the task default)')
        require(self.settle_s >= 0, 'settle_s', self.settle_s, 'must be >= 0 s')
        require(self.call_timeout_s > 0, 'call_timeout_s', self.call_timeout_s,
                'must be > 0 s')
        require(self.server_wait_s > 0, 'server_wait_s', self.server_wait_s, 'must be > 0 s')
        require(self.pause_after_failures >= -1, 'pause_after_failures',
                self.pause_after_failures, "must be >= 0, or -1 for the task's value")


FAKE_VERIFIER_MODES = ('ground_truth', 'always_solved')


@dataclass(frozen=True)
class FakeVerifierConfig:
    """Parameters of the ``fake_verifier`` TEST DOUBLE (it reads sim/ground_truth).

    Attributes:
        mode: ``ground_truth`` judges from simulator truth; ``always_solved`` reports every
            scene as solved (to exercise re-reset and RESET_FAILED).
        pose_tolerance_px: position tolerance of the reset goal, px.
        pose_tolerance_rad: angle tolerance of the reset goal, rad.
        call_timeout_s: bound of the sim/ground_truth call, seconds.
    """

    mode: str = 'ground_truth'
    pose_tolerance_px: float = 6.0
    pose_tolerance_rad: float = 0.12
    call_timeout_s: float = 3.0

    def __post_init__(self) -> None:
        require(self.mode in FAKE_VERIFIER_MODES, 'mode', self.mode,
                f'must be one of {", ".join(FAKE_VERIFIER_MODES)}')
        require(self.call_timeout_s > 0, 'call_timeout_s', self.call_timeout_s, 'must be > 0 s')
