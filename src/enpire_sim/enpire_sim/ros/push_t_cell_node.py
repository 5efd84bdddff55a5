"""The ``push_t_cell`` node: a simulated Push-T cell speaking the real cell interfaces."""

from __future__ import annotations

import sys
import threading

import numpy as np
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image

from enpire_common.errors import OK, ConfigError, EnpireError
from enpire_common.ros import (
    LATEST_QOS,
    declare_config,
    run_node,
)
from enpire_common.tasks import load_task
from enpire_interfaces.msg import CellState, Command, SafetyEvent, StateVector
from enpire_interfaces.srv import GetGroundTruth, PlaceStart
from enpire_sim.core.config import PushTCellConfig
from enpire_sim.core.push_t import InvalidCommandError, PushTSim, validate_action
from enpire_sim.ros import conversions as conv
from enpire_sim.ros.lockstep import LockstepGate
from enpire_tasks.sensor import SensorStream, sensor_named

FRAME_ID = 'top_camera'



class PushTCellNode(Node):
    """Simulated Push-T cell (gym-pusht physics) with the topics of a real cell.

    Topics (relative to the node's namespace, e.g. ``/cell_0``):
        publishes ``camera/top/image_raw`` (sensor_msgs/Image rgb8, frame ``top_camera``),
        ``camera/top/camera_info`` (CameraInfo; K = the workspace->pixel affine),
        ``state`` (enpire_interfaces/StateVector ``[x, y, vx, vy]`` px, px/s; ``tick`` =
        control steps since the last reset), ``cell_state`` (CellState),
        ``safety/events`` (SafetyEvent for every refused command), and ``/clock`` in
        lockstep mode (sim time = total control ticks / control_rate_hz, monotonic across
        resets). All latched (reliable, transient local, depth 1) except the events.
        Subscribes ``command`` (enpire_interfaces/Command, ``action`` = pusher target
        [x_px, y_px] inside the task's safety bounds).

    Services:
        ``place`` (PlaceStart): place the T + pusher from ``seed`` or explicit poses,
        return the placed poses, publish a fresh image + state at once.
        ``sim/ground_truth`` (GetGroundTruth): simulator truth (tests, verifier cross-checks).

    Parameters (PushTCellConfig):
        ``task`` (str, push_t), ``clock.mode`` (realtime | lockstep), ``control_rate_hz``
        (float, Hz; must equal the task's action rate), ``camera.width_px`` /
        ``camera.height_px`` (int, px), ``camera.renderer`` (area | gym-pusht),
        ``camera.sensor`` (default | none: the camera's noise, blur, exposure and JPEG),
        ``publish_every_n`` (int), ``initial_seed`` (int),
        ``cell_id`` (str; empty = namespace).

    Stepping: lockstep applies one control step per command for the tick it shows
    (``Command.tick`` = the state tick the command answers) and publishes the new tick at
    once; a repeated command for the tick just applied publishes the current observation
    again (the controller missed it), any other tick is ignored. Realtime steps on a timer at
    the control rate with the latest command (holding when none). A malformed or
    out-of-envelope command is refused with a SafetyEvent (NAN / SHAPE / BOUNDS, REJECTED)
    and the cell holds for that tick.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('push_t_cell', **kwargs)
        self.config: PushTCellConfig = declare_config(self, PushTCellConfig)
        self.task = load_task(self.config.task)
        if abs(self.config.control_rate_hz - self.task.action.rate_hz) > 1e-9:
            raise ConfigError(
                f'control_rate_hz={self.config.control_rate_hz!r} is invalid: task '
                f"'{self.task.name}' fixes the control rate at {self.task.action.rate_hz} Hz "
                '(gym-pusht physics advances 1/rate per step); leave it at the task rate')
        self.lockstep = self.config.clock.mode == 'lockstep'
        self.cell_id = self.config.cell_id or self.get_namespace().strip('/') or 'cell'
        self.sim = PushTSim(self.task, self.config.camera.width_px,
                            self.config.camera.height_px,
                            renderer=self.config.camera.renderer)
        # The camera's sensor (camera.sensor), seeded by the cell's initial seed.
        self._sensor = SensorStream(sensor_named(self.config.camera.sensor),
                                    self.config.initial_seed, 'top')
        self._lock = threading.Lock()
        self._total_ticks = 0       # monotonic across resets: drives /clock
        self._episode = 0
        self._mode = CellState.MODE_IDLE
        self._target: np.ndarray | None = None   # realtime: latest accepted target
        self._revision = ''
        self._gate = LockstepGate(self.get_logger())

        # Fixed for the node's life (the view never changes); only the stamp is set per frame.
        self._camera_info = conv.camera_info_msg(self.sim.view, conv.time_msg(0.0), FRAME_ID)
        self._image_pub = self.create_publisher(Image, 'camera/top/image_raw', LATEST_QOS)
        self._info_pub = self.create_publisher(CameraInfo, 'camera/top/camera_info', LATEST_QOS)
        self._state_pub = self.create_publisher(StateVector, 'state', LATEST_QOS)
        self._cell_pub = self.create_publisher(CellState, 'cell_state', LATEST_QOS)
        self._safety_pub = self.create_publisher(SafetyEvent, 'safety/events', 10)
        self._clock_pub = (self.create_publisher(ClockMsg, '/clock', LATEST_QOS)
                           if self.lockstep else None)
        self.create_subscription(Command, 'command', self._on_command, 10)
        self.create_service(PlaceStart, 'place', self._on_place)
        self.create_service(GetGroundTruth, 'sim/ground_truth', self._on_ground_truth)
        self._timer = (None if self.lockstep
                       else self.create_timer(1.0 / self.config.control_rate_hz, self._on_tick))

        with self._lock:
            self.sim.reset(seed=self.config.initial_seed)
            self._publish(force_image=True)
        self.get_logger().info(
            f'push_t_cell ready: task {self.task.id}, {self.config.clock.mode} at '
            f'{self.config.control_rate_hz} Hz, camera {self.sim.view.width_px}x'
            f'{self.sim.view.height_px}')

    # --- time ----------------------------------------------------------------------------------
    def _stamp(self):
        if self.lockstep:
            return conv.time_msg(self._total_ticks / self.config.control_rate_hz)
        return self.get_clock().now().to_msg()

    # --- publishing ----------------------------------------------------------------------------
    def _publish(self, force_image: bool = False, same_tick: bool = False) -> None:
        stamp = self._stamp()
        if self._clock_pub is not None and not same_tick:
            self._clock_pub.publish(ClockMsg(clock=stamp))
        step = self.sim.step_count
        image = force_image or step % self.config.publish_every_n == 0
        if image:
            # the frame of (reset seed, tick since the reset): a trial's camera depends on its
            # seed alone, and a re-sent tick gets the same pixels again
            frame = self._sensor.apply(self.sim.render(), step, self.sim.seed or 0)
            self._image_pub.publish(conv.image_cdr(frame, stamp, FRAME_ID))
        # The state right after the image: the policy host acts on the pair, so what nobody
        # waits for in lockstep (camera_info, cell_state) goes out after it.
        self._state_pub.publish(conv.state_msg(self.sim.agent_state(), step, stamp))
        if image:
            self._camera_info.header.stamp = stamp
            self._info_pub.publish(self._camera_info)
        self._cell_pub.publish(self._cell_state(stamp))

    def _cell_state(self, stamp) -> CellState:
        msg = CellState()
        msg.header.stamp = stamp
        msg.cell_id = self.cell_id
        msg.task = self.task.name
        msg.mode = self._mode
        msg.simulated = True
        msg.clock_mode = self.config.clock.mode
        msg.step = self.sim.step_count
        msg.episode = self._episode
        msg.seed = self.sim.seed
        msg.control_rate_hz = self.config.control_rate_hz
        msg.active_revision = self._revision
        return msg

    # --- commands ------------------------------------------------------------------------------
    def _accept(self, msg: Command) -> np.ndarray | None:
        """The validated target, or None after publishing a SafetyEvent (the cell holds)."""
        try:
            return validate_action(list(msg.action), self.sim.low, self.sim.high)
        except InvalidCommandError as exc:
            self._safety_pub.publish(conv.safety_event_msg(
                self.cell_id, exc.kind, list(msg.action), msg.revision_id,
                f'{exc}; the cell holds position', self._stamp()))
            self.get_logger().warning(f'command refused ({exc.kind}): {exc}',
                                      throttle_duration_sec=1.0)
            return None

    def _on_command(self, msg: Command) -> None:
        with self._lock:
            if self.lockstep and not self._lockstep_accepts(int(msg.tick)):
                return
            target = self._accept(msg)
            self._revision = msg.revision_id
            if not self.lockstep:
                self._target = target
                return
            self._advance(target)

    def _lockstep_accepts(self, tick: int) -> bool:
        return self._gate.accepts(tick, self.sim.step_count,
                                  lambda: self._publish(force_image=True, same_tick=True))

    @property
    def republished(self) -> int:
        return self._gate.republished

    @property
    def ignored_commands(self) -> int:
        return self._gate.ignored_commands

    def _on_tick(self) -> None:
        with self._lock:
            self._advance(self._target)

    def _advance(self, target: np.ndarray | None) -> None:
        if target is None:
            self.sim.hold()
            self._mode = (CellState.MODE_HOLDING if self._mode != CellState.MODE_IDLE
                          else CellState.MODE_IDLE)
        else:
            self.sim.step(target)
            self._mode = CellState.MODE_RUNNING
        self._total_ticks += 1
        self._publish()

    # --- services ------------------------------------------------------------------------------
    def _on_place(self, req: PlaceStart.Request, resp: PlaceStart.Response
                  ) -> PlaceStart.Response:
        with self._lock:
            try:
                self.sim.reset(seed=int(req.seed),
                               object_pose=list(req.object_pose) or None,
                               agent_pos=list(req.agent_pos) or None)
            # Service boundary: every failure becomes error_code/error_msg, the node lives on.
            except EnpireError as exc:
                resp.error_code, resp.error_msg = exc.code, str(exc)
                return resp
            self._episode += 1
            self._target = None
            self._mode = CellState.MODE_IDLE
            # A reset takes one tick of sim time so every frame has a distinct stamp.
            self._total_ticks += 1
            gt = self.sim.ground_truth()
            resp.object_pose = [float(v) for v in gt.object_pose]
            resp.agent_pos = [float(v) for v in gt.agent_pos]
            resp.error_code = OK
            self._publish(force_image=True)
        return resp

    def _on_ground_truth(self, _req: GetGroundTruth.Request,
                         resp: GetGroundTruth.Response) -> GetGroundTruth.Response:
        with self._lock:
            return conv.ground_truth_response(self.sim.ground_truth(), resp)

    def destroy_node(self) -> None:
        self.sim.close()
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    from enpire_common.dds import use_camera_profile

    use_camera_profile()    # it publishes camera frames: before its participant exists
    return run_node('push_t_cell', PushTCellNode, argv, executor='fast')


if __name__ == '__main__':
    sys.exit(main())
