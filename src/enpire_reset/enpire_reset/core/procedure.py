"""The reset procedure: place -> settle -> verify from the cameras -> retry.

A reset is verified twice (DESIGN.md section 4): the observed object pose matches the
requested start within the task tolerance, and the task is NOT already solved. A start that
is already solved is re-reset with a seed derived from the requested one (deterministic, so
the same seed always yields the same start), a start that does not match is placed again
with the same seed. Both count as attempts; after ``max_attempts`` the reset fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from enpire_common.clock import Clock, Deadline, SystemClock
from enpire_common.errors import (
    CancelledError,
    EnpireTimeoutError,
    ResetFailedError,
    VerificationError,
    ViewUnavailableError,
)
from enpire_reset.core.config import ResetConfig
from enpire_reset.core.ports import Placement, ResetVerdict, VerifierPort
from enpire_reset.core.strategies import ResetStrategy
from enpire_tasks.reset import pose_error

PHASE_PLACING = 'placing'
PHASE_SETTLING = 'settling'
PHASE_VERIFYING = 'verifying'
PHASE_RETRYING = 'retrying'

#: on_feedback(phase, attempt, progress in [0, 1])
FeedbackFn = Callable[[str, int, float], None]


@dataclass(frozen=True)
class ResetOutcome:
    """What a reset did. ``seed`` is the seed actually placed (derived after re-resets)."""

    success: bool
    placement: Placement | None
    verdict: ResetVerdict | None
    attempts: int
    duration_s: float
    seed: int
    reasons: tuple[str, ...] = ()
    method: str = ''    # how the verified start was placed ('sim_place (fallback)' too)


class ResetNotVerifiedError(ResetFailedError):
    """No attempt produced a verified start; ``outcome`` holds the last placement/verdict."""

    def __init__(self, message: str, outcome: ResetOutcome) -> None:
        super().__init__(message)
        self.outcome = outcome


def derive_seed(seed: int, k: int) -> int:
    """The k-th replacement seed for ``seed`` (stable across runs and machines, 31 bits)."""
    digest = hashlib.sha256(f'enpire-reset:{seed}:{k}'.encode()).digest()
    return int.from_bytes(digest[:4], 'big') & 0x7FFFFFFF


class ResetProcedure:
    """Runs one camera-verified reset through a strategy and a verifier.

    Args:
        strategy: places the start state (e.g. ``sim_place``).
        verifier: judges the placed scene from the cameras.
        config: attempts, budget, tolerances.
        clock: time source (FakeClock in tests).
    """

    def __init__(self, strategy: ResetStrategy, verifier: VerifierPort, config: ResetConfig,
                 clock: Clock | None = None, *,
                 pose_error: Callable[..., tuple[float, float]] = pose_error,
                 position_unit: str = 'px', fallback: ResetStrategy | None = None,
                 stage_views: dict[str, tuple[str, ...]] | None = None) -> None:
        self.strategy = strategy
        self.verifier = verifier
        self.config = config
        self.clock = clock or SystemClock()
        self.pose_error = pose_error
        self.position_unit = position_unit
        self.fallback = fallback
        # The views that judge a start of each stage (task.yaml reset.views; default: the
        # verifier's own reset views).
        self.stage_views = dict(stage_views or {})

    def judge(self, placement: Placement, verdict: ResetVerdict) -> tuple[bool, bool, str]:
        """(verified, already_solved, reason) for one placed + verified attempt."""
        cfg = self.config
        if verdict.error_code:
            return False, False, f'verifier error {verdict.error_code}: {verdict.detail}'
        if verdict.score > cfg.not_solved_max_score:
            return False, True, (f'start already solved (score {verdict.score:.3f} > '
                                 f'{cfg.not_solved_max_score})')
        if not verdict.observed_pose:
            return False, False, f'object not found by the verifier ({verdict.detail})'
        dxy, dth = self.pose_error(tuple(placement.object_pose), tuple(verdict.observed_pose))
        if dxy > cfg.pose_tolerance_px or dth > cfg.pose_tolerance_rad:
            unit = self.position_unit
            return False, False, (
                f'observed pose off by {dxy:.4g} {unit} / {dth:.3f} rad (tolerance '
                f'{cfg.pose_tolerance_px:g} {unit} / {cfg.pose_tolerance_rad} rad)')
        if not verdict.success:
            return False, False, f'verifier refused the start: {verdict.detail}'
        return True, False, 'verified'

    def run(self, seed: int, *, max_attempts: int | None = None, timeout_s: float | None = None,
            on_feedback: FeedbackFn | None = None,
            cancelled: Callable[[], bool] | None = None, stage: str = '') -> ResetOutcome:
        """Reset to the start of ``seed`` and verify it.

        Args:
            seed: requested start (same seed -> same start).
            max_attempts: overrides the config when > 0.
            timeout_s: overrides the config's budget when > 0.
            on_feedback: called with (phase, attempt, progress) at each phase.
            cancelled: polled between phases; True stops with CancelledError.

        Returns:
            The successful outcome.

        Raises:
            ResetNotVerifiedError: (RESET_FAILED) no attempt verified; ``.outcome`` has the last.
            EnpireTimeoutError: the budget ran out.
            CancelledError: ``cancelled()`` became true.
            EnpireError: the strategy could not place (e.g. CellUnavailableError).
        """
        cfg = self.config
        attempts_max = max_attempts if max_attempts and max_attempts > 0 else cfg.max_attempts
        budget_s = timeout_s if timeout_s and timeout_s > 0 else cfg.timeout_s
        start_s = self.clock.now_s()
        deadline = Deadline(budget_s, self.clock)
        feedback = on_feedback or (lambda *_: None)
        reasons: list[str] = []
        placement: Placement | None = None
        verdict: ResetVerdict | None = None
        current_seed, rederived = int(seed), 0

        def check(attempt: int) -> None:
            if cancelled is not None and cancelled():
                raise CancelledError(f'reset of seed {seed} cancelled at attempt {attempt}')
            if deadline.expired():
                raise EnpireTimeoutError(
                    f'reset of seed {seed} ran past its {budget_s:.1f} s budget after '
                    f'{attempt - 1} attempt(s) ({"; ".join(reasons) or "no verdict yet"}); '
                    'raise timeout_s or check the cell and verifier')

        def progress(attempt: int, frac: float) -> float:
            return min(1.0, ((attempt - 1) + frac) / attempts_max)

        for attempt in range(1, attempts_max + 1):
            check(attempt)
            if attempt > 1:
                feedback(PHASE_RETRYING, attempt, progress(attempt, 0.0))
                self.clock.sleep_s(min(cfg.retry_backoff_s, deadline.remaining_s()))
                check(attempt)
            feedback(PHASE_PLACING, attempt, progress(attempt, 0.0))
            try:
                placement = self._place(self.strategy, current_seed, deadline, stage)
            except ResetFailedError as exc:
                # The robot could not place it (a missed grasp, a part out of reach): the
                # next attempt starts from wherever the scene is now.
                reasons.append(f'attempt {attempt} (seed {current_seed}): placing failed: '
                               f'{exc}')
                continue
            except EnpireTimeoutError as exc:
                # No answer: a cell node that died lingers in the graph until its lease ends,
                # and its respawned successor answers the next attempt's call.
                reasons.append(f'attempt {attempt} (seed {current_seed}): placing failed: '
                               f'{exc}')
                continue
            check(attempt)
            feedback(PHASE_SETTLING, attempt, progress(attempt, 0.33))
            self.clock.sleep_s(min(cfg.settle_s, deadline.remaining_s()))
            check(attempt)
            feedback(PHASE_VERIFYING, attempt, progress(attempt, 0.66))
            verdict = self._verify(placement, deadline, stage)
            # A camera with no fresh frame (VIEW_UNAVAILABLE) says nothing about the placement:
            # wait for it within the budget and judge the same placement then (a restarting
            # driver or a DDS peer that died mid-stream can silence a camera for seconds).
            wait_s = max(cfg.retry_backoff_s, 0.1)
            while verdict.error_code == ViewUnavailableError.code and \
                    deadline.remaining_s() > wait_s:
                self.clock.sleep_s(wait_s)
                if cancelled is not None and cancelled():
                    break
                verdict = self._verify(placement, deadline, stage)
            ok, solved, reason = self.judge(placement, verdict)
            if ok:
                feedback(PHASE_VERIFYING, attempt, 1.0)
                return ResetOutcome(True, placement, verdict, attempt,
                                    self.clock.now_s() - start_s, current_seed, tuple(reasons),
                                    placement.method)
            reasons.append(f'attempt {attempt} (seed {current_seed}): {reason}')
            if solved:
                rederived += 1
                current_seed = derive_seed(int(seed), rederived)
        if self.fallback is not None and not deadline.expired():
            # The explicit fallback (a simulated cell's sim_place): recorded as such, never
            # silently. One attempt, same seed.
            check(attempts_max + 1)
            feedback(PHASE_PLACING, attempts_max + 1, 1.0)
            placement = self._place(self.fallback, current_seed, deadline, stage)
            self.clock.sleep_s(min(cfg.settle_s, deadline.remaining_s()))
            verdict = self._verify(placement, deadline, stage)
            ok, _solved, reason = self.judge(placement, verdict)
            method = f'{placement.method or self.fallback.id} (fallback)'
            if ok:
                return ResetOutcome(True, placement, verdict, attempts_max + 1,
                                    self.clock.now_s() - start_s, current_seed,
                                    tuple(reasons), method)
            reasons.append(f'fallback {self.fallback.id}: {reason}')
        outcome = ResetOutcome(False, placement, verdict, attempts_max,
                               self.clock.now_s() - start_s, current_seed, tuple(reasons),
                               placement.method if placement else '')
        raise ResetNotVerifiedError(
            f'reset of seed {seed} not verified after {attempts_max} attempt(s): '
            f'{"; ".join(reasons)}. Check the verifier view and the pose tolerance, or raise '
            'max_attempts', outcome)

    def _place(self, strategy: ResetStrategy, seed: int, deadline: Deadline,
               stage: str) -> Placement:
        timeout = min(self.config.call_timeout_s, max(deadline.remaining_s(), 1e-3))
        # A later stage only for strategies that take one (every start-only strategy keeps
        # its two-argument place).
        return (strategy.place(seed, timeout, stage=stage) if stage
                else strategy.place(seed, timeout))

    def _verify(self, placement: Placement, deadline: Deadline, stage: str = ''
                ) -> ResetVerdict:
        timeout = min(self.config.call_timeout_s, max(deadline.remaining_s(), 1e-3))
        views = self.stage_views.get(stage or 'start', ())
        try:
            if views:
                return self.verifier.verify_reset(tuple(placement.object_pose), timeout,
                                                  views=views)
            return self.verifier.verify_reset(tuple(placement.object_pose), timeout)
        except (VerificationError, EnpireTimeoutError) as exc:
            # A verifier hiccup (no fresh image yet, slow backend) is retried like a miss.
            return ResetVerdict(False, 0.0, (), exc.code, str(exc))
