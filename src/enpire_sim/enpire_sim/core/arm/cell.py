"""A simulated arm cell of one task, without ROS: what the ``arm_cell`` node wraps.

:class:`ArmCell` reads the task contract: its ``sim`` section (scene file, the free object a
start places, its pose site, the start sites, the fingertip offset), its action space (``ee``:
end-effector targets solved by mink IK in the cell, see :mod:`enpire_tasks.arm`; or
``joint``), its views (the scene's cameras of those names) and the cell envelope of its
``safety.yaml``. Physics at the scene's timestep (500 Hz), one control tick per action
(30 Hz: 17 physics steps).

A tick refuses a malformed action (:class:`~enpire_sim.core.push_t.InvalidCommandError`
kinds NAN / SHAPE / BOUNDS, or IK for an unreachable pose) and nothing moves; after a tick the
envelope is checked (:mod:`.safety`), and a violation is returned for the node to turn into a
truncation plus hold. Object poses are ground truth: for the verifier's crosscheck and for
``place`` (the explicit ``sim_place`` fallback), never for a policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.tasks import TaskSpec
from enpire_sim.core.arm.safety import ArmEnvelope, Violation, check
from enpire_sim.core.arm.sim import ARM_JOINTS, ArmSim, ArmSimConfig, IKError
from enpire_sim.core.ports import InvalidCommandError, validate_action
from enpire_tasks import arm as conv
from enpire_tasks import registry

#: Finger joint range of the vx300s (m): gripper opening 0 (closed) .. 1 (open).
FINGER_CLOSED, FINGER_OPEN = 0.021, 0.057
#: Seconds a robot reset may take to move the arm out of a violation the trial left it in.
RECOVER_S = 1.5
CONTACT_KINDS = frozenset({'COLLISION', 'FORCE'})
#: Ticks in a row a robot reset may hold on an end-effector target the IK cannot reach.
IK_PATIENCE = 15
#: Sim seconds one robot-executed place may take (a pin stood up, laid down and stood up
#: again takes 35 s); the reset server's call timeout and the contract's reset budget allow
#: for it.
ROBOT_PLACE_S = 45.0
#: A reset that finds an arm's forearm roll beyond FLIP_ROLL (rad) first takes that arm home
#: in joint space (its wrist "flipped": the same fingertip pose with forearm roll and wrist
#: rotate half a turn round, a branch a failed reset's turn can leave it in, from which the
#: per-tick IK reaches little of the workspace), at most UNFLIP_STEP (rad) a tick per joint.
FLIP_ROLL, UNFLIP_STEP = 2.0, 0.04


@dataclass(frozen=True)
class SimSection:
    """The contract's ``sim`` section."""

    scene: Path
    object_body: str
    object_pose_site: str
    start_sites: tuple[str, ...]
    start_offset: tuple[float, float, float]
    tcp_offset: float

    @classmethod
    def of(cls, task: TaskSpec) -> SimSection:
        s = task.section('sim')
        where = f"task '{task.name}' sim section"
        try:
            scene = task.directory / str(s['scene'])
            out = cls(scene, str(s['object']), str(s['object_pose_site']),
                      tuple(str(x) for x in s['start_sites']),
                      tuple(float(v) for v in s.get('start_offset', (0.0, 0.0, 0.0))),
                      float(s.get('tcp_offset', 0.14)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f'{where} is incomplete or invalid ({exc}); it needs scene, '
                              'object, object_pose_site, start_sites') from None
        if not scene.is_file():
            raise ConfigError(f'{where}: scene file {scene} does not exist')
        if not out.start_sites:
            raise ConfigError(f'{where}: start_sites is empty')
        return out


def envelope_of(task: TaskSpec) -> ArmEnvelope:
    """The cell envelope of the task's safety.yaml (``cell:``), defaults where unset."""
    from enpire_common.config import load_yaml

    path = task.directory / 'safety.yaml'
    raw = (load_yaml(path) or {}).get('cell') or {} if path.is_file() else {}
    d = ArmEnvelope()
    try:
        return ArmEnvelope(
            workspace_low=tuple(float(v) for v in raw.get('workspace_low', d.workspace_low)),
            workspace_high=tuple(float(v) for v in raw.get('workspace_high',
                                                           d.workspace_high)),
            max_joint_velocity=float(raw.get('max_joint_velocity', d.max_joint_velocity)),
            max_contact_force=float(raw.get('max_contact_force', d.max_contact_force)),
            table_geom=str(raw.get('table_geom', d.table_geom)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'{path}: cell envelope is invalid ({exc})') from None


@dataclass
class GroundTruth:
    """Simulator truth of the task object (crosscheck, tests, ``place`` results)."""

    object_pose: tuple[float, ...]
    agent_pos: tuple[float, ...]
    goal_pose: tuple[float, ...]
    coverage: float       # the task score (GetGroundTruth's name for it)
    success: bool
    step: int
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)


class ArmCell:
    """One task's simulated arm cell (see the module doc)."""

    def __init__(self, task: TaskSpec, *, width: int | None = None,
                 height: int | None = None, fast_render: bool = True) -> None:
        self.task = task
        self.sim_cfg = SimSection.of(task)
        self.space = str(task.raw.get('action', {}).get('space', 'joint'))
        if self.space not in ('ee', 'joint'):
            raise ConfigError(f"task '{task.name}': action.space must be ee or joint, got "
                              f'{self.space!r}')
        self.views = tuple(task.views)
        first = next(iter(task.views.values()))
        self.sim = ArmSim(ArmSimConfig(
            scene=str(self.sim_cfg.scene), views=self.views,
            width=width or first.width_px, height=height or first.height_px,
            control_hz=task.action.rate_hz, fast_render=fast_render))
        self.model, self.data = self.sim.model, self.sim.data
        self.envelope = dataclasses.replace(envelope_of(task),
                                            tcp_offset=self.sim_cfg.tcp_offset)
        self.plugin = registry.get(task.name)
        self.low = np.asarray(task.action.low, dtype=np.float64)
        self.high = np.asarray(task.action.high, dtype=np.float64)
        self.seed = 0
        self.step_count = 0
        #: The envelope's violations of the last tick (empty: none).
        self.violations: list[Violation] = []
        #: During a robot reset: the part pairs a trial left wedged (see robot_place).
        self._wedged: set[frozenset[str]] = set()
        self._obj_adr = self._object_qpos_adr()
        self._act_index = self._actuator_index()
        self._targets = self.sim.targets()
        self._home_ctrl = self._solve_home()
        self.place(0)

    # --- conventions ---------------------------------------------------------------------
    def _object_qpos_adr(self) -> int:
        try:
            body = self.model.body(self.sim_cfg.object_body)
        except KeyError:
            raise ConfigError(f"sim.object '{self.sim_cfg.object_body}' is not a body of "
                              f'{self.sim_cfg.scene.name}') from None
        jnt = self.model.body_jntadr[body.id]
        if jnt < 0 or self.model.jnt_type[jnt] != 0:     # mjJNT_FREE
            raise ConfigError(f"sim.object '{self.sim_cfg.object_body}' has no free joint")
        return int(self.model.jnt_qposadr[jnt])

    def _actuator_index(self) -> dict[tuple[str, str], int]:
        """(arm, joint) -> actuator index."""
        idx = {}
        for i in range(self.model.nu):
            name = self.model.joint(self.model.actuator(i).trnid[0]).name
            idx[(name.split('/')[0].removeprefix('vx300s_'), name.split('/')[-1])] = i
        return idx

    def _solve_home(self) -> np.ndarray | None:
        """The actuator targets of the contract's ``home`` (ee tasks), solved once: a trial
        then starts where a policy's home command already is."""
        if self.space != 'ee' or 'home' not in self.task.raw:
            return None
        return self.targets_for(conv.home_action(self.task))

    def _tcp(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        b = self.data.body(f'vx300s_{arm}/gripper_link')
        rot = b.xmat.reshape(3, 3).copy()
        return b.xpos + rot @ np.array([self.sim_cfg.tcp_offset, 0.0, 0.0]), rot

    def _opening(self, arm: str) -> float:
        q = float(self.data.joint(f'vx300s_{arm}/left_finger').qpos[0])
        return (q - FINGER_CLOSED) / (FINGER_OPEN - FINGER_CLOSED)

    # --- state ---------------------------------------------------------------------------
    def ee_action(self) -> np.ndarray:
        """The measured end-effector poses in the action's terms (14)."""
        out = []
        for arm in conv.ARMS:
            p, rot = self._tcp(arm)
            out += [*p, *conv.matrix_to_rpy(arm, rot), self._opening(arm)]
        return np.asarray(out)

    def joint_vector(self) -> np.ndarray:
        """6 joints (rad) and the finger (m) per arm (14)."""
        out = []
        for arm in conv.ARMS:
            out += [float(self.data.joint(f'vx300s_{arm}/{j}').qpos[0]) for j in ARM_JOINTS]
            out.append(float(self.data.joint(f'vx300s_{arm}/left_finger').qpos[0]))
        return np.asarray(out)

    def agent_state(self) -> np.ndarray:
        """The state vector (names :data:`enpire_tasks.arm.STATE_NAMES`)."""
        return np.concatenate([self.ee_action(), self.joint_vector()])

    def tcp_poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each arm's fingertip position and orientation (world)."""
        return {arm: self._tcp(arm) for arm in conv.ARMS}

    # --- commands ------------------------------------------------------------------------
    def validate(self, action: Any) -> np.ndarray:
        """The action as float64, or InvalidCommandError (NAN / SHAPE / BOUNDS)."""
        return validate_action(action, self.low, self.high,
                               form=f'{self.low.size} numbers (the task\'s {self.space} action)')

    def targets_for(self, action: np.ndarray) -> np.ndarray:
        """Actuator targets of a validated action (IK for ``ee``); IKError if unreachable."""
        if self.space == 'joint':
            return self._joint_targets(action)
        ctrl = self._targets.copy()
        for arm, t in conv.split_action(action).items():
            goal, quat = self._ik_goal(t)
            ctrl = self.sim.ik(arm, goal, quat, iterations=30, tol_m=1e-3,
                               max_residual_m=0.01, seed_ctrl=ctrl)
            f = FINGER_CLOSED + float(np.clip(t.gripper, 0.0, 1.0)) * (FINGER_OPEN -
                                                                      FINGER_CLOSED)
            ctrl[self._act_index[(arm, 'left_finger')]] = f
            ctrl[self._act_index[(arm, 'right_finger')]] = -f
        return ctrl

    def _ik_goal(self, t: conv.ArmTarget) -> tuple[np.ndarray, np.ndarray]:
        """The IK's goal for one arm's fingertip target: its gripper link's position and
        orientation (quaternion)."""
        quat = np.zeros(4)
        self.sim.mj.mju_mat2Quat(quat, t.rotation.reshape(-1))
        return t.position - t.rotation @ np.array([self.sim_cfg.tcp_offset, 0.0, 0.0]), quat

    def _joint_targets(self, action: np.ndarray) -> np.ndarray:
        ctrl = self._targets.copy()
        for k, arm in enumerate(conv.ARMS):
            v = action[7 * k:7 * k + 7]
            for j, name in enumerate(ARM_JOINTS):
                ctrl[self._act_index[(arm, name)]] = v[j]
            ctrl[self._act_index[(arm, 'left_finger')]] = v[6]
            ctrl[self._act_index[(arm, 'right_finger')]] = -v[6]
        return np.clip(ctrl, self.sim.low, self.sim.high)

    def step(self, action: Any) -> np.ndarray:
        """Validate, solve and apply one control tick (the :class:`CellPort` step). Returns
        the agent state after it; the envelope's violations of the tick are in
        :attr:`violations` (empty: none).

        Raises:
            InvalidCommandError: the action is malformed, out of bounds or unreachable (kind
                IK); nothing moved.
        """
        a = self.validate(action)
        try:
            ctrl = self.targets_for(a)
        except IKError as exc:
            raise InvalidCommandError('IK', str(exc)) from None
        self._targets = ctrl
        self.sim.step(ctrl)
        return self._ticked()

    def _ticked(self) -> np.ndarray:
        self.step_count += 1
        self.violations = check(self.sim, self.envelope)
        return self.agent_state()

    def step_joints(self, targets: Any) -> np.ndarray:
        """One tick of joint-position targets (6 joints + finger m per arm, 14); as
        :meth:`step`."""
        try:
            t = np.asarray(targets, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidCommandError('SHAPE', 'joint targets are not numeric') from None
        if t.shape != (14,) or not np.all(np.isfinite(t)):
            raise InvalidCommandError('SHAPE' if t.shape != (14,) else 'NAN',
                                      'joint targets are 14 finite numbers (6 joints + '
                                      'finger per arm)')
        ctrl = self._joint_targets(t)
        try:
            self.sim.step(ctrl)
        except ConfigError as exc:
            raise InvalidCommandError('BOUNDS', str(exc)) from None
        self._targets = ctrl
        return self._ticked()

    def hold(self) -> None:
        """One tick holding the arms where they are now (after a violation: no push on)."""
        q = self.sim.joint_positions()
        self._targets = np.clip(q, self.sim.low, self.sim.high)
        self.sim.step(self._targets)
        self.step_count += 1

    # --- scene ---------------------------------------------------------------------------
    def place(self, seed: int, object_pose: Any = None) -> GroundTruth:
        """``sim_place``: the scene's home (arms at rest) with the object at the start of
        ``seed`` (or standing at ``object_pose``'s xy), settled for 0.3 s. Teleports: the
        explicit fallback the trial records as ``sim_place``."""
        self.sim.reset()
        self._arms_home()
        site = self.sim_cfg.start_sites[int(seed) % len(self.sim_cfg.start_sites)]
        if object_pose is not None and len(object_pose) >= 2:
            base = np.array([float(object_pose[0]), float(object_pose[1]),
                             float(self.data.site(site).xpos[2])])
        else:
            base = self.data.site(site).xpos.copy()
        adr = self._obj_adr
        self.data.qpos[adr:adr + 3] = base + np.asarray(self.sim_cfg.start_offset)
        self.data.qpos[adr + 3:adr + 7] = (1.0, 0.0, 0.0, 0.0)
        self.data.qvel[:] = 0.0
        self.sim.mj.mj_forward(self.model, self.data)
        self._targets = self.sim.targets()
        for _ in range(max(1, round(0.3 * self.task.action.rate_hz))):
            self.sim.step(self._targets)
        self.violations = []
        self.seed = int(seed)
        self.step_count = 0
        return self.ground_truth()

    def robot_place(self, seed: int, stage: str = 'start', *, max_ticks: int | None = None,
                    on_tick: Any = None) -> tuple[GroundTruth, str]:
        """The robot-executed reset: run the task's reset skill (its plugin's) from where
        the scene is now until it is done, with the skill seeing what a policy sees (the
        contract's cameras and the arm state). ``on_tick()`` after every tick (the node
        publishes). Returns the ground truth after it and ``'robot'``.

        Raises:
            ResetFailedError: the task has no skill, the skill gave up (its reason), or it
                ran past ``max_ticks``; the scene stays as the robot left it.
        """
        from enpire_common.errors import ResetFailedError

        if self.plugin.reset_skill is None:
            raise ResetFailedError(f"task '{self.task.name}' has no robot reset skill; use "
                                   'the sim_place strategy')
        stage = stage or 'start'
        if stage not in self.plugin.reset_stages:
            raise ConfigError(f"reset stage '{stage}' is unknown for '{self.task.name}' "
                              f"(stages: {', '.join(self.plugin.reset_stages)})")
        skill = self.plugin.reset_skill(self.task, int(seed), stage)
        if max_ticks is None:
            max_ticks = round(ROBOT_PLACE_S * self.task.action.rate_hz)
        # A trial that tripped the envelope leaves the arm where it tripped it (a gripper on
        # the table, out of the workspace): the reset's first move takes it out, so what was
        # already violated at the start may go on for RECOVER_S, and nothing new may start.
        # A part the trial wedged into a fixture (a card jammed askew in its slot) presses on
        # it with whatever force the jam holds (in simulation thousands of newtons of
        # penetration), for as long as it stays jammed, and more while the robot works it
        # loose. No robot sensor feels that force and the reset did not cause it: the robot's
        # own contacts are what is limited. Once the parts part, their pair is checked again
        # (not when the force dips under the limit: a jam's force swings round it, and a
        # swing back over it tripped a reset that the 1.5 s allowance had let through).
        found = check(self.sim, self.envelope)
        self._wedged = {frozenset(v.bodies) for v in found if v.kind == 'FORCE' and v.robot_free}
        before = {v.kind for v in found if not self._exempt(v)}
        if before & CONTACT_KINDS:          # a touch and its force come and go together
            before |= CONTACT_KINDS
        recover_ticks = round(RECOVER_S * self.task.action.rate_hz)

        def caused(v: Violation, tick: int) -> bool:
            return not self._exempt(v) and (tick >= recover_ticks or v.kind not in before)

        try:
            return self._run_skill(skill, seed, max_ticks, caused, on_tick)
        finally:
            self._wedged = set()

    def _exempt(self, v: Violation) -> bool:
        """Is ``v`` the force of a part the trial left wedged (see :meth:`robot_place`)?"""
        return v.kind == 'FORCE' and v.robot_free and frozenset(v.bodies) in self._wedged

    def _run_skill(self, skill: Any, seed: int, max_ticks: int, caused: Any,
                   on_tick: Any) -> tuple[GroundTruth, str]:
        """:meth:`robot_place`'s loop: ``skill`` until done, failed or ``max_ticks``;
        ``caused(violation, tick)`` says which violations end it."""
        from enpire_common.errors import ResetFailedError

        self._unflip(on_tick)
        refused = 0
        for tick in range(max_ticks):
            action = skill.act(self.observe(tick))
            if skill.done or skill.failed:
                break
            try:
                self.step(action)
                refused = 0
            except InvalidCommandError as exc:
                # a target the IK cannot reach this tick (a fast move or turn can outrun it)
                # is held for a moment; one it cannot reach from this wrist branch at all is
                # reached by a planned joint move; a standing one, or any other refusal,
                # ends the reset
                if exc.kind == 'IK' and refused == 0 and \
                        self._reconfigure(self.validate(action), on_tick):
                    continue
                refused += 1
                if exc.kind != 'IK' or refused > IK_PATIENCE:
                    raise ResetFailedError(f'the reset skill sent a refused command: {exc}') \
                        from None
                self.hold()
            if self._wedged:            # exempt while the parts stay in contact at all
                self._wedged &= {frozenset(c.bodies) for c in self.sim.contacts()}
            if violations := [v for v in self.violations if caused(v, tick)]:
                raise ResetFailedError(f'the reset tripped the safety envelope: '
                                       f'{violations[0].kind}: {violations[0].detail}')
            if on_tick is not None:
                on_tick()
        if not skill.done:
            raise ResetFailedError(f'robot reset of seed {seed} failed: '
                                   f'{skill.failed or f"not done in {max_ticks} ticks"}')
        self.seed = int(seed)
        self.step_count = 0
        return self.ground_truth(), 'robot'

    def _unflip(self, on_tick: Any = None) -> None:
        """Each arm whose wrist is flipped (see FLIP_ROLL) home in joint space, along a
        collision-free path: straight in joint space where that is clear, else the planning
        port's plan; left as it is when neither is found (the skill then tries from there),
        or stopped where the envelope trips."""
        if self._home_ctrl is None:
            return
        for arm in conv.ARMS:
            idx = [self._act_index[(arm, j)] for j in ARM_JOINTS]
            q = self.sim.joint_positions()[idx]
            if abs(q[ARM_JOINTS.index('forearm_roll')]) < FLIP_ROLL:
                continue
            if self._joint_move(arm, self._home_ctrl[idx], on_tick) is False:
                return                      # the envelope tripped

    def _joint_move(self, arm: str, goal: np.ndarray, on_tick: Any = None) -> bool | None:
        """``arm`` from its joints now to ``goal`` (6 joint positions) along a collision-free
        path carrying what it grips, a quarter as fast while gripping (a fast swing shakes a
        part loose): True there, False where the envelope tripped on the way, None when
        there is no path (nothing moved)."""
        idx = [self._act_index[(arm, j)] for j in ARM_JOINTS]
        held = self._held_by(arm)
        path = self._joint_path(arm, self.sim.joint_positions()[idx], goal, held)
        if path is None:
            return None
        return self._move_joints(arm, path, on_tick, UNFLIP_STEP / 4 if held else UNFLIP_STEP)

    def _joint_path(self, arm: str, start: np.ndarray, goal: np.ndarray,
                    attached: tuple[str, ...] = ()) -> np.ndarray | None:
        """A collision-free joint path of ``arm`` (waypoints) from ``start`` to ``goal``,
        carrying ``attached``: straight where that is clear, else OMPL's against the
        simulation's own collision model (the sim's world; a real cell plans in its own
        scene); None when there is none."""
        from enpire_common.errors import EnpireError
        from enpire_sim.core.arm.planning import OmplPlanner

        env = self.envelope
        planner = OmplPlanner(self.sim, workspace=(
            env.tcp_offset, np.asarray(env.workspace_low), np.asarray(env.workspace_high)))
        line = [start + (goal - start) * f for f in np.linspace(0.0, 1.0, 60)]
        if all(planner.valid(arm, q, attached) for q in line):
            return np.array([start, goal])
        try:
            return planner.plan(arm, start, goal, timeout_s=2.0, attached=attached)
        except EnpireError:
            return None

    def _move_joints(self, arm: str, path: np.ndarray, on_tick: Any = None,
                     step: float = UNFLIP_STEP) -> bool:
        """Follow ``arm``'s joint ``path`` at most ``step`` (rad) a tick per joint (the other
        arm and the fingers hold their targets); False where the envelope trips (then
        held)."""
        idx = [self._act_index[(arm, j)] for j in ARM_JOINTS]
        ctrl = self._targets.copy()
        for a, b in zip(path[:-1], path[1:], strict=True):
            n = max(1, int(np.ceil(float(np.abs(b - a).max()) / step)))
            for k in range(1, n + 1):
                ctrl[idx] = a + (b - a) * (k / n)
                self.sim.step(ctrl)
                self._targets = ctrl.copy()
                self._ticked()
                if on_tick is not None:
                    on_tick()
                if any(not self._exempt(v) for v in self.violations):
                    self.hold()
                    return False
        return True

    def _held_by(self, arm: str) -> tuple[str, ...]:
        """The task object, when both of ``arm``'s fingers touch it (gripped: it moves with
        the gripper; one finger brushing it does not hold it)."""
        m, d = self.model, self.data
        obj = m.body(self.sim_cfg.object_body).id
        fingers = {m.body(f'vx300s_{arm}/{f}_finger_link').id for f in ('left', 'right')}
        touching = set()
        for i in range(d.ncon):
            b1, b2 = m.geom_bodyid[d.contact[i].geom1], m.geom_bodyid[d.contact[i].geom2]
            other = b2 if b1 == obj else b1 if b2 == obj else None
            if other in fingers:
                touching.add(other)
        return (self.sim_cfg.object_body,) if touching == fingers else ()

    def _reconfigure(self, action: np.ndarray, on_tick: Any = None) -> bool:
        """An ee target the per-tick IK cannot reach from the arm's current joints (a wrist
        branch that joint limits close off) but can from the home posture: move the arm
        there in joint space, along a collision-free path carrying what it holds, as a real
        cell's planner would. True when every arm now reaches its target."""
        moved = False
        for arm, t in conv.split_action(action).items():
            goal, quat = self._ik_goal(t)
            try:
                self.sim.ik(arm, goal, quat, iterations=30, tol_m=1e-3, max_residual_m=0.01,
                            seed_ctrl=self._targets)
                continue
            except IKError:
                pass
            if self._home_ctrl is None:
                return False
            try:
                ctrl = self.sim.ik(arm, goal, quat, iterations=300, tol_m=1e-3,
                                   seed_ctrl=self._home_ctrl)
            except IKError:
                return False
            idx = [self._act_index[(arm, j)] for j in ARM_JOINTS]
            if not self._joint_move(arm, ctrl[idx], on_tick):
                return False
            moved = True
        return moved

    def observe(self, tick: int) -> Any:
        """What a policy (or a reset skill) sees now: the contract's cameras rendered and the
        arm state, built by the task plugin, at ``tick``."""
        from enpire_tasks.plugin import CellReading

        sources = {f.source for f in self.task.observation.values()
                   if f.source.startswith('camera/')}
        images = {src: self.render(src.split('/')[1]) for src in sources}
        state = dict(zip(conv.STATE_NAMES, self.agent_state().tolist(), strict=True))
        return self.plugin.build_observation(self.task, CellReading(images=images, state=state,
                                                                    tick=tick))

    def _arms_home(self) -> None:
        """Put the arms at the contract's ``home`` (see :meth:`_solve_home`)."""
        ctrl = self._home_ctrl
        if ctrl is None:
            return
        for i in range(self.model.nu):
            self.data.qpos[self.model.jnt_qposadr[self.model.actuator(i).trnid[0]]] = ctrl[i]
        self.data.ctrl[:] = ctrl
        self.data.qvel[:] = 0.0
        self.sim.mj.mj_forward(self.model, self.data)

    def set_object(self, position: Any, quat: Any = (1.0, 0.0, 0.0, 0.0),
                   settle_ticks: int = 15) -> GroundTruth:
        """Teleport the task object's body (sim-only tools: crosschecks, tests), then let
        it settle with the arms holding."""
        adr = self._obj_adr
        self.data.qpos[adr:adr + 3] = np.asarray(position, dtype=np.float64)
        self.data.qpos[adr + 3:adr + 7] = np.asarray(quat, dtype=np.float64)
        self.data.qvel[:] = 0.0
        self.sim.mj.mj_forward(self.model, self.data)
        for _ in range(settle_ticks):
            self.hold()
        return self.ground_truth()

    def set_joints(self, qpos: Mapping[str, Any], settle_ticks: int = 0) -> GroundTruth:
        """Set named joints' positions (a ball joint's quaternion, a hinge's angle), e.g. a
        deformable part's shape (sim-only tools: crosschecks, tests), then let it settle
        ``settle_ticks`` with the arms holding; ConfigError for a joint the scene lacks or a
        value of the wrong size."""
        mj = self.sim.mj
        sizes = {int(mj.mjtJoint.mjJNT_FREE): 7, int(mj.mjtJoint.mjJNT_BALL): 4}
        for name, value in qpos.items():
            j = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_JOINT, name)
            if j < 0:
                raise ConfigError(f'joint {name!r} is not in the scene')
            v = np.asarray(value, dtype=np.float64).reshape(-1)
            n = sizes.get(int(self.model.jnt_type[j]), 1)
            if v.size != n or not np.all(np.isfinite(v)):
                raise ConfigError(f'joint {name!r} takes {n} finite value(s), not {v.size}')
            adr = self.model.jnt_qposadr[j]
            self.data.qpos[adr:adr + n] = v
        self.data.qvel[:] = 0.0
        mj.mj_forward(self.model, self.data)
        for _ in range(settle_ticks):
            self.hold()
        return self.ground_truth()

    def sim_state(self) -> np.ndarray:
        """The simulator's whole integration state (sim-only tools: saving a failed reset's
        start to replay it)."""
        mj = self.sim.mj
        spec = mj.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mj.mj_stateSize(self.model, spec))
        mj.mj_getState(self.model, self.data, state, spec)
        return state

    def set_sim_state(self, state: Any) -> None:
        """Restore a :meth:`sim_state` (the arms hold the controls it had)."""
        mj = self.sim.mj
        spec = mj.mjtState.mjSTATE_INTEGRATION
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (mj.mj_stateSize(self.model, spec),):
            raise ConfigError(f'a saved state of {state.size} values does not fit this scene '
                              f'({mj.mj_stateSize(self.model, spec)})')
        mj.mj_setState(self.model, self.data, state, spec)
        mj.mj_forward(self.model, self.data)
        self._targets = self.data.ctrl.copy()

    def object_pose(self) -> tuple[float, ...]:
        if self.plugin.sim_object_pose is not None:
            return tuple(float(v) for v in self.plugin.sim_object_pose(self.model, self.data))
        p = self.data.site(self.sim_cfg.object_pose_site).xpos
        return tuple(float(v) for v in p)

    def ground_truth(self) -> GroundTruth:
        pose = self.object_pose()
        goal = tuple(float(v) for v in self.task.goal_pose)
        score = float(self.plugin.score(pose, goal))
        p, _ = self._tcp('right')
        extra = (dict(self.plugin.sim_truth(self.model, self.data))
                 if self.plugin.sim_truth is not None else {})
        return GroundTruth(pose, tuple(float(v) for v in p), goal, score,
                           score > self.task.success_threshold, self.step_count, self.seed,
                           extra=extra)

    def reset(self, seed: int | None = None, object_pose: Any = None,
              agent_pos: Any = None) -> np.ndarray:
        """The :class:`CellPort` reset: :meth:`place` (``sim_place``) and the agent state.

        Raises:
            ConfigError: ``agent_pos`` given (the arms start at the contract's home).
        """
        if agent_pos is not None:
            raise ConfigError('an arm cell starts its arms at the contract\'s home; '
                              'agent_pos is not supported')
        self.place(0 if seed is None else int(seed), object_pose)
        return self.agent_state()

    def render(self, view: str | None = None) -> np.ndarray:
        """One camera's image (default: the contract's first view)."""
        return self.sim.render(view or self.views[0])

    def render_all(self) -> dict[str, np.ndarray]:
        return self.sim.render_all()

    def instance_masks(self, view: str, parts: Mapping[str, str]) -> dict[str, np.ndarray]:
        """The pixels of ``view`` that show each part, from MuJoCo's segmentation render:
        ``{label: HxW bool}`` for ``parts`` (label -> a scene geom, or a scene body and the
        bodies below it). A pixel belongs to its geom's label when the geom is named, else
        to the nearest labelled body above it: a part mounted on another (a latch on its
        connector) or a named geom of a labelled body (a card's cooler) is its own. Labels
        for training data and crosschecks; never an observation.

        Raises:
            ConfigError: the scene has no geom or body of that name.
        """
        m = self.model
        labels = list(parts)
        geoms: dict[int, int] = {}
        roots: dict[int, int] = {}
        for k, name in enumerate(labels):
            gid, bid = (self.sim.name_id(kind, parts[name]) for kind in ('geom', 'body'))
            if gid >= 0:
                geoms[gid] = k
            elif bid >= 0:
                roots[bid] = k
            else:
                raise ConfigError(f"the scene has no geom or body '{parts[name]}' (part "
                                  f"'{name}')")
        by_body = np.full(m.nbody, -1, dtype=np.int32)      # body -> label index
        for b in range(m.nbody):
            a = b
            while a not in roots and a != 0:
                a = int(m.body_parentid[a])
            by_body[b] = roots.get(a, -1)
        owner = by_body[m.geom_bodyid]                      # geom -> label index
        for gid, k in geoms.items():
            owner[gid] = k
        seg = self.sim.render_geoms(view)
        lut = np.append(owner, -1)                          # -1 (no geom) -> index ngeom
        idx = lut[np.where(seg < 0, m.ngeom, seg)]
        return {label: idx == k for k, label in enumerate(labels)}

    @property
    def time_s(self) -> float:
        return self.sim.time_s

    def close(self) -> None:
        self.sim.close()


def make_arm_cell(task: TaskSpec, **options: Any) -> ArmCell:
    """The ``enpire.sim_cells`` factory (crosschecks): ``renderer`` is ignored (MuJoCo)."""
    options.pop('renderer', None)
    return ArmCell(task, **options)


__all__ = ['ArmCell', 'GroundTruth', 'SimSection', 'envelope_of', 'make_arm_cell']
