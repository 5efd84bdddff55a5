"""The robot-executed reset of pin insertion: the right arm takes the pin from wherever it
stands (the hole, seated or jammed part-way; a rack slot; its own gripper) and stands it in
the seed's rack slot.

A skill is a closed-loop controller like a policy: each tick it gets the observation (the
contract's cameras and the arm state, never simulator poses) and returns an end-effector
action, until it is ``done`` or ``failed``. The cell runs it (a simulated cell in its own
loop; a real cell against its drivers). Perception is the classic verifier's: the pin's hue
in the top camera, the lit top face of its head, the calibrated ray onto the plane of a
standing head's top. The arm first parks clear of the cameras (a trial may end with the
gripper over the pin). A pin in the hole may be jammed high: the side camera gives its
head's height, the side rule of the classic verifier.

Stage ``start``: the pin stands in slot ``seed % 6``, the arms at home. Stage
``pre_insertion`` (the hardest stage's start): the right gripper holds the pin over the hole,
its tip 10 mm above the hole's top.

A pin lying on the table (fallen) is out of this skill's reach: it fails with ``fallen`` and
the reset falls back to the recorded ``sim_place`` where the contract allows it. (Tried and
parked on the branch ``wip/pin-lying-reset``: a pinch of the head from above, then a wrist
turn or a swing about the tip on the table; the pinch holds the pin too stiffly to turn
reliably, and its pads land on the rack or the fixture beside most fallen pins.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_tasks.arm import PinholeCamera, colour_blob, home_action, lit_centroid
from enpire_tasks.pin_insertion.classic import tip_z_below_head_top
from enpire_tasks.pin_insertion.geometry import parts, start_pose

STAGES = ('start', 'pre_insertion')
#: Motion limits (m per 30 Hz tick) and set points of the skill.
SPEED, SLOW, INSERT = 0.008, 0.004, 0.002
LIFT_Z = 0.12
PREGRASP_DX = 0.07
CLEARANCE = 0.010          # tip above a slot's or the hole's top before the final descent
ALIGN_TOL = 0.0006
GRIP_OPEN, GRIP_CLOSED = 1.0, 0.0
#: Ticks to wait for the fingers / the pin to settle.
CLOSE_TICKS, OPEN_TICKS, SETTLE_TICKS = 12, 10, 6
#: A top-view blob this many times a standing head's area is a pin lying down.
FALLEN_AREA_RATIO = 2.5
#: ... or one this many head diameters long.
LYING_LENGTH = 2.0
#: A gripper closed to less than this opening holds nothing (the head holds it at ~0.2).
EMPTY_GRIP = 0.05
#: A pin seen this far (m) from where the gripper carries it is not in the gripper.
LOST = 0.012
#: A standing pin seen this close to the hole (m; read on the plane of a pin in a slot, which
#: is off by parallax for one jammed high in the hole) stands in the hole.
NEAR_HOLE = 0.02


class PinResetSkill:
    """One reset of the pin (see the module doc); ``act`` until ``done`` or ``failed``."""

    def __init__(self, task: TaskSpec, seed: int, stage: str = 'start') -> None:
        if stage not in STAGES:
            raise ValueError(f"reset stage '{stage}' is unknown (stages: {', '.join(STAGES)})")
        self.p = parts()
        self.stage = stage
        self.top = PinholeCamera.of(task.views['task_top'])
        self.side_cam = PinholeCamera.of(task.views['side'])
        self._side_image: np.ndarray | None = None
        self.home = home_action(task)
        self.low = np.asarray(task.action.low, dtype=np.float64)
        self.high = np.asarray(task.action.high, dtype=np.float64)
        self.target = np.asarray(start_pose(seed), dtype=np.float64)       # tip in its slot
        self.hole_tip_top = np.array([*self.p.hole_xy, self.p.hole_top_z])
        self.head_c = self.p.pin_length - self.p.head_height / 2      # tip -> head centre
        self.phase, self.ticks = 'locate', 0
        self.cmd: np.ndarray | None = None
        self.grip = GRIP_OPEN
        self.cleared = False
        self.goal: np.ndarray | None = None
        self._wp = 0
        self.goal_grasp = np.zeros(3)
        self.offset = np.zeros(2)
        self.corrections = 0
        self.done = False
        self.failed = ''

    # --- perception -------------------------------------------------------------------------
    def _head(self, image: np.ndarray, head_top_z: float) -> tuple[np.ndarray, float] | None:
        blob = colour_blob(image, self.p.colour_rgb)
        if blob is None:
            return None
        u, v = lit_centroid(image, blob.mask) or blob.centroid
        dist = self.top.position[2] - head_top_z
        expected = np.pi * (self.p.head_radius * self.top.fx / dist) ** 2
        return self.top.on_plane_z(u, v, head_top_z)[:2], blob.area / max(expected, 1.0)

    def _upright_in_side_view(self) -> bool:
        """Whether the side camera sees a pin standing (its blob taller than wide): a pin
        jammed in the hole shows the top camera its head and, off the optical axis, part of
        its shaft, which reads as long as a pin lying down."""
        if self._side_image is None:
            return False
        blob = colour_blob(self._side_image, self.p.colour_rgb)
        return blob is not None and blob.bottom - blob.top > blob.right - blob.left

    def _side_tip_z(self, obs_side: np.ndarray | None, x: float) -> float | None:
        """The tip's height of a pin standing in the hole (seated or jammed part-way) at
        ``x``, from the side camera (the classic verifier's head-top rule); None when the
        side view shows no pin."""
        if obs_side is None:
            return None
        blob = colour_blob(obs_side, self.p.colour_rgb)
        if blob is None:
            return None
        z = tip_z_below_head_top(self.side_cam, blob, x)
        return z if np.isfinite(z) else None

    def _blob_length(self, image: np.ndarray) -> float:
        """The pin blob's extent along its principal axis on the table plane (m): a standing
        pin shows its round head (~12 mm), a lying one its whole length (52 mm)."""
        blob = colour_blob(image, self.p.colour_rgb)
        if blob is None:
            return 0.0
        rows, cols = np.nonzero(blob.mask)
        pts = np.stack([cols, rows], axis=1).astype(np.float64)
        pts -= pts.mean(axis=0)
        if len(pts) < 3:
            return 0.0
        axis = np.linalg.svd(pts, full_matrices=False)[2][0]
        t = pts @ axis
        return float(t.max() - t.min() + 1.0) * self.top.position[2] / self.top.fx

    # --- motion -----------------------------------------------------------------------------
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

    def _action(self) -> np.ndarray:
        a = self.home.copy()
        a[7:10] = self.cmd
        a[10:13] = 0.0
        a[13] = self.grip
        return np.clip(a, self.low, self.high)

    # --- the skill --------------------------------------------------------------------------
    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The next action (the arms' command for this tick)."""
        ee = np.asarray(obs['ee_pose'], dtype=np.float64)
        if self.cmd is None:
            self.cmd = ee[7:10].copy()
            self.grip = float(ee[13])
        self.ticks += 1
        image = obs['image_top']
        self._side_image = obs.get('image_side')
        getattr(self, f'_{self.phase}')(image, ee)
        return self._action()

    def _locate(self, image: np.ndarray, ee: np.ndarray) -> None:
        held = float(ee[13]) < 0.4
        seen = self._head(image, self.p.slot_floor_z + self.p.pin_length)
        in_hand = held and seen is not None and float(
            np.hypot(*(seen[0] - self.cmd[:2]))) < 0.015
        if not self.cleared and not in_hand:
            # the arm may hide the pin or stand over it (a trial ends anywhere): clear the
            # view first, then look again
            self.grip = GRIP_OPEN
            self._go('park')
            return
        if seen is None:
            self._fail('no pin in view')
            return
        xy, ratio = seen
        length = self._blob_length(image)
        in_hole = float(np.hypot(*(xy - np.asarray(self.p.hole_xy)))) < NEAR_HOLE and \
            self._upright_in_side_view()
        if not in_hole and (ratio > FALLEN_AREA_RATIO or
                            length > LYING_LENGTH * 2 * self.p.head_radius):
            self._fail(f'fallen: the pin lies down (top-view blob {ratio:.1f} x a head, '
                       f'{length * 1000:.0f} mm long)')
            return
        if held and float(np.hypot(*(xy - self.cmd[:2]))) < 0.015:
            self._go('lift')        # it is in our gripper already
            return
        if held:
            self.grip = GRIP_OPEN   # closed on nothing: open before reaching
        z = self.p.slot_floor_z + self.head_c
        if float(np.hypot(*(xy - np.asarray(self.p.hole_xy)))) < NEAR_HOLE:
            # in the hole, seated or jammed part-way: the side camera gives its height, and
            # the head's xy is read again on the plane of its top
            tip_z = self._side_tip_z(self._side_image, float(xy[0]))
            if tip_z is None:
                tip_z = self.p.hole_top_z - self.p.hole_depth
            again = self._head(image, tip_z + self.p.pin_length)
            if again is not None:
                xy = again[0]
            z = tip_z + self.head_c
        self.goal_grasp = np.array([xy[0], xy[1], z])
        self._go('clear')

    def _park(self, image: np.ndarray, ee: np.ndarray) -> None:
        # up, then home: out of the top camera's view of the rack and the fixture
        if self._via([np.array([*self.cmd[:2], max(self.cmd[2], LIFT_Z)]), self.home[7:10]],
                     SPEED) and self.ticks > SETTLE_TICKS:
            self.cleared = True
            self._go('locate')

    def _clear(self, image: np.ndarray, ee: np.ndarray) -> None:
        # up first, so that no approach sweeps through the rack or the fixture
        if self._toward(np.array([*self.cmd[:2], max(self.cmd[2], LIFT_Z)]), SPEED):
            self._go('pregrasp')

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

    def _pregrasp(self, image: np.ndarray, ee: np.ndarray) -> None:
        above = self.goal_grasp + [PREGRASP_DX, 0.0, 0.0]
        if self._via([np.array([above[0], above[1], LIFT_Z]), above], SPEED):
            self._go('approach')

    def _approach(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(self.goal_grasp, SLOW) and self.ticks > SETTLE_TICKS:
            self._go('close')

    def _close(self, image: np.ndarray, ee: np.ndarray) -> None:
        self.grip = GRIP_CLOSED
        if self.ticks >= CLOSE_TICKS:
            if float(ee[13]) < 0.05:    # closed on nothing: missed the head
                self._fail('missed the pin: the gripper closed on nothing')
                return
            self._go('lift')

    def _lift(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            if float(ee[13]) < EMPTY_GRIP:
                self._fail('dropped the pin while lifting it')
                return
            self._go('carry')

    def _carry(self, image: np.ndarray, ee: np.ndarray) -> None:
        dest = self.hole_tip_top if self.stage == 'pre_insertion' else np.array(
            [self.target[0], self.target[1], self.p.slot_floor_z + 0.018])
        above = np.array([dest[0], dest[1], dest[2] + CLEARANCE + self.head_c])
        # at the travelling speed, stopping swings the pin a few degrees in the grasp, and its
        # tip then misses the slot's funnel by the 3 mm that the head above it hides
        if self._via([np.array([above[0], above[1], LIFT_Z]), above], SLOW) and \
                self.ticks > SETTLE_TICKS:
            self._go('align')

    def _align(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self.ticks % SETTLE_TICKS:
            return
        dest = self.hole_tip_top if self.stage == 'pre_insertion' else self.target
        seen = self._head(image, self.cmd[2] + self.p.head_height / 2)
        if seen is None:    # a finger hides the head from this angle: the funnel will do
            self._go('lower' if self.stage == 'start' else 'align_blind')
            return
        err = seen[0] - dest[:2]
        if float(np.hypot(*err)) > LOST:
            self._fail(f'lost the pin: the pin seen {float(np.hypot(*err)) * 1000:.0f} mm '
                       'from the gripper')
            return
        if float(np.hypot(*err)) < ALIGN_TOL or self.corrections >= 6:
            if self.stage == 'pre_insertion':
                self.done, self.phase = True, 'done'
            else:
                self._go('lower')
            return
        self.offset -= 0.8 * err
        self.cmd[:2] = dest[:2] + self.offset
        self.corrections += 1

    def _align_blind(self, image: np.ndarray, ee: np.ndarray) -> None:
        self.done, self.phase = True, 'done'

    def _lower(self, image: np.ndarray, ee: np.ndarray) -> None:
        floor = np.array([*self.cmd[:2], self.target[2] + self.head_c + 0.001])
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
        if self._toward(self.home[7:10], SPEED) and self.ticks > SETTLE_TICKS:
            self.done, self.phase = True, 'done'

    def _done(self, image: np.ndarray, ee: np.ndarray) -> None:
        pass

    def _failed(self, image: np.ndarray, ee: np.ndarray) -> None:
        pass


def make_reset_skill(task: TaskSpec, seed: int, stage: str = 'start') -> PinResetSkill:
    return PinResetSkill(task, seed, stage)


__all__ = ['STAGES', 'PinResetSkill', 'make_reset_skill']
