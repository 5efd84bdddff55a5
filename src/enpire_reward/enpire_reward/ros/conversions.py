"""sensor_msgs/Image and enpire_interfaces messages <-> core types."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from enpire_common.errors import BadImageError
from enpire_interfaces.msg import Verdict as VerdictMsg
from enpire_reward.core.images import ENCODINGS, to_rgb
from enpire_reward.core.ports import Verdict


def image_to_rgb(msg: Image) -> np.ndarray:
    """A rgb8/bgr8 Image as an (H, W, 3) uint8 RGB array.

    Raises:
        BadImageError: other encodings, empty frames or a data size that does not match.
    """
    if msg.encoding not in ENCODINGS:
        to_rgb(np.zeros((1, 1, 3), np.uint8), msg.encoding)  # raises with the standard text
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0 or len(msg.data) == 0:
        raise BadImageError(f'image is empty ({w}x{h}, {len(msg.data)} bytes)')
    if step < w * 3 or len(msg.data) < step * h:
        raise BadImageError(f'image data ({len(msg.data)} bytes, step {step}) does not hold '
                            f'{w}x{h} {msg.encoding} pixels')
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)[: step * h].reshape(h, step)
    arr = buf[:, : w * 3].reshape(h, w, 3)
    return np.ascontiguousarray(to_rgb(arr, msg.encoding))


def rgb_to_image(rgb: np.ndarray, frame_id: str = '', encoding: str = 'rgb8') -> Image:
    """An (H, W, 3) uint8 RGB array as a sensor_msgs/Image (for tests and replays)."""
    msg = Image()
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.step = msg.width * 3
    data = rgb[..., ::-1] if encoding == 'bgr8' else rgb
    msg.data = np.ascontiguousarray(data, dtype=np.uint8).tobytes()
    msg.header.frame_id = frame_id
    return msg


def verdict_to_msg(v: Verdict) -> VerdictMsg:
    msg = VerdictMsg()
    msg.view, msg.backend, msg.success = v.view, v.backend, bool(v.success)
    msg.score, msg.threshold = float(v.score), float(v.threshold)
    msg.confidence, msg.latency_s = float(v.confidence), float(v.latency_s)
    msg.object_pose = [float(p) for p in v.object_pose]
    msg.evidence_path, msg.detail = v.evidence_path, v.detail
    return msg


def msg_to_verdict(msg: VerdictMsg) -> Verdict:
    return Verdict(view=msg.view, backend=msg.backend, success=bool(msg.success),
                   score=float(msg.score), threshold=float(msg.threshold),
                   confidence=float(msg.confidence), object_pose=tuple(msg.object_pose),
                   latency_s=float(msg.latency_s), evidence_path=msg.evidence_path,
                   detail=msg.detail)
