"""A cell that cannot reset itself stops and says so (pause with an alert).

Unattended operation (AutoEval: ~850 episodes a cell a day, 3 interventions) needs a cell
whose robot cannot bring the scene back to stop asking it to, and to call a person, instead
of failing trial after trial on a scene nobody looks at. The reset server counts
consecutive failed reset attempts across goals (a verified start sets the count to 0).
When the count reaches ``pause_after_failures`` the cell pauses: it raises an ``ERROR``
alert and refuses every reset with ``CellPausedError`` (the rollout records the trial
``reset_failed`` and ends its run) until a person resumes it (``enpire cell resume``).

A simulated cell's ``sim_place`` fallback is the stand-in for that person: a start it
placed after the robot's attempts failed is a ``WARNING`` alert (an intervention a real cell
would have needed) and the count starts again, since the scene is verified again.
No ROS here: the reset server node publishes what this returns.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from enpire_common.alerts import SEVERITY_ERROR, SEVERITY_INFO, SEVERITY_WARNING, Alert
from enpire_common.errors import CellPausedError

__all__ = ['KIND_RESET_FALLBACK', 'KIND_RESET_PAUSED', 'KIND_RESUMED', 'SEVERITY_ERROR',
           'SEVERITY_INFO', 'SEVERITY_WARNING', 'Alert', 'ResetPauseGuard']

KIND_RESET_PAUSED = 'reset_paused'
KIND_RESET_FALLBACK = 'reset_fallback'
KIND_RESUMED = 'resumed'


def _last(reasons: Sequence[str], n: int = 3) -> str:
    shown = [r for r in reasons if r][-n:]
    return '; '.join(shown) if shown else 'no reason given'


class ResetPauseGuard:
    """Counts consecutive failed reset attempts; pauses at ``pause_after`` (0 = never).

    Thread-safe: the reset server's action and resume service run on different threads.
    """

    def __init__(self, pause_after: int) -> None:
        if pause_after < 0:
            raise ValueError(f'pause_after={pause_after} is invalid: must be >= 0 (0 = never)')
        self.pause_after = int(pause_after)
        self._lock = threading.Lock()
        self._failures = 0
        self._reasons: list[str] = []
        self._paused = ''

    @property
    def failures(self) -> int:
        with self._lock:
            return self._failures

    @property
    def paused(self) -> str:
        """Why the cell is paused ('' while it is not)."""
        with self._lock:
            return self._paused

    def check(self) -> None:
        """Raise CellPausedError while paused (a reset goal is refused without moving)."""
        with self._lock:
            if self._paused:
                raise CellPausedError(
                    f'{self._paused}. Nothing was moved. Look at the cell, then resume it: '
                    '`enpire cell resume`')

    def succeeded(self, method: str, retried_after: Sequence[str]) -> list[Alert]:
        """A verified start. Its failed attempts before it end the run of failures."""
        with self._lock:
            failures = self._failures + len(retried_after)
            self._failures, self._reasons = 0, []
        if 'fallback' not in method:
            return []
        return [Alert(KIND_RESET_FALLBACK, SEVERITY_WARNING, failures,
                      f'the robot failed {len(retried_after)} reset attempt(s) and the '
                      f'{method} placed the start (a real cell would have needed a person): '
                      f'{_last(retried_after)}')]

    def failed(self, attempts: int, reasons: Sequence[str]) -> list[Alert]:
        """A reset goal that ended unverified after ``attempts`` failed attempts."""
        with self._lock:
            self._failures += max(1, int(attempts))
            self._reasons = (self._reasons + [r for r in reasons if r])[-10:]
            if not self.pause_after or self._paused or self._failures < self.pause_after:
                return []
            self._paused = (f'cell paused after {self._failures} consecutive failed reset '
                            f'attempts (pause_after_failures {self.pause_after}); last: '
                            f'{_last(self._reasons)}')
            return [Alert(KIND_RESET_PAUSED, SEVERITY_ERROR, self._failures, self._paused)]

    def resume(self) -> tuple[str, list[Alert]]:
        """A person resumed the cell: resets run again, the count starts from 0."""
        with self._lock:
            was, failures = self._paused, self._failures
            self._paused, self._failures, self._reasons = '', 0, []
        if not was:
            return 'resets were not paused', []
        return 'resets resumed', [Alert(KIND_RESUMED, SEVERITY_INFO, failures,
                                        f'resumed by a person; it was: {was}')]
