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

Stage ``start``: the pin stands in slot ``seed % 6``, the arms at home. Stage
``pre_insertion`` (the hardest stage's start): the right gripper holds the pin over the hole,
its tip 10 mm above the hole's top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_tasks.arm import PinholeCamera, colour_blob, home_action, lit_centroid, rpy_to_matrix
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
#: A pin lying on the table is gripped from above across its head, the gripper this far open
#: (21 mm: 4.5 mm to spare each side of the head, so that the pads clear the rack or the
#: fixture beside it), its fingertip centre this far above the head's axis (the pads reach
#: 11 mm below it: 2 mm above the table). The arm then stands the pin up by turning it about
#: its tip, which stays on the table, the gripper turning with it (PIVOT_TICKS), and goes on
#: as for a pin taken from a slot.
GRIP_LYING = 0.35
LYING_ABOVE_AXIS = 0.009
PIVOT_TICKS = 90
TURN_TICKS = 60
#: The fingertips' height while the gripper turns to point down (m; the lower, the farther
#: the arm reaches: its wrist is 0.14 m up the gripper).
TURN_Z = 0.08
#: Ticks an arm gets to reach a pose before the skill gives up.
REACH_TICKS = 150
#: The fixture block round the hole and the rack (half sizes, m; scene.xml), and the room a
#: lying pin's head needs from them: the pads beside it (6 + 4.5 + 2 mm) and 2.5 mm to
#: spare, over the pads' width along the pin (2 x 8 mm).
FIXTURE_HALF, RACK_HALF_X, LYING_CLEAR, PAD_HALF_WIDTH = 0.030, 0.015, 0.015, 0.008
#: A pin lying there is first slid lengthwise into the open, up to PUSH_MAX (m), by the
#: fingertips pointing down, the pads' narrow side leading, PUSHER_CLEAR from the fixture and
#: the rack. Head first: the pads go down beyond the tip, open GRIP_STRADDLE (6.4 mm: the
#: shaft passes between them, the head does not), and slide along the shaft until they push
#: the head's underside. Tip first: closed, they push the head's top face. Either way the
#: pads' lower edge is 5.5 mm over the table (the head is 12 mm; an arm reaching across
#: the table pointing down sags up to 3 mm).
PUSH_MAX, PUSHER_CLEAR, GRIP_STRADDLE = 0.04, 0.008, 0.15
PUSH_Z = {'tip': 0.0165, 'head': 0.0165}
#: The right arm stands up pins whose head lies at x >= this (m), the left arm at x <= -it
#: (a head below LOW_HEAD_Z; one higher, on a pin leaning on the fixture or the rack, is
#: within reach of either).
PIVOT_REACH_X, LOW_HEAD_Z = 0.02, 0.02
#: A pin down, seen from above: it leans (on the fixture or the rack, its tip in the hole's or
#: a slot's mouth, within MOUTH_R of its axis and TIP_IN_MOUTH below its top) when its
#: blob's length says its axis rises LEAN_MIN or more; the rays of its tip end are first met
#: at TIP_IN_Z. The rack's top is RACK_DEPTH over its floor (scene.xml); the pads must clear
#: the tops by PAD_MARGIN.
LEAN_MIN, MOUTH_R, TIP_IN_MOUTH, TIP_IN_Z = 0.35, 0.008, 0.004, 0.02
RACK_DEPTH, PAD_MARGIN = 0.018, 0.004
#: A blob this much longer than a lying pin (m; the head's rim and the pixels) is not flat.
LENGTH_TOL = 0.006
#: A held pin's tip shows from above when the blob reaches this many pixels past its head.
#: One seen TILTED (m) off the head's axis (10 degrees) would jam in the slot: once, it is
#: laid down on open table on the arm's own side, its tip at (+-PUT_DOWN_X, PUT_DOWN_Y), its
#: head towards the table's middle (where that arm stands a lying pin up best: square, no
#: twist in the pinch), and taken again.
TIP_SHOWS_PX, TILTED = 2.0, 0.008
PUT_DOWN_X, PUT_DOWN_Y = 0.14, 0.5


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

    def _tip_seen(self, image: np.ndarray, head_xy: np.ndarray, head_top_z: float,
                  tip_z: float) -> np.ndarray | None:
        """Where a held pin's tip is when the top view shows it beyond the head (the pin
        tilted in the grasp, or seen off the camera's axis): the blob's pixel farthest from
        the head's centre, met at the tip's height, moved back by the shaft's radius; None
        when the head hides it."""
        blob = colour_blob(image, self.p.colour_rgb)
        if blob is None:
            return None
        c = self.top.project(np.array([*head_xy, head_top_z]))
        rows, cols = np.nonzero(blob.mask)
        d = np.hypot(cols - c[0], rows - c[1])
        k = int(np.argmax(d))
        radius_px = self.p.head_radius * self.top.fx / (self.top.position[2] - head_top_z)
        if float(d[k]) < radius_px + TIP_SHOWS_PX:
            return None
        far = self.top.on_plane_z(float(cols[k]), float(rows[k]), tip_z)[:2]
        back = far - head_xy
        return far - back / max(float(np.linalg.norm(back)), 1e-9) * self.p.shaft_radius

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

    def _lying_pose(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
        """A pin down from the top view: (its tip [x, y, z], its head centre's xy, its
        elevation: the angle of its axis over the table, rad), or None when the blob's two
        ends are alike (the head end is the wider one).

        The tip rests on the table, or in the hole or a rack slot when it is seen over one
        (a pin that fell over the fixture or the rack leans on it). The elevation comes from
        the blob's length, the ends' rays met at their heights (a few rounds: the head's
        height depends on it); a pin lying flat (under LEAN_MIN) has the elevation its head's
        radius gives it."""
        blob = colour_blob(image, self.p.colour_rgb)
        if blob is None:
            return None
        rows, cols = np.nonzero(blob.mask)
        pts = np.stack([cols, rows], axis=1).astype(np.float64)
        centre = pts.mean(axis=0)
        q = pts - centre
        if len(q) < 10:
            return None
        axis = np.linalg.svd(q, full_matrices=False)[2][0]
        t, n = q @ axis, q @ np.array([-axis[1], axis[0]])
        lo, hi = float(t.min()), float(t.max())
        end = 0.25 * (hi - lo)
        w_lo = float(np.ptp(n[t <= lo + end]))
        w_hi = float(np.ptp(n[t >= hi - end]))
        if abs(w_lo - w_hi) < 1.5:          # pixels: a head is ~8 wide, the shaft ~3
            return None
        head_t, tip_t = (lo, hi) if w_lo > w_hi else (hi, lo)
        head_px, tip_px = centre + head_t * axis, centre + tip_t * axis
        tip_z = self._tip_rest_z(self.top.on_plane_z(*tip_px, TIP_IN_Z)[:2])
        flat = float(np.arcsin((self.p.head_radius - self.p.shaft_radius) / self.head_c))
        length = self.p.pin_length
        tip = self.top.on_plane_z(*tip_px, tip_z)[:2]

        def head_end_at(elev: float) -> np.ndarray:
            return self.top.on_plane_z(*head_px, tip_z + length * np.sin(elev))[:2]

        def excess(elev: float) -> float:     # seen length over the pin's at that elevation
            return float(np.linalg.norm(head_end_at(elev) - tip)) - length * np.cos(elev)

        # the lowest elevation at which the seen length is the pin's (its head end's ray met
        # at the height that elevation gives it); flat when it already is. Over the hole the
        # side camera sees the head's top instead: the elevation that puts it there (seen
        # from above, a pin leaning out of the hole towards the fixture's edge can look as
        # long as one lying flat).
        elev = flat
        scan = np.radians(np.arange(np.degrees(flat), 85.0, 1.0))
        side = colour_blob(self._side_image, self.p.colour_rgb) \
            if self._side_image is not None and tip_z > self.p.shaft_radius and \
            float(np.hypot(*(tip - np.asarray(self.p.hole_xy)))) < MOUTH_R else None
        if side is not None:
            cols = np.nonzero(side.mask[side.top])[0]
            top_px = (float(cols.mean()), float(side.top))

            def side_miss(e: float) -> float:
                seen_z = float(self.side_cam.on_plane_x(*top_px, float(head_end_at(e)[0]))[2])
                return abs(seen_z - (tip_z + length * np.sin(e) +
                                     self.p.head_radius * np.cos(e)))

            elev = float(min(scan, key=side_miss))
        elif abs(excess(flat)) > LENGTH_TOL:
            # shorter than a pin lying flat: it rises (on the rack, its tip in a slot's
            # mouth, or on the fixture); longer: its head is higher than its plane says
            sign = np.sign(excess(flat))
            for e in scan:
                if np.sign(excess(float(e))) != sign:
                    elev = float(e)
                    break
        if elev < LEAN_MIN and tip_z <= self.p.shaft_radius:
            elev = flat
        head_end = head_end_at(elev) if elev > flat else \
            self.top.on_plane_z(*head_px, self.p.head_radius)[:2]
        u = head_end - tip
        u = u / max(float(np.linalg.norm(u)), 1e-9)
        head = tip + u * self.head_c * np.cos(elev)
        return np.array([*tip, tip_z]), head, elev

    def _tip_rest_z(self, xy: np.ndarray) -> float:
        """Where a pin's tip rests seen at ``xy``: in the hole's or a slot's mouth when it is
        over one, else on the table (m)."""
        if float(np.hypot(*(xy - np.asarray(self.p.hole_xy)))) < MOUTH_R:
            return self.p.hole_top_z - TIP_IN_MOUTH
        if any(float(np.hypot(xy[0] - x, xy[1] - y)) < MOUTH_R for x, y in self.p.slots):
            return self.p.slot_floor_z + RACK_DEPTH - TIP_IN_MOUTH
        return self.p.shaft_radius

    def _blocked(self, tip: np.ndarray, head: np.ndarray,
                 head_z: float | None = None) -> str:
        """What the gripper would hit standing up a pin lying from ``tip`` to ``head`` (xy;
        '' if nothing): its pads go down beside the head, 16 mm wide along the pin, and are
        above the fixture's top by the time the turn has taken them 8 mm towards the tip, so
        the head must lie LYING_CLEAR from the fixture and the rack (from those whose top
        is below the pads: a head at ``head_z`` (its axis; default: lying on the table) has
        them 2 mm under it)."""
        head_z = self.p.head_radius if head_z is None else head_z
        pads = head_z - 0.002 - PAD_MARGIN
        hx, hy = self.p.hole_xy
        xs = [x for x, _ in self.p.slots]
        ys = [y for _, y in self.p.slots]
        boxes = {'the fixture': (hx - FIXTURE_HALF, hx + FIXTURE_HALF, hy - FIXTURE_HALF,
                                 hy + FIXTURE_HALF, self.p.hole_top_z),
                 'the rack': (min(xs) - RACK_HALF_X, max(xs) + RACK_HALF_X,
                              min(ys) - RACK_HALF_X, max(ys) + RACK_HALF_X,
                              self.p.slot_floor_z + RACK_DEPTH)}
        u = (head - tip) / max(float(np.linalg.norm(head - tip)), 1e-9)
        for name, (x0, x1, y0, y1, top) in boxes.items():
            if pads > top:
                continue
            for t in np.linspace(-PAD_HALF_WIDTH, PAD_HALF_WIDTH, 5):
                x, y = head + t * u
                dx = max(x0 - x, 0.0, x - x1)
                dy = max(y0 - y, 0.0, y - y1)
                if float(np.hypot(dx, dy)) < LYING_CLEAR:
                    return name
        return ''

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
    def _take_lying(self, image: np.ndarray, seen: str) -> None:
        """Plan the stand-up of a pin lying on the table (see GRIP_LYING), or fail
        ``fallen``: its ends cannot be told apart, or it lies against the fixture or the
        rack."""
        pose = self._lying_pose(image)
        if pose is None:
            self._fail(f'fallen: the pin lies down ({seen}) and its head cannot be told from '
                       'its tip')
            return
        tip3, head, elev = pose
        tip = tip3[:2]
        u = (head - tip) / max(float(np.linalg.norm(head - tip)), 1e-9)
        head_z = tip3[2] + self.head_c * np.sin(elev)
        blocker = self._blocked(tip, head, head_z)
        # a leaning pin's head is over the fixture's and the rack's tops, and over the table
        # within reach of either arm
        low = head_z < LOW_HEAD_Z
        if blocker or (low and not self._in_reach(tip, head)):
            push = None if self.pushed or not low else self._push_plan(tip, head)
            if push is None:
                why = (f'against {blocker}, where the gripper cannot reach round its head'
                       if blocker else 'with its head beyond the reach of the arm that can '
                       'stand it up (the arm on the far side of its tip)')
                self._fail(f'fallen: the pin lies down ({seen}) {why}')
                return
            # slide it along its axis into the open first, then look again
            self.push = push
            self.pushed = True
            self._use('right' if push[0][0] >= 0.0 else 'left')
            self._go('push_rise')
            return
        # The gripper ends level, pointing along u, from the side of the tip away from the
        # head: the right arm (from +x) stands a pin whose head lies towards -x, the left
        # one a pin whose head lies towards +x.
        self._use('right' if u[0] <= 0.0 else 'left')
        self.approach = u.copy()
        neutral = -1.0 if self.arm == 'right' else 1.0
        yaw = float(np.arctan2(u[1] * neutral, u[0] * neutral))
        self.lying = (tip3, u, elev, yaw)
        self._go('lying_rise')

    def _clearance(self, xy: np.ndarray) -> float:
        """The distance (m) from ``xy`` to the fixture block or the rack, whichever is
        nearer (0 inside one)."""
        hx, hy = self.p.hole_xy
        xs = [x for x, _ in self.p.slots]
        ys = [y for _, y in self.p.slots]
        boxes = ((hx - FIXTURE_HALF, hx + FIXTURE_HALF, hy - FIXTURE_HALF, hy + FIXTURE_HALF),
                 (min(xs) - RACK_HALF_X, max(xs) + RACK_HALF_X, min(ys) - RACK_HALF_X,
                  max(ys) + RACK_HALF_X))
        return min(float(np.hypot(max(x0 - xy[0], 0.0, xy[0] - x1),
                                  max(y0 - xy[1], 0.0, xy[1] - y1)))
                   for x0, x1, y0, y1 in boxes)

    def _in_reach(self, tip: np.ndarray, head: np.ndarray) -> bool:
        """Whether the arm that stands up this pin (the one on the far side of its tip) can
        reach down round its head: each arm points down on its own half of the table (across
        it, the wrist sags its pads onto the table)."""
        right = head[0] <= tip[0]
        return bool(head[0] >= PIVOT_REACH_X if right else head[0] <= -PIVOT_REACH_X)

    def _push_plan(self, tip: np.ndarray, head: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray] | None:
        """How to slide a pin lying by the fixture or the rack along its own axis until its
        head is clear (the closed fingertips push its tip end, or its head end, lengthwise:
        a pusher in line with the pin needs no room beside it): (the fingertips' start xy,
        their end xy), or None when no slide of up to PUSH_MAX frees it without running the
        pin or the pusher into something."""
        u = (head - tip) / max(float(np.linalg.norm(head - tip)), 1e-9)
        head_end = head + u * self.p.head_height / 2
        # from the pads' first contact: the head's underside (head first), its top (tip first)
        reach = {'tip': self.p.shaft_length + 0.005, 'head': 0.005}
        for dist in np.arange(0.005, PUSH_MAX + 1e-9, 0.005):
            for d, back, end in ((u, tip, 'tip'), (-u, head_end, 'head')):
                start = back - d * (PAD_HALF_WIDTH + 0.005)
                shifted = [p + d * dist for p in (tip, head)]
                if self._blocked(*shifted) or not self._in_reach(*shifted):
                    continue
                length = reach[end] + dist
                path = [start + d * t for t in np.linspace(0.0, length, 12)]
                pin = [shifted[0] + (shifted[1] - shifted[0]) * t for t in np.linspace(0, 1, 6)]
                if min(self._clearance(x) for x in path) < PUSHER_CLEAR or \
                        min(self._clearance(x) for x in pin) < self.p.head_radius:
                    continue
                self.push_end = end
                return start, start + d * length
        return None

    def _push_rise(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], TURN_Z]), SPEED):
            self._go('push_over')

    def _push_turn(self, image: np.ndarray, ee: np.ndarray) -> None:
        # pointing down, the pads' 16 mm along the push (the pusher's narrow side leads)
        start, end = self.push
        d = (end - start) / max(float(np.linalg.norm(end - start)), 1e-9)
        neutral = -1.0 if self.arm == 'right' else 1.0
        yaw = float(np.arctan2(d[1] * neutral, d[0] * neutral))
        yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2          # the pads' line is symmetric
        grip = GRIP_STRADDLE if self.push_end == 'tip' else GRIP_CLOSED
        if self._turn_down(ee, yaw, np.pi / 2, grip):
            self._go('push_descend')

    def _push_over(self, image: np.ndarray, ee: np.ndarray) -> None:
        start, _ = self.push
        if self._toward(np.array([*start, TURN_Z]), SPEED) and self._reached(ee, 0.006, 0.08):
            self._go('push_turn')
        elif self.ticks > REACH_TICKS:
            self._fail('fallen: the gripper did not reach over the lying pin')

    def _push_descend(self, image: np.ndarray, ee: np.ndarray) -> None:
        start, _ = self.push
        if self._toward(np.array([*start, PUSH_Z[self.push_end]]), SLOW) and \
                self._reached(ee, 0.004, 0.08):
            self._go('push_slide')
        elif self.ticks > REACH_TICKS:
            self._fail('fallen: the gripper did not reach the table to push the pin clear')

    def _push_slide(self, image: np.ndarray, ee: np.ndarray) -> None:
        _, end = self.push
        if self._toward(np.array([*end, PUSH_Z[self.push_end]]), INSERT):
            self._go('push_away')

    def _push_away(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SLOW):
            self.cleared = False            # out of the top camera's way, then look again
            self._go('locate')

    def _use(self, arm: str) -> None:
        """Move ``arm`` from now on (the other one goes home), from where it is."""
        self.arm = arm
        o = self._o
        self.cmd, self.grip = self._ee[o:o + 3].copy(), float(self._ee[o + 6])

    def _pivot_tcp(self, alpha: float) -> np.ndarray:
        """The fingertip centre holding the head of a pin turned to ``alpha`` (rad above the
        table) about its tip."""
        tip, u, _, _ = self.lying
        u3, z = np.r_[u, 0.0], np.array([0.0, 0.0, 1.0])
        axis = np.cos(alpha) * u3 + np.sin(alpha) * z           # tip -> head
        approach = np.sin(alpha) * u3 - np.cos(alpha) * z       # the fingers' direction
        return tip + self.head_c * axis - LYING_ABOVE_AXIS * approach

    def _lying_rise(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], TURN_Z]), SPEED):
            self._go('lying_over')

    def _reached(self, ee: np.ndarray, tol_m: float = 0.004, tol_rad: float = 0.05) -> bool:
        """Whether the arm's measured fingertip pose is the command's."""
        if float(np.linalg.norm(ee[:3] - self.cmd)) > tol_m:
            return False
        r = rpy_to_matrix(self.arm, self.rpy).T @ rpy_to_matrix(self.arm, ee[3:6])
        return float(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))) < tol_rad

    def _turn_down(self, ee: np.ndarray, yaw: float, pitch: float, grip: float) -> bool:
        """Turn the gripper to point down (``pitch``, ``yaw``) where it is, over TURN_TICKS;
        True once the arm is there, a failure after REACH_TICKS more. Where it is: over the
        part, not at home. Turned at home, the wrist rolls over (forearm roll near pi), which
        the slow forearm-roll servo takes seconds to follow (an orientation jump, or one made
        while travelling, swung the arm through its workspace), and the rolled-over arm
        could not later reach down to a slot."""
        f = min(1.0, self.ticks / TURN_TICKS)
        self.rpy = np.array([0.0, pitch * f, yaw * f])
        self.grip = grip
        if f >= 1.0 and self._reached(ee, 0.006, 0.08):
            return True
        if self.ticks > TURN_TICKS + REACH_TICKS:
            self._fail('fallen: the gripper did not turn to point down over the lying pin '
                       f'(its fingertips {float(np.linalg.norm(ee[:3] - self.cmd)) * 1000:.0f} '
                       'mm off)')
        return False

    def _lying_over(self, image: np.ndarray, ee: np.ndarray) -> None:
        grasp = self._pivot_tcp(self.lying[2])
        if self._toward(np.array([*grasp[:2], TURN_Z]), SPEED) and self._reached(ee, 0.006, 0.08):
            self._go('lying_turn')
        elif self.ticks > REACH_TICKS:
            self._fail('fallen: the gripper did not reach over the lying pin')

    def _lying_turn(self, image: np.ndarray, ee: np.ndarray) -> None:
        _, _, elev, yaw = self.lying
        if self._turn_down(ee, yaw, np.pi / 2 - elev, GRIP_LYING):
            self._go('lying_descend')

    def _lying_descend(self, image: np.ndarray, ee: np.ndarray) -> None:
        grasp = self._pivot_tcp(self.lying[2])
        if self._via([grasp + [0.0, 0.0, 0.03], grasp], SLOW) and \
                self._reached(ee, 0.004, 0.06):
            self._go('lying_close')
        elif self.ticks > REACH_TICKS:
            self._fail('fallen: the gripper did not reach the lying pin\'s head (its '
                       f'fingertips {float(np.linalg.norm(ee[:3] - grasp)) * 1000:.0f} mm off)')

    def _lying_close(self, image: np.ndarray, ee: np.ndarray) -> None:
        self.grip = GRIP_CLOSED
        if self.ticks >= CLOSE_TICKS:
            if float(ee[6]) < EMPTY_GRIP:
                self._fail('fallen: the gripper closed on nothing over the lying pin\'s head')
                return
            self._go('pivot')

    def _pivot(self, image: np.ndarray, ee: np.ndarray) -> None:
        _, u, elev, yaw = self.lying
        f = min(1.0, self.ticks / PIVOT_TICKS)
        alpha = elev + (np.pi / 2 - elev) * f
        self.cmd = self._pivot_tcp(alpha)
        self.rpy = np.array([0.0, np.pi / 2 - alpha, yaw])
        if f >= 1.0 and self.ticks > PIVOT_TICKS + SETTLE_TICKS:
            if float(ee[6]) < EMPTY_GRIP:
                self._fail('dropped the pin while standing it up')
                return
            # standing on its tip, held by the head (the fingertips LYING_ABOVE_AXIS behind
            # it): carry it as from a slot, the head over the slot
            self.offset = -LYING_ABOVE_AXIS * u
            self._go('lift')

    def _level_home(self, ee: np.ndarray) -> bool:
        """Up to LIFT_Z, then home, the gripper turning back level over TURN_TICKS on the way
        (a wrist turned to point down unwinds slowly: an orientation jump swung the arm out
        of the workspace); True once the arm is there, or has had REACH_TICKS to get there."""
        if self.ticks == 1:
            self._rpy0 = self.rpy.copy()
        f = min(1.0, self.ticks / TURN_TICKS)
        self.rpy = self._rpy0 * (1.0 - f)
        home = self.home[self._o:self._o + 3]
        there = self._via([np.array([*self.cmd[:2], max(self.cmd[2], LIFT_Z)]), home], SPEED)
        return there and f >= 1.0 and self.ticks > SETTLE_TICKS and (
            self._reached(ee, 0.01, 0.1) or self.ticks > TURN_TICKS + REACH_TICKS)

    def _park(self, image: np.ndarray, ee: np.ndarray) -> None:
        # up, then home: out of the top camera's view of the rack and the fixture
        if self._level_home(ee):
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

    def _put_down(self, image: np.ndarray, ee: np.ndarray) -> None:
        # over open table on the arm's own side, level and square to the table's x axis
        side = 1.0 if self.arm == 'right' else -1.0
        spot = np.array([side * PUT_DOWN_X, PUT_DOWN_Y])
        if self.ticks == 1:
            self._rpy0 = self.rpy.copy()
        f = min(1.0, self.ticks / TURN_TICKS)
        self.rpy = self._rpy0 * (1.0 - f)
        low = np.array([*spot, self.p.shaft_radius + 0.004 + self.head_c])
        if self._via([np.array([*self.cmd[:2], LIFT_Z]), np.array([*spot, LIFT_Z]), low], SLOW) \
                and f >= 1.0 and self._reached(ee, 0.006, 0.08):
            # lay it down the way it was stood up: turned down about its tip on the table
            self.approach = np.array([-side, 0.0])
            tip = np.array([*(self.cmd[:2] + LYING_ABOVE_AXIS * self.approach),
                            self.p.shaft_radius])
            flat = float(np.arcsin((self.p.head_radius - self.p.shaft_radius) / self.head_c))
            self.lying = (tip, self.approach.copy(), flat, 0.0)
            self._go('lay_down')

    def _lay_down(self, image: np.ndarray, ee: np.ndarray) -> None:
        _, _, elev, yaw = self.lying
        f = min(1.0, self.ticks / PIVOT_TICKS)
        alpha = np.pi / 2 - (np.pi / 2 - elev) * f
        self.cmd = self._pivot_tcp(alpha)
        self.rpy = np.array([0.0, np.pi / 2 - alpha, yaw])
        if f >= 1.0 and self.ticks > PIVOT_TICKS + SETTLE_TICKS:
            self._go('lay_open')

    def _lay_open(self, image: np.ndarray, ee: np.ndarray) -> None:
        self.grip = GRIP_LYING
        if self.ticks >= OPEN_TICKS and self._toward(self.cmd + [0.0, 0.0, 0.004], SLOW):
            self.cleared, self.pushed = False, False
            self.offset = np.zeros(2)
            self.corrections = 0
            self._go('locate')

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
