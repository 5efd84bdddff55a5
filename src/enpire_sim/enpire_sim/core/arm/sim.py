"""The arm cell's simulation core (issue 10, first slice): MuJoCo, no ROS.

:class:`ArmSim` loads a scene (gym-aloha's bimanual ViperX vx300s plus a task's objects: a
task contract's ``scene.xml``), steps physics at the model's timestep (2 ms: 500 Hz) under
joint-position targets held for one control tick (30 Hz: 17 physics steps) and ramped at the
arms' profile speed, renders camera views offscreen with shadows, reflections and the skybox
off (3-5x faster on CPU, ../shared/notes/deps.md), solves end-effector pose targets with
mink's differential IK, and reports the contact forces the safety envelope needs. Object poses
are ground truth for the verifier's crosscheck and for resets; never a policy's observation.

:func:`gl_backend` picks the offscreen GL: ``MUJOCO_GL`` when set, else EGL where it works
(GPU or Mesa), else OSMesa; it must run before ``import mujoco``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError

ARMS = ('left', 'right')
#: Joints of one arm in actuator order (6 arm joints, then the two fingers).
ARM_JOINTS = ('waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate')
_PROBE = ('import mujoco; r = mujoco.Renderer(mujoco.MjModel.from_xml_string('
          '"<mujoco><worldbody><geom size=\'1\'/></worldbody></mujoco>"), 8, 8); r.render()')


@functools.cache
def gl_backend() -> tuple[str, str]:
    """(backend, why): the offscreen GL this process uses; sets ``MUJOCO_GL`` if unset."""
    if os.environ.get('MUJOCO_GL'):
        return os.environ['MUJOCO_GL'], 'MUJOCO_GL is set'
    for backend in ('egl', 'osmesa'):
        try:
            ok = subprocess.run([sys.executable, '-c', _PROBE], env={
                **os.environ, 'MUJOCO_GL': backend}, capture_output=True, timeout=60,
                check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            os.environ['MUJOCO_GL'] = backend
            return backend, f'{backend} rendered a probe scene'
    return 'none', 'neither EGL nor OSMesa can render here (install libegl1 or libosmesa6)'


def aloha_assets() -> Path:
    """gym-aloha's asset directory (the vx300s model and meshes), found without importing it
    (its package import needs gymnasium and dm_control; only its files are used)."""
    spec = importlib.util.find_spec('gym_aloha')
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError('the arm cell needs gym-aloha\'s vx300s model: pip install --no-deps '
                          'gym-aloha==0.1.5 (scripts/setup.sh does)')
    return Path(next(iter(spec.submodule_search_locations))) / 'assets'


#: gym-aloha's vx300s joints carry 30-60 (N m | N) of dry friction: its own envs drive the
#: arms through mocap welds, where that friction only steadies them. Under position servos
#: it is a dead band of up to 0.6 rad at the wrist (kp 50) and it freezes the fingers. A
#: real arm's servo loop overcomes its gearbox friction, so the cell keeps 1 (N m | N) and
#: adds viscous damping (N m s/rad) to settle the servos without overshoot.
JOINT_FRICTIONLOSS = 1.0
#: Servo setpoint speeds (the real arm's profile velocity): below the envelope's 3 rad/s.
JOINT_PROFILE_SPEED = 1.5       # rad/s
FINGER_PROFILE_SPEED = 0.15     # m/s: a full close in 0.25 s
#: Where a vx300s finger's pad meets the other's (m of finger travel; the fingers read 0.053
#: open there): the fingers' closed limit (see ArmSim._stop_fingers_at_the_pads).
FINGER_PADS_MEET = 0.0227
JOINT_DAMPING = 2.0


#: Finger pads (box half sizes, m): the vx300s finger meshes collide as their convex hulls,
#: one contact point per finger, about which a held part pivots (a pin swung 30-120 mm off
#: its hole in transit). A flat box at each fingertip, 0.5 mm proud of the finger's inner
#: face, gives a patch contact (several points with multiccd) and torsional friction; the
#: finger meshes then stop colliding.
PAD_HALF = (0.012, 0.001, 0.008)
#: The pad centre in the finger body's frame (left finger; the right one mirrors y): the
#: fingertip is 0.0853 m along x, the inner face at y = -0.0225 m.
PAD_POS = (0.0853 - 0.012 - 0.001, -0.0225 + 0.001 - 0.0005, 0.0)


def _add_finger_pads(spec: Any, mujoco: Any) -> None:
    for arm in ARMS:
        for side, sign in (('left', 1.0), ('right', -1.0)):
            body = spec.body(f'vx300s_{arm}/{side}_finger_link')
            if body is None:
                continue
            body.add_geom(name=f'vx300s_{arm}/{side}_pad', type=mujoco.mjtGeom.mjGEOM_BOX,
                          size=list(PAD_HALF),
                          pos=[PAD_POS[0], sign * PAD_POS[1], PAD_POS[2]],
                          friction=[1.5, 0.02, 0.001], condim=3, rgba=[0.15, 0.15, 0.15, 1],
                          solref=[0.004, 1.0], mass=0.0)
            for geom in body.geoms:
                if not geom.name.endswith('_pad'):
                    geom.contype, geom.conaffinity = 0, 0


#: Geoms of the scene given the rolling and torsional friction of a real table (MuJoCo's
#: condim 6; the coefficients are the pair's larger ones, the parts' own). Under the default
#: condim 3 nothing resists rolling: a pin lying on the table (head and shaft, a truncated
#: cone) rolls in circles for as long as the simulation runs, away from a gripper reaching
#: for it, where a real one stops within a fraction of a second.
ROLLING_SURFACES = ('table',)


def scene_path(name: str | Path) -> Path:
    """A scene file: ``name`` itself when it is an .xml path, else the scene of the task of
    that name (its contract's ``sim.scene``)."""
    if str(name).endswith('.xml'):
        return Path(name)
    from enpire_common.errors import UnknownNameError
    from enpire_common.tasks import load_task

    try:
        task = load_task(str(name))
    except UnknownNameError as exc:
        raise ConfigError(f"arm scene '{name}' not found: not an .xml path, and {exc}") from None
    scene = task.section('sim').get('scene')
    if not scene:
        raise ConfigError(f"task '{name}' names no sim.scene in its contract")
    return task.directory / str(scene)


def load_scene(name: str | Path) -> Any:
    """The MjModel of a scene file (or of a task's scene, :func:`scene_path`), with
    ``{ALOHA}`` resolved, finger pads added, the arms' joint friction made a servo's and the
    table given rolling friction (:data:`ROLLING_SURFACES`); ConfigError if absent or
    invalid."""
    import mujoco

    path = scene_path(name)
    if not path.is_file():
        raise ConfigError(f"arm scene '{path}' not found (a scene .xml path, or an arm task "
                          'whose contract names its sim.scene)')
    xml = path.read_text(encoding='utf-8').replace('{ALOHA}', str(aloha_assets()))
    with tempfile.TemporaryDirectory(prefix='enpire-scene-') as d:
        p = Path(d) / path.name
        p.write_text(xml, encoding='utf-8')
        try:
            spec = mujoco.MjSpec.from_file(str(p))
            _add_finger_pads(spec, mujoco)
            model = spec.compile()
        except ValueError as exc:
            raise ConfigError(f"arm scene '{path}' does not load: {exc}") from None
    for name in ROLLING_SURFACES:
        g = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)
        if g >= 0:
            model.geom_condim[g] = 6
    for j in range(model.njnt):
        if model.joint(j).name.startswith('vx300s_'):
            dof = model.jnt_dofadr[j]
            model.dof_frictionloss[dof] = JOINT_FRICTIONLOSS
            model.dof_damping[dof] = max(float(model.dof_damping[dof]), JOINT_DAMPING)
    # The arms' own controllers compensate gravity (Interbotix and YAM firmware do): without
    # it the wrist servos of gym-aloha's gains sag 0.2-0.3 rad under the gripper's weight.
    for b in range(model.nbody):
        if model.body(b).name.startswith('vx300s_'):
            model.body_gravcomp[b] = 1.0
    return model


class IKError(ConfigError):
    """An end-effector target the arm cannot reach (or not a finite pose)."""


@dataclass(frozen=True)
class Contact:
    """One contact: its two geoms, their bodies, the normal force (N)."""

    geoms: tuple[str, str]
    bodies: tuple[str, str]
    force: float


@dataclass(frozen=True)
class ArmSimConfig:
    """Scene, camera views and sizes, control rate, render flags."""

    scene: str = 'pin_insertion'    # a scene .xml path, or an arm task's name
    views: tuple[str, ...] = ('task_top', 'side', 'right_wrist')
    width: int = 320
    height: int = 240
    control_hz: float = 30.0
    fast_render: bool = True


class ArmSim:
    """One arm cell's physics and cameras (see the module doc)."""

    def __init__(self, config: ArmSimConfig | None = None) -> None:
        gl_backend()
        import mujoco

        self.mj = mujoco
        self.config = c = config or ArmSimConfig()
        self.model = load_scene(c.scene)
        self.data = mujoco.MjData(self.model)
        cams = {self.model.camera(i).name for i in range(self.model.ncam)}
        missing = [v for v in c.views if v not in cams]
        if missing:
            raise ConfigError(f'camera view(s) {missing} not in scene {c.scene!r} (it has '
                              f'{sorted(cams)})')
        self.substeps = max(1, round(1.0 / (c.control_hz * self.model.opt.timestep)))
        self._stop_fingers_at_the_pads()
        self.low = self.model.actuator_ctrlrange[:, 0].copy()
        self.high = self.model.actuator_ctrlrange[:, 1].copy()
        # Setpoint speed per actuator: rad/s for the arm joints, m/s for the fingers.
        self.profile_speed = np.array([
            FINGER_PROFILE_SPEED if self.model.joint(self.model.actuator(i).trnid[0])
            .name.endswith('_finger') else JOINT_PROFILE_SPEED for i in range(self.model.nu)])
        self._renderer: Any = None
        self._ik: dict[str, Any] = {}
        self.reset()

    def _stop_fingers_at_the_pads(self) -> None:
        """Each finger joint's closed limit where its pad meets the other's (the vx300s
        model's limit lets the pads overlap by millimetres: a grip whose part slips out
        slams them together and they pass each other, locked, and the gripper no longer
        opens). The actuators' range is unchanged: a closed command still squeezes a part
        as hard."""
        m = self.model
        for j in range(m.njnt):
            name = m.joint(j).name
            if not name.endswith('_finger') or not m.jnt_limited[j]:
                continue
            lo, hi = m.jnt_range[j]
            if hi > 0.0:                      # left finger: closes towards its lower limit
                m.jnt_range[j] = (max(lo, FINGER_PADS_MEET), hi)
            else:                             # right finger: mirrored
                m.jnt_range[j] = (lo, min(hi, -FINGER_PADS_MEET))

    # --- physics ---------------------------------------------------------------------------
    def reset(self) -> None:
        """The home keyframe (arms at rest, objects where the scene puts them)."""
        self.mj.mj_resetDataKeyframe(self.model, self.data, 0)
        self.mj.mj_forward(self.model, self.data)

    def step(self, targets: np.ndarray) -> None:
        """Hold joint-position ``targets`` (one per actuator) for one control tick.

        Raises:
            ConfigError: wrong shape, NaN, or outside the actuators' ranges (nothing moves).
        """
        t = np.asarray(targets, dtype=np.float64).reshape(-1)
        if t.shape != (self.model.nu,):
            raise ConfigError(f'joint targets have shape {t.shape}, the cell has '
                              f'{self.model.nu} actuators')
        if not np.all(np.isfinite(t)):
            raise ConfigError('joint targets contain NaN or inf')
        bad = np.flatnonzero((t < self.low - 1e-9) | (t > self.high + 1e-9))
        if bad.size:
            i = int(bad[0])
            raise ConfigError(f'joint target {i} = {t[i]:.4f} is outside its limits '
                              f'[{self.low[i]:.4f}, {self.high[i]:.4f}]')
        # The servo setpoints follow the targets at the arms' profile speed (Interbotix's
        # profile velocity): a target far away is a ramp, not a step the servos would chase
        # at several rad/s through the envelope's joint speed limit.
        start = self.data.ctrl.copy()
        dt = self.model.opt.timestep
        limit = self.profile_speed * dt * self.substeps
        end = start + np.clip(t - start, -limit, limit)
        chunks = self.substeps
        done = 0
        for k in range(1, chunks + 1):
            n = round(self.substeps * k / chunks) - done
            self.data.ctrl[:] = start + (end - start) * (k / chunks)
            self.mj.mj_step(self.model, self.data, nstep=n)
            done += n

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    def joint_positions(self) -> np.ndarray:
        return np.array([self.data.joint(self.model.actuator(i).trnid[0]).qpos[0]
                         for i in range(self.model.nu)])

    def targets(self) -> np.ndarray:
        return self.data.ctrl.copy()

    def body_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(position, quaternion wxyz) of a body: ground truth, never a policy input."""
        b = self.data.body(name)
        return b.xpos.copy(), b.xquat.copy()

    def ee_pose(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        """The gripper's pose (``vx300s_<arm>/gripper_link``)."""
        return self.body_pose(f'vx300s_{arm}/gripper_link')

    def contacts(self) -> list[Contact]:
        """The active contacts now: geoms, bodies and normal force (N)."""
        m, d = self.model, self.data
        f6 = np.zeros(6)
        out = []
        for i in range(d.ncon):
            con = d.contact[i]
            self.mj.mj_contactForce(m, d, i, f6)
            out.append(Contact(
                (m.geom(con.geom1).name, m.geom(con.geom2).name),
                (m.body(m.geom_bodyid[con.geom1]).name, m.body(m.geom_bodyid[con.geom2]).name),
                abs(float(f6[0]))))
        return out

    def max_contact_force(self, exclude: tuple[str, ...] = ()) -> float:
        """The largest normal contact force now (N), leaving out contacts of ``exclude``
        geoms."""
        return max((c.force for c in self.contacts()
                    if not any(n in exclude for n in c.geoms)), default=0.0)

    # --- cameras ---------------------------------------------------------------------------
    def _get_renderer(self) -> Any:
        """The one offscreen renderer of this sim (made on first use)."""
        if self._renderer is None:
            self._renderer = self.mj.Renderer(self.model, self.config.height,
                                              self.config.width)
        return self._renderer

    def render(self, view: str) -> np.ndarray:
        """One camera view, HxWx3 uint8 (shadows, reflections and skybox off if fast)."""
        r = self._get_renderer()
        r.update_scene(self.data, view)
        if self.config.fast_render:
            flags = self.mj.mjtRndFlag
            for f in (flags.mjRND_SHADOW, flags.mjRND_REFLECTION, flags.mjRND_SKYBOX):
                r.scene.flags[f] = 0
        return r.render()

    def render_all(self) -> dict[str, np.ndarray]:
        return {v: self.render(v) for v in self.config.views}

    def render_geoms(self, view: str) -> np.ndarray:
        """MuJoCo's segmentation render of one view: HxW int32, each pixel the id of the
        geom it shows, -1 where none is (sim-side labels only: training data, never an
        observation)."""
        r = self._get_renderer()
        r.update_scene(self.data, view)
        r.enable_segmentation_rendering()
        try:
            seg = r.render()
        finally:
            r.disable_segmentation_rendering()
        ids, types = seg[:, :, 0], seg[:, :, 1]
        geom = (types == int(self.mj.mjtObj.mjOBJ_GEOM)) & (ids >= 0)
        return np.where(geom, ids, -1).astype(np.int32)

    def name_id(self, kind: str, name: str) -> int:
        """The id of the scene's ``kind`` ('geom', 'body') named ``name``, -1 if none."""
        return int(self.mj.mj_name2id(self.model,
                                      getattr(self.mj.mjtObj, f'mjOBJ_{kind.upper()}'), name))

    # --- inverse kinematics ----------------------------------------------------------------
    def ik(self, arm: str, position: np.ndarray, quat: np.ndarray | None = None, *,
           iterations: int = 60, tol_m: float = 5e-4, tol_rad: float = 0.01,
           max_residual_m: float | None = None,
           seed_ctrl: np.ndarray | None = None) -> np.ndarray:
        """Joint targets that put ``arm``'s gripper at ``position`` (and ``quat``, wxyz).

        Differential IK with mink, from the current joints or, with ``seed_ctrl``, from those
        actuator targets (a controller warm-starts from its last command, so tracking error
        does not accumulate); the other arm keeps its targets. Stops at ``tol_m`` (and
        ``tol_rad`` of orientation when ``quat`` is given); a position residual
        up to ``max_residual_m`` (default ``tol_m``) is accepted as the best reachable.

        Raises:
            IKError (a ConfigError): an unknown arm, a NaN target, or one out of reach.
        """
        import mink

        if arm not in ARMS:
            raise ConfigError(f"arm '{arm}' is unknown (arms: {ARMS})")
        p = np.asarray(position, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise IKError(f'IK target position {position!r} is not 3 finite numbers')
        q0 = self.data.qpos.copy()
        if seed_ctrl is not None:
            for i in range(self.model.nu):
                q0[self.model.jnt_qposadr[self.model.actuator(i).trnid[0]]] = seed_ctrl[i]
        config, task, limits, tasks = self._ik_solver(arm, q0)
        frame = f'vx300s_{arm}/gripper_link'
        task.set_orientation_cost(0.0 if quat is None else 0.3)
        rot = (mink.SO3(np.asarray(quat, dtype=np.float64)) if quat is not None
               else mink.SO3.from_matrix(self.data.body(frame).xmat.reshape(3, 3)))
        task.set_target(mink.SE3.from_rotation_and_translation(rot, p))
        dt = 0.05
        err = np.inf
        for _ in range(iterations):
            vel = mink.solve_ik(config, tasks, dt, 'daqp', damping=1e-3, limits=limits)
            config.integrate_inplace(vel, dt)
            pose = config.get_transform_frame_to_world(frame, 'body')
            err = float(np.linalg.norm(pose.translation() - p))
            # the orientation too: stopping on position alone left a large turn half done
            # (and the fingertips, 0.1 m out along the gripper, centimetres off)
            turned = quat is None or float(np.linalg.norm(
                (rot.inverse() @ pose.rotation()).log())) < tol_rad
            if err < tol_m and turned:
                break
        if err >= (tol_m if max_residual_m is None else max_residual_m):
            raise IKError(f'IK target {p.round(4).tolist()} for the {arm} arm is out of '
                          f'reach (residual {err * 1000:.1f} mm)')
        out = (self.data.ctrl if seed_ctrl is None else np.asarray(seed_ctrl)).copy()
        for i in range(self.model.nu):
            jid = self.model.actuator(i).trnid[0]
            name = self.model.joint(jid).name
            if name.startswith(f'vx300s_{arm}/') and name.split('/')[-1] in ARM_JOINTS:
                out[i] = config.q[self.model.jnt_qposadr[jid]]
        return np.clip(out, self.low, self.high)

    def _ik_solver(self, arm: str, q0: np.ndarray) -> tuple[Any, Any, list[Any], list[Any]]:
        """The arm's IK problem, built once per arm (a controller solves it every tick): the
        configuration (set to ``q0``), its frame task, the joint limits, the task list."""
        import mink

        if arm not in self._ik:
            config = mink.Configuration(self.model)
            task = mink.FrameTask(f'vx300s_{arm}/gripper_link', 'body', position_cost=1.0,
                                  orientation_cost=0.3)
            self._ik[arm] = (config, task, [mink.ConfigurationLimit(self.model)], [task])
        config, task, limits, tasks = self._ik[arm]
        config.update(q0)
        return config, task, limits, tasks

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
