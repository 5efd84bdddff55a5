"""The pin reset skill's phases for a pin that is down: lying on the table, leaning on the
fixture or the rack, or hanging tilted in the grasp (see the module doc of
:mod:`enpire_tasks.pin_insertion.reset_skill`): the top- and side-view reading of its pose,
the room the pads need, the slide into the open, the stand-up about the tip, and the
lay-down of a pin that hangs too tilted to go into a slot."""

from __future__ import annotations

import numpy as np

from enpire_tasks.arm import colour_blob
from enpire_tasks.pin_insertion.reset_motion import (
    CLOSE_TICKS,
    EMPTY_GRIP,
    GRIP_CLOSED,
    INSERT,
    LIFT_Z,
    OPEN_TICKS,
    REACH_TICKS,
    SETTLE_TICKS,
    SLOW,
    SPEED,
    TURN_TICKS,
    SkillBase,
)

#: A pin lying on the table is gripped from above across its head, the gripper this far open
#: (21 mm: 4.5 mm to spare each side of the head, so that the pads clear the rack or the
#: fixture beside it), its fingertip centre this far above the head's axis (the pads reach
#: 11 mm below it: 2 mm above the table). The arm then stands the pin up by turning it about
#: its tip, which stays on the table, the gripper turning with it (PIVOT_TICKS), and goes on
#: as for a pin taken from a slot.
GRIP_LYING = 0.35
LYING_ABOVE_AXIS = 0.009
PIVOT_TICKS = 90
#: The fingertips' height while the gripper turns to point down (m; the lower, the farther
#: the arm reaches: its wrist is 0.14 m up the gripper).
TURN_Z = 0.08
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
#: A blob whose length differs this much (m) from a flat pin's is not flat: shorter, it
#: rises; longer, its head is higher than the plane it was read on (the head's rim and the
#: pixels account for less).
LENGTH_TOL = 0.006
#: A held pin's tip shows from above when the blob reaches this many pixels past its head.
#: One seen TILTED (m) off the head's axis (10 degrees) would jam in the slot: once, it is
#: laid down on open table on the arm's own side, its tip at (+-PUT_DOWN_X, PUT_DOWN_Y), its
#: head towards the table's middle (where that arm stands a lying pin up best: square, no
#: twist in the pinch), and taken again.
TIP_SHOWS_PX, TILTED = 2.0, 0.008
PUT_DOWN_X, PUT_DOWN_Y = 0.14, 0.5


class PinDown(SkillBase):
    """The phases of a pin that is down (mixed into the pin's reset skill, whose ``__init__``
    sets their state: ``lying``, ``push``, ``pushed``, ``push_end``, ``put_downs``)."""

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
        flat = self._flat_elev
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
        u = _unit(head_end - tip)
        head = tip + u * self.head_c * np.cos(elev)
        return np.array([*tip, tip_z]), head, elev

    @property
    def _flat_elev(self) -> float:
        """The axis's angle over the table of a pin lying flat: its head's radius raises
        the head end over the tip's (rad)."""
        return float(np.arcsin((self.p.head_radius - self.p.shaft_radius) / self.head_c))

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
        u = _unit(head - tip)
        for name, box in self._obstacles().items():
            if pads > box[4]:
                continue
            for t in np.linspace(-PAD_HALF_WIDTH, PAD_HALF_WIDTH, 5):
                if _box_distance(head + t * u, box) < LYING_CLEAR:
                    return name
        return ''

    def _obstacles(self) -> dict[str, tuple[float, float, float, float, float]]:
        """The fixture block round the hole and the rack: (x0, x1, y0, y1, top), m."""
        hx, hy = self.p.hole_xy
        xs = [x for x, _ in self.p.slots]
        ys = [y for _, y in self.p.slots]
        return {'the fixture': (hx - FIXTURE_HALF, hx + FIXTURE_HALF, hy - FIXTURE_HALF,
                                hy + FIXTURE_HALF, self.p.hole_top_z),
                'the rack': (min(xs) - RACK_HALF_X, max(xs) + RACK_HALF_X,
                             min(ys) - RACK_HALF_X, max(ys) + RACK_HALF_X,
                             self.p.slot_floor_z + RACK_DEPTH)}

    def _clearance(self, xy: np.ndarray) -> float:
        """The distance (m) from ``xy`` to the fixture block or the rack, whichever is
        nearer (0 inside one)."""
        return min(_box_distance(xy, box) for box in self._obstacles().values())

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
        u = _unit(head - tip)
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
        u = _unit(head - tip)
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
        self.lying = (tip3, u, elev, self._yaw_along(u))
        self._go('lying_rise')

    def _push_rise(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], TURN_Z]), SPEED):
            self._go('push_over')

    def _push_over(self, image: np.ndarray, ee: np.ndarray) -> None:
        start, _ = self.push
        if self._toward(np.array([*start, TURN_Z]), SPEED) and self._reached(ee, 0.006, 0.08):
            self._go('push_turn')
        elif self.ticks > REACH_TICKS:
            self._fail('fallen: the gripper did not reach over the lying pin')

    def _push_turn(self, image: np.ndarray, ee: np.ndarray) -> None:
        # pointing down, the pads' 16 mm along the push (the pusher's narrow side leads)
        start, end = self.push
        yaw = self._yaw_along(_unit(end - start))
        yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2          # the pads' line is symmetric
        grip = GRIP_STRADDLE if self.push_end == 'tip' else GRIP_CLOSED
        if self._turn_down(ee, yaw, np.pi / 2, grip):
            self._go('push_descend')

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

    def _yaw_along(self, d: np.ndarray) -> float:
        """The yaw that points the moving arm's gripper along ``d`` (xy; its neutral points
        -x for the right arm, +x for the left)."""
        neutral = -1.0 if self.arm == 'right' else 1.0
        return float(np.arctan2(d[1] * neutral, d[0] * neutral))

    def _pivot_tcp(self, alpha: float) -> np.ndarray:
        """The fingertip centre holding the head of a pin turned to ``alpha`` (rad above the
        table) about its tip."""
        tip, u, _, _ = self.lying
        u3, z = np.r_[u, 0.0], np.array([0.0, 0.0, 1.0])
        axis = np.cos(alpha) * u3 + np.sin(alpha) * z           # tip -> head
        approach = np.sin(alpha) * u3 - np.cos(alpha) * z       # the fingers' direction
        return tip + self.head_c * axis - LYING_ABOVE_AXIS * approach

    def _turn_pin(self, alpha: float, yaw: float) -> None:
        """Command the gripper holding the pin turned to ``alpha`` about its tip: at
        :meth:`_pivot_tcp`, square to the pin's axis."""
        self.cmd = self._pivot_tcp(alpha)
        self.rpy = np.array([0.0, np.pi / 2 - alpha, yaw])

    def _lying_rise(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self._toward(np.array([*self.cmd[:2], TURN_Z]), SPEED):
            self._go('lying_over')

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
        self._turn_pin(elev + (np.pi / 2 - elev) * f, yaw)
        if f >= 1.0 and self.ticks > PIVOT_TICKS + SETTLE_TICKS:
            if float(ee[6]) < EMPTY_GRIP:
                self._fail('dropped the pin while standing it up')
                return
            # standing on its tip, held by the head (the fingertips LYING_ABOVE_AXIS behind
            # it): carry it as from a slot, the head over the slot
            self.offset = -LYING_ABOVE_AXIS * u
            self._go('lift')

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
        return far - _unit(far - head_xy) * self.p.shaft_radius

    def _put_down(self, image: np.ndarray, ee: np.ndarray) -> None:
        # over open table on the arm's own side, level and square to the table's x axis
        side = 1.0 if self.arm == 'right' else -1.0
        spot = np.array([side * PUT_DOWN_X, PUT_DOWN_Y])
        f = self._unturn()
        low = np.array([*spot, self.p.shaft_radius + 0.004 + self.head_c])
        if self._via([np.array([*self.cmd[:2], LIFT_Z]), np.array([*spot, LIFT_Z]), low], SLOW) \
                and f >= 1.0 and self._reached(ee, 0.006, 0.08):
            # lay it down the way it was stood up: turned down about its tip on the table
            self.approach = np.array([-side, 0.0])
            tip = np.array([*(self.cmd[:2] + LYING_ABOVE_AXIS * self.approach),
                            self.p.shaft_radius])
            self.lying = (tip, self.approach.copy(), self._flat_elev, 0.0)
            self._go('lay_down')

    def _lay_down(self, image: np.ndarray, ee: np.ndarray) -> None:
        _, _, elev, yaw = self.lying
        f = min(1.0, self.ticks / PIVOT_TICKS)
        self._turn_pin(np.pi / 2 - (np.pi / 2 - elev) * f, yaw)
        if f >= 1.0 and self.ticks > PIVOT_TICKS + SETTLE_TICKS:
            self._go('lay_open')

    def _lay_open(self, image: np.ndarray, ee: np.ndarray) -> None:
        self.grip = GRIP_LYING
        if self.ticks >= OPEN_TICKS and self._toward(self.cmd + [0.0, 0.0, 0.004], SLOW):
            self.cleared, self.pushed = False, False
            self.offset = np.zeros(2)
            self.corrections = 0
            self._go('locate')


def _unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1 (a zero vector stays zero)."""
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _box_distance(xy: np.ndarray, box: tuple[float, ...]) -> float:
    """The distance (m) from ``xy`` to the rectangle (x0, x1, y0, y1, ...) of ``box`` (0
    inside it)."""
    x0, x1, y0, y1 = box[:4]
    return float(np.hypot(max(x0 - xy[0], 0.0, xy[0] - x1), max(y0 - xy[1], 0.0, xy[1] - y1)))


__all__ = ['LYING_CLEAR', 'PUSH_MAX', 'PinDown']
