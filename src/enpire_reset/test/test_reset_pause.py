"""The pause-with-alert rule of a cell whose resets keep failing (enpire_reset.core.pause)."""

from __future__ import annotations

import pytest

from enpire_common.errors import CellPausedError, ResetFailedError
from enpire_reset.core.config import ResetConfig
from enpire_reset.core.pause import (
    KIND_RESET_FALLBACK,
    KIND_RESET_PAUSED,
    KIND_RESUMED,
    SEVERITY_ERROR,
    SEVERITY_WARNING,
    ResetPauseGuard,
)


def test_consecutive_failed_attempts_across_goals_pause_with_one_error_alert() -> None:
    guard = ResetPauseGuard(6)
    assert guard.failed(3, ['fallen: pin on the table', 'fallen', 'grip slipped']) == []
    guard.check()                                # 3 < 6: resets still run
    (alert,) = guard.failed(3, ['fallen', 'fallen', 'threaded'])
    assert alert.kind == KIND_RESET_PAUSED and alert.severity == SEVERITY_ERROR
    assert alert.failures == 6 and 'threaded' in alert.detail
    with pytest.raises(CellPausedError, match='enpire cell resume') as err:
        guard.check()
    assert isinstance(err.value, ResetFailedError) and err.value.code == 206
    assert guard.failed(3, ['more']) == []       # one alert per pause, not one per refusal


def test_a_verified_start_ends_the_run_of_failures() -> None:
    guard = ResetPauseGuard(4)
    guard.failed(3, ['a', 'b', 'c'])
    assert guard.succeeded('robot', ['d']) == []  # verified at the 2nd attempt: no alert
    assert guard.failures == 0
    assert guard.failed(3, ['e']) == []           # counts from 0 again
    guard.check()


def test_a_fallback_start_is_a_warning_and_counts_as_verified() -> None:
    guard = ResetPauseGuard(3)
    (alert,) = guard.succeeded('sim_place (fallback)', ['fallen', 'fallen', 'fallen'])
    assert alert.kind == KIND_RESET_FALLBACK and alert.severity == SEVERITY_WARNING
    assert alert.failures == 3 and 'needed a person' in alert.detail
    assert guard.failures == 0
    guard.check()


def test_resume_lifts_the_pause_and_says_so() -> None:
    guard = ResetPauseGuard(1)
    guard.failed(1, ['timed out'])
    message, (alert,) = guard.resume()
    assert message == 'resets resumed' and alert.kind == KIND_RESUMED
    guard.check()
    assert guard.resume() == ('resets were not paused', [])


def test_zero_never_pauses_and_the_task_sets_the_count() -> None:
    guard = ResetPauseGuard(0)
    for _ in range(20):
        assert guard.failed(3, ['x']) == []
    guard.check()
    with pytest.raises(ValueError, match='>= 0'):
        ResetPauseGuard(-1)
    assert ResetConfig().pause_after_failures == 6
    with pytest.raises(Exception, match='pause_after_failures'):
        ResetConfig(pause_after_failures=-2)
