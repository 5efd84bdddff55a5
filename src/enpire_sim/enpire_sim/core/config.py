"""Config dataclasses of enpire_sim (one source of truth for node parameters)."""

from __future__ import annotations

from dataclasses import dataclass, field

from enpire_common.config import require
from enpire_tasks.push_t.render import RENDERER_AREA, RENDERERS
from enpire_tasks.sensor import SENSORS

CLOCK_MODES = ('realtime', 'lockstep')


@dataclass(frozen=True)
class CameraConfig:
    """The simulated top camera. The workspace->pixel map scales with the size.

    ``renderer``: ``area`` (area-sampled, anti-aliased like a real camera; the verifier's
    ``camera_model: pusht-area-v1``) or ``gym-pusht`` (gym-pusht's own pygame image, bit for
    bit, for gym-pusht datasets; ``camera_model: gym-pusht-pygame``).

    ``sensor``: the camera the frames go through before they are published
    (:mod:`enpire_tasks.sensor`): ``default`` (mild exposure drift, blur, noise and JPEG,
    seeded: a verifier tuned to exact renders is not a verifier) or ``none`` (the renderer's
    exact image, which the forward camera models reproduce).
    """

    width_px: int = 480
    height_px: int = 480
    renderer: str = RENDERER_AREA
    sensor: str = 'default'

    def __post_init__(self) -> None:
        require(16 <= self.width_px <= 4096, 'camera.width_px', self.width_px,
                'must be in [16, 4096] px')
        require(16 <= self.height_px <= 4096, 'camera.height_px', self.height_px,
                'must be in [16, 4096] px')
        require(self.renderer in RENDERERS, 'camera.renderer', self.renderer,
                f'must be one of {", ".join(RENDERERS)}')
        require(self.sensor in SENSORS, 'camera.sensor', self.sensor,
                f'must be one of {", ".join(SENSORS)}')


@dataclass(frozen=True)
class ClockConfig:
    """``realtime``: a timer steps at the control rate. ``lockstep``: one step per command,
    as fast as the CPU allows, publishing /clock (use_sim_time for everyone else)."""

    mode: str = 'lockstep'

    def __post_init__(self) -> None:
        require(self.mode in CLOCK_MODES, 'clock.mode', self.mode,
                f'must be one of {", ".join(CLOCK_MODES)}')


@dataclass(frozen=True)
class PushTCellConfig:
    """Parameters of the ``push_t_cell`` node.

    Attributes:
        task: task id from the task registry (config/tasks/<task>).
        clock: realtime or lockstep stepping.
        control_rate_hz: control steps per second of simulated time (gym-pusht is 10 Hz).
        camera: rendered image size.
        publish_every_n: publish an image every n control steps (state is published every
            step); 1 = every step.
        initial_seed: seed of the reset the node does at start-up.
        cell_id: id reported in CellState/SafetyEvent; empty = the node's namespace.
    """

    task: str = 'push_t'
    clock: ClockConfig = field(default_factory=ClockConfig)
    control_rate_hz: float = 10.0
    camera: CameraConfig = field(default_factory=CameraConfig)
    publish_every_n: int = 1
    initial_seed: int = 0
    cell_id: str = ''

    def __post_init__(self) -> None:
        require(bool(self.task), 'task', self.task, 'must name a task (e.g. push_t)')
        require(0.0 < self.control_rate_hz <= 1000.0, 'control_rate_hz', self.control_rate_hz,
                'must be in (0, 1000] Hz')
        require(self.publish_every_n >= 1, 'publish_every_n', self.publish_every_n,
                'must be >= 1 (1 = an image every step)')
        require(self.initial_seed >= 0, 'initial_seed', self.initial_seed, 'must be >= 0')


@dataclass(frozen=True)
class ArmCameraConfig:
    """The arm cell's cameras: 0 = the size each view has in the task contract; ``sensor``
    as :class:`CameraConfig`'s."""

    width_px: int = 0
    height_px: int = 0
    sensor: str = 'default'

    def __post_init__(self) -> None:
        for name, v in (('camera.width_px', self.width_px), ('camera.height_px',
                                                              self.height_px)):
            require(v == 0 or 16 <= v <= 4096, name, v, 'must be 0 (the task\'s) or in '
                    '[16, 4096] px')
        require(self.sensor in SENSORS, 'camera.sensor', self.sensor,
                f'must be one of {", ".join(SENSORS)}')


@dataclass(frozen=True)
class ArmCellConfig:
    """Parameters of the ``arm_cell`` node.

    Attributes:
        task: the task (config/tasks/<task>); its contract's ``sim`` section, action space,
            views and cell envelope make the cell. Required.
        clock: realtime or lockstep stepping (the control rate is the task's action rate).
        camera: rendered image size (0 = the contract's).
        publish_every_n: publish images every n control steps (state every step).
        initial_seed: seed of the start the node places at start-up.
        cell_id: id reported in CellState/SafetyEvent and prefixed to TF frames; empty = the
            node's namespace.
        publish_tf: publish ``tf`` / ``tf_static`` for every link.
    """

    task: str = ''
    clock: ClockConfig = field(default_factory=ClockConfig)
    camera: ArmCameraConfig = field(default_factory=ArmCameraConfig)
    publish_every_n: int = 1
    initial_seed: int = 0
    cell_id: str = ''
    publish_tf: bool = True

    def __post_init__(self) -> None:
        # task '' is the declared default (parameters are declared from a default instance);
        # the node refuses to start without one.
        require(self.publish_every_n >= 1, 'publish_every_n', self.publish_every_n,
                'must be >= 1 (1 = images every step)')
        require(self.initial_seed >= 0, 'initial_seed', self.initial_seed, 'must be >= 0')
