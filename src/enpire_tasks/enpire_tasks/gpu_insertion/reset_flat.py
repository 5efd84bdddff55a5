"""The GPU reset skill's phases for a card that is down. One lying flat on the table (fallen):
read its pose from the top camera, stand it up in the air, and put it in a caddy holder, from
where the skill goes on as for a standing card.

A card lying flat rests on its bottom edge and on the cooler's far edge (its PCB tilted
~9.5 degrees). One arm grips the cooler across its length, pointing down, the pads on the
cooler's two end faces above the PCB (the only grip the table leaves free), lifts the card,
turns it to lie along the holder's axis, then stands it up by turning the gripper level about
the grip's axis (the card's centre of mass is below the cooler: gravity turns it the same
way, so a slip in the grip only stands it up sooner). The gripper then points across the card
(perpendicular to the PCB), along +y or -y as the card's faces fall; it turns level to point
along y over the caddy (an arm pointing -y reaches its -y end, pointing +y its +y end), lowers
the card into that holder, lets go, backs off and goes home; the skill then locates the card
again (now standing in a holder) and moves it to its seed's holder as usual.

A card standing upside down on its cooler is first tipped over to lie flat
(:mod:`~enpire_tasks.gpu_insertion.reset_tip`).

Which arm: the one whose gripper, pointing down, can turn to point (once level) along the
direction from the card's edge to its cooler. Pointing down, the vx300s's wrist turns (yaw)
within about +-1.6 rad of its neutral, the left arm's neutral +x, the right arm's -x; so the
left arm takes a card whose cooler lies on the +x side of its edge, the right arm the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from enpire_tasks.arm import (
    colour_blob,
    hue_mask,
    lit_pixels,
    principal_axis,
    rpy_to_matrix,
)
from enpire_tasks.gpu_insertion.classic import gold_pixels, top_view_xy
from enpire_tasks.gpu_insertion.reset_motion import (
    BLOCKED_DZ,
    CLEARANCE,
    CLOSE_TICKS,
    GRIP_CLOSED,
    GRIP_OPEN,
    INSERT,
    LIFT_Z,
    REACH_TICKS,
    SETTLE_TICKS,
    SLOW,
    SPEED,
    TURN_TICKS,
    GpuMotion,
)

#: A flat card's heights (m, the card lying on the table): its cooler's lit top face, the PCB
#: (the mean of what the camera sees of it), and the fingertip centre of the grip (the pads
#: reach 11 mm below it, 1.2 mm over the PCB's highest point under them at the cooler's
#: +x end; they hold the 3-5 mm of the cooler's end faces above it).
FLAT_COOLER_TOP_Z, FLAT_PCB_Z, FLAT_GRASP_Z = 0.0149, 0.005, 0.0233
#: The PCB's tilt (rad) lying flat: the gripper grips it pointing square into the PCB (this
#: much off vertical, towards the cooler), so that the card hangs plumb once stood up (a
#: grip pointing straight down left it leaning 6-9 degrees, its edge 5 mm off under the
#: cooler the camera aligns).
FLAT_TILT = 0.165
#: The grip across the cooler's 36 mm: open to ~50 mm before, a reading below FLAT_EMPTY
#: after closing is a grip on nothing.
GRIP_FLAT, FLAT_EMPTY = 0.75, 0.3
#: The fingertips over the cooler while the gripper turns to point down (m).
FLAT_TURN_Z = 0.10
#: After standing up, the PCB's plane is this far (m) ahead of the fingertip centre along
#: the gripper's pointing direction (the grip's height over the cooler's centre when flat).
FLAT_AHEAD = FLAT_GRASP_Z - 0.008
#: Where a stood-up card goes (caddy holder index) by the way the gripper points across it
#: (+1: +y, -1: -y): an arm pointing +y reaches the caddy's +y end, pointing -y its -y end.
FLAT_HOLDER = {1: -1, -1: 0}
#: Each arm's neutral pointing direction (rad, world): the yaw is relative to it.
NEUTRAL_YAW = {'left': 0.0, 'right': np.pi}
#: The arms' shoulders (xy, m; the waist axes).
SHOULDER_XY = {'left': (-0.469, 0.5), 'right': (0.469, 0.5)}
#: Where a stood-up card is shown to the side camera (fingertip centre, m; its edge ~0.18 m
#: in front of the camera), and the yaws each arm can turn to there, level (pointing -y is
#: out of reach so far forward: the card is then shown turned up to 10 degrees).
FLAT_SHOW_TCP = (0.02, 0.58, 0.14)
FLAT_SHOW_YAW = {'left': (-1.40, 1.6), 'right': (-1.6, 1.40)}
#: Where the card is stood up (xy, m; over open table between the arms) at FLAT_STAND_Z.
FLAT_STAND_XY, FLAT_STAND_Z = (0.0, 0.56), 0.12
#: A flat card's blobs: the cooler's pixels seen at least this long (m) along its axis, the
#: PCB's centroid this far (m) from the cooler's across it.
FLAT_MIN_LENGTH, FLAT_PCB_OFFSET = (0.025, 0.045), (0.012, 0.040)


def rot90(v: np.ndarray) -> np.ndarray:
    """``v`` (xy) turned 90 degrees counter-clockwise."""
    return np.array([-v[1], v[0]])


def _yaw(arm: str, direction: np.ndarray) -> float:
    """The yaw (relative to ``arm``'s neutral) that points its gripper, level, along
    ``direction`` (xy), in (-pi, pi]."""
    yaw = float(np.arctan2(direction[1], direction[0])) - NEUTRAL_YAW[arm]
    return float(np.arctan2(np.sin(yaw), np.cos(yaw)))


class FlatCard(GpuMotion):
    """Mixin of :class:`~enpire_tasks.gpu_insertion.reset_skill.GpuResetSkill`: the phases
    of a card lying flat (see the module doc)."""

    p: Any
    top: Any
    side_cam: Any
    side: Any
    stood_up: bool

    #: the height (m) a flat card lies on: the table (0) or the caddy's top
    flat_floor: float = 0.0

    # provided by the skill
    def _cooler_top_z(self, image: np.ndarray, blob: Any) -> float | None: ...

    # --- perception -------------------------------------------------------------------------
    def _top_plane(self, rows: np.ndarray, cols: np.ndarray, z: float) -> np.ndarray:
        """The top camera's pixels (rows, cols) on the horizontal plane at height ``z``
        (N, 2; m)."""
        return np.array([self.top.on_plane_z(float(c), float(r), z)[:2]
                         for r, c in zip(rows, cols, strict=True)])

    def _flat_geometry(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          float, float] | None:
        """The cooler and the PCB of a card down, from the top view: the cooler's centre
        (xy, on the plane of a flat card's cooler top), its axis (unit xy), the PCB's
        centroid from it (xy, on a flat PCB's plane), how far that is across the axis and
        the cooler's length (m); None when either is (nearly) out of view."""
        red = hue_mask(image, self.p.colour_rgb)
        green = hue_mask(image, self.p.pcb_rgb, 20.0, 0.35, 0.12)
        if red.sum() < 20 or green.sum() < 20:
            return None
        pts = self._top_plane(*np.nonzero(red), self.flat_floor + FLAT_COOLER_TOP_Z)
        c, e1 = principal_axis(pts)
        length = float(np.ptp((pts - c) @ e1))
        g = self._top_plane(*np.nonzero(green), self.flat_floor + FLAT_PCB_Z).mean(axis=0) - c
        across = g - (g @ e1) * e1
        return c, e1, g, float(np.linalg.norm(across)), length

    def _flat_pose(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
        """A flat card from the top view: its cooler's centre (xy), its +x axis and the
        direction from its bottom edge to its cooler (unit xy vectors); or why not."""
        geometry = self._flat_geometry(image)
        if geometry is None:
            return 'fallen: too little of the card in view to read its pose'
        c, e1, g, off, length = geometry
        across = g - (g @ e1) * e1
        if not (FLAT_MIN_LENGTH[0] <= length <= FLAT_MIN_LENGTH[1]) or \
                not (FLAT_PCB_OFFSET[0] <= off <= FLAT_PCB_OFFSET[1]):
            return ('fallen: the card lies on something or is hidden (its cooler '
                    f'{length * 1000:.0f} mm long, its PCB {off * 1000:.0f} mm beside it)')
        x = e1 if float(g @ e1) > 0.0 else -e1     # the PCB reaches past the cooler's +x end
        return c, x, -across / off

    # --- the phases -------------------------------------------------------------------------
    def _take_flat(self, image: np.ndarray) -> None:
        """Plan the stand-up of a flat card (or fail with why not)."""
        # on the table, or on the caddy's top (its cooler's face 53 mm higher, its length in
        # the top view 13% longer)
        blob = colour_blob(image, self.p.colour_rgb)
        top_z = self._cooler_top_z(image, blob) if blob is not None else None
        caddy_top = self.p.holder_floor_z + self.p.holder_depth
        self.flat_floor = caddy_top if top_z is not None and \
            top_z - FLAT_COOLER_TOP_Z > caddy_top / 2 else 0.0
        pose = self._flat_pose(image)
        if isinstance(pose, str):
            self._fail(pose)
            return
        c, x, w = pose
        # the card's +x along the grip's axis (the gripper's y) or against it decides which
        # way the gripper points once the card stands, hence the arm and the holder
        self.flat_arm = 'left' if float(w[0]) >= 0.0 else 'right'
        # pointing down; once turned level it points along w (so that the cooler goes up)
        self.flat_yaw0 = _yaw(self.flat_arm, w)
        # once the card stands, the card's +x is the gripper's y axis or its opposite: for the
        # card to stand along +x in a holder, the gripper points +y or -y
        self.flat_side = -1 if float(x @ rot90(w)) > 0.0 else 1
        self.flat_yawf = _yaw(self.flat_arm, np.array([0.0, float(self.flat_side)]))
        self.flat_c = c
        self.flat_edge: np.ndarray | None = None
        self._turn_ticks = 0
        self._go('flat_rise')

    def _flat_rise(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._other_home_of(self.flat_arm, SPEED)
        pos = self._pos(self.flat_arm)
        if self._move(self.flat_arm, np.array([*pos[:2], max(pos[2], FLAT_TURN_Z)]), SPEED):
            self._go('flat_over')

    def _flat_behind(self) -> bool:
        """Is the cooler behind the connector? The gripper then turns to point down over
        FLAT_STAND_XY, not over it (stretched out there, the wrist turned down through its
        singularity the other way round, forearm rolled half a turn, and standing the card
        up later turned it back mid-way: the arm dived 6 cm into the caddy)."""
        return float(self.flat_c[1]) > self.p.slot_xy[1]

    def _flat_turn_xy(self) -> np.ndarray:
        """Where the gripper turns to point down (see :meth:`_flat_behind`)."""
        return np.asarray(FLAT_STAND_XY, dtype=np.float64) if self._flat_behind() \
            else self.flat_c

    def _flat_over(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._other_home_of(self.flat_arm, SPEED)
        if self._move(self.flat_arm, np.array([*self._flat_turn_xy(), FLAT_TURN_Z]), SPEED):
            self._go('flat_turn')

    def _flat_reach(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Pointing down, over to the cooler (from where it turned)."""
        if self._move(self.flat_arm, np.array([*self.flat_c, FLAT_TURN_Z]), SPEED):
            self._go('flat_descend')

    def _plane_turn(self, arm: str, start: tuple[float, float],
                    end: tuple[float, float]) -> bool:
        """One tick of turning ``arm``'s gripper from (pitch, yaw) ``start`` to ``end`` (in
        the phase's ticks) in three turns: in yaw to the vertical plane through its shoulder
        and fingertips, in pitch within that plane (the wrist alone bends), then in yaw to
        the end, each at the rate of a quarter turn in TURN_TICKS. A pitch turn out of that
        plane bends the wrist sideways, and as it passes straight (its singularity) the
        forearm rolls ~2 rad in a few ticks: the gripper swept 6 cm, into the caddy. True
        once turned."""
        if self.ticks <= 1:
            d = self._pos(arm)[:2] - np.asarray(SHOULDER_XY[arm])
            plane = _yaw(arm, d)
            # (pitch, yaw) at the turns' ends, and the tick each ends at
            self.turn_plan = [(start[0], plane), (end[0], plane), end]
            moves = [abs(plane - start[1]), abs(end[0] - start[0]), abs(end[1] - plane)]
            self.turn_ends = np.cumsum([np.ceil(m / (np.pi / 2) * TURN_TICKS)
                                        for m in moves])
        frm = start
        for (to, t1, t0) in zip(self.turn_plan, self.turn_ends,
                                (0.0, *self.turn_ends[:2]), strict=True):
            if self.ticks < t1:
                f = (self.ticks - t0) / (t1 - t0)
                self.rpy[arm] = np.array([0.0, frm[0] + (to[0] - frm[0]) * f,
                                          frm[1] + (to[1] - frm[1]) * f])
                return False
            frm = to
        self.rpy[arm] = np.array([0.0, *end])
        return True

    def _flat_turn(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Point down over the cooler (turned there, not on the way: see the pin's
        ``_turn_down``), the grip opened across the cooler's length."""
        self._set_grip(self.flat_arm, GRIP_FLAT)
        if self._plane_turn(self.flat_arm, (0.0, 0.0), (np.pi / 2 - FLAT_TILT, self.flat_yaw0)) \
                and self.ticks > self.turn_ends[-1] + SETTLE_TICKS:
            self._go('flat_reach' if self._flat_behind() else 'flat_descend')

    def _flat_descend(self, image: np.ndarray, ee: np.ndarray) -> None:
        grasp = np.array([*self.flat_c, self.flat_floor + FLAT_GRASP_Z])
        if self._via([grasp + [0.0, 0.0, 0.03], grasp], SLOW, self.flat_arm) and (
                float(np.linalg.norm(self._ee_of(ee, self.flat_arm) - grasp)) < 0.004
                or self.ticks > REACH_TICKS):
            self._go('flat_close')

    def _flat_close(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._set_grip(self.flat_arm, GRIP_CLOSED)
        if self.ticks >= CLOSE_TICKS:
            if self._opening(ee, self.flat_arm) < FLAT_EMPTY:
                self._fail('fallen: the gripper missed the flat card\'s cooler (closed to '
                           f'{self._opening(ee, self.flat_arm):.2f})')
                return
            self._go('flat_lift')

    def _flat_lift(self, image: np.ndarray, ee: np.ndarray) -> None:
        pos = self._pos(self.flat_arm)
        if self._via([np.array([*pos[:2], FLAT_STAND_Z]),
                           np.array([*FLAT_STAND_XY, FLAT_STAND_Z])], SLOW, self.flat_arm):
            self._go('flat_stand')

    def _flat_stand(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Stand the card up: turn the gripper level (by way of the arm's plane), pointing
        along the card's edge-to-cooler direction as it lay, or as near to it as the
        gripper reaches to show the card (pointing -y, the wrist was out of reach)."""
        end = float(np.clip(self.flat_yaw0, *FLAT_SHOW_YAW[self.flat_arm]))
        if self._plane_turn(self.flat_arm, (np.pi / 2 - FLAT_TILT, self.flat_yaw0),
                            (0.0, end)) and self.ticks > self.turn_ends[-1] + SETTLE_TICKS:
            self.flat_yaw0 = end                # level, the yaw the card stands at
            if self._opening(ee, self.flat_arm) < FLAT_EMPTY:
                self._fail('fallen: dropped the card while standing it up')
                return
            self._go('flat_show')

    def _flat_show(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Over to the side camera, and turn (level) to show it the card's face."""
        pos = self._pos(self.flat_arm)
        if self.goal is None:
            self.flat_yaw_shown = float(np.clip(self.flat_yawf, *FLAT_SHOW_YAW[self.flat_arm]))
        if not self._via([np.array([*pos[:2], LIFT_Z]),
                               np.array([*FLAT_SHOW_TCP[:2], LIFT_Z]),
                               np.asarray(FLAT_SHOW_TCP)], SPEED, self.flat_arm):
            return
        f = min(1.0, self._turn_ticks / TURN_TICKS)
        self._turn_ticks += 1
        yaw = self.flat_yaw0 + (self.flat_yaw_shown - self.flat_yaw0) * f
        self.rpy[self.flat_arm] = np.array([0.0, 0.0, yaw])
        if f < 1.0 or self._turn_ticks <= TURN_TICKS + 2 * SETTLE_TICKS:
            return
        # (a card hanging off plumb in the grip goes in all the same: its edge is put where
        # the camera saw it, and the holder's walls turn it plumb in the grip's give)
        edge = self._flat_edge_seen(ee)
        # kept in the gripper's frame: turned with it to where it points over the holder
        self.flat_edge = None if edge is None else self._flat_rot(ee).T @ edge
        self._go('flat_carry')

    def _flat_edge_seen(self, ee: np.ndarray) -> np.ndarray | None:
        """Where the stood-up card's bottom-edge centre is from the fingertip centre (x, y, z;
        world, m), from the side camera: the PCB's plane is square to the level gripper, at
        the distance along it where the gold fingers' strip (22 mm) spans what the camera
        sees (a card hanging off plumb in the grip has its edge up to 10 mm nearer or
        farther than FLAT_AHEAD); on that plane, the fingers' bottom and middle. None when
        they are not in view."""
        side = getattr(self, 'side', None)
        if side is None:
            return None
        rows, cols = gold_pixels(side)
        if rows.size < 20:
            return None
        # the gripper as measured (near its reach it lags the commanded yaw by up to 0.1
        # rad, which put the PCB's plane, hence its depth, up to 8 mm off)
        rot = self._flat_rot(ee)
        point = np.array([rot[0, 0], rot[1, 0], 0.0])
        point /= float(np.linalg.norm(point))
        tcp = self._ee_of(ee, self.flat_arm)
        cam = self.side_cam
        toward = float(point @ (cam.position - tcp)) > 0.0

        def on_plane(u: float, v: float, s: float) -> np.ndarray:
            r = cam.ray(u, v)
            t = float((tcp + s * point - cam.position) @ point) / float(r @ point)
            return cam.position + t * r

        def depth(p0: np.ndarray, p1: np.ndarray) -> float:
            """Where along the gripper the image points ``p0``, ``p1`` (u, v) are the strip's
            length apart (bisection: what a span is grows with the distance from the
            camera)."""
            lo, hi = -0.01, 0.05
            for _ in range(24):
                mid_s = (lo + hi) / 2.0
                wide = float(np.linalg.norm(on_plane(*p1, mid_s) - on_plane(*p0, mid_s)))
                if (wide > 2.0 * self.p.fingers_half_length) == toward:
                    lo = mid_s
                else:
                    hi = mid_s
            return (lo + hi) / 2.0

        # the depth of the fingers' strip (22 mm, below everything that could hide part of
        # it): where along the gripper its ends, along its axis in the image, are 22 mm
        # apart (row by row spans read a card hanging turned in its plane, its strip
        # slanting, as short: the depth hit its 5 cm bound)
        pts = np.stack([cols, rows], axis=1).astype(np.float64)
        c, axis = principal_axis(pts)
        along = (pts - c) @ axis
        s_pcb = depth(c + axis * (along.min() - 0.5), c + axis * (along.max() + 0.5))
        mid = on_plane(*c, s_pcb)
        centre = np.abs(along) < 1.5             # the strip's bottom under its middle
        bottom = on_plane(float(c[0]), float(rows[centre].max()) + 0.5, s_pcb)
        card_x = -float(self.flat_side) * np.r_[rot90(point[:2]), 0.0]   # see _take_flat
        edge = mid - self.p.fingers_center_x * card_x
        edge[2] = bottom[2] - self.p.fingers_bottom
        d = edge - tcp
        nominal = s_pcb * point - self.p.cooler_center[0] * card_x + \
            [0.0, 0.0, -self.p.cooler_center[2]]
        if not np.all(np.isfinite(d)) or float(np.linalg.norm(d - nominal)) > 0.02:
            return None
        return d

    def _flat_point(self) -> np.ndarray:
        """The gripper's pointing direction (xy) once level."""
        return np.array([0.0, float(self.flat_side)])

    def _flat_rot(self, ee: np.ndarray) -> np.ndarray:
        """The flat arm's gripper orientation as measured (world)."""
        return rpy_to_matrix(self.flat_arm, self._rpy_of(ee, self.flat_arm))

    def _flat_edge_off(self, rot: np.ndarray | None = None) -> np.ndarray:
        """The stood-up card's bottom edge from the fingertip centre (world, m), the gripper
        at ``rot`` (default: level, pointing across the holder): the side camera's measure
        (in the gripper's frame) turned with it, or the grip's nominal."""
        if self.flat_edge is None:
            return np.array([-self.p.cooler_center[0], 0.0, -self.p.cooler_center[2]]) + \
                np.r_[FLAT_AHEAD * self._flat_point(), 0.0]
        if rot is None:
            rot = rpy_to_matrix(self.flat_arm, (0.0, 0.0, self.flat_yawf))
        return rot @ self.flat_edge

    def _flat_tcp(self, edge_xy: np.ndarray, edge_z: float) -> np.ndarray:
        """The fingertip centre that puts a stood-up card's bottom edge at ``edge_xy``,
        ``edge_z`` (the card along +x, the gripper across it)."""
        d = self._flat_edge_off()
        return np.array([edge_xy[0] - d[0], edge_xy[1] - d[1], edge_z - d[2]])

    def _flat_dest(self) -> np.ndarray:
        return np.asarray(self.p.holders[FLAT_HOLDER[self.flat_side]], dtype=np.float64)

    def _flat_carry(self, image: np.ndarray, ee: np.ndarray) -> None:
        above = self._flat_tcp(self._flat_dest(), self.p.holder_floor_z + self.p.holder_depth
                               + CLEARANCE)
        pos = self._pos(self.flat_arm)
        if self._via([np.array([*pos[:2], LIFT_Z]),
                           np.array([*above[:2], LIFT_Z])], SPEED, self.flat_arm):
            self._go('flat_face')

    def _flat_face(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Over the holder, level, turn to point across it (along y)."""
        f = min(1.0, self.ticks / TURN_TICKS)
        yaw = self.flat_yaw_shown + (self.flat_yawf - self.flat_yaw_shown) * f
        self.rpy[self.flat_arm] = np.array([0.0, 0.0, yaw])
        if f >= 1.0 and self.ticks > TURN_TICKS + SETTLE_TICKS:
            self._go('flat_down')

    def _flat_down(self, image: np.ndarray, ee: np.ndarray) -> None:
        above = self._flat_tcp(self._flat_dest(), self.p.holder_floor_z + self.p.holder_depth
                               + CLEARANCE)
        if self._move(self.flat_arm, above, SLOW) and self.ticks > SETTLE_TICKS:
            self.flat_corrections = self.flat_tries = 0
            self._go('flat_align')

    def _flat_align(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self.ticks % SETTLE_TICKS:
            return
        pos = self._pos(self.flat_arm)
        blob = colour_blob(image, self.p.colour_rgb)
        if blob is None:
            self._fail('fallen: lost the stood-up card (no cooler in view)')
            return
        cooler_top = pos[2] - self.p.cooler_center[2] + self.p.cooler_top   # ~: a plane
        seen = top_view_xy(self.top, image, blob, cooler_top)
        held = pos[:2] + FLAT_AHEAD * self._flat_point() - [self.p.cooler_center[0], 0.0]
        if float(np.hypot(*(seen - held))) > 0.02:
            self._fail('fallen: the stood-up card is not in the gripper (its cooler seen '
                       f'{float(np.hypot(*(seen - held))) * 1000:.0f} mm away)')
            return
        # square to the holder: its 2 mm slot takes the 25 mm edge turned 1 degree at most,
        # and the grip across the cooler's ends keeps the turn the card had when gripped
        turn = self._flat_turn_seen(image, blob, cooler_top)
        if abs(turn) > FLAT_SQUARE_TOL and self.flat_corrections < 6:
            self.flat_yawf -= turn
            self.rpy[self.flat_arm] = np.array([0.0, 0.0, self.flat_yawf])
            self.flat_corrections += 1
            return
        if self.flat_edge is not None:     # the camera's measure on the measured fingertips
            seen = self._ee_of(ee, self.flat_arm)[:2] + \
                self._flat_edge_off(self._flat_rot(ee))[:2]
        err = seen - self._flat_dest()
        if float(np.hypot(*err)) < 0.0006 or self.flat_corrections >= 8:
            self._go('flat_lower')
            return
        step = 0.8 * err
        n = float(np.hypot(*step))
        if n > 0.003:
            step *= 0.003 / n
        new = pos.copy()
        new[:2] -= step
        if self.flat_arm == 'right':
            self.cmd = new
        else:
            self.left = new
        self.flat_corrections += 1

    def _flat_turn_seen(self, image: np.ndarray, blob, top_z: float) -> float:  # noqa: ANN001
        """How far (rad) the held card's cooler, seen from above on the plane of its top, is
        turned from the x axis (its long axis; in (-pi/2, pi/2])."""
        rows, cols = lit_pixels(image, blob.mask)     # the lit top face
        if rows.size < 20:
            return 0.0
        _, e1 = principal_axis(self._top_plane(rows, cols, top_z))
        return float(np.arctan(e1[1] / e1[0])) if abs(e1[0]) > 1e-9 else np.pi / 2

    def _flat_lower(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Down into the holder; stopped above it (the edge on the holder's top: the
        fingertips held BLOCKED_DZ over their command), up and over by the next search
        offset across the slot, and down again."""
        if self.goal is None:
            pos = self._pos(self.flat_arm)
            self.goal = np.array([*pos[:2], self._flat_tcp(pos[:2], self.p.holder_floor_z
                                                           + 0.0005)[2]])
            self.flat_firm = self._opening(ee, self.flat_arm)
        pos = self._pos(self.flat_arm)
        held_up = float(self._ee_of(ee, self.flat_arm)[2]) - float(pos[2]) > BLOCKED_DZ
        if not held_up:
            # the last 10 mm (the edge in the holder's lead-in) slowly, so that a blocked
            # edge is felt (the arm held up) before it presses hard, and in a light grip
            # (a couple of N: the card's weight, not its lean): the card turns in it as
            # the lead-in slides its edge into the slot, which the arm alone cannot follow
            # to the slot's 0.4 mm
            slow = float(pos[2]) - self.goal[2] < CLEARANCE + 0.002
            if slow:
                self._set_grip(self.flat_arm, max(0.0, self.flat_firm - FLAT_LIGHT_GRIP))
            if not self._move(self.flat_arm, self.goal, INSERT / 3 if slow else INSERT) or \
                    self.ticks < SETTLE_TICKS * 3:
                return
        if not held_up and float(self._ee_of(ee, self.flat_arm)[2]) - self.goal[2] < BLOCKED_DZ:
            self._go('flat_release')
        elif self.flat_tries >= len(FLAT_SEARCH):
            self._fail('fallen: the stood-up card does not go into the holder')
        else:
            self._go('flat_unblock')

    def _flat_unblock(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self.goal is None:
            k = self.flat_tries
            shift = FLAT_SEARCH[k] - (FLAT_SEARCH[k - 1] if k else 0.0)
            self.flat_tries += 1
            self._set_grip(self.flat_arm, GRIP_CLOSED)
            above = self._pos(self.flat_arm) + [0.0, 0.0, CLEARANCE]
            self._via([above, above + [0.0, shift, 0.0]], INSERT * 2, self.flat_arm)
            return
        if self._via([], INSERT * 2, self.flat_arm):
            self._go('flat_lower')

    def _flat_release(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._set_grip(self.flat_arm, GRIP_OPEN)
        if self.ticks >= CLOSE_TICKS:
            self._go('flat_retreat')

    def _flat_retreat(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self.goal is None:
            back = self._pos(self.flat_arm).copy()
            back[:2] -= 0.05 * self._flat_point()
            self.goal = back
        if self._move(self.flat_arm, self.goal, SLOW):
            self._go('flat_home')

    def _flat_home(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Up, level and home; then locate the card again (standing in a holder now)."""
        f = min(1.0, self.ticks / TURN_TICKS)
        self.rpy[self.flat_arm] = np.array([0.0, 0.0, self.flat_yawf * (1.0 - f)])
        home = self._home_of(self.flat_arm)
        pos = self._pos(self.flat_arm)
        if self._via([np.array([*pos[:2], LIFT_Z]), home], SPEED, self.flat_arm) and \
                f >= 1.0 and self.ticks > TURN_TICKS + SETTLE_TICKS:
            self.stood_up = True
            self._go('locate')


#: The stood-up card is turned square to the holder to within this (rad).
FLAT_SQUARE_TOL = 0.008
#: Lowering: the search offsets (m, y: across the slot, where a lean puts the edge).
FLAT_SEARCH = (0.0006, -0.0006, 0.0012, -0.0012, 0.0018, -0.0018, 0.0024, -0.0024)
#: The light grip while the edge goes into the holder: this far (of the gripper's range)
#: closed past where the fingers stand on the cooler (~1.6 N each).
FLAT_LIGHT_GRIP = 0.03

__all__ = ['FlatCard']
