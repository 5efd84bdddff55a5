"""The safety envelope: a pure, stateful filter between a policy's command and the cell.

Rules, in order: SHAPE and NAN (always rejected), an earlier abort (everything rejected until
:meth:`SafetyFilter.reset`), RATE, BOUNDS, MAX_STEP, then a final clamp into the bounds so an
applied command is never outside them. MAX_STEP is measured from ``prev``: the previous
applied command, or (first command after a reset) the agent position when the caller knows
it; with ``prev=None`` the step rule is skipped for that command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from enpire_rollout.core.config import SafetyConfig


class SafetyKind(IntEnum):
    """Mirrors ``SafetyEvent.KIND_*``."""

    BOUNDS = 1
    MAX_STEP = 2
    RATE = 3
    NAN = 4
    SHAPE = 5
    STALE = 6
    JOINT_VELOCITY = 7   # the cell's own envelope (arm cells) from here on
    FORCE = 8
    COLLISION = 9
    IK = 10


class SafetyAction(IntEnum):
    """Mirrors ``SafetyEvent.ACTION_*``."""

    CLAMPED = 1
    REJECTED = 2
    ABORTED = 3


@dataclass(frozen=True)
class SafetyDecision:
    """One rule that changed or refused a command (becomes one SafetyEvent)."""

    kind: SafetyKind
    action: SafetyAction
    requested: tuple[float, ...]
    applied: tuple[float, ...] | None
    detail: str


_MODE_ACTION = {'clamp': SafetyAction.CLAMPED, 'reject': SafetyAction.REJECTED,
                'abort': SafetyAction.ABORTED}


def _as_tuple(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values.ravel())


class SafetyFilter:
    """Applies a :class:`SafetyConfig` to a stream of commands.

    Holds only the abort latch and the time of the last applied command; never reads time.
    """

    def __init__(self, config: SafetyConfig) -> None:
        self.config = config
        self._low = np.asarray(config.envelope.low, dtype=np.float64)
        self._high = np.asarray(config.envelope.high, dtype=np.float64)
        self._aborted: SafetyDecision | None = None
        self._last_applied_s: float | None = None
        self._applied_before_s: float | None = None   # the one before _last_applied_s
        self._applied_prev: np.ndarray | None = None   # MAX_STEP reference of the last one
        self._last_seen_s: float | None = None
        self._stale_reported = False

    @property
    def aborted(self) -> bool:
        """True after an ABORT until :meth:`reset`."""
        return self._aborted is not None

    def reset(self) -> None:
        """Clear the abort latch and the rate/stale history (call at a trial boundary)."""
        self._aborted = None
        self._last_applied_s = None
        self._applied_before_s = None
        self._applied_prev = None
        self._last_seen_s = None
        self._stale_reported = False

    def filter(self, command: object, prev: Sequence[float] | np.ndarray | None,
               now_s: float) -> tuple[np.ndarray | None, list[SafetyDecision]]:
        """Filter one command.

        Args:
            command: the policy's command (anything ``np.asarray`` accepts).
            prev: reference for MAX_STEP (previous applied command or agent position), or None.
            now_s: the time the command arrived, seconds (for RATE and STALE); the
                command's tick stamp when it has one. A command with the same stamp as the
                last applied one *replaces* it (a real-time cell steps with the latest
                target it holds): RATE is judged against the command before that one and
                MAX_STEP from the reference that one was judged from (``prev`` is then
                ignored).

        Returns:
            ``(applied, decisions)``: the command to send (float64, inside the bounds) or None
            when it must be dropped, and one decision per rule that fired.
        """
        env = self.config.envelope
        ndim = self.config.ndim
        self._last_seen_s = now_s
        self._stale_reported = False
        try:
            arr = np.asarray(command, dtype=np.float64)
        except (TypeError, ValueError):
            return None, [SafetyDecision(SafetyKind.SHAPE, SafetyAction.REJECTED, (), None,
                                         f'command {command!r:.80} is not numeric')]
        requested = _as_tuple(arr) if arr.size <= 64 else ()
        if arr.shape != (ndim,):
            return None, [SafetyDecision(
                SafetyKind.SHAPE, SafetyAction.REJECTED, requested, None,
                f'command shape {arr.shape} != ({ndim},) of the action spec')]
        if not np.all(np.isfinite(arr)):
            return None, [SafetyDecision(SafetyKind.NAN, SafetyAction.REJECTED, requested, None,
                                         f'command {list(requested)} has non-finite values')]
        if self._aborted is not None:
            return None, [SafetyDecision(
                self._aborted.kind, SafetyAction.REJECTED, requested, None,
                f'envelope aborted earlier ({self._aborted.detail}); rejected until reset')]

        decisions: list[SafetyDecision] = []
        replaces = self._last_applied_s is not None and now_s == self._last_applied_s
        last_s = self._applied_before_s if replaces else self._last_applied_s
        if replaces:
            prev = self._applied_prev
        if env.max_rate_hz > 0 and last_s is not None:
            min_dt = 1.0 / env.max_rate_hz
            dt = now_s - last_s
            # A small tolerance: a 10 Hz stream with jitter must pass a 10 Hz limit.
            if dt < 0.9 * min_dt:
                return self._violation(SafetyKind.RATE, self.config.modes.rate, requested,
                                       f'{dt * 1e3:.1f} ms since the last command, limit '
                                       f'{env.max_rate_hz:g} Hz')

        out = arr.copy()
        if np.any(out < self._low) or np.any(out > self._high):
            mode = self.config.modes.bounds
            if mode != 'clamp':
                return self._violation(SafetyKind.BOUNDS, mode, requested,
                                       f'{list(requested)} outside [{env.low}, {env.high}]')
            out = np.clip(out, self._low, self._high)
            decisions.append(SafetyDecision(
                SafetyKind.BOUNDS, SafetyAction.CLAMPED, requested, _as_tuple(out),
                f'{list(requested)} outside [{env.low}, {env.high}]'))

        if env.max_step_px > 0 and prev is not None:
            ref = np.asarray(prev, dtype=np.float64).ravel()
            if ref.shape == (ndim,) and np.all(np.isfinite(ref)):
                delta = out - ref
                dist = float(np.linalg.norm(delta))
                if dist > env.max_step_px:
                    mode = self.config.modes.max_step
                    detail = f'step {dist:.1f} > max_step_px {env.max_step_px:g}'
                    if mode != 'clamp':
                        return self._violation(SafetyKind.MAX_STEP, mode, requested, detail)
                    out = ref + delta * (env.max_step_px / dist)
                    # prev may lie outside the bounds (agent position): stay inside them.
                    out = np.clip(out, self._low, self._high)
                    decisions.append(SafetyDecision(SafetyKind.MAX_STEP, SafetyAction.CLAMPED,
                                                    requested, _as_tuple(out), detail))

        out = np.clip(out, self._low, self._high)
        if not replaces:
            self._applied_before_s = self._last_applied_s
            self._applied_prev = None if prev is None else np.asarray(prev, dtype=np.float64)
        self._last_applied_s = now_s
        return out, decisions

    def check_stale(self, now_s: float) -> SafetyDecision | None:
        """A STALE decision once per silence longer than ``stale_timeout_s`` (else None).

        Only after a first command: before it, nothing is expected.
        """
        timeout = self.config.envelope.stale_timeout_s
        if timeout <= 0 or self._last_seen_s is None or self._stale_reported:
            return None
        silence = now_s - self._last_seen_s
        if silence <= timeout:
            return None
        self._stale_reported = True
        return SafetyDecision(SafetyKind.STALE, SafetyAction.REJECTED, (), None,
                              f'no command for {silence:.2f} s (limit {timeout:g} s); holding')

    def _violation(self, kind: SafetyKind, mode: str, requested: tuple[float, ...],
                   detail: str) -> tuple[None, list[SafetyDecision]]:
        decision = SafetyDecision(kind, _MODE_ACTION[mode], requested, None, detail)
        if mode == 'abort':
            self._aborted = decision
        return None, [decision]

