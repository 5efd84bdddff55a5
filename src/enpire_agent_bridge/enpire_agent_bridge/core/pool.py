"""The policy hosts of one cell: hosted (active, staged, retiring) and warm standbys.

Pure logic over a :class:`Host` port: ``core.host.PolicyHost`` (a sandboxed process, made by
``core.host.sandbox_host``) in the nodes, ``core.fakes.FakeHost`` in tests. The
``core.switching.SwitchCoordinator`` decides which hosted revision drives the cell; the pool
only keeps hosts:

* **take** a host for a revision: a parked standby (no process start) or a fresh one, started
  (import + ``make_policy``), reset and given a first ``act`` with a generous deadline (lazy
  imports, caches), closed again if any of that fails;
* **retire** a host the switch no longer needs: a healthy one is parked as a warm standby
  (newest last, at most ``standby_max``), so switching back or restoring costs no process
  start; a dead or condemned one is closed;
* closing may wait for a clean exit, so it runs on a thread of its own, never on the tick path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import SwitchFailedError


class Host(Protocol):
    """What the pool and the switch coordinator use of a policy host.

    Any fault (crash, hang, NaN, out of bounds) raises a PolicyError and leaves the host dead.
    """

    last_late: bool     # the last act's round trip missed its deadline (CPU time within it)

    @property
    def alive(self) -> bool: ...

    def start(self, timeout_s: float | None = None) -> None: ...

    def reset(self, seed: int | None = None, timeout_s: float | None = None) -> None: ...

    def act(self, obs: Mapping[str, Any], deadline_s: float | None = None) -> np.ndarray: ...

    def close(self) -> None: ...


#: Makes a host (not started yet) for ``(revision, directory)``; raises SwitchFailedError when
#: the revision cannot be hosted (its manifest does not fit the task contract).
HostFactory = Callable[[str, Path], Host]


@dataclass
class Slot:
    """A hosted revision and its host."""

    revision: str
    host: Host


class HostPool:
    """Hosts of one cell's revisions, by revision id. Thread-safe.

    Args:
        factory: Makes an unstarted host for a revision directory.
        standby_max: Healthy retired hosts kept running (oldest closed first); 0 = none.
        first_act_timeout_s: Deadline of the first act of a freshly started host.
        clock: Time source for the budget of :meth:`take`.
    """

    def __init__(self, factory: HostFactory, *, standby_max: int = 2,
                 first_act_timeout_s: float = 5.0, clock: Clock | None = None) -> None:
        self._factory = factory
        self.standby_max = standby_max
        self.first_act_timeout_s = first_act_timeout_s
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._hosted: dict[str, Slot] = {}               # active / staged / retiring
        self._standby: OrderedDict[str, Slot] = OrderedDict()    # warm, oldest first
        self._dirs: dict[str, Path] = {}
        self._condemned: set[str] = set()
        self._closers: list[threading.Thread] = []

    # --- queries ----------------------------------------------------------------------------
    def get(self, revision: str) -> Slot | None:
        """The hosted slot of ``revision`` (active, staged or retiring), if any."""
        with self._lock:
            return self._hosted.get(revision)

    def directory(self, revision: str) -> Path | None:
        """The directory ``revision`` was started from (None: never hosted here). Every
        hosted or parked slot came through :meth:`take`, which records it."""
        with self._lock:
            return self._dirs.get(revision)

    def standby(self) -> list[str]:
        """Parked revisions, oldest first."""
        with self._lock:
            return list(self._standby)

    # --- hosting ----------------------------------------------------------------------------
    def take(self, revision: str, directory: Path | None, end_s: float,
             first_obs: Callable[[], Mapping[str, Any]]) -> Slot:
        """A warm host for ``revision``: a parked standby, else a freshly started one.

        Not yet hosted: :meth:`add` it when it starts to serve. A fresh host is started, reset
        and acts once on ``first_obs()`` (the newest observation of the cell) with the
        generous first-act deadline, all by ``end_s`` (clock time); it is closed again when
        any of that fails.

        Raises:
            SwitchFailedError: no parked host and no directory to start one from.
            PolicyError: the host failed to start, reset or act.
        """
        with self._lock:
            slot = self._standby.pop(revision, None)
            if slot is not None and slot.host.alive:
                if directory is not None:
                    self._dirs[revision] = directory
                return slot
        if slot is not None:
            self._close_later(slot)
        if directory is None:
            raise SwitchFailedError(f'revision {revision[:12]} has no known directory; switch '
                                    'to it by id from the revision store')
        host = self._factory(revision, directory)
        try:
            host.start(timeout_s=max(0.5, end_s - self._clock.now_s()))
            host.reset(None)
            host.act(first_obs(), deadline_s=min(self.first_act_timeout_s,
                                                 max(0.1, end_s - self._clock.now_s())))
        except BaseException:
            host.close()
            raise
        with self._lock:
            self._dirs[revision] = directory
            self._condemned.discard(revision)
        return Slot(revision, host)

    def add(self, slot: Slot) -> None:
        """``slot`` serves now (staged, then active)."""
        with self._lock:
            self._hosted[slot.revision] = slot

    def condemn(self, revision: str) -> None:
        """Close ``revision``'s host, not park it, when it is retired next."""
        with self._lock:
            self._condemned.add(revision)

    def pardon(self, revision: str) -> None:
        with self._lock:
            self._condemned.discard(revision)

    def retire(self, revision: str) -> None:
        """The switch no longer needs ``revision``: park its host if healthy, else close it."""
        with self._lock:
            slot = self._hosted.pop(revision, None)
            if slot is None:
                return
            if revision in self._condemned or not slot.host.alive or self.standby_max == 0:
                self._condemned.discard(revision)
                closing = [slot]
            else:
                self._standby[revision] = slot
                self._standby.move_to_end(revision)
                closing = []
                while len(self._standby) > self.standby_max:
                    closing.append(self._standby.popitem(last=False)[1])
        for old in closing:
            self._close_later(old)

    def drop(self, revision: str) -> None:
        """Stop hosting ``revision`` and close its host (a staged host that was overtaken)."""
        with self._lock:
            slot = self._hosted.pop(revision, None)
        if slot is not None:
            self._close_later(slot)

    def close_all(self, timeout_s: float = 5.0) -> None:
        """Close every host (hosted and parked) and wait for the closes in flight."""
        with self._lock:
            slots = [*self._hosted.values(), *self._standby.values()]
            self._hosted.clear()
            self._standby.clear()
            closers = list(self._closers)
        for slot in slots:
            slot.host.close()
        for t in closers:
            t.join(timeout=timeout_s)

    def _close_later(self, slot: Slot) -> None:
        # close() may wait for a clean exit: never on the tick path or under a lock.
        t = threading.Thread(target=slot.host.close, name=f'close-{slot.revision[:8]}',
                             daemon=True)
        with self._lock:
            self._closers = [c for c in self._closers if c.is_alive()] + [t]
        t.start()
