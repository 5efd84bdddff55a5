"""The robot-executed reset of the zip tie: both grippers lay the tie back across its rails
at the seed's start.

A skill is a closed-loop controller like a policy: each tick it gets the observation (the
contract's cameras and the arms' state, never simulator poses) and returns an end-effector
action until it is ``done`` or ``failed``. Perception is the verifier's
(:mod:`.classic`'s features, :mod:`.stages`' triangulation): where the head is, where the
strap's far end is, whether the tail is through the head.

What the skill finds, and does:

- **Held** (where a trial that grasped both ends leaves the tie): the left gripper's fingers
  stopped on something, the cameras see the head at its fingertips and the strap's far end
  at the right one's. The arms carry the tie over the seed's start, the head above its rail
  and the tail's grasp over the rest's overhang, lower it onto the rails and let go (the
  head first); then up, out to the sides, wrists level, home.
- **On its rails** (a trial that never grasped, or a reset redone): the head is on the head
  rail. The arms pinch the tail's overhang, then the head (the order the scripted baseline
  found: fingers closing on the head push the strap), lift both, and carry it as above.
- **Threaded**: the tail through the head. A real cell cuts the tie and takes a new one
  (the task consumes ties); the skill fails with ``threaded`` and the reset's recorded
  ``sim_place`` fallback replaces it (trial.json's ``reset``: ``method`` ``sim_place
  (fallback)``, ``retried_after`` the skill's reason).
- Anything else (dropped on the table, held by one end) fails with where the cameras saw
  it, for the same fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_tasks.arm import home_action
from enpire_tasks.zip_tie import stages
from enpire_tasks.zip_tie.geometry import parts, start_pose

STAGES = ('start',)
#: Travel per tick (m): carrying, and descending or lowering.
SPEED, SLOW = 0.006, 0.003
#: Carrying height of the fingertips (m).
CARRY_Z = 0.10
#: The fingers (m of finger travel, the contract's ``joints`` 7th and 14th): above this
#: and short of open they hold something (closed on nothing they stop at ~0.023, on the
#: strap's width at ~0.025, on the head at ~0.026).
FINGER_HOLDING, FINGER_OPEN = 0.0242, 0.057
#: Fingertip centre over the rails' top when pinching the head / the strap (m; the pads
#: reach ~11 mm below it).
HEAD_DZ, TAIL_DZ = 0.010, 0.008
#: The head is let go this far above its rail (m).
LAY_GAP = 0.0005
#: Where the arms wait (fingertips, left then right; m): up and out to the sides, clear of
#: both cameras' views of the tie.
PARK = np.array([[-0.22, 0.5, 0.15], [0.22, 0.5, 0.15]])
#: Where the tail is pinched: this far from its tip towards the head (m).
TAIL_BACK = 0.012
#: The head seen this close to its rail's line (m, x) and this low lies on its rail.
ON_RAIL_X, ON_RAIL_DZ = 0.006, 0.006
#: A part seen this far from a gripper's fingertips (px, in the image) is not in it.
IN_GRIP_PX = 25.0
#: The grippers pointing down; the left one turned a quarter about its axis over the head
#: (its fingers close along x, either side of the rail), turned gradually.
DOWN = np.array([0.0, np.pi / 2, 0.0])
ACROSS_YAW, YAW_STEP = np.pi / 2, 0.08
CLOSE_TICKS, OPEN_TICKS, TURN_TICKS, SETTLE_TICKS = 15, 12, 60, 20
#: The span from the head's grasp to the tail's when the tie is laid down (m): as held, within
#: these (the tail's grasp over the rest's overhang); before the tie is measured, the first.
LAY_SPAN = (0.185, 0.205)


class ZipTieResetSkill:
    """One reset of the zip tie (see the module doc); ``act`` until ``done`` or ``failed``."""

    def __init__(self, task: TaskSpec, seed: int, stage: str = 'start') -> None:
        if stage not in STAGES:
            raise ValueError(f"reset stage '{stage}' is unknown (stages: {', '.join(STAGES)})")
        from enpire_tasks.zip_tie.classic import ZipTieClassicEstimator

        self.task = task
        self.p = parts()
        self.estimator = ZipTieClassicEstimator(task)
        # the observation's key of each view's image (its source in the contract)
        self.image_keys = {v: next(k for k, f in task.observation.items()
                                   if f.source == f'camera/{v}/image_raw') for v in stages.VIEWS}
        self.home = home_action(task)
        self.low = np.asarray(task.action.low, dtype=np.float64)
        self.high = np.asarray(task.action.high, dtype=np.float64)
        x, y, _ = start_pose(seed)
        self.start = np.array([x, y])
        self.rail_z = self.p.rail_top_z
        self.lay = np.array([[x, y, self.rail_z + HEAD_DZ],
                             [x + LAY_SPAN[0], y, self.rail_z + TAIL_DZ]])
        self.phase, self.ticks = 'look', 0
        self.cmd: np.ndarray | None = None           # fingertip targets, left then right
        self.rpy = np.stack([DOWN, DOWN])
        self.grip = np.ones(2)
        self.goal: np.ndarray | None = None
        self.done = False
        self.failed = ''
        self.seen = ''
        self.parked = False
        self.settled = 0
        self.first_look = ''

    # -- perception -------------------------------------------------------------------------
    def _look(self, obs: Mapping[str, Any]) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        """(What the cameras and the fingers say: held | on_rails | threaded | lost, the
        head's position, the strap's far end)."""
        est = {v: self.estimator.estimate(np.asarray(obs[self.image_keys[v]]),
                                          self.task.views[v]) for v in stages.VIEWS}
        feats = {v: dict(e.features) for v, e in est.items() if e.found and e.features}
        head = stages.head_position(self.task, feats)
        far = stages.far_end(self.task, feats, head)
        if all(e.found and e.pose and e.pose[2] >= 0.5 for e in est.values()):
            return 'threaded', head, far
        ee = np.asarray(obs['ee_pose'], dtype=np.float64)
        holding = self._holding(obs)
        d_head = self._from_fingers(feats, 'head_uv', ee[0:3])
        d_far = self._from_fingers(feats, 'far_uv', ee[7:10])
        if not self.first_look:     # why a held tie was not taken as held: in the reason
            self.first_look = (
                f'first look: fingers holding left {holding[0]} right {holding[1]}; head '
                f'{_px(d_head)} from the left fingertips, far end {_px(d_far)} from the right '
                f'ones (held: < {IN_GRIP_PX:g} px)')
        if holding[0] and d_head < IN_GRIP_PX and d_far < IN_GRIP_PX:
            return 'held', head, far
        top = est['task_top']
        if top.found and top.pose and not any(holding):
            x, y = float(top.pose[0]), float(top.pose[1])
            lifted = head is not None and head[2] > self.rail_z + self.p.head_size[2] + \
                ON_RAIL_DZ
            if abs(x - self.start[0]) < ON_RAIL_X and not lifted:
                feat = feats.get('task_top', {})
                if feat.get('far_uv') is not None:
                    cam = self.estimator.cameras['task_top']
                    tip = cam.on_plane_z(*feat['far_uv'], self.rail_z)
                    return 'on_rails', np.array([x, y, self.rail_z + self.p.head_half[2]]), tip
        return 'lost', head, far

    @staticmethod
    def _holding(obs: Mapping[str, Any]) -> list[bool]:
        """Whether each gripper (left, right) holds something between its fingers."""
        joints = np.asarray(obs['joints'], dtype=np.float64)
        return [FINGER_HOLDING < joints[i] < FINGER_OPEN - 0.01 for i in (6, 13)]

    def _from_fingers(self, feats: Mapping[str, Mapping[str, Any]], key: str, tcp: np.ndarray
                      ) -> float:
        """How far (px) a view shows ``key`` (the head's centre, the strap's far end) from
        where the fingertips ``tcp`` are: the side view, else the top one (a gripper over the
        head hides most of it from above); inf when neither shows it. The fingers cannot tell:
        a strap pinched across its 1.2 mm stops them where nothing does."""
        for view in ('side', 'task_top'):
            if feats.get(view, {}).get(key) is not None:
                uv = self.estimator.cameras[view].project(tcp)
                return float(np.linalg.norm(np.asarray(feats[view][key]) - uv))
        return float('inf')

    # -- control ----------------------------------------------------------------------------
    def _toward(self, target: np.ndarray, speed: float) -> bool:
        d = target - self.cmd
        n = np.linalg.norm(d, axis=1, keepdims=True)
        self.cmd = np.where(n <= speed, target, self.cmd + d * (speed / np.maximum(n, 1e-9)))
        return bool(np.all(n <= speed))

    def _lift(self) -> bool:
        """Both fingertips straight up to CARRY_Z; True there."""
        up = self.cmd.copy()
        up[:, 2] = CARRY_Z
        return self._toward(up, SLOW)

    def _action(self) -> np.ndarray:
        a = self.home.copy()
        for i in (0, 1):
            a[7 * i:7 * i + 3] = self.cmd[i]
            a[7 * i + 3:7 * i + 6] = self.rpy[i]
            a[7 * i + 6] = self.grip[i]
        return np.clip(a, self.low, self.high)

    def _go(self, phase: str) -> None:
        self.phase, self.ticks = phase, 0

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        ee = np.asarray(obs['ee_pose'], dtype=np.float64)
        if self.cmd is None:
            self.cmd = np.stack([ee[0:3], ee[7:10]])
            self.rpy = np.stack([_canonical(ee[3:6]), _canonical(ee[10:13])])
            self.grip = np.array([ee[6], ee[13]], dtype=np.float64)
        self.ticks += 1
        if self.phase == 'look':
            # threaded or held: as found; anything else: looked at again with the arms
            # parked out of the cameras' way (a trial may end with a gripper over the tie)
            if self.parked or self._look(obs)[0] in ('threaded', 'held'):
                self._start(obs)
            else:
                self._go('park')
        elif self.phase == 'park':      # open, up and home: out of the cameras' way, then look
            self.grip[:] = 1.0
            up = self.cmd.copy()
            up[:, 2] = max(CARRY_Z, float(up[:, 2].max()))
            if self.ticks <= OPEN_TICKS:
                pass
            elif not np.allclose(self.cmd[:, 2], up[:, 2]):
                self._toward(up, SPEED)
            elif self._park_step():
                self.parked = True
                self._go('look')
        elif self.phase == 'turn':                  # on its rails: both grippers down, in place
            self.rpy = np.stack([DOWN, DOWN])       # (the per-tick IK turns a wrist where it
            measured = np.stack([ee[3:6], ee[10:13]])       # is; turning while travelling
            if np.all(np.abs(measured[:, 1] - DOWN[1]) < 0.1) or self.ticks > TURN_TICKS:
                self._go('above')                   # sent the arms astray, into each other)
        elif self.phase == 'above':
            there = self._toward(self.goal + [0.0, 0.0, 0.05], SPEED)
            if there:      # the left one turned a quarter about its axis there, gradually
                self.rpy[0, 2] = min(ACROSS_YAW, self.rpy[0, 2] + YAW_STEP)
            if there and self.rpy[0, 2] >= ACROSS_YAW:
                self._go('descend')
        elif self.phase == 'descend':
            if self._toward(self.goal, SLOW) and self.ticks > 3:
                self._go('pinch')
        elif self.phase == 'pinch':                  # the tail first, then the head
            self.grip[1] = 0.0
            if self.ticks >= CLOSE_TICKS:
                self.grip[0] = 0.0
            if self.ticks >= 2 * CLOSE_TICKS:
                self._go('up')
        elif self.phase == 'up':
            if self._lift() and self.ticks > SETTLE_TICKS:
                self._aim(obs, ee)
                self._go('carry')
        elif self.phase == 'carry':
            over = self.lay.copy()
            over[:, 2] = CARRY_Z
            if self._toward(over, SPEED):
                self._go('lower')
        elif self.phase == 'lower':
            if self._toward(self.lay, SLOW) and self.ticks > 3:
                self._go('release')
        elif self.phase == 'release':     # the head first: the tail let go first sprang the
            self.grip[0] = 1.0              # strap, which slid the head off its rail
            if self.ticks >= OPEN_TICKS:
                self.grip[1] = 1.0
            if self.ticks >= 2 * OPEN_TICKS:
                self._go('clear')
        elif self.phase == 'clear' and self._lift():
            self._go('unturn')
        elif self.phase == 'unturn':        # the left wrist's quarter turn undone, in place
            want = np.stack([DOWN, DOWN])
            self.rpy = self.rpy + np.clip(want - self.rpy, -YAW_STEP, YAW_STEP)
            measured = np.array([_canonical(ee[3:6])[2], _canonical(ee[10:13])[2]])
            if np.allclose(self.rpy, want) and (np.all(np.abs(measured) < 0.1)
                                                or self.ticks > TURN_TICKS):
                self._go('park_end')
        elif self.phase == 'park_end' and self._park_step():
            self._go('level')
        elif self.phase == 'level':         # at the sides, clear of the table: level again,
            want = np.stack([self.home[3:6], self.home[10:13]])     # then home, where a
            self.rpy = self.rpy + np.clip(want - self.rpy, -YAW_STEP / 2, YAW_STEP / 2)
            if np.allclose(self.rpy, want) and self.ticks > TURN_TICKS:   # trial starts
                self._go('home')
        elif self.phase == 'home':
            home = np.stack([self.home[0:3], self.home[7:10]])
            if self._toward(home, SPEED):
                self.settled += 1
                self.done = self.settled >= SETTLE_TICKS
        return self._action()

    def _aim(self, obs: Mapping[str, Any], ee: np.ndarray) -> None:
        """Set the lay-down targets from the held tie as the cameras and the arms measure it:

        - the tail's grasp as far from the head's as the grippers hold them now (a strap laid
          shorter than it is held buckled, and sprang the head off its rail when let go);
        - the head set down on its rail, not pressed into it: the left fingertips as high
          above the rail as the side camera sees the head hang below them.
        """
        span = float(np.linalg.norm(ee[7:9] - ee[0:2]))
        self.lay[1, 0] = self.lay[0, 0] + float(np.clip(span, *LAY_SPAN))
        side = self.estimator.estimate(np.asarray(obs[self.image_keys['side']]),
                                       self.task.views['side'])
        if not (side.found and side.features):
            return
        # the side camera looks along +y: the head's row gives its height at the
        # fingertips' depth (from above, the gripper hides it)
        cam, tcp = self.estimator.cameras['side'], ee[0:3]
        head = stages.at_depth(cam, side.features['head_uv'], stages.depth_of(cam, tcp))
        if head is None:
            return
        hang = float(np.clip(tcp[2] - head[2], 0.0, 0.02))
        self.lay[0, 2] = self.rail_z + self.p.head_half[2] + hang + LAY_GAP

    def _park_step(self) -> bool:
        """One tick towards the parking pose (PARK: up and out to the sides, clear of both
        cameras, the wrists as they are: the per-tick IK turning a wrist that points down back
        to level swung its fingers into the table); True once the command is there and the
        arms have had SETTLE_TICKS to follow it."""
        if not self._toward(PARK, SPEED):
            self.settled = 0
            return False
        self.settled += 1
        return self.settled >= SETTLE_TICKS

    def _start(self, obs: Mapping[str, Any]) -> None:
        seen, head, far = self._look(obs)
        self.seen = seen
        where = 'not seen' if head is None else f'at {np.round(head, 3).tolist()} m'
        if seen == 'threaded':
            self.failed = ('threaded: the tail is through the head; a real cell cuts the tie '
                           'and takes a new one')
        elif seen == 'held':
            self.grip[:] = 0.0
            self._go('up')
        elif seen == 'on_rails':
            back = head - far
            back[2] = 0.0
            n = float(np.linalg.norm(back))
            grasp = far + back * (TAIL_BACK / max(n, 1e-6))
            self.goal = np.array([[head[0], head[1], self.rail_z + HEAD_DZ],
                                  [grasp[0], grasp[1], self.rail_z + TAIL_DZ]])
            self.grip[:] = 1.0
            self._go('turn')
        else:
            self.failed = (f'fallen: the tie is neither held nor on its rails (head {where}); '
                           'the robot cannot pinch a strap lying flat on the table '
                           f'[{self.first_look}]')


def _px(d: float) -> str:
    return 'not seen' if not np.isfinite(d) else f'{d:.0f} px'


def _canonical(rpy: np.ndarray) -> np.ndarray:
    """A measured orientation in the form this skill turns: pointing down (pitch near
    pi/2), where roll and yaw are one turn about the pointing axis (R_z(yaw) R_y(pi/2)
    R_x(roll) = R_z(yaw - roll) R_y(pi/2)), as (0, pitch, yaw - roll) wrapped to (-pi, pi];
    any other as measured."""
    roll, pitch, yaw = (float(v) for v in rpy)
    if abs(pitch - np.pi / 2) > 0.25:
        return np.array([roll, pitch, yaw])
    return np.array([0.0, pitch, (yaw - roll + np.pi) % (2 * np.pi) - np.pi])


def reset_skill(task: TaskSpec, seed: int, stage: str = 'start') -> ZipTieResetSkill:
    return ZipTieResetSkill(task, seed, stage)


__all__ = ['STAGES', 'ZipTieResetSkill', 'reset_skill']
