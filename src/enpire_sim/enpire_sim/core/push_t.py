"""Push-T simulated cell on gym-pusht's own physics (pymunk), without ROS.

Physics, seeding and the coverage/success rule are gym-pusht's: :class:`PushTSim` wraps
``gym_pusht.envs.PushTEnv`` directly and only adds what a cell needs (explicit placement,
command validation against the task's safety envelope, a marker-free camera image and a
ground-truth record). The camera is either gym-pusht's own renderer (``renderer='gym-pusht'``,
bit for bit) or an area-sampled, anti-aliased one (``renderer='area'``, the default, see
:mod:`enpire_tasks.push_t.render`, the task plugin's camera model): the same scene, but the
image moves with sub-pixel motion of the block, as a real camera's does. Units: workspace
pixels of the 512 x 512 table, y down, radians.

Pose convention: ``object_pose = (x_px, y_px, theta_rad)`` is the T body's origin (the
centre of the top bar's lower edge, gym-pusht's ``info['block_pose']``) with theta wrapped to
[-pi, pi).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from enpire_common.errors import ConfigError, UnknownNameError
from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_sim.core import ports
from enpire_sim.core.ports import InvalidCommandError as InvalidCommandError  # re-exported
from enpire_tasks.push_t.observation import STATE_NAMES as STATE_NAMES  # re-exported
from enpire_tasks.push_t.render import RENDERER_AREA, RENDERERS, AreaRenderer

if TYPE_CHECKING:
    from collections.abc import Sequence



@dataclass(frozen=True)
class GroundTruth:
    """Simulator truth of a Push-T cell (sim only; never for policies).

    Attributes:
        object_pose: T block pose (x_px, y_px, theta_rad).
        agent_pos: pusher position (x_px, y_px).
        goal_pose: goal pose (x_px, y_px, theta_rad).
        coverage: fraction of the goal region covered by the block, [0, 1] (gym-pusht).
        success: ``coverage > success_threshold`` (gym-pusht's rule, threshold from the task).
        step: control steps since the last reset.
        seed: seed of the last reset (-1 when placed explicitly without a seed).
    """

    object_pose: tuple[float, float, float]
    agent_pos: tuple[float, float]
    goal_pose: tuple[float, float, float]
    coverage: float
    success: bool
    step: int
    seed: int


def wrap_angle(theta: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (theta + math.pi) % (2.0 * math.pi) - math.pi


def validate_action(action: object, low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    """:func:`enpire_sim.core.ports.validate_action` for a Push-T command ``[x_px, y_px]``."""
    return ports.validate_action(action, low, high, form='[x_px, y_px]', unit=' px')


def _make_env(width_px: int, height_px: int):
    with warnings.catch_warnings():
        # pygame/pkg_resources deprecation chatter on import is not ours to fix.
        warnings.simplefilter('ignore', DeprecationWarning)
        from gym_pusht.envs import PushTEnv

    class _PushTEnv(PushTEnv):
        """gym-pusht 0.1.8's env, its scene built without the collision handler.

        ``PushTEnv._setup`` (every reset: a new pymunk space) adds a handler that only
        counts contact points (``n_contacts`` in its step info; nothing here reads it).
        pymunk 6.11 never frees the native memory of a space that had a handler: ~58 KB a
        reset (240 episodes: +14 MB; without it +1 MB), which grew a soak cell's RSS by
        ~90% an hour. This is ``_setup`` line for line, less the handler; the scene test
        (test_push_t_sim.py) checks it against bare gym-pusht.
        """

        def _setup(self) -> None:
            import pymunk

            self.space = pymunk.Space()
            self.space.gravity = 0, 0
            self.space.damping = self.damping if self.damping is not None else 0.0
            self.teleop = False
            self.space.add(
                self.add_segment(self.space, (5, 506), (5, 5), 2),
                self.add_segment(self.space, (5, 5), (506, 5), 2),
                self.add_segment(self.space, (506, 5), (506, 506), 2),
                self.add_segment(self.space, (5, 506), (506, 506), 2))
            self.agent = self.add_circle(self.space, (256, 400), 15)
            self.block, self._block_shapes = self.add_tee(self.space, (256, 300), 0)
            self.goal_pose = np.array([256, 256, np.pi / 4])
            if self.block_cog is not None:
                self.block.center_of_gravity = self.block_cog
            self.n_contact_points = 0       # never counted (see the class docstring)

    return _PushTEnv(obs_type='state', render_mode='rgb_array',
                     observation_width=width_px, observation_height=height_px)


class PushTSim:
    """A Push-T cell in one process: gym-pusht physics + a top camera + ground truth.

    Args:
        task: the loaded task contract (bounds, success threshold, top view).
        width_px: camera image width (default: the task's top view width).
        height_px: camera image height (default: the task's top view height).
        renderer: ``'area'`` (area-sampled, anti-aliased; the cell's default) or
            ``'gym-pusht'`` (gym-pusht's own pygame image, bit for bit; for datasets
            recorded with gym-pusht).

    Raises:
        ConfigError: the task has no top view, or ``renderer`` is unknown.

    Implements :class:`enpire_sim.core.ports.CellPort`.
    """

    def __init__(self, task: TaskSpec, width_px: int | None = None,
                 height_px: int | None = None, renderer: str = RENDERER_AREA) -> None:
        if 'top' not in task.views:
            raise ConfigError(f"task '{task.name}' has no 'top' view; Push-T needs one")
        if renderer not in RENDERERS:
            raise UnknownNameError('camera renderer', renderer, RENDERERS)
        view = task.views['top']
        width_px = int(width_px or view.width_px)
        height_px = int(height_px or view.height_px)
        self.task = task
        self.view: ViewSpec = view.scaled(width_px, height_px)
        self.low = task.safety.low
        self.high = task.safety.high
        self.threshold = task.success_threshold
        self._env = _make_env(width_px, height_px)
        self.renderer = renderer
        self._area = (AreaRenderer(width_px, height_px, self.view.workspace_to_pixel,
                                   task.goal_pose) if renderer == RENDERER_AREA else None)
        self._step = 0
        self._seed = -1
        self._ready = False

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def env(self):
        """The wrapped ``gym_pusht.envs.PushTEnv`` (for baselines and cross-checks)."""
        return self._env

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.view.height_px, self.view.width_px, 3)

    def reset(self, seed: int | None = None, object_pose: Sequence[float] | None = None,
              agent_pos: Sequence[float] | None = None) -> np.ndarray:
        """Start an episode: gym-pusht's seeded start, optionally overridden by explicit poses.

        Args:
            seed: gym-pusht seed (same seed -> same start). ``None`` keeps the env's RNG.
            object_pose: explicit block pose (x_px, y_px, theta_rad), placed exactly.
            agent_pos: explicit pusher position (x_px, y_px).

        Returns:
            The agent state ``[x, y, vx, vy]``.
        """
        if seed is not None and (isinstance(seed, bool) or int(seed) < 0):
            raise ConfigError(f'seed={seed!r} is invalid: must be an integer >= 0')
        env = self._env
        env.reset(seed=None if seed is None else int(seed))
        if object_pose is not None or agent_pos is not None:
            agent = (np.asarray(env.agent.position, dtype=np.float64) if agent_pos is None
                     else self._check_vec(agent_pos, 2, 'agent_pos'))
            if object_pose is None:
                pose = np.array([*env.block.position, env.block.angle], dtype=np.float64)
            else:
                pose = self._check_vec(object_pose, 3, 'object_pose')
            state = [float(agent[0]), float(agent[1]), *self._legacy_block_state(pose)]
            env.reset(seed=None, options={'reset_to_state': state})
        self._step = 0
        self._seed = -1 if seed is None else int(seed)
        self._ready = True
        return self.agent_state()

    def _legacy_block_state(self, pose: np.ndarray) -> tuple[float, float, float]:
        # gym-pusht sets the block position before its angle (legacy order), which rotates
        # the body about its centre of gravity and moves the origin; pre-compensate so the
        # requested pose is where the block ends up.
        cog = np.array(self._env.block.center_of_gravity, dtype=np.float64)
        c, s = math.cos(pose[2]), math.sin(pose[2])
        rotated = np.array([c * cog[0] - s * cog[1], s * cog[0] + c * cog[1]])
        p = pose[:2] - cog + rotated
        return float(p[0]), float(p[1]), float(pose[2])

    def _check_vec(self, value: Sequence[float], n: int, what: str) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (n,) or not np.all(np.isfinite(arr)):
            raise ConfigError(f'{what}={list(value)!r} is invalid: must be {n} finite numbers')
        if not (np.all(arr[:2] >= self.task.workspace_low)
                and np.all(arr[:2] <= self.task.workspace_high)):
            raise ConfigError(f'{what}={arr.tolist()!r} is invalid: position must lie in the '
                              f'workspace {list(self.task.workspace_low)}..'
                              f'{list(self.task.workspace_high)} px')
        return arr

    def _require_ready(self) -> None:
        if not self._ready:
            raise ConfigError('the Push-T sim has not been reset; call reset(seed) first')

    # --- control -------------------------------------------------------------------------------
    def step(self, action: Sequence[float]) -> np.ndarray:
        """Apply one control step (gym-pusht's PD target, 0.1 s at 10 Hz).

        Raises:
            CommandRejectedError: the action is not finite, not shape (2,) or outside the
                task's safety bounds; the scene is unchanged (callers hold with :meth:`hold`).
        """
        self._require_ready()
        target = validate_action(action, self.low, self.high)
        self._env.step(target)
        self._step += 1
        return self.agent_state()

    def hold(self) -> np.ndarray:
        """One control step with the target at the pusher's current position (hold)."""
        self._require_ready()
        self._env.step(np.asarray(self._env.agent.position, dtype=np.float64))
        self._step += 1
        return self.agent_state()

    # --- observation ---------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The top camera image, (H, W, 3) uint8 RGB, without gym-pusht's action marker.

        Drawn by the renderer chosen at construction (:attr:`renderer`).
        """
        self._require_ready()
        env = self._env
        if self._area is not None:
            a = env.agent.position
            return self._area.render(self.object_pose(), (float(a.x), float(a.y)))
        if env.render_mode != 'rgb_array':
            # visualize=False renders at the observation size and never draws the marker.
            return np.ascontiguousarray(env._render(visualize=False), dtype=np.uint8)
        # gym-pusht's own _get_img (visualize=False) copies pygame's column-major pixel view
        # with np.array and transposes it; tobytes('RGB') reads the surface row-major in C.
        # Same pixels into the same cv2.resize, bit for bit, ~0.6 ms a 480x480 frame less.
        import cv2
        import pygame

        screen = env._draw()
        w, h = screen.get_size()
        img = np.frombuffer(pygame.image.tobytes(screen, 'RGB'), dtype=np.uint8).reshape(h, w, 3)
        return np.ascontiguousarray(
            cv2.resize(img, (env.observation_width, env.observation_height)), dtype=np.uint8)

    def agent_state(self) -> np.ndarray:
        """``[x, y, vx, vy]`` of the pusher, px and px/s."""
        a = self._env.agent
        return np.array([a.position.x, a.position.y, a.velocity.x, a.velocity.y],
                        dtype=np.float64)

    def object_pose(self) -> tuple[float, float, float]:
        b = self._env.block
        return (float(b.position.x), float(b.position.y), wrap_angle(float(b.angle)))

    def ground_truth(self) -> GroundTruth:
        """Simulator truth; coverage is exactly gym-pusht's ``_get_coverage``."""
        self._require_ready()
        env = self._env
        coverage = float(env._get_coverage())
        goal = env.goal_pose
        return GroundTruth(
            object_pose=self.object_pose(),
            agent_pos=(float(env.agent.position.x), float(env.agent.position.y)),
            goal_pose=(float(goal[0]), float(goal[1]), float(goal[2])),
            coverage=coverage, success=coverage > self.threshold,
            step=self._step, seed=self._seed)

    @property
    def step_count(self) -> int:
        return self._step

    @property
    def seed(self) -> int:
        return self._seed

    def close(self) -> None:
        self._env.close()
