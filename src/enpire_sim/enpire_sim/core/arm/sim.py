"""The arm cell's simulation core (issue 10, first slice): MuJoCo, no ROS.

:class:`ArmSim` loads a scene (gym-aloha's bimanual ViperX vx300s plus a task's objects, see
``scenes/``), steps physics at the model's timestep (2 ms: 500 Hz) under joint-position
targets held for one control tick (30 Hz: 17 physics steps), renders camera views offscreen
with shadows, reflections and the skybox off (3-5x faster on CPU, ../shared/notes/deps.md),
solves end-effector pose targets with mink's differential IK, and reports the contact forces
the safety envelope needs. Object poses are ground truth for the verifier's crosscheck and
for resets; they are never part of a policy's observation.

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

SCENES = Path(__file__).resolve().parent / 'scenes'
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


def load_scene(name: str) -> Any:
    """The MjModel of ``scenes/<name>.xml`` (``{ALOHA}`` resolved); ConfigError if absent."""
    import mujoco

    path = SCENES / f'{name}.xml'
    if not path.is_file():
        known = sorted(p.stem for p in SCENES.glob('*.xml'))
        raise ConfigError(f"arm scene '{name}' not found (known: {', '.join(known)})")
    xml = path.read_text(encoding='utf-8').replace('{ALOHA}', str(aloha_assets()))
    with tempfile.TemporaryDirectory(prefix='enpire-scene-') as d:
        p = Path(d) / f'{name}.xml'
        p.write_text(xml, encoding='utf-8')
        try:
            return mujoco.MjModel.from_xml_path(str(p))
        except ValueError as exc:
            raise ConfigError(f"arm scene '{name}' does not load: {exc}") from None


@dataclass(frozen=True)
class Contact:
    """One contact: its two geoms, their bodies, the normal force (N)."""

    geoms: tuple[str, str]
    bodies: tuple[str, str]
    force: float


@dataclass(frozen=True)
class ArmSimConfig:
    """Scene, camera views and sizes, control rate, render flags."""

    scene: str = 'pin_insertion'
    views: tuple[str, ...] = ('top', 'side', 'right_wrist')
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
        self.low = self.model.actuator_ctrlrange[:, 0].copy()
        self.high = self.model.actuator_ctrlrange[:, 1].copy()
        self._renderer: Any = None
        self._ik: dict[str, Any] = {}
        self.reset()

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
        self.data.ctrl[:] = t
        self.mj.mj_step(self.model, self.data, nstep=self.substeps)

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
    def render(self, view: str) -> np.ndarray:
        """One camera view, HxWx3 uint8 (shadows, reflections and skybox off if fast)."""
        if self._renderer is None:
            self._renderer = self.mj.Renderer(self.model, self.config.height,
                                              self.config.width)
        r = self._renderer
        r.update_scene(self.data, view)
        if self.config.fast_render:
            flags = self.mj.mjtRndFlag
            for f in (flags.mjRND_SHADOW, flags.mjRND_REFLECTION, flags.mjRND_SKYBOX):
                r.scene.flags[f] = 0
        return r.render()

    def render_all(self) -> dict[str, np.ndarray]:
        return {v: self.render(v) for v in self.config.views}

    # --- inverse kinematics ----------------------------------------------------------------
    def ik(self, arm: str, position: np.ndarray, quat: np.ndarray | None = None, *,
           iterations: int = 60, tol_m: float = 5e-4) -> np.ndarray:
        """Joint targets that put ``arm``'s gripper at ``position`` (and ``quat``, wxyz).

        Differential IK with mink from the current joints; the other arm keeps its targets.

        Raises:
            ConfigError: an unknown arm, a NaN target, or one out of reach (the residual
                stays above ``tol_m``).
        """
        import mink

        if arm not in ARMS:
            raise ConfigError(f"arm '{arm}' is unknown (arms: {ARMS})")
        p = np.asarray(position, dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ConfigError(f'IK target position {position!r} is not 3 finite numbers')
        config = mink.Configuration(self.model, self.data.qpos.copy())
        frame = f'vx300s_{arm}/gripper_link'
        task = mink.FrameTask(frame, 'body', position_cost=1.0,
                              orientation_cost=0.0 if quat is None else 0.3)
        rot = (mink.SO3(np.asarray(quat, dtype=np.float64)) if quat is not None
               else mink.SO3.from_matrix(self.data.body(frame).xmat.reshape(3, 3)))
        task.set_target(mink.SE3.from_rotation_and_translation(rot, p))
        limits = [mink.ConfigurationLimit(self.model)]
        dt = 0.05
        err = np.inf
        for _ in range(iterations):
            vel = mink.solve_ik(config, [task], dt, 'daqp', damping=1e-3, limits=limits)
            config.integrate_inplace(vel, dt)
            err = float(np.linalg.norm(config.get_transform_frame_to_world(
                frame, 'body').translation() - p))
            if err < tol_m:
                break
        if err >= tol_m:
            raise ConfigError(f'IK target {p.round(4).tolist()} for the {arm} arm is out of '
                              f'reach (residual {err * 1000:.1f} mm)')
        out = self.data.ctrl.copy()
        for i in range(self.model.nu):
            jid = self.model.actuator(i).trnid[0]
            name = self.model.joint(jid).name
            if name.startswith(f'vx300s_{arm}/') and name.split('/')[-1] in ARM_JOINTS:
                out[i] = config.q[self.model.jnt_qposadr[jid]]
        return np.clip(out, self.low, self.high)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
