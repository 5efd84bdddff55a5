"""The ``verifier`` node: camera frames in, VerifySuccess verdicts out."""

from __future__ import annotations

import struct
import sys
import threading
from typing import Any

from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from enpire_common.errors import OK, BadImageError, EnpireError, ViewUnavailableError
from enpire_common.paths import enpire_home
from enpire_common.ros import LATEST_QOS, declare_config, image_qos, ros_time_s, run_node
from enpire_common.tasks import load_task
from enpire_interfaces.msg import Verdict as VerdictMsg
from enpire_interfaces.srv import VerifySuccess
from enpire_reward.core.calibration import require_calibrated
from enpire_reward.core.config import VerifierConfig
from enpire_reward.core.registry import make_verifier
from enpire_reward.ros.conversions import verdict_to_msg, verifier_image


class VerifierNode(Node):
    """Judges the cell from its cameras (never from simulator state).

    Subscribes:
        ``camera/<view>/image_raw`` (sensor_msgs/Image, rgb8 or bgr8) for each configured
        view; the latest frame per view is kept, serialized, with its receive time (a frame
        arrives every control step, a verify call every few: only the frames judged are
        deserialized).
    Services:
        ``verify_success`` (enpire_interfaces/srv/VerifySuccess): goal ``success`` or
        ``reset`` on the requested views -> per-view verdicts then ``fused``; errors come
        back as ``error_code``/``error_msg`` (BAD_IMAGE 501, VIEW_UNAVAILABLE 502, ...).
    Publishes:
        ``verdicts`` (enpire_interfaces/msg/Verdict): every verdict of every call.
        ``verifier/overlay/<view>`` (sensor_msgs/Image bgr8, latched): the evidence overlay
        of each call, drawn only while someone subscribes; a viewer that subscribes later
        gets the last call's overlay drawn for it.
    Parameters (VerifierConfig):
        ``task`` (str), ``backend`` (str), ``views`` (str[]), ``fusion`` (str),
        ``max_image_age_s`` (float, s), ``evidence_dir`` (str).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('verifier', **kwargs)
        self.config = declare_config(self, VerifierConfig)
        task = load_task(self.config.task)
        self.verifier = make_verifier(self.config.backend, task,
                                      views=self.config.views or None,
                                      fusion=self.config.fusion or None)
        # the calibration gate: a learned backend judges nothing before it passed
        require_calibrated(task, self.verifier.backend_id)
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[bytes, float]] = {}
        self._frame_counts: dict[str, int] = {}
        for view in self.verifier.views:
            self.create_subscription(
                Image, f'camera/{view}/image_raw',
                lambda data, v=view: self._on_image(v, data),
                image_qos(self.config.image_qos), raw=True)
        self.verdict_pub = self.create_publisher(VerdictMsg, 'verdicts', 10)
        # The evidence overlay of each view (mask, goal and estimate drawn on the frame) for
        # a live viewer; drawn only while someone subscribes, so it costs nothing otherwise.
        # A viewer that subscribes after a call (discovery takes a few seconds) gets that
        # call's overlay when its subscription matches.
        self._last_call: dict[str, Any] | None = None
        self.overlay_pubs = {
            view: self.create_publisher(
                Image, f'verifier/overlay/{view}', LATEST_QOS,
                event_callbacks=PublisherEventCallbacks(
                    matched=lambda info, v=view: self._on_overlay_matched(v, info)))
            for view in self.verifier.views}
        self.create_service(VerifySuccess, 'verify_success', self._on_verify)
        self.get_logger().info(
            f"verifier ready: task {task.name}, backend {self.verifier.backend_id}, views "
            f"{', '.join(self.verifier.views)}, fusion {self.verifier.fusion}")

    def _on_image(self, view: str, data: bytes) -> None:
        with self._lock:
            self._frames[view] = (data, ros_time_s(self))
            self._frame_counts[view] = self._frame_counts.get(view, 0) + 1

    def _on_overlay_matched(self, view: str, info: Any) -> None:
        """A new overlay subscriber: draw the last call's overlay of ``view`` for it."""
        with self._lock:
            last = self._last_call
        if info.current_count_change <= 0 or last is None or view not in last['images']:
            return
        try:
            result = self.verifier.verify(last['images'], last['goal'], last['expected_pose'],
                                          views=last['views'], overlays=[view])
        except Exception as exc:  # noqa: BLE001 - a viewer's redraw must never stop the node
            self.get_logger().warning(f'overlay of the last call not redrawn: {exc}')
            return
        if view in result.overlays:
            self.overlay_pubs[view].publish(_bgr_image_msg(result.overlays[view],
                                                           self.get_clock()))

    def _evidence_dir(self, requested: str) -> str:
        if requested:
            return requested
        if self.config.evidence_dir:
            return self.config.evidence_dir
        return str(enpire_home() / 'evidence')

    def _on_verify(self, req: VerifySuccess.Request, res: VerifySuccess.Response
                   ) -> VerifySuccess.Response:
        res.fusion = self.verifier.fusion
        try:
            views = list(req.views) or list(self.verifier.reset_views if req.goal == 'reset'
                                            else self.verifier.views)
            now = ros_time_s(self)
            images, stamps = {}, []
            with self._lock:
                frames = dict(self._frames)
            for view in views:
                if view not in self.verifier.views:
                    raise ViewUnavailableError(
                        f"view '{view}' is not judged by this verifier (views: "
                        f"{', '.join(self.verifier.views)}); set the views parameter")
                if view not in frames:
                    raise ViewUnavailableError(
                        f"no image received on camera/{view}/image_raw yet; is the camera "
                        'publishing on this namespace?')
                data, stamp = frames[view]
                age = now - stamp
                if age > self.config.max_image_age_s:
                    raise ViewUnavailableError(
                        f"latest camera/{view} image is {age:.2f} s old (max "
                        f'{self.config.max_image_age_s:g} s; received at {stamp:.2f} s, '
                        f'stamped {_cdr_stamp_s(data):.2f} s, now {now:.2f} s, '
                        f'{self._frame_counts.get(view, 0)} frames so far); the camera '
                        'stalled')
                images[view] = verifier_image(_image_msg(data, view))
                stamps.append(_cdr_stamp_s(data))
            result = self.verifier.verify(
                images, req.goal or 'success',
                list(req.expected_pose) if len(req.expected_pose) else None,
                write_evidence=bool(req.write_evidence),
                evidence_dir=self._evidence_dir(req.evidence_dir),
                views=list(req.views) or None,
                overlays=[v for v, pub in self.overlay_pubs.items()
                          if pub.get_subscription_count() > 0])
            with self._lock:
                self._last_call = {'images': images, 'goal': req.goal or 'success',
                                   'expected_pose': list(req.expected_pose)
                                   if len(req.expected_pose) else None,
                                   'views': list(req.views) or None}
            res.success, res.score = bool(result.success), float(result.score)
            res.invalid = bool(result.invalid)
            res.verdicts = [verdict_to_msg(v) for v in result.verdicts]
            res.stages = list(result.stages)
            res.frame_stamps_s = stamps
            res.error_code, res.error_msg = OK, ''
            for v in res.verdicts:
                self.verdict_pub.publish(v)
            for view, bgr in result.overlays.items():
                self.overlay_pubs[view].publish(_bgr_image_msg(bgr, self.get_clock()))
        except EnpireError as exc:
            res.success, res.score = False, 0.0
            res.error_code, res.error_msg = exc.code, str(exc)
        except Exception as exc:  # noqa: BLE001 - a service callback must answer, never die
            res.success, res.score = False, 0.0
            res.error_code, res.error_msg = 500, f'verifier failed: {type(exc).__name__}: {exc}'
            self.get_logger().error(res.error_msg)
        return res


def _cdr_stamp_s(data: bytes) -> float:
    """header.stamp of a serialized message with a Header first (CDR LE), nan if short."""
    if len(data) < 12:
        return float('nan')
    sec, nanosec = struct.unpack_from('<iI', data, 4)
    return sec + nanosec * 1e-9


def _bgr_image_msg(bgr: Any, clock: Any) -> Image:
    """A bgr8 Image of ``bgr``, stamped now (when the verdict was drawn)."""
    msg = Image(height=int(bgr.shape[0]), width=int(bgr.shape[1]), encoding='bgr8',
                is_bigendian=0, step=int(bgr.shape[1]) * 3)
    msg.data = bgr.tobytes()
    msg.header.stamp = clock.now().to_msg()
    return msg


def _image_msg(data: bytes, view: str) -> Image:
    try:
        return deserialize_message(data, Image)
    # The message layer raises several types on a malformed buffer: all mean a bad frame.
    except Exception as exc:  # noqa: BLE001
        raise BadImageError(f'camera/{view} frame of {len(data)} bytes is not a valid '
                            f'sensor_msgs/Image: {exc}') from None


def main(argv: list[str] | None = None) -> int:
    # The events executor: a frame arrives every control step and the default executor's
    # per-message wait-set rebuild was most of this node's CPU between verify calls.
    # Verification is polled beside the control loop, never on it: it yields the CPU to the
    # loop on a busy machine (see run_node).
    return run_node('verifier', VerifierNode, argv, executor='fast', nice=5)


if __name__ == '__main__':
    sys.exit(main())
