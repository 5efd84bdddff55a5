"""The ``markers`` node: one cell as rviz / Foxglove 3D markers (and TF where the cell has none).

Subscribes (in the cell's namespace): ``state`` (StateVector), ``command`` (Command, what the
safety layer passed), ``verdicts`` (Verdict), ``reset/start_pose`` (std_msgs/Float64MultiArray,
latched: the reset server's last placed start).
Publishes: ``markers`` (visualization_msgs/MarkerArray; namespaces in
:mod:`enpire_rollout.core.markers`), built only while someone subscribes (``state`` and
``command`` are read only while ``markers`` or ``tf`` has a subscriber); with ``publish_tf``
``tf_static`` (``world`` -> ``<cell>/world``) and ``tf`` (``<cell>/world`` ->
``<cell>/agent_<i>``).
Parameters (MarkersConfig): ``task`` (str), ``rate_hz`` (float, Hz), ``publish_tf`` (bool).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from geometry_msgs.msg import Point, TransformStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import ColorRGBA, Float64MultiArray
from visualization_msgs.msg import Marker, MarkerArray

from enpire_common.ros import LATEST_QOS, declare_config, run_node, tf_message_type
from enpire_common.tasks import load_task
from enpire_interfaces.msg import Command, StateVector, Verdict
from enpire_rollout.core.config import MarkersConfig
from enpire_rollout.core.markers import MarkerSpec, TaskDrawing
from enpire_tasks import registry

SENSOR = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
KINDS = {'line_strip': Marker.LINE_STRIP, 'line_list': Marker.LINE_LIST,
         'sphere': Marker.SPHERE, 'text': Marker.TEXT_VIEW_FACING}


class MarkersNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('markers', **kwargs)
        self.config: MarkersConfig = declare_config(self, MarkersConfig)
        task = load_task(self.config.task)
        self.drawing = TaskDrawing(task, registry.get(task.name))
        self.cell = self.get_namespace().strip('/') or 'cell'
        self.frame = f'{self.cell}/world'
        self._lock = threading.Lock()
        self._state: tuple[list[str], list[float]] | None = None
        self._action: list[float] = []
        self._verdicts: dict[str, dict[str, Any]] = {}
        self._start: list[float] = []
        self._pub = self.create_publisher(MarkerArray, 'markers', 5)
        # The per-tick streams are read only while someone looks (markers or TF): an idle
        # markers node costs the cell's control loop nothing.
        self._streams: list[Any] = []
        self.create_subscription(Verdict, 'verdicts', self._on_verdict, 20)
        self.create_subscription(Float64MultiArray, 'reset/start_pose', self._on_start,
                                 LATEST_QOS)
        tf_type = tf_message_type() if self.config.publish_tf else None
        self._tf_pub = None
        if tf_type is not None:
            self._tf_pub = self.create_publisher(tf_type, 'tf', 10)
            static = self.create_publisher(tf_type, 'tf_static', LATEST_QOS)
            static.publish(tf_type(transforms=[self._transform('world', self.frame,
                                                               (0.0, 0.0, 0.0))]))
        self.create_timer(1.0 / self.config.rate_hz, self._tick)
        self.get_logger().info(f'markers ready: task {task.name}, frame {self.frame}'
                               + (', TF on' if self._tf_pub is not None else ''))

    # -- inputs ------------------------------------------------------------------------------
    def _on_state(self, msg: StateVector) -> None:
        with self._lock:
            self._state = (list(msg.names), [float(v) for v in msg.values])

    def _on_command(self, msg: Command) -> None:
        with self._lock:
            self._action = [float(v) for v in msg.action]

    def _on_verdict(self, msg: Verdict) -> None:
        with self._lock:
            self._verdicts[msg.view] = {'success': msg.success, 'invalid': msg.invalid,
                                        'score': msg.score,
                                        'object_pose': [float(v) for v in msg.object_pose]}

    def _on_start(self, msg: Float64MultiArray) -> None:
        with self._lock:
            self._start = [float(v) for v in msg.data]

    # -- outputs -----------------------------------------------------------------------------
    def specs(self) -> list[MarkerSpec]:
        d = self.drawing
        with self._lock:
            state, action = self._state, list(self._action)
            verdicts, start = dict(self._verdicts), list(self._start)
        out = d.goal() + d.envelope()
        if state is not None:
            out += d.agent(*state)
        out += d.target(action) + d.estimate(verdicts) + d.verdict(verdicts)
        return out + d.reset_start(start)

    def _watched(self) -> bool:
        watched = self._pub.get_subscription_count() > 0 or (
            self._tf_pub is not None and self._tf_pub.get_subscription_count() > 0)
        if watched and not self._streams:
            self._streams = [
                self.create_subscription(StateVector, 'state', self._on_state, SENSOR),
                self.create_subscription(Command, 'command', self._on_command, SENSOR)]
        elif not watched and self._streams:
            for sub in self._streams:
                self.destroy_subscription(sub)
            self._streams = []
        return watched

    def _tick(self) -> None:
        if not self._watched():
            return     # nobody looks: read nothing, build nothing
        with self._lock:
            state = self._state
        if self._tf_pub is not None and state is not None:
            agents = self.drawing.agent(*state)
            self._tf_pub.publish(self._tf_pub.msg_type(transforms=[
                self._transform(self.frame, f'{self.cell}/agent_{m.id}', m.position)
                for m in agents]))
        if self._pub.get_subscription_count() == 0:
            return     # only TF is watched
        stamp = self.get_clock().now().to_msg()
        array = MarkerArray()
        deleted = Marker(action=Marker.DELETEALL)
        deleted.header.frame_id = self.frame
        array.markers.append(deleted)       # a marker gone from the scene leaves the display
        for spec in self.specs():
            array.markers.append(self._marker(spec, stamp))
        self._pub.publish(array)

    def _marker(self, spec: MarkerSpec, stamp: Any) -> Marker:
        m = Marker(ns=spec.ns, id=spec.id, type=KINDS[spec.kind], action=Marker.ADD)
        m.header.frame_id, m.header.stamp = self.frame, stamp
        m.pose.position.x, m.pose.position.y, m.pose.position.z = spec.position
        m.pose.orientation.w = 1.0
        m.scale.x, m.scale.y, m.scale.z = spec.scale
        m.color = ColorRGBA(r=spec.color[0], g=spec.color[1], b=spec.color[2],
                            a=spec.color[3])
        m.points = [Point(x=p[0], y=p[1], z=p[2]) for p in spec.points]
        m.text = spec.text
        return m

    def _transform(self, parent: str, child: str, xyz: tuple[float, float, float]
                   ) -> TransformStamped:
        t = TransformStamped()
        t.header.stamp = self.get_clock().now().to_msg()
        t.header.frame_id, t.child_frame_id = parent, child
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = xyz
        t.transform.rotation.w = 1.0
        return t


def main(argv: list[str] | None = None) -> int:
    return run_node('markers', MarkersNode, argv)


if __name__ == '__main__':
    sys.exit(main())
