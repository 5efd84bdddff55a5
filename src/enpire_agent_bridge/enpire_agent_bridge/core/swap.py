"""The hot-swap state machine (ros2_control-style controller switching), pure logic.

A cell has one *active* revision whose commands reach the cell. A switch request stages a new
revision beside it; the staged host warms up on the live observation stream (its actions are
computed but not published). Once it has produced a valid action, the switch happens at a
control-tick boundary: from the switch tick on only the new revision's commands are accepted,
the old one's are dropped, and the old host is retired once the new one has published a
valid action. The switch tick is the next tick, or, for a cell that applies the latest command
at its next step (a real-time cell), the current tick: the new revision's action for the
newest observation *replaces* the old one's before the cell steps (``at_tick``).
STRICT: any failure while staging leaves the previous revision active.
BEST_EFFORT: a failed switch falls back to the hold policy. A fault of the active revision
always falls back to hold; ``restore`` brings back the last good revision.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from enpire_common.errors import ConfigError, SwitchFailedError

HOLD = 'hold'


class Strictness(enum.IntEnum):
    STRICT = 1
    BEST_EFFORT = 2


class Phase(enum.Enum):
    IDLE = 'idle'            # nothing active: the cell holds
    ACTIVE = 'active'        # one revision drives the cell
    STAGING = 'staging'      # a new revision warms up beside the active one
    SWITCHED = 'switched'    # new revision drives from switch_tick; old not yet retired


@dataclass
class SwapEvent:
    kind: str
    revision: str
    tick: int
    detail: str = ''


@dataclass
class SwapState:
    phase: Phase = Phase.IDLE
    active: str = ''
    staged: str = ''
    retiring: str = ''
    last_good: str = ''
    strictness: Strictness = Strictness.STRICT
    switch_tick: int | None = None
    staged_at_tick: int = 0
    log: list[SwapEvent] = field(default_factory=list)


class SwapMachine:
    """Decides which revision's commands reach the cell at each tick.

    The owner (the bridge node) feeds it events: ``request``, ``warm_action`` (the staged
    host produced a valid or invalid action during warm-up), ``tick`` (a control tick
    boundary), ``published`` (a revision's command passed the gate), ``fault`` and
    ``restore``. ``accepts(revision, tick)`` is the gate. ``on_retire(revision)`` and
    ``on_stop(revision)`` are called when a host process must be stopped.

    Args:
        warmup_ticks: how many ticks the staged revision gets to produce a valid action.
    """

    def __init__(self, *, warmup_ticks: int = 10,
                 on_retire: Callable[[str], None] | None = None) -> None:
        if warmup_ticks < 1:
            raise ConfigError(f'warmup_ticks={warmup_ticks} is invalid: must be >= 1')
        self.warmup_ticks = warmup_ticks
        self.state = SwapState()
        self._on_retire = on_retire or (lambda _r: None)
        self._tick = 0

    # -- queries -----------------------------------------------------------------------------
    @property
    def active(self) -> str:
        return self.state.active or HOLD

    def accepts(self, revision: str, tick: int) -> bool:
        """True when a command of ``revision`` for ``tick`` may reach the cell."""
        s = self.state
        if s.phase is Phase.SWITCHED and s.switch_tick is not None:
            return revision == s.active and tick >= s.switch_tick
        if s.phase in (Phase.ACTIVE, Phase.STAGING):
            return revision == s.active
        return False

    # -- events ------------------------------------------------------------------------------
    def activate(self, revision: str) -> None:
        """First activation (nothing was active): takes effect at once."""
        s = self.state
        s.phase, s.active, s.staged, s.switch_tick = Phase.ACTIVE, revision, '', None
        self._log('activated', revision)

    def request(self, revision: str, strictness: Strictness = Strictness.STRICT) -> None:
        """Stage ``revision``. Raises SwitchFailedError when a switch is already in flight."""
        s = self.state
        if s.phase in (Phase.STAGING, Phase.SWITCHED):
            raise SwitchFailedError(
                f'a switch to {s.staged or s.active} is in progress; retry when it completes')
        if s.phase is Phase.IDLE:
            self.activate(revision)
            return
        if revision == s.active:
            self._log('noop', revision, 'already active')
            return
        s.phase, s.staged, s.strictness = Phase.STAGING, revision, strictness
        s.staged_at_tick = self._tick
        self._log('staging', revision)

    def warm_action(self, revision: str, valid: bool, detail: str = '', *,
                    at_tick: int | None = None) -> None:
        """The staged host produced an action during warm-up (not published yet).

        Args:
            revision: the staged revision.
            valid: whether the action was valid (finite, in bounds, in time).
            detail: why it was not.
            at_tick: the tick whose observation the action answers. When it is the current
                tick, the switch takes effect at that tick: the owner publishes this action
                as the tick's command, replacing the old revision's (valid only for a cell
                that applies the latest command at its next step). Otherwise (None, or an
                older tick) the switch happens at the next tick.
        """
        s = self.state
        if s.phase is not Phase.STAGING or revision != s.staged:
            return
        if not valid:
            self._fail_staging(f'warm-up action invalid: {detail}')
            return
        # Commands for ticks >= switch_tick come from the new revision only.
        s.retiring, s.active, s.staged = s.active, revision, ''
        s.phase = Phase.SWITCHED
        s.switch_tick = at_tick if at_tick == self._tick else self._tick + 1
        self._log('switch_scheduled', revision, f'at tick {s.switch_tick}'
                  + (' (replaces the current command)' if s.switch_tick == self._tick else ''))

    def staging_failed(self, revision: str, reason: str) -> None:
        """The staged host could not start (import error, crash, ...)."""
        if self.state.phase is Phase.STAGING and revision == self.state.staged:
            self._fail_staging(reason)

    def tick(self, tick: int) -> None:
        """A control tick boundary was crossed.

        A tick lower than the last one is a new episode (the cell was reset and counts from
        0 again): a scheduled switch then takes effect at once, and a warm-up window restarts.
        """
        s = self.state
        if tick < self._tick:
            if s.phase is Phase.SWITCHED:
                s.switch_tick = tick
            elif s.phase is Phase.STAGING:
                s.staged_at_tick = tick
        self._tick = tick
        if s.phase is Phase.STAGING and tick - s.staged_at_tick > self.warmup_ticks:
            self._fail_staging(f'no valid warm-up action within {self.warmup_ticks} ticks')

    def published(self, revision: str, tick: int) -> None:
        """A command of ``revision`` for ``tick`` reached the cell."""
        s = self.state
        if s.phase is Phase.SWITCHED and revision == s.active and s.switch_tick is not None \
                and tick >= s.switch_tick:
            old, s.retiring = s.retiring, ''
            s.phase, s.switch_tick = Phase.ACTIVE, None
            if old and old != HOLD:
                s.last_good = old
            self._log('switched', revision, f'first command at tick {tick}')
            if old:
                self._on_retire(old)

    def fault(self, revision: str, reason: str) -> None:
        """The host of ``revision`` faulted. Active -> hold; staged -> staging failure.

        A revision that faults after being scheduled but before its first command is rolled
        back to the previous one under STRICT (that host was not retired yet).
        """
        s = self.state
        if s.phase is Phase.STAGING and revision == s.staged:
            self._fail_staging(reason)
            return
        if revision != s.active:
            return
        if s.phase is Phase.SWITCHED and s.retiring and s.strictness is Strictness.STRICT:
            # The new revision failed before its first command; the old host is still warm.
            s.active, s.retiring, s.phase, s.switch_tick = s.retiring, '', Phase.ACTIVE, None
            self._log('switch_rolled_back', revision, reason)
            self._on_retire(revision)
            return
        self._log('fault', revision, reason)
        retired = [r for r in (s.active, s.retiring) if r and r != HOLD]
        s.phase, s.active, s.retiring, s.switch_tick = Phase.ACTIVE, HOLD, '', None
        self._log('fallback', HOLD, f'{revision[:12]} faulted: {reason}')
        for r in retired:
            self._on_retire(r)

    def restore(self) -> str:
        """Request the last good revision again (after a fallback). Returns its id."""
        s = self.state
        if not s.last_good:
            raise SwitchFailedError('no earlier good revision to restore')
        target = s.last_good
        self.request(target, Strictness.STRICT)
        return target

    # -- internals ---------------------------------------------------------------------------
    def _fail_staging(self, reason: str) -> None:
        s = self.state
        failed, s.staged = s.staged, ''
        s.phase = Phase.ACTIVE
        self._log('staging_failed', failed, reason)
        self._on_retire(failed)
        if s.strictness is Strictness.BEST_EFFORT:
            retired = s.active
            if retired and retired != HOLD:
                s.last_good = retired
            s.active = HOLD
            self._log('fallback', HOLD, reason)
            if retired and retired != HOLD:
                self._on_retire(retired)

    def _log(self, kind: str, revision: str, detail: str = '') -> None:
        self.state.log.append(SwapEvent(kind, revision, self._tick, detail))
