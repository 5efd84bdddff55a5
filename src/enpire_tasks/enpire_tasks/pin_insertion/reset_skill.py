"""The robot-executed reset of pin insertion: an arm takes the pin from wherever it is (the
hole, seated or jammed part-way; a rack slot; its own gripper; lying on the table) and
stands it in the seed's rack slot.

A skill is a closed-loop controller like a policy: each tick it gets the observation (the
contract's cameras and the arm state, never simulator poses) and returns an end-effector
action, until it is ``done`` or ``failed``. The cell runs it (a simulated cell in its own
loop; a real cell against its drivers). Perception is the classic verifier's: the pin's hue
in the top camera, the lit top face of its head, the calibrated ray onto the plane of a
standing head's top. The arm first parks clear of the cameras (a trial may end with the
gripper over the pin). A pin in the hole may be jammed high: the side camera gives its
head's height, the side rule of the classic verifier.

A pin down shows the top camera its length; the wider end is its head. The arm on the far
side of its tip (the right arm when the head lies towards -x, else the left; each on its
own half of the table) moves over the head, turns its gripper to point down there (waiting
for the slow forearm roll), grips the head across from above, then turns the pin up about
its tip, which stays put, the gripper turning with it, until the pin stands on its tip,
held by the head; from there it goes on as for a pin taken from a slot. The table's rolling
friction (enpire_sim's ``ROLLING_SURFACES``) keeps a lying pin where the camera saw it.

- A pin leaning on the fixture, its tip in the hole's mouth: the side camera gives its
  head's height, hence its elevation; its head is over the fixture's top, out of the pads'
  way, and the same turn stands it up.
- A pin lying by the fixture or the rack (no room for the pads), or with its head on the
  other arm's half: slid lengthwise into the open first (``_push_plan``), once.
- A pin hanging tilted in the grasp (a slanted pinch twists it): the top view shows its tip
  beyond the head, and the tip is what is aligned over the slot; past 10 degrees it is laid
  down again square on open table (the stand-up reversed) and taken again, once.
- Otherwise ``fallen`` with where it lies, and the reset falls back to the recorded
  ``sim_place`` where the contract allows it.

The phases of a pin that is down are :mod:`.reset_down`'s; the motion primitives both use
are :mod:`.reset_motion`'s.

Stage ``start``: the pin stands in slot ``seed % 6``, the arms at home. Stage
``pre_insertion`` (the hardest stage's start): the right gripper holds the pin over the hole,
its tip 10 mm above the hole's top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_tasks.arm import PinholeCamera, colour_blob, home_action, lit_centroid
from enpire_tasks.pin_insertion.classic import tip_z_below_head_top
from enpire_tasks.pin_insertion.geometry import parts, start_pose
from enpire_tasks.pin_insertion.reset_down import TILTED, PinDown
from enpire_tasks.pin_insertion.reset_motion import (
    CLOSE_TICKS,
    EMPTY_GRIP,
    GRIP_CLOSED,
    GRIP_OPEN,
    INSERT,
    LIFT_Z,
    OPEN_TICKS,
    SETTLE_TICKS,
    SLOW,
    SPEED,
)

STAGES = ('start', 'pre_insertion')
PREGRASP_DX = 0.07
CLEARANCE = 0.010          # tip above a slot's or the hole's top before the final descent
ALIGN_TOL = 0.0006
#: A top-view blob this many times a standing head's area is a pin lying down.
FALLEN_AREA_RATIO = 2.5
#: ... or one this many head diameters long.
LYING_LENGTH = 2.0
#: A pin seen this far (m) from where the gripper carries it is not in the gripper.
LOST = 0.012
#: Pressing a pin's head into its slot after letting go (see ``_press_over``): the closed
#: fingertips this far (m) past the head's centre along the approach, from PRESS_OVER_Z (m;
#: above a pin wedged 12 mm high) down to PRESS_FINGER_DZ (m) over a seated head's top
#: (the fingers' underside is ~8 mm below the fingertip centre).
PRESS_PAST, PRESS_OVER_Z, PRESS_FINGER_DZ = 0.003, 0.085, 0.008
#: A standing pin seen this close to the hole (m; read on the plane of a pin in a slot, which
#: is off by parallax for one jammed high in the hole) stands in the hole.
NEAR_HOLE = 0.02


class PinResetSkill(PinDown):
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
        # the arm that moves the pin: the right one (from +x), or the left one (from -x) for
        # a pin lying with its head towards +x; its gripper's orientation and approach
        self.arm = 'right'
        self.rpy = np.zeros(3)
        self.approach = np.array([-1.0, 0.0])
        self.lying: tuple[np.ndarray, np.ndarray, float, float] | None = None
        self._ee = np.zeros(14)
        self.push: tuple[np.ndarray, np.ndarray] | None = None
        self.pushed = False
        self.put_downs = 0
        self._rpy0 = np.zeros(3)
        self.push_end = 'tip'
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
    # --- the skill --------------------------------------------------------------------------
    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The next action (the arms' command for this tick)."""
        ee = self._ee = np.asarray(obs['ee_pose'], dtype=np.float64)
        if self.cmd is None:
            self.cmd = ee[self._o:self._o + 3].copy()
            self.grip = float(ee[self._o + 6])
        self.ticks += 1
        image = obs['image_top']
        self._side_image = obs.get('image_side')
        getattr(self, f'_{self.phase}')(image, ee[self._o:self._o + 7])
        return self._action()

    def _locate(self, image: np.ndarray, ee: np.ndarray) -> None:
        held = float(ee[6]) < 0.4
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
            self._take_lying(image, f'top-view blob {ratio:.1f} x a head, '
                                    f'{length * 1000:.0f} mm long')
            return
        if self.arm != 'right':     # the left arm pushed a lying pin clear: parked now
            self._use('right')
            self.approach = np.array([-1.0, 0.0])
            held = False
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

    # --- a pin lying down ----------------------------------------------------------------------
    def _park(self, image: np.ndarray, ee: np.ndarray) -> None:
        # up, then home: out of the top camera's view of the rack and the fixture
        if self._level_home(ee):
            self.cleared = True
            self._go('locate')

    def _clear(self, image: np.ndarray, ee: np.ndarray) -> None:
        # up first, so that no approach sweeps through the rack or the fixture
        if self._toward(np.array([*self.cmd[:2], max(self.cmd[2], LIFT_Z)]), SPEED):
            self._go('pregrasp')

    def _pregrasp(self, image: np.ndarray, ee: np.ndarray) -> None:
        above = self.goal_grasp - PREGRASP_DX * np.r_[self.approach, 0.0]
        if self._via([np.array([above[0], above[1], LIFT_Z]), above], SPEED):
            self._go('approach')

    def _approach(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(self.goal_grasp, SLOW) and self.ticks > SETTLE_TICKS:
            self._go('close')

    def _close(self, image: np.ndarray, ee: np.ndarray) -> None:
        self.grip = GRIP_CLOSED
        if self.ticks >= CLOSE_TICKS:
            if float(ee[6]) < EMPTY_GRIP:    # closed on nothing: missed the head
                self._fail('missed the pin: the gripper closed on nothing')
                return
            self._go('lift')

    def _lift(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            if float(ee[6]) < EMPTY_GRIP:
                self._fail('dropped the pin while lifting it')
                return
            self._go('carry')

    def _carry(self, image: np.ndarray, ee: np.ndarray) -> None:
        dest = self.hole_tip_top if self.stage == 'pre_insertion' else np.array(
            [self.target[0], self.target[1], self.p.slot_floor_z + 0.018])
        above = np.array([dest[0] + self.offset[0], dest[1] + self.offset[1],
                          dest[2] + CLEARANCE + self.head_c])
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
        # the tip goes into the slot: where the view shows it (a pin tilted in the grasp
        # carries it off the head's axis), else under the head
        tip = self._tip_seen(image, seen[0], self.cmd[2] + self.p.head_height / 2,
                             self.cmd[2] - self.head_c)
        if tip is not None:
            off = float(np.linalg.norm(tip - seen[0]))
            if off > TILTED and self.stage == 'start' and self.put_downs < 1:
                # hanging this tilted it would jam in the slot: put it down to take it again
                self.put_downs += 1
                self._go('put_down')
                return
            err = tip - dest[:2]
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
            self.goal = self.cmd - PREGRASP_DX * np.r_[self.approach, 0.0]
        if self._toward(self.goal, SLOW):
            self._go('press_over' if self.stage == 'start' else 'rise')

    def _press_over(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Up, the fingers closed, and in over the pin's head: a pin let go in its slot can
        stay wedged up to 12 mm high (its tip met the slot's lead-in off the axis, and it
        slid up in the grip rather than in; the verifier then reads it 1-3 cm off by
        parallax). Its head is pressed down; one that went in meets the fingers only as
        they stop."""
        self.grip = GRIP_CLOSED
        over = np.array([*(self.target[:2] + PRESS_PAST * self.approach), PRESS_OVER_Z])
        if self._via([np.array([*self.cmd[:2], PRESS_OVER_Z]), over], SLOW) and \
                self.ticks > CLOSE_TICKS:
            self._go('press')

    def _press(self, image: np.ndarray, ee: np.ndarray) -> None:
        seated = self.target[2] + self.p.pin_length + PRESS_FINGER_DZ
        if self._toward(np.array([*self.cmd[:2], seated]), INSERT / 2) and \
                self.ticks > SETTLE_TICKS:
            self.grip = GRIP_OPEN
            self._go('rise')

    def _rise(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            self._go('home')

    def _home(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._level_home(ee):
            self.done, self.phase = True, 'done'

    def _done(self, image: np.ndarray, ee: np.ndarray) -> None:
        pass

    def _failed(self, image: np.ndarray, ee: np.ndarray) -> None:
        pass


def make_reset_skill(task: TaskSpec, seed: int, stage: str = 'start') -> PinResetSkill:
    return PinResetSkill(task, seed, stage)


__all__ = ['STAGES', 'PinResetSkill', 'make_reset_skill']
