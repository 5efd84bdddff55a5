"""ROS message <-> core value conversions of the rollout package (the only place that does)."""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

from enpire_interfaces.msg import Command, SafetyEvent
from enpire_rollout.core.safety import SafetyDecision
from enpire_rollout.core.video import rgb_from_image


def stamp_ns(stamp: Time) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def command_values(msg: Command) -> np.ndarray:
    """The action vector of a Command as float64 (may hold NaN: the filter checks it)."""
    return np.asarray(msg.action, dtype=np.float64)


def applied_command(src: Command, applied: np.ndarray) -> Command:
    """The filtered Command: the source's header, tick and revision with ``applied`` values."""
    out = Command()
    out.header = src.header
    out.tick = src.tick
    out.revision_id = src.revision_id
    out.action = [float(v) for v in applied]
    return out


def safety_event(decision: SafetyDecision, cell_id: str, revision_id: str,
                 stamp: Time, frame_id: str = '') -> SafetyEvent:
    """A SafetyEvent message from a core decision."""
    msg = SafetyEvent()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.cell_id = cell_id
    msg.kind = int(decision.kind)
    msg.action = int(decision.action)
    msg.requested = [float(v) for v in decision.requested]
    msg.applied = [float(v) for v in decision.applied] if decision.applied is not None else []
    msg.revision_id = revision_id
    msg.detail = decision.detail
    return msg


def image_to_rgb(msg: Image) -> np.ndarray:
    """An HxWx3 uint8 RGB array from a sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8).

    Raises:
        BadImageError: unsupported encoding or a data size that does not match the header.
    """
    data = msg.data if isinstance(msg.data, (bytes, bytearray, array.array)) else bytes(msg.data)
    return rgb_from_image(msg.encoding, msg.height, msg.width, msg.step, data)


def rgb_to_image(frame: np.ndarray, stamp: Time, frame_id: str = '') -> Image:
    """A sensor_msgs/Image (rgb8) from an HxWx3 uint8 array (tests, replay)."""
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = 'rgb8'
    msg.step = int(frame.shape[1]) * 3
    msg.data = np.ascontiguousarray(frame, dtype=np.uint8).tobytes()
    return msg

