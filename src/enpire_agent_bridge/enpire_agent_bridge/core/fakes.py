"""Fake policy hosts: the :class:`~enpire_agent_bridge.core.pool.Host` port without processes.

For tests of the host pool and the switch coordinator (and anything built on them): a fake
host acts like the ``Offset`` test policy (the agent position plus an offset), counts its
calls, and faults on demand the way a :class:`PolicyHost` does (raises, then is dead).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.clock import FakeClock
from enpire_common.errors import PolicyDeadlineError, PolicyFaultError


class FakeHost:
    """A policy host in this process: ``act`` returns ``agent_pos + offset``.

    Args:
        revision: Its revision id (for messages).
        offset: Added to ``obs['agent_pos']``.
        start_error: ``start`` raises PolicyFaultError with this text.
        fail_at_act: The n-th act (1 = the first) faults with a non-finite action; 0 = never.
        late: every act reports a late round trip (``last_late``).
        clock: Advanced by ``act_s`` per act (the time an act takes), when given.
        act_s: See ``clock``.
    """

    def __init__(self, revision: str = 'fake', offset: float = 0.0, *, start_error: str = '',
                 fail_at_act: int = 0, late: bool = False, clock: FakeClock | None = None,
                 act_s: float = 0.0) -> None:
        self.revision = revision
        self.offset = float(offset)
        self.start_error = start_error
        self.started = self.closed = False
        self.fault_reason: str | None = None
        self.resets = 0
        self.acts: list[Mapping[str, Any]] = []
        self.last_late = False
        self._late = late
        self._fail_next = ''
        self._fail_at_act = fail_at_act
        self._calls = 0
        self._clock = clock
        self._act_s = act_s
        #: Called with the observation before each act answers (a test's hook: block, tick).
        self.on_act: Callable[[Mapping[str, Any]], None] | None = None
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.started and not self.closed and self.fault_reason is None

    def fail_next_act(self, reason: str = 'non-finite action [nan, nan]') -> None:
        """The next ``act`` faults (as an invalid action would)."""
        self._fail_next = reason

    def start(self, timeout_s: float | None = None) -> None:
        if self.start_error:
            self._die(PolicyFaultError, self.start_error)
        self.started = True

    def reset(self, seed: int | None = None, timeout_s: float | None = None) -> None:
        self._require_alive()
        self.resets += 1

    def act(self, obs: Mapping[str, Any], deadline_s: float | None = None) -> np.ndarray:
        self._require_alive()
        if self.on_act is not None:
            self.on_act(obs)
        if self._clock is not None:
            self._clock.advance(self._act_s)
        with self._lock:
            self._calls += 1
            reason, self._fail_next = self._fail_next, ''
            if self._calls == self._fail_at_act:
                reason = 'non-finite action [nan, nan]'
        if reason:
            self._die(PolicyFaultError, f'{self.revision}: {reason}')
        self.acts.append(obs)
        self.last_late = self._late
        return np.asarray(obs['agent_pos'], dtype=np.float64) + self.offset

    def close(self) -> None:
        self.closed = True

    def _require_alive(self) -> None:
        if not self.alive:
            raise PolicyDeadlineError(f'{self.revision}: host is not running '
                                      f'({self.fault_reason or "closed"})')

    def _die(self, cls: type[Exception], reason: str) -> None:
        self.fault_reason = reason
        raise cls(reason)


class FakeHosts:
    """A host factory for :class:`~enpire_agent_bridge.core.pool.HostPool` that keeps its hosts.

    Args:
        offsets: The offset of each revision's fake host (default 0).
        start_errors: Revisions whose hosts fail to start, with the error text.
        fail_at_act: Revisions whose hosts fault at their n-th act.
        clock: Advanced by ``act_s`` per act of any host.
        act_s: See ``clock``.
    """

    def __init__(self, offsets: Mapping[str, float] | None = None,
                 start_errors: Mapping[str, str] | None = None,
                 fail_at_act: Mapping[str, int] | None = None,
                 clock: FakeClock | None = None, act_s: float = 0.0) -> None:
        self.offsets = dict(offsets or {})
        self.start_errors = dict(start_errors or {})
        self.fail_at_act = dict(fail_at_act or {})
        self.clock, self.act_s = clock, act_s
        self.made: dict[str, list[FakeHost]] = {}

    def __call__(self, revision: str, directory: Path) -> FakeHost:
        host = FakeHost(revision, self.offsets.get(revision, 0.0),
                        start_error=self.start_errors.get(revision, ''),
                        fail_at_act=self.fail_at_act.get(revision, 0), clock=self.clock,
                        act_s=self.act_s)
        self.made.setdefault(revision, []).append(host)
        return host

    def last(self, revision: str) -> FakeHost:
        """The newest host made for ``revision``."""
        return self.made[revision][-1]
