"""ROS message <-> core value conversions of the rollout package (the only place that does)."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

from enpire_common.errors import BadImageError
from enpire_interfaces.msg import Command, SafetyEvent
from enpire_rollout.core.safety import SafetyDecision

_CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}


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
    channels = _CHANNELS.get(msg.encoding)
    if channels is None:
        raise BadImageError(f"image encoding '{msg.encoding}' is not supported "
                            f'(supported: {", ".join(_CHANNELS)})')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if h == 0 or w == 0 or step < w * channels or data.size < h * step:
        raise BadImageError(f'image {w}x{h} step {step} has {data.size} bytes; expected '
                            f'{h * step} ({msg.encoding})')
    arr = data[:h * step].reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if msg.encoding.startswith('bgr'):
        arr = arr[:, :, 2::-1]
    elif channels == 4:
        arr = arr[:, :, :3]
    elif channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


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

