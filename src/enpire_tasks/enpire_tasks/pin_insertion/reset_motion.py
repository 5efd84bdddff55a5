"""The pin reset skill's motion primitives (one arm at a time, end-effector targets): the
base of :class:`~enpire_tasks.pin_insertion.reset_skill.PinResetSkill`. A phase moves the
command (``cmd``, ``rpy``, ``grip``) by a bounded step each tick, and waits for the measured
pose where the arm is slow to follow (a large turn of the wrist)."""

from __future__ import annotations

from typing import Any

import numpy as np

from enpire_tasks.arm import rpy_to_matrix

#: Motion limits (m per 30 Hz tick) and set points of the skill.
SPEED, SLOW, INSERT = 0.008, 0.004, 0.002
LIFT_Z = 0.12
GRIP_OPEN, GRIP_CLOSED = 1.0, 0.0
#: Ticks to wait for the fingers / the pin to settle.
CLOSE_TICKS, OPEN_TICKS, SETTLE_TICKS = 12, 10, 6
#: A gripper closed to less than this opening holds nothing (the head holds it at ~0.2).
EMPTY_GRIP = 0.05
#: Ticks a turn of the gripper (to point down, back to level) is spread over.
TURN_TICKS = 60
#: Ticks an arm gets to reach a pose before the skill gives up.
REACH_TICKS = 150


class SkillBase:
    """Commands one arm (``arm``; the other holds its home) towards targets: the state and
    the moves every phase of the skill shares. The subclass sets the attributes in its
    ``__init__``."""

    arm: str
    cmd: Any
    rpy: np.ndarray
    grip: float
    home: np.ndarray
    low: np.ndarray
    high: np.ndarray
    phase: str
    ticks: int
    goal: Any
    failed: str
    _wp: int
    _ee: np.ndarray
    _rpy0: np.ndarray

    def _toward(self, target: np.ndarray, speed: float) -> bool:
        d = target - self.cmd
        n = float(np.linalg.norm(d))
        if n <= speed:
            self.cmd = target.copy()
            return True
        self.cmd = self.cmd + d * (speed / n)
        return False

    def _go(self, phase: str) -> None:
        self.phase, self.ticks, self.goal = phase, 0, None

    def _fail(self, reason: str) -> None:
        self.failed, self.phase = reason, 'failed'

    @property
    def _o(self) -> int:
        """The offset of the moving arm's 7 values in the action and ``ee_pose``."""
        return 7 if self.arm == 'right' else 0

    def _action(self) -> np.ndarray:
        a = self.home.copy()
        o = self._o
        a[o:o + 3] = self.cmd
        a[o + 3:o + 6] = self.rpy
        a[o + 6] = self.grip
        return np.clip(a, self.low, self.high)

    def _use(self, arm: str) -> None:
        """Move ``arm`` from now on (the other one goes home), from where it is."""
        self.arm = arm
        o = self._o
        self.cmd, self.grip = self._ee[o:o + 3].copy(), float(self._ee[o + 6])

    def _reached(self, ee: np.ndarray, tol_m: float = 0.004, tol_rad: float = 0.05) -> bool:
        """Whether the arm's measured fingertip pose is the command's."""
        if float(np.linalg.norm(ee[:3] - self.cmd)) > tol_m:
            return False
        r = rpy_to_matrix(self.arm, self.rpy).T @ rpy_to_matrix(self.arm, ee[3:6])
        return float(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))) < tol_rad

    def _via(self, waypoints: list[np.ndarray], speed: float) -> bool:
        """Move through ``waypoints`` (set at the phase's first tick); True at the last."""
        if self.goal is None:
            self.goal = np.asarray(waypoints, dtype=np.float64)
            self._wp = 0
        while self._wp < len(self.goal) and self._toward(self.goal[self._wp], speed):
            if self._wp == len(self.goal) - 1:
                return True
            self._wp += 1
            return False
        return False

    def _unturn(self) -> float:
        """Turn the gripper back level from where the phase found it, over TURN_TICKS (call
        every tick of the phase); the fraction done, 0..1."""
        if self.ticks == 1:
            self._rpy0 = self.rpy.copy()
        f = min(1.0, self.ticks / TURN_TICKS)
        self.rpy = self._rpy0 * (1.0 - f)
        return f

    def _level_home(self, ee: np.ndarray) -> bool:
        """Up to LIFT_Z, then home, the gripper turning back level over TURN_TICKS on the way
        (a wrist turned to point down unwinds slowly: an orientation jump swung the arm out
        of the workspace); True once the arm is there, or has had REACH_TICKS to get there."""
        f = self._unturn()
        home = self.home[self._o:self._o + 3]
        there = self._via([np.array([*self.cmd[:2], max(self.cmd[2], LIFT_Z)]), home], SPEED)
        return there and f >= 1.0 and self.ticks > SETTLE_TICKS and (
            self._reached(ee, 0.01, 0.1) or self.ticks > TURN_TICKS + REACH_TICKS)


__all__ = ['CLOSE_TICKS', 'EMPTY_GRIP', 'GRIP_CLOSED', 'GRIP_OPEN', 'INSERT', 'LIFT_Z',
           'OPEN_TICKS', 'REACH_TICKS', 'SETTLE_TICKS', 'SLOW', 'SPEED', 'TURN_TICKS',
           'SkillBase']
