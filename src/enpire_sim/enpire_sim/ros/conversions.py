"""Message <-> core conversions of enpire_sim (the only place that knows both)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo

from enpire_common.tasks import ViewSpec
from enpire_interfaces.msg import SafetyEvent, StateVector
from enpire_interfaces.srv import GetGroundTruth
from enpire_sim.core.push_t import STATE_NAMES, GroundTruth

SAFETY_KINDS = {'BOUNDS': SafetyEvent.KIND_BOUNDS, 'NAN': SafetyEvent.KIND_NAN,
                'SHAPE': SafetyEvent.KIND_SHAPE,
                'JOINT_VELOCITY': SafetyEvent.KIND_JOINT_VELOCITY,
                'FORCE': SafetyEvent.KIND_FORCE, 'COLLISION': SafetyEvent.KIND_COLLISION,
                'IK': SafetyEvent.KIND_IK}


def time_msg(t_s: float) -> Time:
    ns = int(round(t_s * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def image_cdr(img: np.ndarray, stamp: Time, frame_id: str) -> bytes:
    """The serialized (CDR, little endian) rgb8 Image of ``img`` for ``Publisher.publish``.

    Deserializes to the same message as :func:`enpire_common.image_msgs.rgb_to_image` (same
    length as ``serialize_message`` of it; padding bytes are zeros), built with one copy of
    the pixels instead of four (tobytes, array.array, the C message, its serialization)."""
    h, w = int(img.shape[0]), int(img.shape[1])
    pixels = np.ascontiguousarray(img, dtype=np.uint8)
    head = bytearray(b'\x00\x01\x00\x00')  # CDR little-endian encapsulation
    head += struct.pack('<iI', int(stamp.sec), int(stamp.nanosec))
    _cdr_string(head, frame_id)
    _cdr_align4(head)
    head += struct.pack('<II', h, w)
    _cdr_string(head, 'rgb8')
    head += b'\x00'  # is_bigendian
    _cdr_align4(head)
    head += struct.pack('<II', w * 3, pixels.nbytes)
    return b''.join((head, pixels.data))


def _cdr_align4(buf: bytearray) -> None:
    buf += bytes(-(len(buf) - 4) % 4)  # CDR aligns from the end of the encapsulation header


def _cdr_string(buf: bytearray, text: str) -> None:
    _cdr_align4(buf)
    raw = text.encode() + b'\x00'
    buf += struct.pack('<I', len(raw)) + raw


def camera_info_msg(view: ViewSpec, stamp: Time, frame_id: str) -> CameraInfo:
    """CameraInfo of the orthographic top camera: K holds the workspace->pixel affine
    (fx = A[0][0], fy = A[1][1], cx = A[0][2], cy = A[1][2]) so u = fx * x_px + cx."""
    (a, _b, c), (_d, e, f) = view.workspace_to_pixel
    return _camera_info(view, stamp, frame_id, a, e, c, f)


def _camera_info(view: ViewSpec, stamp: Time, frame_id: str, fx: float, fy: float,
                 cx: float, cy: float) -> CameraInfo:
    msg = CameraInfo()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = view.height_px, view.width_px
    msg.distortion_model = 'plumb_bob'
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def pinhole_camera_info_msg(view: ViewSpec, stamp: Time, frame_id: str) -> CameraInfo:
    """CameraInfo of a calibrated pinhole view (the contract's ``camera`` block)."""
    c = view.camera or {}
    return _camera_info(view, stamp, frame_id, float(c.get('fx', 0.0)),
                        float(c.get('fy', 0.0)), float(c.get('cx', view.width_px / 2)),
                        float(c.get('cy', view.height_px / 2)))


def state_msg(values: Sequence[float], tick: int, stamp: Time,
              names: Sequence[str] = STATE_NAMES) -> StateVector:
    msg = StateVector()
    msg.header.stamp = stamp
    msg.tick = int(tick)
    msg.names = list(names)
    msg.values = [float(v) for v in values]
    return msg


def ground_truth_response(gt: GroundTruth, resp: GetGroundTruth.Response
                          ) -> GetGroundTruth.Response:
    resp.object_pose = [float(v) for v in gt.object_pose]
    resp.agent_pos = [float(v) for v in gt.agent_pos]
    resp.goal_pose = [float(v) for v in gt.goal_pose]
    resp.coverage = float(gt.coverage)
    resp.success = bool(gt.success)
    resp.step = int(gt.step)
    resp.seed = int(gt.seed)
    return resp


def safety_event_msg(cell_id: str, kind: str, requested: Sequence[float], revision_id: str,
                     detail: str, stamp: Time) -> SafetyEvent:
    msg = SafetyEvent()
    msg.header.stamp = stamp
    msg.cell_id = cell_id
    msg.kind = SAFETY_KINDS.get(kind, SafetyEvent.KIND_BOUNDS)
    msg.action = SafetyEvent.ACTION_REJECTED
    msg.requested = [float(v) for v in requested]
    msg.applied = []
    msg.revision_id = revision_id
    msg.detail = detail
    return msg
