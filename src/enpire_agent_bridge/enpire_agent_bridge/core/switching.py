"""Hot swap of a cell's policy revision, tick by tick and switch by switch (pure logic).

:class:`SwitchCoordinator` is the agent bridge's logic without ROS (ros2_control's controller
switching, applied to policy revisions). The node feeds it ticks and switch requests and
gives it a port to publish commands; the :class:`~enpire_agent_bridge.core.swap.SwapMachine`
decides which revision passes the gate, the :class:`~enpire_agent_bridge.core.pool.HostPool`
keeps the hosts.

* **One command per tick.** For each new tick (:meth:`SwitchCoordinator.on_tick`) the
  coordinator asks the machine (under one lock, atomically with ``tick()``) which revision
  passes the gate, runs that host's ``act`` and publishes exactly one command stamped with the
  tick and the revision id.
* **Switch** (:meth:`SwitchCoordinator.switch`): (1) resolve the target (an id, a directory,
  ``hold``, ``last_good``) and take a host for it from the pool (a warm standby, else a fresh
  start); (2) ``SwapMachine.request`` -> STAGING; (3) warm-up on the live stream:
  ``reset(None)`` and one ``act`` on the newest observation under the contract deadline;
  (4) a valid action switches at a tick boundary. A real-time cell applies the latest command
  it holds when it steps, so (``within_tick``) the switch takes the *current* tick: with the
  tick path locked, the new revision's action for the newest observation is published as that
  tick's command and replaces the old revision's before the cell's next step; nothing of the
  old revision is published after it. A lockstep cell steps once per command, so there the
  switch waits for the next tick. (5) The call returns once the new revision's first command
  is published; the old host is retired only then (parked warm, so switching back or
  restoring costs no process start). The latency is request -> first published command.
* **STRICT** failure (start, import, warm-up fault/deadline/NaN/bounds, no first command in
  time): the previous revision stays active; SwitchFailedError says why. **BEST_EFFORT**
  failure: falls back to ``hold``.
* **Fault after activation** (crash, hang, NaN, out of bounds): the host is dead, the same
  tick is answered by the built-in hold action (no policy code) and ``hold`` stays active.
* **Restore**: ``last_good`` (or ``restore``) switches back to the last revision that a
  successful switch replaced (STRICT, as any switch); ``hold`` activates the built-in hold.
* **pause** stops commands (a real-time cell keeps its last target); **home** commands a home
  target every tick (configured, else the hold action at the time of the call); **resume**
  returns to the active revision. Switches are refused while paused or homing.

Time comes from a Clock (the switch budget, latencies); waits for ticks poll it, so a test
with a FakeClock decides when a wait runs out.

(Over 500 lines on purpose: the tick path and the switch share one lock discipline, the tick
lock held from a within-tick warm-up act to its publish, and read best side by side.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from enpire_agent_bridge.core.pool import HostPool, Slot
from enpire_agent_bridge.core.swap import HOLD, Phase, Strictness, SwapMachine
from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import CellBusyError, PolicyError, SwitchFailedError

#: Revision ids that restore the last good revision.
RESTORE_IDS = ('last_good', 'restore')
#: The revision id stamped on home commands.
HOME = 'home'
#: Longest single wait on an event before the clock is read again (s).
POLL_S = 0.05

Observation = Mapping[str, Any]


@dataclass(frozen=True)
class Tick:
    """A control tick of the cell: its number, the policy's observation, and an opaque stamp
    handed back with the command (the node's message stamp)."""

    tick: int
    obs: Observation
    stamp: Any = None


@dataclass(frozen=True)
class SwitchRequest:
    """A switch to ``revision_id`` (an id, ``hold``, ``last_good``) or ``revision_dir``.

    ``timeout_s`` <= 0 uses the coordinator's ``switch_timeout_s``.
    """

    revision_id: str = ''
    revision_dir: str = ''
    strictness: Strictness = Strictness.STRICT
    timeout_s: float = 0.0

    @property
    def plain_id(self) -> str:
        """The id when the request names no directory ('' otherwise)."""
        return self.revision_id.strip() if not self.revision_dir else ''


@dataclass(frozen=True)
class SwitchResult:
    revision: str
    latency_s: float      # request -> first published command of the revision (0: no-op)


#: Publishes one command: (tick, revision id, action).
Publish = Callable[[Tick, str, np.ndarray], None]


class _Waiter:
    """Set when the first command of ``revision`` is published (or it faulted before)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.time_s = 0.0
        self.tick = -1
        self.error = ''
        self.scheduled_s = 0.0   # when the warm-up action scheduled the switch


class SwitchCoordinator:
    """Serves a cell's ticks from the active revision and switches revisions between ticks.

    See the module docstring for the rules. Thread-safe: ticks come in order on one thread,
    a switch blocks on another, status and cell verbs on any.

    Args:
        pool: The hosts.
        publish: Sends one command to the cell (the node's publisher).
        hold: The built-in hold action for an observation (no policy code).
        lookup: Revision id -> (canonical id, directory) from the revision store; raises
            an EnpireError for an unknown id.
        example_obs: The observation a fresh host first acts on when the cell sent none.
        clock: Time of switch budgets and latencies.
        warmup_ticks: Ticks a staged revision gets to produce its warm-up action.
        switch_timeout_s: Budget of a switch whose request gives none.
        within_tick: Switch at the current tick, replacing its command (a real-time cell);
            False: at the next tick (a lockstep cell steps once per command).
        home: The configured home target (None: the hold action when homing starts).
        on_event: Told ``(event, extra)`` after each state change (the node's status topic);
            never called with a lock held.
        log: Told ``(level, message)`` of what the operator should see (warning, error).
    """

    def __init__(self, pool: HostPool, *, publish: Publish,
                 hold: Callable[[Observation], np.ndarray],
                 lookup: Callable[[str], tuple[str, Path]],
                 example_obs: Observation, clock: Clock | None = None,
                 warmup_ticks: int = 10, switch_timeout_s: float = 20.0,
                 within_tick: bool = True, home: np.ndarray | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 log: Callable[[str, str], None] | None = None) -> None:
        self.pool = pool
        self.machine = SwapMachine(warmup_ticks=warmup_ticks, on_retire=pool.retire)
        self._publish = publish
        self._hold = hold
        self._lookup = lookup
        self._example_obs = example_obs
        self._clock = clock or SystemClock()
        self.switch_timeout_s = switch_timeout_s
        self.within_tick = within_tick
        self._home = home
        self._on_event = on_event or (lambda _e, _x: None)
        self._log = log or (lambda _l, _m: None)
        # _lock guards the machine, the mode and the waiters; it is held only for
        # bookkeeping, never across a host call or a publish.
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()      # one tick at a time, in order
        self._switch_lock = threading.Lock()    # one switch at a time
        self._waiters: dict[str, _Waiter] = {}
        self._mode = 'running'                  # running | paused | homing
        self._home_target: np.ndarray | None = None
        self._last_tick: int | None = None
        self._latest: Tick | None = None
        self._obs_event = threading.Event()
        self.switches = 0
        self.skipped_ticks = 0
        self.late_acts = 0          # round trips past the deadline (CPU time within it)
        self.last_switch: dict[str, Any] = {}
        self.faults: list[str] = []

    # --- ticks ------------------------------------------------------------------------------
    def on_tick(self, t: Tick) -> None:
        """One tick of the cell: gate, act, publish exactly one command (none when paused)."""
        with self._tick_lock:
            tick = t.tick
            if tick == self._last_tick:
                return
            new_episode = self._last_tick is not None and tick < self._last_tick
            if self._last_tick is not None and tick > self._last_tick + 1:
                self.skipped_ticks += tick - self._last_tick - 1
                self._log('warning', f'ticks {self._last_tick + 1}..{tick - 1} never reached '
                          f'the bridge ({self.skipped_ticks} in all); the host is overloaded')
            self._last_tick = tick
            self._latest = t
            self._obs_event.set()
            with self._lock:
                self.machine.tick(tick)
                mode = self._mode
                revision, slot = self._gated(tick)
                home = self._home_target
            if mode == 'paused':
                return
            if mode == 'homing':
                self._publish(t, HOME, home if home is not None else self._hold(t.obs))
                return
            self._act_and_publish(t, revision, slot, new_episode)

    def _gated(self, tick: int) -> tuple[str, Slot | None]:
        """The revision whose command passes the gate for ``tick`` ('' = none) and its hosted
        slot (None for hold, or when the host is missing). Lock held."""
        s = self.machine.state
        if s.phase is Phase.IDLE or not self.machine.accepts(s.active, tick):
            return '', None
        return s.active, self.pool.get(s.active)

    def _act_and_publish(self, t: Tick, revision: str, slot: Slot | None,
                         new_episode: bool) -> None:
        # At most three tries: the gated revision, then (after its fault) the rolled-back
        # previous revision or hold. Hold never faults, so every tick gets one command.
        for _ in range(3):
            if not revision:
                return
            if revision == HOLD:
                action = self._hold(t.obs)
                break
            if slot is None:
                self._fault(revision, 'its host is missing')
            else:
                try:
                    if new_episode:
                        slot.host.reset(None)
                    action = slot.host.act(t.obs)
                    self.late_acts += int(slot.host.last_late)
                    break
                except PolicyError as exc:
                    self._fault(revision, str(exc))
            with self._lock:
                revision, slot = self._gated(t.tick)
        else:
            return
        self._publish(t, revision, action)
        self._published(revision, t.tick)

    def _published(self, revision: str, tick: int) -> None:
        """Bookkeeping after a command of ``revision`` for ``tick`` went out."""
        with self._lock:
            before = self.machine.state.phase
            self.machine.published(revision, tick)
            waiter = self._waiters.get(revision)
            if waiter is not None and not waiter.event.is_set():
                waiter.time_s, waiter.tick = self._clock.now_s(), tick
                waiter.event.set()
            if before is Phase.SWITCHED and self.machine.state.phase is Phase.ACTIVE:
                self.switches += 1

    def _fault(self, revision: str, reason: str) -> None:
        self._log('error', f'policy {revision[:12]} faulted: {reason}')
        with self._lock:
            self.machine.fault(revision, reason)
            self.faults.append(f'{revision[:12]}: {reason}')
            waiter = self._waiters.get(revision)
            if waiter is not None and not waiter.event.is_set():
                waiter.error = reason
                waiter.event.set()
        self._on_event('fault', {'reason': reason})

    # --- switch -----------------------------------------------------------------------------
    def switch(self, request: SwitchRequest) -> SwitchResult:
        """Switch the cell to the requested revision; returns once its first command is out.

        Raises:
            SwitchFailedError: the switch failed (the message says which revision stays
                active, or that the cell fell back to hold, and why); another is in progress.
            CellBusyError: the cell is paused or homing.
            EnpireError: the revision is unknown to the store.
        """
        t0 = self._clock.now_s()
        timeout_s = request.timeout_s if request.timeout_s > 0 else self.switch_timeout_s
        if not self._switch_lock.acquire(blocking=False):
            raise SwitchFailedError('another switch is in progress on this cell; retry when '
                                    'it completes')
        try:
            return self._switch(request, t0, timeout_s)
        finally:
            self._switch_lock.release()

    def _switch(self, req: SwitchRequest, t0: float, timeout_s: float) -> SwitchResult:
        end_s = t0 + timeout_s
        strictness = req.strictness
        with self._lock:
            if self._mode != 'running':
                raise CellBusyError(f'the cell is {self._mode}; resume it first '
                                    '(enpire cell resume) and switch again')
            state = self.machine.state
            previous = state.active
            if state.phase is Phase.ACTIVE and previous and previous == req.plain_id:
                return SwitchResult(previous, 0.0)
        revision, directory = self._resolve(req)
        with self._lock:
            if revision == self.machine.state.active and \
                    self.machine.state.phase is Phase.ACTIVE:
                return SwitchResult(revision, 0.0)
        slot = None
        if revision != HOLD:
            try:
                slot = self.pool.take(revision, directory, end_s, self._first_obs)
            except PolicyError as exc:
                self._staging_failed(revision, strictness, str(exc))
                raise self._switch_error(revision, previous, strictness, str(exc)) from None
        waiter = _Waiter()
        with self._lock:
            if slot is not None:
                self.pool.add(slot)
            self._waiters[revision] = waiter
            self.machine.request(revision, strictness)
            staging = self.machine.state.phase is Phase.STAGING
        self._on_event('staging' if staging else 'activating', {'target': revision})
        try:
            if staging:
                self._warm_up(revision, slot, strictness, previous, end_s)
                waiter.scheduled_s = self._clock.now_s()
            if not self._wait(waiter.event, end_s):
                self._first_command_missing(revision, timeout_s)
            if waiter.error:
                raise self._switch_error(revision, previous, strictness,
                                         f'faulted at its first tick: {waiter.error}')
        finally:
            with self._lock:
                self._waiters.pop(revision, None)
        latency_s = waiter.time_s - t0
        # With the system clock, times are comparable across processes on one host.
        self.last_switch = {
            'revision': revision, 'previous': previous, 'switch_tick': waiter.tick,
            'latency_s': latency_s, 'request_mono_s': t0,
            'warmup_s': (waiter.scheduled_s - t0) if waiter.scheduled_s else None}
        self._on_event('switched', {'target': revision})
        return SwitchResult(revision, latency_s)

    def _resolve(self, req: SwitchRequest) -> tuple[str, Path | None]:
        rid = req.revision_id.strip()
        if rid in RESTORE_IDS:
            with self._lock:
                target = self.machine.state.last_good
            if not target:
                raise SwitchFailedError('no earlier good revision to restore: last_good is '
                                        'set only when a switch replaced a working revision')
            return target, self.pool.directory(target)
        if req.revision_dir:
            directory = Path(req.revision_dir)
            if not (directory / 'policy.py').is_file():
                raise SwitchFailedError(f'revision_dir {directory} has no policy.py; give a '
                                        'revision directory (enpire policy show <rev>)')
            return rid or directory.name, directory
        if not rid:
            raise SwitchFailedError('revision_id is empty: give a revision id, hold or '
                                    'last_good')
        if rid == HOLD:
            return HOLD, None
        known = self.pool.directory(rid)
        if known is not None:   # hosted before (maybe parked warm): no store lookup
            return rid, known
        return self._lookup(rid)

    def _first_obs(self) -> Observation:
        latest = self._latest
        # No cell stream yet: the contract's example observation exercises the same code.
        return latest.obs if latest is not None else self._example_obs

    def _wait(self, event: threading.Event, end_s: float) -> bool:
        """Wait for ``event`` until clock time ``end_s``; True when it was set."""
        while True:
            left = end_s - self._clock.now_s()
            if left <= 0:
                return event.is_set()
            if event.wait(min(left, POLL_S)):
                return True

    def _warm_up(self, revision: str, slot: Slot | None, strictness: Strictness,
                 previous: str, end_s: float) -> None:
        """One act on the newest live observation under the contract deadline."""
        if slot is None:        # hold: nothing to warm up
            with self._lock:
                self.machine.warm_action(revision, True)
            return
        if self._latest is None and not self._wait(self._obs_event, end_s):
            reason = 'no observation from the cell to warm up on (is it publishing state?)'
            self._staging_failed(revision, strictness, reason)
            raise self._switch_error(revision, previous, strictness, reason)
        try:
            slot.host.reset(None)
            if self.within_tick:
                # The tick path is locked from the act to the publish: the warm-up action is
                # the newest tick's, and no tick is served between the gate flip and this
                # tick's replacement command. One act: it is the warm-up and the command.
                with self._tick_lock:
                    failed = self._switch_within_tick(revision, slot)
            else:
                latest = self._latest
                assert latest is not None
                slot.host.act(latest.obs)
                with self._lock:
                    self.machine.warm_action(revision, True)
                    failed = self.machine.state.phase is not Phase.SWITCHED
        except PolicyError as exc:
            self.pool.condemn(revision)
            with self._lock:
                self.machine.warm_action(revision, False, str(exc))
            self._on_event('staging_failed', {'reason': str(exc)})
            raise self._switch_error(revision, previous, strictness, str(exc)) from None
        if failed:
            # Overtaken while acting: the warm-up window ran out, or the active revision
            # faulted (-> hold) and cancelled the staging.
            with self._lock:
                s = self.machine.state
                overtaken = revision not in (s.active, s.retiring)
                last = s.log[-1]
            if overtaken:
                self.pool.drop(revision)
            reason = f'overtaken by {last.kind} of {last.revision[:12]}: {last.detail}'
            raise self._switch_error(revision, previous, strictness, reason)

    def _switch_within_tick(self, revision: str, slot: Slot) -> bool:
        """Act on the newest served tick and switch there, replacing its command.

        Tick lock held. A PolicyError of the act is a staging failure (the caller's). Returns
        True when the switch was overtaken (no longer SWITCHED), like the next-tick path.
        """
        latest = self._latest
        assert latest is not None
        action = slot.host.act(latest.obs)
        with self._lock:
            self.machine.warm_action(revision, True, at_tick=latest.tick)
            s = self.machine.state
            if s.phase is not Phase.SWITCHED:
                return True
            replace = s.switch_tick == latest.tick and self._mode == 'running'
        if replace:
            self._publish(latest, revision, action)
            self._published(revision, latest.tick)
        return False

    def _staging_failed(self, revision: str, strictness: Strictness, reason: str) -> None:
        self.pool.condemn(revision)
        with self._lock:
            phase = self.machine.state.phase
            if phase is Phase.STAGING and self.machine.state.staged == revision:
                self.machine.staging_failed(revision, reason)
            elif strictness is Strictness.BEST_EFFORT and phase is not Phase.IDLE:
                # Failed before staging began (the host never started): same outcome.
                self.machine.request(revision, strictness)
                self.machine.staging_failed(revision, reason)
        self.pool.pardon(revision)
        self._on_event('staging_failed', {'reason': reason})

    def _first_command_missing(self, revision: str, timeout_s: float) -> None:
        reason = f'no command of {revision[:12]} was published within {timeout_s:.1f} s'
        with self._lock:
            state = self.machine.state
            if state.phase is Phase.SWITCHED and state.active == revision:
                self.machine.fault(revision, reason)   # STRICT: rolls back to the old host
            elif state.phase is Phase.STAGING and state.staged == revision:
                self.machine.staging_failed(revision, reason)
            elif state.active == revision:   # first activation, but the cell never ticked
                self.machine.fault(revision, reason)
        self._on_event('staging_failed', {'reason': reason})
        raise SwitchFailedError(f'{reason} (is the cell publishing state ticks?)')

    @staticmethod
    def _switch_error(revision: str, previous: str, strictness: Strictness,
                      reason: str) -> SwitchFailedError:
        keep = (f'{previous[:12] or HOLD} stays active' if strictness is Strictness.STRICT
                else 'fell back to hold')
        return SwitchFailedError(f'switch to {revision[:12]} failed, {keep}: {reason}')

    # --- pause / resume / home --------------------------------------------------------------
    def cell_verb(self, verb: str) -> str:
        """``pause``, ``resume`` or ``home`` the cell; returns what it does now."""
        if verb not in ('pause', 'resume', 'home'):
            raise ValueError(f'unknown cell verb {verb!r}: pause, resume or home')
        with self._lock:
            if verb == 'pause':
                self._mode, msg = 'paused', 'paused: no commands are published'
            elif verb == 'resume':
                self._mode, msg = 'running', f'resumed {self.machine.active[:12]}'
            else:
                latest = self._latest
                if self._home is not None:
                    self._home_target = self._home
                elif latest is not None:     # stay where you are
                    self._home_target = self._hold(latest.obs)
                else:
                    self._home_target = None
                self._mode = 'homing'
                where = ('the agent position' if self._home_target is None
                         else str(self._home_target.tolist()))
                msg = f'homing to {where}'
        self._on_event(verb, {})
        return msg

    # --- status -----------------------------------------------------------------------------
    @property
    def active(self) -> str:
        """The active revision ('' before the first activation)."""
        with self._lock:
            return self.machine.state.active

    def status(self) -> dict[str, Any]:
        with self._lock:
            s = self.machine.state
            last = s.log[-1] if s.log else None
            return {'mode': self._mode, 'phase': s.phase.value, 'active': s.active,
                    'staged': s.staged, 'retiring': s.retiring, 'last_good': s.last_good,
                    'standby': self.pool.standby(), 'switches': self.switches,
                    'skipped_ticks': self.skipped_ticks, 'late_acts': self.late_acts,
                    'last_switch': self.last_switch,
                    'faults': self.faults[-5:],
                    'last_event': None if last is None else {
                        'kind': last.kind, 'revision': last.revision, 'tick': last.tick,
                        'detail': last.detail}}

    def close(self) -> None:
        """Close every host."""
        self.pool.close_all()

