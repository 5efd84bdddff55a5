"""The ``arm_cell`` node: a simulated bimanual arm cell of one task, with a real cell's topics.

The task contract (``task`` parameter) says everything task-specific: the MuJoCo scene, the
object a start places, the action space, the camera views and the cell envelope
(:class:`~enpire_sim.core.arm.cell.ArmCell`). Nothing here names a task.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String

from enpire_common.errors import OK, ConfigError, EnpireError
from enpire_common.ros import LATEST_QOS, declare_config, run_node, tf_message_type
from enpire_common.tasks import load_task
from enpire_interfaces.msg import CellState, Command, SafetyEvent, StateVector
from enpire_interfaces.srv import GetGroundTruth, PlaceStart
from enpire_sim.core.arm.cell import ArmCell
from enpire_sim.core.arm.kinematics import relative_poses, urdf
from enpire_sim.core.arm.sim import aloha_assets, gl_backend
from enpire_sim.core.config import ArmCellConfig
from enpire_sim.core.ports import InvalidCommandError
from enpire_sim.ros import conversions as conv
from enpire_sim.ros.lockstep import LockstepGate
from enpire_tasks import arm as arm_conv
from enpire_tasks.sensor import SensorStream, sensor_named

#: tf_static is latched with every static link at once (a late joiner gets all of them).
STATIC_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class ArmCellNode(Node):
    """Simulated arm cell (MuJoCo) with the topics of a real cell.

    Topics (relative to the node's namespace, e.g. ``/cell_0``):
        publishes ``camera/<view>/image_raw`` + ``camera_info`` for every view of the
        contract, ``state`` (StateVector, names :data:`enpire_tasks.arm.STATE_NAMES`: the
        measured end-effector poses in the action's terms, then the joints), ``joint_states``
        (sensor_msgs/JointState, every actuated joint), ``<arm>/ee_pose`` (PoseStamped of each
        fingertip centre, frame ``<cell>/world``), ``tf`` / ``tf_static`` (every link; frames
        ``<cell>/<body>``), ``robot_description`` (URDF, latched), ``cell_state``,
        ``safety/events``, and ``/clock`` in lockstep mode.
        Subscribes ``command`` (Command in the contract's action space: end-effector targets,
        solved by IK in the cell, or joint targets) and ``joint_command`` (Command: 6 joints
        in rad + finger in m, per arm, always).

    Services: ``place`` (PlaceStart: the ``sim_place`` fallback: home the arms and stand the
    object at the seed's start, teleported), ``sim/ground_truth`` (GetGroundTruth).

    A malformed, out-of-bounds or unreachable command is refused with a SafetyEvent
    (REJECTED; kinds SHAPE / NAN / BOUNDS / IK) and the arms hold for that tick. A violation
    of the cell envelope after a tick (workspace, joint velocity, contact force, gripper on
    the table) is an ABORTED SafetyEvent: the arms hold and refuse commands until the next
    ``place`` (the rollout ends the trial as ``safety_abort``). Lockstep stepping as the
    Push-T cell (:class:`~enpire_sim.ros.lockstep.LockstepGate`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('arm_cell', **kwargs)
        self.config: ArmCellConfig = declare_config(self, ArmCellConfig)
        if not self.config.task:
            raise ConfigError("task='' is invalid: name the arm task this cell simulates "
                              '(-p task:=pin_insertion; the launch passes task:=...)')
        self.task = load_task(self.config.task)
        c = self.config
        self.cell = ArmCell(self.task, width=c.camera.width_px or None,
                            height=c.camera.height_px or None)
        self.lockstep = c.clock.mode == 'lockstep'
        self.rate_hz = float(self.task.action.rate_hz)
        self.cell_id = c.cell_id or self.get_namespace().strip('/') or 'cell'
        self._frame = lambda name: f'{self.cell_id}/{name}'
        self._lock = threading.Lock()
        self._gate = LockstepGate(self.get_logger())
        self._total_ticks = 0
        self._episode = 0
        self._mode = CellState.MODE_IDLE
        self._aborted = ''
        self._target: np.ndarray | None = None
        self._joint_target: np.ndarray | None = None
        self._revision = ''
        self._step = 0

        self._sensors = {name: SensorStream(sensor_named(c.camera.sensor), c.initial_seed, name)
                         for name in self.task.views}
        self._views = {}
        for name, view in self.task.views.items():
            frame = self._frame(f'camera_{name}')
            self._views[name] = (
                self.create_publisher(Image, f'camera/{name}/image_raw', LATEST_QOS),
                self.create_publisher(CameraInfo, f'camera/{name}/camera_info', LATEST_QOS),
                conv.pinhole_camera_info_msg(view, conv.time_msg(0.0), frame), frame)
        self._state_pub = self.create_publisher(StateVector, 'state', LATEST_QOS)
        self._joints_pub = self.create_publisher(JointState, 'joint_states', LATEST_QOS)
        self._ee_pubs = {a: self.create_publisher(PoseStamped, f'{a}/ee_pose', LATEST_QOS)
                         for a in arm_conv.ARMS}
        self._cell_pub = self.create_publisher(CellState, 'cell_state', LATEST_QOS)
        self._safety_pub = self.create_publisher(SafetyEvent, 'safety/events', 10)
        self._clock_pub = (self.create_publisher(ClockMsg, '/clock', LATEST_QOS)
                           if self.lockstep else None)
        tf_type = tf_message_type()
        self._tf_pub = self._tf_static_pub = None
        if tf_type is not None and c.publish_tf:
            self._tf_type = tf_type
            self._tf_pub = self.create_publisher(tf_type, 'tf', 10)
            self._tf_static_pub = self.create_publisher(tf_type, 'tf_static', STATIC_QOS)
        elif c.publish_tf:
            self.get_logger().warning('tf2_msgs is not built here: no TF (run '
                                      'scripts/setup.sh, which builds src/vendor/tf2_msgs)')
        self._describe()
        self.create_subscription(Command, 'command', self._on_command, 10)
        self.create_subscription(Command, 'joint_command', self._on_joint_command, 10)
        self.create_service(PlaceStart, 'place', self._on_place)
        self.create_service(GetGroundTruth, 'sim/ground_truth', self._on_ground_truth)
        self._timer = None if self.lockstep else self.create_timer(1.0 / self.rate_hz,
                                                                   self._on_tick)
        with self._lock:
            self.cell.place(c.initial_seed)
            self._publish(force_image=True)
        first = next(iter(self.task.views.values()))
        self.get_logger().info(
            f'arm_cell ready: task {self.task.id}, {c.clock.mode} at {self.rate_hz:g} Hz, '
            f'{len(self._views)} cameras {c.camera.width_px or first.width_px}x'
            f'{c.camera.height_px or first.height_px}, GL {gl_backend()[0]}, action space '
            f'{self.cell.space}')

    # --- description -----------------------------------------------------------------------
    def _describe(self) -> None:
        pub = self.create_publisher(String, 'robot_description', STATIC_QOS)
        pub.publish(String(data=urdf(self.cell.model, f'{self.task.name}_cell',
                                     aloha_assets())))
        self._description_pub = pub
        if self._tf_static_pub is not None:
            self._tf_static_pub.publish(self._tf_msg(
                relative_poses(self.cell.model, self.cell.data, 'static'), conv.time_msg(0.0)))

    def _tf_msg(self, poses: list, stamp: Any) -> Any:
        msg = self._tf_type()
        for parent, child, pos, quat in poses:
            t = TransformStamped()
            t.header.stamp = stamp
            t.header.frame_id = self._frame(parent)
            t.child_frame_id = self._frame(child)
            t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
                float(v) for v in pos)
            (t.transform.rotation.w, t.transform.rotation.x, t.transform.rotation.y,
             t.transform.rotation.z) = (float(v) for v in quat)
            msg.transforms.append(t)
        return msg

    # --- time and publishing --------------------------------------------------------------
    def _stamp(self) -> Any:
        if self.lockstep:
            return conv.time_msg(self._total_ticks / self.rate_hz)
        return self.get_clock().now().to_msg()

    def _publish(self, force_image: bool = False, same_tick: bool = False) -> None:
        stamp = self._stamp()
        if self._clock_pub is not None and not same_tick:
            self._clock_pub.publish(ClockMsg(clock=stamp))
        image = force_image or self._step % self.config.publish_every_n == 0
        if image:
            for name, (img_pub, _info, _msg, frame) in self._views.items():
                # the frame of (reset seed, tick since the reset): a trial's camera depends on
                # its seed alone, and a re-sent tick gets the same pixels again
                pixels = self._sensors[name].apply(self.cell.render(name), self._step,
                                                   self.cell.seed)
                img_pub.publish(conv.image_cdr(pixels, stamp, frame))
        # The state right after the images (the policy host acts on the set), the rest after.
        self._state_pub.publish(conv.state_msg(self.cell.agent_state(), self._step, stamp,
                                               arm_conv.STATE_NAMES))
        if image:
            for _img, info_pub, info, _frame in self._views.values():
                info.header.stamp = stamp
                info_pub.publish(info)
        self._joints_pub.publish(self._joint_state(stamp))
        for a, (p, rot) in self.cell.tcp_poses().items():
            self._ee_pubs[a].publish(self._pose(p, rot, stamp))
        if self._tf_pub is not None:
            self._tf_pub.publish(self._tf_msg(
                relative_poses(self.cell.model, self.cell.data, 'dynamic'), stamp))
        self._cell_pub.publish(self._cell_state(stamp))

    def _joint_state(self, stamp: Any) -> JointState:
        m, d = self.cell.model, self.cell.data
        msg = JointState()
        msg.header.stamp = stamp
        for i in range(m.nu):
            j = m.actuator(i).trnid[0]
            msg.name.append(m.joint(j).name)
            msg.position.append(float(d.qpos[m.jnt_qposadr[j]]))
            msg.velocity.append(float(d.qvel[m.jnt_dofadr[j]]))
            msg.effort.append(float(d.actuator_force[i]))
        return msg

    def _pose(self, p: np.ndarray, rot: np.ndarray, stamp: Any) -> PoseStamped:
        q = np.zeros(4)
        self.cell.sim.mj.mju_mat2Quat(q, rot.reshape(-1))
        msg = PoseStamped()
        msg.header.stamp = stamp
        msg.header.frame_id = self._frame('world')
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in p)
        (msg.pose.orientation.w, msg.pose.orientation.x, msg.pose.orientation.y,
         msg.pose.orientation.z) = (float(v) for v in q)
        return msg

    def _cell_state(self, stamp: Any) -> CellState:
        msg = CellState()
        msg.header.stamp = stamp
        msg.cell_id = self.cell_id
        msg.task = self.task.name
        msg.mode = self._mode
        msg.simulated = True
        msg.clock_mode = self.config.clock.mode
        msg.step = self._step
        msg.episode = self._episode
        msg.seed = self.cell.seed
        msg.control_rate_hz = self.rate_hz
        msg.active_revision = self._revision
        msg.detail = self._aborted
        return msg

    # --- commands --------------------------------------------------------------------------
    def _event(self, kind: str, action: int, requested: Any, revision: str,
               detail: str) -> None:
        msg = conv.safety_event_msg(self.cell_id, kind, list(requested), revision, detail,
                                    self._stamp())
        msg.action = action
        self._safety_pub.publish(msg)

    def _on_command(self, msg: Command) -> None:
        self._command(msg, joint=False)

    def _on_joint_command(self, msg: Command) -> None:
        self._command(msg, joint=True)

    def _command(self, msg: Command, joint: bool) -> None:
        with self._lock:
            if self.lockstep and not self._gate.accepts(
                    int(msg.tick), self._step,
                    lambda: self._publish(force_image=True, same_tick=True)):
                return
            self._revision = msg.revision_id
            action = np.asarray(msg.action, dtype=np.float64)
            if not self.lockstep:
                self._target, self._joint_target = ((None, action) if joint
                                                    else (action, None))
                return
            self._advance(action, joint)

    def _on_tick(self) -> None:
        with self._lock:
            if self._joint_target is not None:
                self._advance(self._joint_target, True)
            else:
                self._advance(self._target, False)

    def _advance(self, action: np.ndarray | None, joint: bool) -> None:
        if self._aborted or action is None:
            self.cell.hold()
            self._mode = (CellState.MODE_HOLDING if self._mode != CellState.MODE_IDLE
                          else CellState.MODE_IDLE)
        else:
            try:
                (self.cell.step_joints if joint else self.cell.step)(action)
                violations = self.cell.violations
            except InvalidCommandError as exc:
                self._event(exc.kind, SafetyEvent.ACTION_REJECTED, action, self._revision,
                            f'{exc}; the cell holds position')
                self.get_logger().warning(f'command refused ({exc.kind}): {exc}',
                                          throttle_duration_sec=1.0)
                self.cell.hold()
                violations = []
            else:
                self._mode = CellState.MODE_RUNNING
            if violations:
                v = violations[0]
                self._aborted = f'{v.kind}: {v.detail}'
                self._event(v.kind, SafetyEvent.ACTION_ABORTED, action, self._revision,
                            f'{v.detail}; the arms hold until the next reset')
                self.get_logger().error(f'safety envelope: {self._aborted}')
                self._mode = CellState.MODE_FAULT
                self.cell.hold()
        self._step += 1
        self._total_ticks += 1
        self._publish()

    # --- services --------------------------------------------------------------------------
    def _on_place(self, req: PlaceStart.Request, resp: PlaceStart.Response
                  ) -> PlaceStart.Response:
        with self._lock:
            method = req.method or 'sim_place'
            try:
                if method == 'robot':
                    self._aborted = ''
                    self._mode = CellState.MODE_RESETTING
                    ticks = [0]

                    def on_tick() -> None:   # the cell is seen moving, at a fifth of the rate
                        ticks[0] += 1
                        self._total_ticks += 1
                        if ticks[0] % 5 == 0:
                            self._publish(force_image=True)

                    gt, method = self.cell.robot_place(int(req.seed), req.stage or 'start',
                                                      on_tick=on_tick)
                elif method == 'sim_place':
                    if req.stage and req.stage != 'start':
                        raise ConfigError(f"sim_place places the start only, not stage "
                                          f"'{req.stage}'")
                    gt = self.cell.place(int(req.seed), list(req.object_pose) or None)
                else:
                    raise ConfigError(f"place method '{req.method}' is unknown (robot, "
                                      'sim_place)')
            # Service boundary: every failure becomes error_code/error_msg, the node lives on.
            except EnpireError as exc:
                resp.error_code, resp.error_msg = exc.code, str(exc)
                self._mode = CellState.MODE_IDLE
                self._publish(force_image=True)
                return resp
            self._episode += 1
            self._target = self._joint_target = None
            self._aborted = ''
            self._mode = CellState.MODE_IDLE
            self._step = 0
            self._total_ticks += 1
            resp.object_pose = [float(v) for v in self._placed_pose(int(req.seed), req.stage,
                                                                     gt)]
            resp.agent_pos = [float(v) for v in gt.agent_pos]
            resp.method = method
            resp.error_code = OK
            self._publish(force_image=True)
        return resp

    def _placed_pose(self, seed: int, stage: str, gt: Any) -> tuple[float, ...]:
        """The pose a start is verified against: the seed's start as the task defines it
        (where the robot was told to put the object), else the simulator's."""
        start = self.cell.plugin.start_pose
        if start is not None:
            return tuple(start(seed, stage or 'start'))
        return tuple(gt.object_pose)

    def _on_ground_truth(self, _req: GetGroundTruth.Request,
                         resp: GetGroundTruth.Response) -> GetGroundTruth.Response:
        with self._lock:
            gt = self.cell.ground_truth()
            gt.step = self._step
            return conv.ground_truth_response(gt, resp)

    def destroy_node(self) -> None:
        self.cell.close()
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    from enpire_common.dds import use_camera_profile

    use_camera_profile()    # it publishes camera frames: before its participant exists
    return run_node('arm_cell', ArmCellNode, argv, executor='fast')


if __name__ == '__main__':
    sys.exit(main())
