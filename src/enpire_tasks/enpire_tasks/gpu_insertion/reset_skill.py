"""The robot-executed reset of GPU insertion: press the latch, unplug, place, home.

A skill is a closed-loop controller like a policy: each tick it gets the observation (the
contract's cameras and the arm state, never simulator poses) and returns an end-effector
action for both arms, until it is ``done`` or ``failed``. Perception is the classic
verifier's: the cooler's hue in the top camera, the lit top face, the calibrated ray onto the
plane of a standing card's cooler top (the caddy's floors and the slot's floor are at one
height).

Stage ``start``: the card stands in caddy slot ``seed % 4``, the arms at home. If the card is
in the slot (seated and latched, or resting on the latch), the left arm presses the latch's
pad down and holds it while the right arm grasps the cooler and pulls the card straight up;
then the left arm lets go and goes home while the right arm carries the card to its caddy
slot, aligns it from the top camera, lowers it in, lets go and goes home. A card in a caddy
slot is picked up without the latch; a card already in the right gripper is carried (if its
edge is down at the slot, the latch is pressed and the card pulled out first).

Stage ``pre_insertion`` (the hardest stage's start): the right gripper holds the card over
the slot, its bottom edge 10 mm above the slot's top.

A card lying flat (fallen) is out of this skill's reach: it fails with ``fallen`` and the
reset falls back to the recorded ``sim_place`` where the contract allows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_tasks.arm import PinholeCamera, colour_blob, home_action
from enpire_tasks.gpu_insertion.classic import (
    LYING_PCB_RATIO,
    lying_ratio,
    standing_cooler_top_z,
    top_view_xy,
)
from enpire_tasks.gpu_insertion.geometry import PRE_INSERTION_CLEARANCE, parts, start_pose

STAGES = ('start', 'pre_insertion')
#: Motion limits (m per 30 Hz tick) and set points of the skill.
SPEED, SLOW, INSERT = 0.008, 0.004, 0.0015
LIFT_Z = 0.15
PREGRASP_DX = 0.07
GRASP_DX = 0.006           # fingertip centre from the edge's centre along +x (the cooler's centre)
CLEARANCE = 0.010          # the edge above a slot's top before the final descent
ALIGN_TOL = 0.0006
GRIP_OPEN, GRIP_CLOSED, GRIP_PRESS = 1.0, 0.0, 0.1
PRESS_ABOVE = 0.03         # the left fingertips this far over the latch pad before pressing
PAD_HALF = 0.008           # the finger pads reach this far below the fingertip centre
IN_SLOT_DZ = 0.004         # a held card's edge this far over the slot's top may be latched
#: Ticks to wait for the fingers / the card / the latch to settle.
CLOSE_TICKS, OPEN_TICKS, SETTLE_TICKS, PRESS_TICKS = 12, 10, 6, 8


#: A standing card seen this close (m) to its seed's start is left where it is.
ALREADY_THERE = 0.002

class GpuResetSkill:
    """One reset of the card (see the module doc); ``act`` until ``done`` or ``failed``."""

    def __init__(self, task: TaskSpec, seed: int, stage: str = 'start') -> None:
        if stage not in STAGES:
            raise ValueError(f"reset stage '{stage}' is unknown (stages: {', '.join(STAGES)})")
        self.p = parts()
        self.stage = stage
        self.top = PinholeCamera.of(task.views['task_top'])
        self.home = home_action(task)
        self.low = np.asarray(task.action.low, dtype=np.float64)
        self.high = np.asarray(task.action.high, dtype=np.float64)
        self.target = np.asarray(start_pose(seed), dtype=np.float64)       # edge in its holder
        self.grasp_dz = self.p.cooler_center[2]                           # edge -> tcp
        self.phase, self.ticks = 'locate', 0
        self.cmd: np.ndarray | None = None          # right fingertip
        self.left: np.ndarray | None = None         # left fingertip
        self.grip, self.left_grip = GRIP_OPEN, GRIP_OPEN
        self.goal: np.ndarray | None = None
        self._wp = 0
        self.goal_grasp = np.zeros(3)
        self.offset = np.zeros(2)
        self.corrections = 0
        self.latched = False
        self.in_hand = False         # the card was in the gripper at the start
        self.done = False
        self.failed = ''

    # --- perception -------------------------------------------------------------------------
    def _card(self, image: np.ndarray, cooler_top_z: float) -> np.ndarray | None:
        blob = colour_blob(image, self.p.colour_rgb)
        if blob is None:
            return None
        return top_view_xy(self.top, image, blob, cooler_top_z)

    # --- motion -----------------------------------------------------------------------------
    @staticmethod
    def _step(cmd: np.ndarray, target: np.ndarray, speed: float) -> tuple[np.ndarray, bool]:
        d = target - cmd
        n = float(np.linalg.norm(d))
        if n <= speed:
            return target.copy(), True
        return cmd + d * (speed / n), False

    def _toward(self, target: np.ndarray, speed: float) -> bool:
        self.cmd, ok = self._step(self.cmd, np.asarray(target, dtype=np.float64), speed)
        return ok

    def _left_toward(self, target: np.ndarray, speed: float) -> bool:
        self.left, ok = self._step(self.left, np.asarray(target, dtype=np.float64), speed)
        return ok

    def _go(self, phase: str) -> None:
        self.phase, self.ticks, self.goal = phase, 0, None

    def _fail(self, reason: str) -> None:
        self.failed, self.phase = reason, 'failed'

    def _action(self) -> np.ndarray:
        a = self.home.copy()
        a[0:3] = self.left
        a[3:6] = 0.0
        a[6] = self.left_grip
        a[7:10] = self.cmd
        a[10:13] = 0.0
        a[13] = self.grip
        return np.clip(a, self.low, self.high)

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

    # --- the skill --------------------------------------------------------------------------
    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The next action (the arms' command for this tick)."""
        ee = np.asarray(obs['ee_pose'], dtype=np.float64)
        if self.cmd is None:
            self.cmd = ee[7:10].copy()
            self.left = ee[0:3].copy()
            self.grip = float(ee[13])
        self.ticks += 1
        getattr(self, f'_{self.phase}')(obs['image_top'], ee)
        return self._action()

    def _locate(self, image: np.ndarray, ee: np.ndarray) -> None:
        held = float(ee[13]) < 0.4
        lying = lying_ratio(self.top, image)
        if lying > LYING_PCB_RATIO:
            self._fail(f'fallen: the card lies flat (PCB area {lying:.1f} x a standing card)')
            return
        if held and self._in_hand(image, ee):
            return
        xy = self._card(image, standing_cooler_top_z())
        if xy is None:
            self._fail('no card in view')
            return
        if not held and self.stage == 'start' and \
                float(np.hypot(*(xy - self.target[:2]))) < ALREADY_THERE:
            # standing in the seed's holder already (a fresh cell's own start): taking it
            # out only to put it back risks the very drop the reset is there to undo
            self.done, self.phase = True, 'done'
            return
        if held:
            self.grip = GRIP_OPEN   # closed on nothing: open before reaching
        self.latched = float(np.hypot(*(xy - np.asarray(self.p.slot_xy)))) < 0.01
        self.goal_grasp = np.array([xy[0] + GRASP_DX, xy[1],
                                    self.p.holder_floor_z + self.grasp_dz])
        self._go('clear')

    def _in_hand(self, image: np.ndarray, ee: np.ndarray) -> bool:
        """Is the card in the right gripper (the cooler seen from above between the measured
        fingertips, on the plane the grasp puts its top)? Then carry it, and if its edge is
        down at the slot (seated, jammed or on the latch) press the latch and pull it out
        first: lifting a latched card pulls the arm against the hook."""
        xy = self._card(image, float(ee[9]) - self.grasp_dz + self.p.cooler_top)
        if xy is None or float(np.hypot(*(xy + [GRASP_DX, 0.0] - ee[7:9]))) > 0.012:
            return False
        at_slot = float(np.hypot(*(xy - np.asarray(self.p.slot_xy)))) < 0.004 and \
            float(ee[9]) < self.p.slot_top_z + self.grasp_dz + IN_SLOT_DZ
        self.goal_grasp = np.array([*self.cmd[:2], self.p.holder_floor_z + self.grasp_dz])
        if at_slot:
            self.latched = self.in_hand = True
            self._go('press')
        else:
            self._go('lift')
        return True

    def _clear(self, image: np.ndarray, ee: np.ndarray) -> None:
        # up first, so that no approach sweeps through the caddy or the connector
        if self._toward(np.array([*self.cmd[:2], max(self.cmd[2], LIFT_Z)]), SPEED):
            self._go('press' if self.latched else 'pregrasp')

    def _press(self, image: np.ndarray, ee: np.ndarray) -> None:
        """The left fingertips over the latch's pad, then down by its press depth; they stay
        there until the card is out."""
        pad = np.asarray(self.p.latch_press)
        self.left_grip = GRIP_PRESS
        above = pad + [0.0, 0.0, PAD_HALF + PRESS_ABOVE]
        down = pad + [0.0, 0.0, PAD_HALF - self.p.latch_press_depth]
        if self.goal is None:
            self.goal, self._wp = np.array([above, down]), 0
        speed = SPEED if self._wp == 0 else INSERT
        if self._left_toward(self.goal[self._wp], speed):
            if self._wp == 0:
                self._wp = 1
            elif self.ticks > PRESS_TICKS:
                self._go('pull' if self.in_hand else 'pregrasp')

    def _pregrasp(self, image: np.ndarray, ee: np.ndarray) -> None:
        above = self.goal_grasp + [PREGRASP_DX, 0.0, 0.0]
        if self._via([np.array([above[0], above[1], LIFT_Z]), above], SPEED):
            self._go('approach')

    def _approach(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self.goal is None:
            self.goal = self.goal_grasp.copy()      # the command, corrected for tracking
        if self._toward(self.goal, SLOW) and self.ticks > SETTLE_TICKS:
            # the measured fingertips on the cooler's centre line before closing: the
            # fingers centre the cooler between them, and a card whose edge is held in a
            # slot would lean by the difference
            err = self.goal_grasp[:2] - ee[7:9]
            if float(np.hypot(*err)) > 0.0004 and self.ticks < 12 * SETTLE_TICKS:
                self.goal[:2] += 0.8 * err
            else:
                self._go('close')

    def _close(self, image: np.ndarray, ee: np.ndarray) -> None:
        self.grip = GRIP_CLOSED
        if self.ticks >= CLOSE_TICKS:
            if float(ee[13]) < 0.05:    # closed on nothing: missed the cooler
                self._fail('missed the card: the gripper closed on nothing')
                return
            self._go('pull')

    def _pull(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Straight up out of the slot (or the holder), slowly, the latch held open."""
        out = self.goal_grasp[2] + self.p.slot_depth + 0.015
        if self._toward(np.array([*self.cmd[:2], out]), INSERT * 2):
            self._go('unpress' if self.latched else 'lift')

    def _unpress(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._left_toward(np.asarray(self.p.latch_press) + [0.0, 0.0, 0.05], SPEED):
            self.latched = False
            self._go('lift')

    def _left_home(self) -> None:
        if not self.latched:
            self._left_toward(self.home[0:3], SPEED)
            self.left_grip = GRIP_OPEN

    def _lift(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            self._go('carry')

    def _dest(self) -> np.ndarray:
        """Where the edge goes: its caddy slot, or over the connector's slot."""
        if self.stage == 'pre_insertion':
            return np.array([*self.p.slot_xy, self.p.slot_top_z + PRE_INSERTION_CLEARANCE])
        return self.target

    def _carry(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        dest = self._dest()
        if self.stage == 'pre_insertion':
            above = dest + [GRASP_DX, 0.0, self.grasp_dz]
        else:
            above = dest + [GRASP_DX, 0.0, self.grasp_dz + self.p.holder_depth + CLEARANCE]
        if self._via([np.array([above[0], above[1], LIFT_Z]), above], SPEED) and \
                self.ticks > SETTLE_TICKS:
            self._go('align')

    def _align(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        if self.ticks % SETTLE_TICKS:
            return
        dest = self._dest()
        cooler_top = self.cmd[2] - self.grasp_dz + self.p.cooler_top
        seen = self._card(image, cooler_top)
        if seen is None:
            self._fail('lost the card: no cooler in view while aligning')
            return
        err = seen - dest[:2]
        if float(np.hypot(*err)) < ALIGN_TOL or self.corrections >= 6:
            if self.stage == 'pre_insertion':
                self._go('settle_left')
            else:
                self._go('lower')
            return
        self.offset -= 0.8 * err
        self.cmd[:2] = dest[:2] + [GRASP_DX, 0.0] + self.offset
        self.corrections += 1

    def _settle_left(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        if float(np.linalg.norm(self.left - self.home[0:3])) < 1e-6 and \
                self.ticks > SETTLE_TICKS:
            self.done, self.phase = True, 'done'

    def _lower(self, image: np.ndarray, ee: np.ndarray) -> None:
        floor = np.array([*self.cmd[:2], self.target[2] + self.grasp_dz + 0.0005])
        if self._toward(floor, INSERT) and self.ticks > 2:
            self._go('release')

    def _release(self, image: np.ndarray, ee: np.ndarray) -> None:
        self.grip = GRIP_OPEN
        if self.ticks >= OPEN_TICKS:
            self._go('retreat')

    def _retreat(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self.goal is None:
            self.goal = self.cmd + [PREGRASP_DX, 0.0, 0.0]
        if self._toward(self.goal, SLOW):
            self._go('rise')

    def _rise(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            self._go('home')

    def _home(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        if self._toward(self.home[7:10], SPEED) and self.ticks > SETTLE_TICKS and \
                float(np.linalg.norm(self.left - self.home[0:3])) < 1e-6:
            self.done, self.phase = True, 'done'

    def _done(self, image: np.ndarray, ee: np.ndarray) -> None:
        pass

    def _failed(self, image: np.ndarray, ee: np.ndarray) -> None:
        pass


def make_reset_skill(task: TaskSpec, seed: int, stage: str = 'start') -> GpuResetSkill:
    return GpuResetSkill(task, seed, stage)


__all__ = ['STAGES', 'GpuResetSkill', 'make_reset_skill']
