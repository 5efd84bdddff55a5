"""The Clock port: core code never reads wall time itself."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds. ROS nodes pass a clock backed by the node's (sim) time."""

    def now_s(self) -> float: ...

    def sleep_s(self, duration_s: float) -> None: ...


class SystemClock:
    """Wall-clock monotonic time."""

    def now_s(self) -> float:
        return time.monotonic()

    def sleep_s(self, duration_s: float) -> None:
        if duration_s > 0:
            time.sleep(duration_s)


class FakeClock:
    """A manually advanced clock for tests; ``sleep_s`` advances it instantly."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._t = float(start_s)
        self._lock = threading.Lock()

    def now_s(self) -> float:
        with self._lock:
            return self._t

    def advance(self, duration_s: float) -> None:
        if duration_s < 0:
            raise ValueError(f'cannot advance a clock by a negative duration ({duration_s})')
        with self._lock:
            self._t += duration_s

    def sleep_s(self, duration_s: float) -> None:
        self.advance(max(0.0, duration_s))


class Deadline:
    """A point in time on a clock; ``remaining_s`` never goes negative."""

    def __init__(self, timeout_s: float, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self.timeout_s = float(timeout_s)
        self._end = self._clock.now_s() + self.timeout_s

    def remaining_s(self) -> float:
        return max(0.0, self._end - self._clock.now_s())

    def expired(self) -> bool:
        return self._clock.now_s() >= self._end
