"""The GPU reset skill's motion primitives: the base of
:class:`~enpire_tasks.gpu_insertion.reset_skill.GpuResetSkill`. Both arms are commanded every
tick (end-effector targets): the right fingertip ``cmd``, the left ``left``, each arm's
``rpy`` and gripper opening. A phase moves a command by a bounded step each tick towards its
target; ``goal`` and ``_wp`` hold a phase's waypoints, set at its first tick."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Motion limits (m per 30 Hz tick) and set points of the skill.
SPEED, SLOW, INSERT = 0.008, 0.004, 0.0015
LIFT_Z = 0.15
CLEARANCE = 0.010          # the edge above a holder's (or the slot's) top before going in
GRIP_OPEN, GRIP_CLOSED = 1.0, 0.0
#: Ticks to wait for the fingers / the card / the latch to settle.
CLOSE_TICKS, OPEN_TICKS, SETTLE_TICKS, PRESS_TICKS = 12, 10, 6, 8
#: Ticks a turn of the gripper is spread over; ticks an arm gets to reach a pose.
TURN_TICKS, REACH_TICKS = 60, 150
#: Lowering into a holder: the fingertips stopped this far (m) above their command mean the
#: edge stands on the holder's top.
BLOCKED_DZ = 0.002


class GpuMotion:
    """The commands of both arms and the moves every phase shares. The skill sets the
    attributes in its ``__init__``."""

    home: np.ndarray
    low: np.ndarray
    high: np.ndarray
    cmd: Any                  # the right fingertip command (m), None before the first tick
    left: Any                 # the left one
    grip: float
    left_grip: float
    rpy: dict[str, np.ndarray]
    latched: bool
    phase: str
    ticks: int
    goal: Any
    failed: str
    _wp: int

    @staticmethod
    def _step(cmd: np.ndarray, target: np.ndarray, speed: float) -> tuple[np.ndarray, bool]:
        d = target - cmd
        n = float(np.linalg.norm(d))
        if n <= speed:
            return target.copy(), True
        return cmd + d * (speed / n), False

    def _move(self, arm: str, target: np.ndarray, speed: float) -> bool:
        """``arm``'s fingertip command one step towards ``target``; True once there."""
        target = np.asarray(target, dtype=np.float64)
        if arm == 'right':
            self.cmd, ok = self._step(self.cmd, target, speed)
        else:
            self.left, ok = self._step(self.left, target, speed)
        return ok

    def _toward(self, target: np.ndarray, speed: float) -> bool:
        return self._move('right', target, speed)

    def _left_toward(self, target: np.ndarray, speed: float) -> bool:
        return self._move('left', target, speed)

    def _via(self, waypoints: list[np.ndarray], speed: float, arm: str = 'right') -> bool:
        """Move ``arm`` through ``waypoints`` (set at the phase's first tick); True at the
        last."""
        if self.goal is None:
            self.goal = np.asarray(waypoints, dtype=np.float64)
            self._wp = 0
        if self._wp < len(self.goal) and self._move(arm, self.goal[self._wp], speed):
            if self._wp == len(self.goal) - 1:
                return True
            self._wp += 1
        return False

    def _pos(self, arm: str) -> np.ndarray:
        """``arm``'s fingertip command."""
        return self.cmd if arm == 'right' else self.left

    def _set_grip(self, arm: str, value: float) -> None:
        if arm == 'right':
            self.grip = value
        else:
            self.left_grip = value

    @staticmethod
    def _opening(ee: np.ndarray, arm: str) -> float:
        """``arm``'s measured gripper opening."""
        return float(ee[13] if arm == 'right' else ee[6])

    @staticmethod
    def _ee_of(ee: np.ndarray, arm: str) -> np.ndarray:
        """``arm``'s measured fingertip centre."""
        return ee[7:10] if arm == 'right' else ee[0:3]

    @staticmethod
    def _rpy_of(ee: np.ndarray, arm: str) -> np.ndarray:
        """``arm``'s measured gripper orientation (roll, pitch, yaw)."""
        return ee[10:13] if arm == 'right' else ee[3:6]

    def _turn_toward(self, arm: str, rpy: np.ndarray, step: float) -> bool:
        """``arm``'s orientation command one step (at most ``step`` rad per angle) towards
        ``rpy``; True once there."""
        d = np.asarray(rpy, dtype=np.float64) - self.rpy[arm]
        self.rpy[arm] = self.rpy[arm] + np.clip(d, -step, step)
        return bool(np.all(np.abs(d) <= step))

    def _home_of(self, arm: str) -> np.ndarray:
        return self.home[7:10] if arm == 'right' else self.home[0:3]

    def _other_home_of(self, arm: str, speed: float) -> bool:
        """The arm that is not ``arm`` towards home, open."""
        other = 'left' if arm == 'right' else 'right'
        self._set_grip(other, GRIP_OPEN)
        return self._move(other, self._home_of(other), speed)

    def _left_home(self) -> None:
        """The left arm home, open, unless it holds the latch open."""
        if not self.latched:
            self._left_toward(self.home[0:3], SPEED)
            self.left_grip = GRIP_OPEN

    def _go(self, phase: str) -> None:
        self.phase, self.ticks, self.goal = phase, 0, None

    def _fail(self, reason: str) -> None:
        self.failed, self.phase = reason, 'failed'

    def _action(self) -> np.ndarray:
        a = self.home.copy()
        a[0:3] = self.left
        a[3:6] = self.rpy['left']
        a[6] = self.left_grip
        a[7:10] = self.cmd
        a[10:13] = self.rpy['right']
        a[13] = self.grip
        return np.clip(a, self.low, self.high)


__all__ = ['BLOCKED_DZ', 'CLEARANCE', 'CLOSE_TICKS', 'GRIP_CLOSED', 'GRIP_OPEN', 'INSERT',
           'LIFT_Z', 'OPEN_TICKS', 'PRESS_TICKS', 'REACH_TICKS', 'SETTLE_TICKS', 'SLOW',
           'SPEED', 'TURN_TICKS', 'GpuMotion']
