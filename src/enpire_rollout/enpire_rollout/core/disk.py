"""The disk guard: a cell pauses, with an alert, before its record disk fills.

A demo of 12 minutes writes ~335 MB (179 trials, ~1.9 MB each: bag + MP4s + trial.json), so
one cell fills ~40 GB a day. A disk that fills mid-recording leaves a half-written bag and a
lost trial; the guard stops earlier and says so:

- before each trial (:meth:`DiskGuard.before_trial`): below ``record.min_free_mb`` free on
  the record directory's filesystem the trial is not started, an ERROR ``disk_low`` alert
  goes out (free and needed MB, the path) and the run ends with stop reason ``disk_low``;
- while recording (:meth:`DiskGuard.during_trial`, at most once per ``check_period_s``):
  below ``record.abort_free_mb`` the episode stops early and the trial ends ``aborted``,
  truncated by disk, its bag and videos closed cleanly by the recorder as for any other end;
- the first trial that may start again after a low raises an INFO ``disk_ok`` alert.

Free space comes from an injected ``disk_usage`` (default :func:`shutil.disk_usage`), so the
rules are tested without filling a disk. ``$ENPIRE_MIN_FREE_MB`` overrides ``min_free_mb``.
No ROS here: the rollout node publishes the alerts this hands to ``on_alert``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enpire_common.alerts import SEVERITY_ERROR, SEVERITY_INFO, Alert
from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import ConfigError
from enpire_rollout.core.config import DiskSpaceConfig

#: Overrides ``record.min_free_mb`` (MB) of every rollout node that reads it at start.
MIN_FREE_ENV = 'ENPIRE_MIN_FREE_MB'
#: The run's stop reason (RunTrials.stop_reason) and the alerts' kinds.
DISK_LOW = 'disk_low'
DISK_OK = 'disk_ok'
#: How a trial stopped by the guard starts its reason.
TRUNCATED_BY_DISK = 'truncated by disk'
#: What frees space (said by the alert and by ``enpire trial run``).
FREE_SPACE_HINT = ('free space: `enpire gc` shows what it would delete (videos of routine '
                   'successes), `enpire gc --apply` deletes it')
MB = 1 << 20

DiskUsage = Callable[[str], Any]   # shutil.disk_usage: an object with ``.free`` (bytes)


def config_from_env(config: DiskSpaceConfig,
                    environ: Mapping[str, str] | None = None) -> DiskSpaceConfig:
    """``config`` with ``$ENPIRE_MIN_FREE_MB`` applied (abort_free_mb capped by it).

    Raises:
        ConfigError: the variable is set but not a number >= 0.
    """
    raw = (os.environ if environ is None else environ).get(MIN_FREE_ENV, '').strip()
    if not raw:
        return config
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f'{MIN_FREE_ENV}={raw!r} is invalid: must be a number of MB '
                          '(0 disables the disk guard)') from None
    return dataclasses.replace(config, min_free_mb=value,
                               abort_free_mb=min(config.abort_free_mb, value))


@dataclass(frozen=True)
class DiskSpace:
    """One look at the record directory's filesystem."""

    path: str
    free_mb: float
    needed_mb: float

    @property
    def ok(self) -> bool:
        return self.free_mb >= self.needed_mb

    def detail(self) -> str:
        return (f'only {self.free_mb:.0f} MB free on the filesystem of {self.path} (needs '
                f'{self.needed_mb:.0f} MB)')


class DiskGuard:
    """Watches the free space of a record directory's filesystem (the trial runner's
    ``SpacePort``). Thread-safe.

    Args:
        path: the record directory (``$ENPIRE_HOME``); it need not exist yet (its nearest
            existing parent is measured).
        config: thresholds (``record.*``), ``$ENPIRE_MIN_FREE_MB`` applied by the caller
            (:func:`config_from_env`).
        clock: paces the checks while recording.
        disk_usage: ``shutil.disk_usage``-like; tests inject one.
        on_alert: gets each alert raised (the node publishes it on ``alerts``).
    """

    def __init__(self, path: str | Path, config: DiskSpaceConfig | None = None, *,
                 clock: Clock | None = None, disk_usage: DiskUsage = shutil.disk_usage,
                 on_alert: Callable[[Alert], None] | None = None) -> None:
        self.path = Path(path)
        self.config = config or DiskSpaceConfig()
        self.clock = clock or SystemClock()
        self.disk_usage = disk_usage
        self.on_alert = on_alert or (lambda _a: None)
        self._lock = threading.Lock()
        self._low = False
        self._next_check_s: float | None = None

    @property
    def enabled(self) -> bool:
        return self.config.min_free_mb > 0

    def measure(self, needed_mb: float) -> DiskSpace | None:
        """Free space now against ``needed_mb``; None when it cannot be measured (an
        unreadable filesystem never stops a cell: the recorder reports real write errors)."""
        probe = self.path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free = float(self.disk_usage(str(probe)).free)
        except OSError:
            return None
        return DiskSpace(str(self.path), free / MB, float(needed_mb))

    def before_trial(self) -> str:
        """'' when a trial may start, else why not (an ERROR ``disk_low`` alert is raised)."""
        if not self.enabled:
            return ''
        space = self.measure(self.config.min_free_mb)
        with self._lock:
            self._next_check_s = None
            if space is None or space.ok:
                was_low, self._low = self._low, False
                if was_low and space is not None:
                    self.on_alert(Alert(DISK_OK, SEVERITY_INFO, 0,
                                        f'disk space back: {space.free_mb:.0f} MB free on '
                                        f'the filesystem of {space.path}; trials run again'))
                return ''
            self._low = True
        why = f'disk low: {space.detail()} to start a trial; the cell pauses'
        self.on_alert(Alert(DISK_LOW, SEVERITY_ERROR, 0, f'{why}; {FREE_SPACE_HINT}'))
        return why

    def during_trial(self) -> str:
        """'' while a recording may go on, else why it stops (an ERROR alert is raised).

        Looks at most once per ``check_period_s`` (on ``clock``); the first call of a trial
        only arms the pace (the trial started with room, :meth:`before_trial` just looked).
        """
        if not self.enabled:
            return ''
        now = self.clock.now_s()
        with self._lock:
            if self._next_check_s is None or now < self._next_check_s:
                if self._next_check_s is None:
                    self._next_check_s = now + self.config.check_period_s
                return ''
            self._next_check_s = now + self.config.check_period_s
        space = self.measure(self.config.abort_free_mb)
        if space is None or space.ok:
            return ''
        with self._lock:
            self._low = True
        why = (f'{TRUNCATED_BY_DISK}: the recording stopped early, {space.detail()} to go on '
               'recording')
        self.on_alert(Alert(DISK_LOW, SEVERITY_ERROR, 0,
                            f'{why}; the cell pauses; {FREE_SPACE_HINT}'))
        return why
