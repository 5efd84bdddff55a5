"""The robot-executed reset of GPU insertion: press the latch, unplug, place, home.

A skill is a closed-loop controller like a policy: each tick it gets the observation (the
contract's cameras and the arm state, never simulator poses) and returns an end-effector
action for both arms, until it is ``done`` or ``failed``. Perception is the classic
verifier's: the cooler's hue in the top camera, the lit top face, the calibrated ray onto the
plane of the cooler's top; and the side camera for a card held up to it.

Stage ``start``: the card stands in caddy slot ``seed % 4``, the arms at home. The arms first
go home (out of the top camera's view). The length of the cooler's lit face says how high it
is: a card standing in a fixture (the slot or a holder: their floors are at one height), on
the table, or upside down on its cooler. If the card is in the slot (seated and latched, or
resting on the latch), the left arm presses the latch's pad down and holds it while the right
arm grasps the cooler and pulls the card straight up; then the left arm lets go and goes home
while the right arm shows the card to the side camera (where its bottom edge is in the grasp,
from the gold fingers), carries it to its caddy slot, aligns it from the top camera, lowers it
in (a blocked edge: up, over by a search offset, down again), lets go and goes home. A card in
a caddy slot or on the table is picked up without the latch; a card already in the right
gripper is carried (if its edge is down at the slot, the latch is pressed and the card pulled
out first). A card lying flat is stood up and one upside down tipped over first
(:mod:`~enpire_tasks.gpu_insertion.reset_flat`).

Stage ``pre_insertion`` (the hardest stage's start): the right gripper holds the card over
the slot, its bottom edge 10 mm above the slot's top.

What the skill cannot reach it fails with a reason (``fallen: ...``, ``upside down: ...``,
``no card in view``), and the reset retries or falls back to the recorded ``sim_place``
where the contract allows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_tasks.arm import (
    PinholeCamera,
    colour_blob,
    home_action,
    lit_pixels,
    principal_axis,
)
from enpire_tasks.gpu_insertion.classic import (
    LYING_PCB_RATIO,
    gold_pixels,
    lying_ratio,
    on_plane_y,
    standing_cooler_top_z,
    top_view_xy,
)
from enpire_tasks.gpu_insertion.geometry import PRE_INSERTION_CLEARANCE, parts, start_pose
from enpire_tasks.gpu_insertion.reset_motion import (
    BLOCKED_DZ,
    CLEARANCE,
    CLOSE_TICKS,
    GRIP_CLOSED,
    GRIP_OPEN,
    INSERT,
    LIFT_Z,
    OPEN_TICKS,
    PRESS_TICKS,
    SETTLE_TICKS,
    SLOW,
    SPEED,
)
from enpire_tasks.gpu_insertion.reset_tip import UpsideDownCard

STAGES = ('start', 'pre_insertion')
PREGRASP_DX = 0.07
GRASP_DX = 0.006           # fingertip centre from the edge's centre along +x (the cooler's centre)
ALIGN_TOL = 0.0006
GRIP_PRESS = 0.1
PRESS_ABOVE = 0.03         # the left fingertips this far over the latch pad before pressing
PAD_HALF = 0.008           # the finger pads reach this far below the fingertip centre
IN_SLOT_DZ = 0.004         # a held card's edge this far over the slot's top may be latched
AT_SLOT_XY = 0.015         # ... with the gripper this close (m) over the slot's grasp point
HIGH_GRASP = 0.005         # ... and its fingertips this far (m) over the grasp's height: regrasp
MAX_HIGH = 0.012           # (fingertips higher than this over the grasp hold < 2 mm of cooler)
SEATED_SHOW = 0.002        # a seated card shows at most this much (m) of its gold fingers
UPRIGHT_AT_SLOT = 0.004    # (a card seen this close (m) over the slot stands upright in it)

#: A standing card seen this close (m) to its seed's start is left where it is.
ALREADY_THERE = 0.002
#: Where a held card is shown to the side camera (fingertip centre, m): its edge ~70 mm up,
#: 0.18 m in front of the camera.
INSPECT_TCP = np.array([0.02, 0.60, 0.12])
#: A card whose edge is seen this close (m) to a fixture (the slot, a holder) stands in it,
#: maybe leaning in its clearance: the fingers close square over the fixture's centre line,
#: so that they stand it up as they close rather than keep its lean (a card carried leaning
#: 3 degrees has its edge 2.3 mm off under the cooler the top camera aligns, and lands on a
#: holder's wall top instead of in it).
IN_FIXTURE = 0.008
#: The gripper closed to less than this opening holds no cooler (14 mm: ~0.2-0.3; the PCB
#: alone ~0.08, nothing ~0.06: the pads meet).
GRIP_EMPTY = 0.15
#: A held card turned in its plane more than TILT_TOL (rad) at inspection is turned level
#: by pitching the gripper (at most MAX_PITCH, PITCH_STEP per tick).
TILT_TOL, MAX_PITCH, PITCH_STEP = 0.03, 0.5, 0.01
#: A gripper found turned more than TURNED (rad, any of roll, pitch, yaw) is commanded from
#: there and turned back level (UNTURN_STEP per tick) on the way home before looking.
TURNED, UNTURN_STEP = 0.05, 0.02
#: A right gripper closed to less than this opening may hold the card.
HELD_OPENING = 0.4
#: A gripper commanded open reads at least this open (one left by a trial read 0.898 for
#: 13 s, and the skill waited on 0.9 all that time).
OPENED = 0.8
#: The arms farther than this (m) from home may hide the card from the top camera.
HOME_TOL = 0.02
#: A card standing on the table is gripped with the fingertip centre this high (m): the pads
#: (16 mm) over the riser's top (40 mm) when the card leans on it.
TABLE_GRASP_Z = 0.049
#: ... and approached with the gripper this far open (21 mm): wide open (68 mm) the far pad
#: sweeps through the connector's housing beside it. (A card standing flush on the riser's
#: back still meets the housing's side with its near pad, the arm sagging 1.6 mm towards it
#: on the way in: 19 mm clears that, but pushed other cards away with a pad; the margin is
#: small both ways, and the fix is a grasp line biased away from the housing.)
GRIP_NARROW = 0.35
#: A held card seen farther than this (m) from the gripper is not the one in the gripper;
#: one alignment correction moves the gripper at most MAX_CORRECTION (m).
HELD_TOL, MAX_CORRECTION = 0.012, 0.003
#: Lowering into a holder blocked (BLOCKED_DZ): the arm lifts, shifts by the next SEARCH
#: offset (m, y: across the slot, where a lean puts the edge) and lowers again.
SEARCH = ((0.0, 0.001), (0.0, -0.001), (0.0, 0.002), (0.0, -0.002))

class GpuResetSkill(UpsideDownCard):
    """One reset of the card (see the module doc); ``act`` until ``done`` or ``failed``."""

    def __init__(self, task: TaskSpec, seed: int, stage: str = 'start') -> None:
        if stage not in STAGES:
            raise ValueError(f"reset stage '{stage}' is unknown (stages: {', '.join(STAGES)})")
        self.p = parts()
        self.stage = stage
        self.top = PinholeCamera.of(task.views['task_top'])
        self.side_cam = PinholeCamera.of(task.views['side'])
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
        self.looked = False          # the arms moved out of the camera's view once
        self.tries = 0               # lowering tries into the holder
        self.pitch = 0.0             # the right gripper's pitch that holds the card level
        self.tilt_fixes = 0
        self.still = 0
        self.rpy = {'left': np.zeros(3), 'right': np.zeros(3)}
        self.flat_arm = 'right'      # the arm that stands a flat card up
        self.stood_up = False        # a flat card was stood up (once per reset)
        self.tipped = False          # an upside-down card was pushed over (once per reset)
        self.side: np.ndarray | None = None
        #: where the held card's bottom edge is from the fingertip centre (x, z; m): the
        #: grasp's nominal until the side camera has measured it (``inspect``)
        self.edge_off: np.ndarray | None = None
        self.done = False
        self.failed = ''

    # --- perception -------------------------------------------------------------------------
    def _card(self, image: np.ndarray, cooler_top_z: float) -> np.ndarray | None:
        blob = colour_blob(image, self.p.colour_rgb)
        if blob is None:
            return None
        return top_view_xy(self.top, image, blob, cooler_top_z)

    # --- the skill --------------------------------------------------------------------------
    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The next action (the arms' command for this tick)."""
        ee = np.asarray(obs['ee_pose'], dtype=np.float64)
        if self.cmd is None:
            self.cmd = ee[7:10].copy()
            self.left = ee[0:3].copy()
            # a gripper closed on something keeps squeezing: commanded where its fingers
            # stand (the cooler stops them), it lets a card held leaning fall out of its grip
            self.grip = GRIP_CLOSED if float(ee[13]) < HELD_OPENING else float(ee[13])
            # from the grippers' measured orientations (a failed attempt can leave one
            # turned, pointing down: commanded level at once, the IK cannot follow)
            for arm in ('left', 'right'):
                rpy = self._rpy_of(ee, arm)
                self.rpy[arm] = rpy.copy() if float(np.abs(rpy).max()) > TURNED else \
                    np.zeros(3)
        self.ticks += 1
        self.side = obs.get('image_side')
        getattr(self, f'_{self.phase}')(obs['image_top'], ee)
        return self._action()

    def _locate(self, image: np.ndarray, ee: np.ndarray) -> None:
        held = float(ee[13]) < HELD_OPENING
        if held and self._in_hand(image, ee):
            return
        if not self.looked and (
                float(np.linalg.norm(ee[7:10] - self.home[7:10])) > HOME_TOL
                or float(np.linalg.norm(ee[0:3] - self.home[0:3])) > HOME_TOL
                or not self._level()):
            # the arms (where a trial left them) may hide the card or part of it: out of
            # the way, then look
            self._go('look')
            return
        lying = lying_ratio(self.top, image)
        blob = colour_blob(image, self.p.colour_rgb)
        stands_on = self._stands_on(image, blob) if blob is not None else 'fixture'
        if stands_on == 'its cooler' and lying <= LYING_PCB_RATIO and \
                (self.tipped or not self._upside_down_seen(image)):
            # lying flat, its PCB partly out of view or hidden by an arm at home (and one
            # just pushed over lies flat)
            lying = LYING_PCB_RATIO + 1.0
        if stands_on == 'its cooler' and lying <= LYING_PCB_RATIO:
            if self.tipped:
                self._fail('upside down: the card still stands on its cooler after a push')
            else:
                self._take_upside_down(image)
            return
        top_z = standing_cooler_top_z() if stands_on == 'fixture' else self.p.cooler_top
        xy = self._card(image, top_z)
        if lying > LYING_PCB_RATIO:
            if self.stood_up or held:
                self._fail(f'fallen: the card lies flat (PCB area {lying:.1f} x a standing '
                           'card)')
            else:
                self._take_flat(image)
            return
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
        if stands_on == 'table':
            # standing on its edge on the table (against the riser, or fallen off a
            # holder): gripped a little high, the pads clear of the riser's top
            self.latched = False
            self.grasp_dz = TABLE_GRASP_Z          # its edge on the table
            self.grip = GRIP_NARROW
            self.goal_grasp = np.array([xy[0] + GRASP_DX, xy[1], TABLE_GRASP_Z])
            self._go('clear')
            return
        self.latched = float(np.hypot(*(xy - np.asarray(self.p.slot_xy)))) < 0.01
        fixtures = [np.asarray(self.p.slot_xy), *(np.asarray(h) for h in self.p.holders)]
        near = min(fixtures, key=lambda f: float(np.hypot(*(xy - f))))
        if float(np.hypot(*(xy - near))) < IN_FIXTURE:
            xy = near
        self.goal_grasp = np.array([xy[0] + GRASP_DX, xy[1],
                                    self.p.holder_floor_z + self.grasp_dz])
        self._go('clear')

    def _cooler_top_z(self, image: np.ndarray, blob) -> float | None:  # noqa: ANN001
        """How high the cooler's lit face is (m), from its length in the top view (36 mm:
        ~32 px in a fixture, ~28 px on the table, ~25 px upside down on the cooler itself)."""
        rows, cols = lit_pixels(image, blob.mask)
        if rows.size < 10:
            return None
        pts = np.stack([cols, rows], axis=1).astype(np.float64)
        c, axis = principal_axis(pts)
        length_px = float(np.ptp((pts - c) @ axis)) + 1.0
        return self.top.position[2] - self.top.fx * self.p.cooler_size[0] / length_px

    def _stands_on(self, image: np.ndarray, blob) -> str:  # noqa: ANN001
        """What a standing card stands on, by how high its cooler's lit face is:
        ``'fixture'`` (a holder or the slot: their floors are at one height), ``'table'`` or
        ``'its cooler'``."""
        top_z = self._cooler_top_z(image, blob)
        if top_z is None:
            return 'fixture'
        heights = {'fixture': standing_cooler_top_z(), 'table': self.p.cooler_top,
                   'its cooler': self.p.cooler_size[2]}
        return min(heights, key=lambda k: abs(heights[k] - top_z))

    def _look(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Open both grippers where they are (the card was not seen in the right hand: a
        closed gripper may still hold it out of view, as a trial that ends on success leaves
        a card gripped in the slot; lifting first pulled it out and dropped it), then both
        arms up, then home, then locate again."""
        self.grip = self.left_grip = GRIP_OPEN
        if self.goal is None and min(float(ee[6]), float(ee[13])) < OPENED and \
                self.ticks < OPEN_TICKS * 3:
            return
        if self.goal is None:
            self.goal = np.array([max(self.cmd[2], LIFT_Z), max(self.left[2], LIFT_Z)])
        up = self._toward(np.array([*self.cmd[:2], self.goal[0]]), SPEED)
        up = self._left_toward(np.array([*self.left[:2], self.goal[1]]), SPEED) and up
        if up:
            self._go('look_home')

    def _look_home(self, image: np.ndarray, ee: np.ndarray) -> None:
        there = self._toward(self.home[7:10], SPEED)
        there = self._left_toward(self.home[0:3], SPEED) and there
        there = self._unturn() and there
        if there:
            # open (the card was not seen in the right hand: a trial may have left a
            # gripper closed on nothing, which would read as holding)
            self.grip = self.left_grip = GRIP_OPEN
        if there and self.ticks > SETTLE_TICKS and min(float(ee[6]), float(ee[13])) > OPENED:
            self.looked = True
            self._go('locate')

    def _level(self) -> bool:
        return all(not self.rpy[arm].any() for arm in ('left', 'right'))

    def _unturn(self) -> bool:
        """Both grippers' orientation commands one bounded step back to level; True once
        level."""
        level = [self._turn_toward(arm, np.zeros(3), UNTURN_STEP) for arm in ('left', 'right')]
        return all(level)

    def _in_hand(self, image: np.ndarray, ee: np.ndarray) -> bool:
        """Is the card in the right gripper (the cooler seen from above between the measured
        fingertips, on the plane the grasp puts its top)? Then carry it, and if its edge is
        down at the slot (seated, jammed or on the latch) press the latch and pull it out
        first: lifting a latched card pulls the arm against the hook."""
        # how high its edge is: seen by the side camera (its gold fingers) where they are
        # out of the fixture, else where the nominal grasp puts it (a trial may have left
        # the card gripped 10-30 mm off the nominal height)
        seen = self._held_fingers_z(ee)
        edge_z = None if seen is None else seen[0]
        nominal_z = float(ee[9]) - self.grasp_dz
        xy = self._card(image, (nominal_z if edge_z is None else edge_z) + self.p.cooler_top)
        if xy is None or float(np.hypot(*(xy + [GRASP_DX, 0.0] - ee[7:9]))) > 0.012:
            return False
        # by where the gripper is, not the card: a card that turned in the grasp (a trial
        # that pressed it down leaning) is seen off the slot by its lean (7 mm at 9 degrees)
        # with its edge still latched, and lifting it pulled it out of the fingers. Its
        # edge is in the slot unless the side camera sees it over the slot's top; without
        # that view (or where it sees no edge), where the nominal grasp puts it, allowing
        # for a grasp up to MAX_HIGH high with the view (a seated card gripped 6 mm high
        # read as out, and lifting it pulled it out of the fingers)
        slot_grip = np.asarray(self.p.slot_xy) + [GRASP_DX, 0.0]
        if edge_z is None:
            edge_z = nominal_z - (0.0 if self.side is None else MAX_HIGH)
        at_slot = float(np.hypot(*(ee[7:9] - slot_grip))) < AT_SLOT_XY and \
            edge_z < self.p.slot_top_z + IN_SLOT_DZ
        self.goal_grasp = np.array([*self.cmd[:2], self.p.holder_floor_z + self.grasp_dz])
        # seated: the side camera sees its gold fingers (5.5 mm of them in the slot's 6)
        # at most SEATED_SHOW over the slot's top (a card seated a little turned in its
        # plane shows a corner); without that view, upright over the slot
        if self.side is not None:
            seated = seen is None or seen[1] < self.p.slot_top_z + SEATED_SHOW
        else:
            seated = float(np.hypot(*(xy - np.asarray(self.p.slot_xy)))) < UPRIGHT_AT_SLOT
        if at_slot and seated and float(ee[9]) > self.goal_grasp[2] + HIGH_GRASP:
            # standing in the slot but held by the cooler's top few mm (a trial pressed it
            # in from a high grasp): that grip slips off as the card is pulled; let go, and
            # take it as a card standing in the slot (not one leaning in the grasp with its
            # edge out of the slot, which let go falls over)
            return False
        if at_slot:
            self.latched = self.in_hand = True
            self._go('press')
        else:
            self._go('lift')
        return True

    def _held_fingers_z(self, ee: np.ndarray) -> tuple[float, float] | None:
        """How high (m) the right gripper's card's gold fingers are seen by the side camera
        (their lowest and highest rows, on the PCB's plane at the gripper): its bottom edge
        and 5.5 mm over it where all are out of a fixture, else the fixture's top and what
        shows over it. None where they are hidden (in a fixture, or out of view) or far
        from the gripper."""
        if self.side is None:
            return None
        rows, cols = gold_pixels(self.side, 3)
        if rows.size < 20:
            return None
        y = float(ee[8]) - self.p.pcb_half_thickness
        bottom = on_plane_y(self.side_cam, float(cols.mean()), rows.max() + 0.5, y)
        top = on_plane_y(self.side_cam, float(cols.mean()), rows.min() - 0.5, y)
        if not np.all(np.isfinite(bottom)) or not np.all(np.isfinite(top)) or \
                abs(float(bottom[0]) + GRASP_DX - float(ee[7])) > HELD_TOL * 2:
            return None
        return float(bottom[2]), float(top[2])

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
            if float(ee[13]) < GRIP_EMPTY:    # closed on nothing (or the PCB only)
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

    def _lift(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            self._go('inspect' if self.side is not None else 'carry')

    def _inspect(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Hold the card up to the side camera and measure where its bottom edge is in the
        grasp (the gold fingers' bottom and middle): a card gripped turned in its own plane
        or low on the cooler has its edge millimetres from where the grasp puts it, and
        misses the holder's 2 mm slot by that much. A card turned more than TILT_TOL in its
        plane (a trial pressed it down leaning, and it turned about the grasp) is first
        turned level by pitching the gripper: tilted, its low corner lands on the holder's
        top."""
        self._left_home()
        if not self._via([np.array([*INSPECT_TCP[:2], LIFT_Z]), np.asarray(INSPECT_TCP)],
                         SPEED) or self.ticks < 2 * SETTLE_TICKS:
            return
        if not self._pitch_toward(self.pitch):
            self.still = 0
            return
        self.still += 1
        if self.still < 2 * SETTLE_TICKS:
            return
        tilt = self._fingers_tilt(float(ee[8]))
        if tilt is not None and abs(tilt) > TILT_TOL and self.tilt_fixes < 3:
            self.pitch = float(np.clip(self.pitch + tilt, -MAX_PITCH, MAX_PITCH))
            self.tilt_fixes += 1
            return
        edge = self._edge_in_side_view(float(ee[8]))
        if edge is not None:
            self.edge_off = edge - ee[[7, 9]]
        self._go('carry')

    def _pitch_toward(self, pitch: float) -> bool:
        """The right gripper's pitch one bounded step towards ``pitch``; True once there."""
        r = self.rpy['right']
        return self._turn_toward('right', np.array([r[0], pitch, r[2]]), PITCH_STEP)

    def _fingers_tilt(self, pcb_y: float) -> float | None:
        """How far (rad) the held card is turned in its plane (the gold fingers' strip from
        the side camera, on the PCB's plane ``y = pcb_y``: its slope in x-z); None when the
        fingers are not in view. Positive: its +x end low."""
        if self.side is None:
            return None
        rows, cols = gold_pixels(self.side, 3)
        if rows.size < 20:
            return None
        y = pcb_y - self.p.pcb_half_thickness
        pts = np.array([on_plane_y(self.side_cam, float(c), float(r), y)[[0, 2]]
                        for r, c in zip(rows, cols, strict=True)])
        if not np.all(np.isfinite(pts)):
            return None
        _, axis = principal_axis(pts)
        if axis[0] < 0.0:
            axis = -axis
        return float(np.arctan2(-axis[1], axis[0]))

    def _edge_in_side_view(self, pcb_y: float) -> np.ndarray | None:
        """The held card's bottom-edge centre (x, z; world) from the side camera, its PCB in
        the plane ``y = pcb_y``; None when the fingers are not in view or implausible."""
        rows, cols = gold_pixels(self.side)
        if rows.size < 20:
            return None
        y = pcb_y - self.p.pcb_half_thickness
        mid = on_plane_y(self.side_cam, (cols.min() + cols.max()) / 2.0, float(rows.mean()), y)
        bottom = on_plane_y(self.side_cam, float(cols.mean()), rows.max() + 0.5, y)
        edge = np.array([mid[0] - self.p.fingers_center_x, bottom[2] - self.p.fingers_bottom])
        nominal = np.array([-GRASP_DX, -self.grasp_dz])
        if not np.all(np.isfinite(edge)) or \
                float(np.linalg.norm(edge - INSPECT_TCP[[0, 2]] - nominal)) > 0.02:
            return None
        return edge

    def _dest(self) -> np.ndarray:
        """Where the edge goes: its caddy slot, or over the connector's slot."""
        if self.stage == 'pre_insertion':
            return np.array([*self.p.slot_xy, self.p.slot_top_z + PRE_INSERTION_CLEARANCE])
        return self.target

    def _grip_off(self) -> np.ndarray:
        """The fingertip centre from the held card's bottom edge (x, y, z; m)."""
        off = self.edge_off if self.edge_off is not None else \
            np.array([-GRASP_DX, -self.grasp_dz])
        return np.array([-off[0], 0.0, -off[1]])

    def _carry(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        dest = self._dest()
        if self.stage == 'pre_insertion':
            above = dest + self._grip_off()
        else:
            above = dest + self._grip_off() + [0.0, 0.0, self.p.holder_depth + CLEARANCE]
        if self._via([np.array([above[0], above[1], LIFT_Z]), above], SPEED) and \
                self.ticks > SETTLE_TICKS:
            self._go('align')

    def _align(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        if self.ticks % SETTLE_TICKS:
            return
        dest = self._dest()
        cooler_top = self.cmd[2] - self._grip_off()[2] + self.p.cooler_top
        seen = self._card(image, cooler_top)
        if seen is None:
            self._fail('lost the card: no cooler in view while aligning')
            return
        held = self.cmd[:2] - [GRASP_DX, 0.0]
        if float(np.hypot(*(seen - held))) > HELD_TOL:
            self._fail('lost the card: the cooler in view is '
                       f'{float(np.hypot(*(seen - held))) * 1000:.0f} mm from the gripper')
            return
        if self.edge_off is not None:
            # along the card, the side camera's measure of the grasp (the cooler seen from
            # above says nothing of a card turned in its plane) on the measured fingertips
            seen[0] = float(ee[7]) + self.edge_off[0]
        err = seen - dest[:2]
        if float(np.hypot(*err)) < ALIGN_TOL or self.corrections >= 6:
            if self.stage == 'pre_insertion':
                self._go('settle_left')
            else:
                self._go('lower')
            return
        step = 0.8 * err
        n = float(np.hypot(*step))
        if n > MAX_CORRECTION:
            step *= MAX_CORRECTION / n
        self.offset -= step
        self.cmd[:2] = dest[:2] + self._grip_off()[:2] + self.offset
        self.corrections += 1

    def _settle_left(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        if float(np.linalg.norm(self.left - self.home[0:3])) < 1e-6 and \
                self.ticks > SETTLE_TICKS:
            self.done, self.phase = True, 'done'

    def _lower(self, image: np.ndarray, ee: np.ndarray) -> None:
        if self.goal is None:
            self.goal = np.array([*self.cmd[:2],
                                  self.target[2] + self._grip_off()[2] + 0.0005])
        if not self._toward(self.goal, INSERT):
            self.still = 0
            return
        self.still += 1             # ticks at the command: the arm settles
        if self.still > SETTLE_TICKS:
            if float(ee[9]) - self.goal[2] < BLOCKED_DZ:
                self._go('release')
            elif self.tries >= len(SEARCH):
                self._fail('the card does not go into its holder (its edge stands on the '
                           f'holder\'s top after {self.tries + 1} tries)')
            else:
                self._go('unblock')

    def _unblock(self, image: np.ndarray, ee: np.ndarray) -> None:
        """Up off the holder's top, then over the next search offset, then lower again."""
        if self.goal is None:
            prev = np.array(SEARCH[self.tries - 1]) if self.tries else np.zeros(2)
            shift = np.array(SEARCH[self.tries]) - prev
            self.tries += 1
            above = self.cmd + [0.0, 0.0, CLEARANCE]
            self._via([above, above + [shift[0], shift[1], 0.0]], INSERT * 2)
            return
        if self._via([], INSERT * 2):
            self._go('lower')

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
        self._pitch_toward(0.0)
        if self._toward(np.array([*self.cmd[:2], LIFT_Z]), SPEED):
            self._go('home')

    def _home(self, image: np.ndarray, ee: np.ndarray) -> None:
        self._left_home()
        level = self._pitch_toward(0.0)
        if self._toward(self.home[7:10], SPEED) and self.ticks > SETTLE_TICKS and level and \
                float(np.linalg.norm(self.left - self.home[0:3])) < 1e-6:
            self.done, self.phase = True, 'done'

    def _done(self, image: np.ndarray, ee: np.ndarray) -> None:
        pass

    def _failed(self, image: np.ndarray, ee: np.ndarray) -> None:
        pass


def make_reset_skill(task: TaskSpec, seed: int, stage: str = 'start') -> GpuResetSkill:
    return GpuResetSkill(task, seed, stage)


__all__ = ['STAGES', 'GpuResetSkill', 'make_reset_skill']
