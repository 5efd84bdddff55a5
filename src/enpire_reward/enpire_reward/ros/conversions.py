"""sensor_msgs/Image and enpire_interfaces messages <-> core types."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image

from enpire_common.image_msgs import image_to_rgb
from enpire_interfaces.msg import Verdict as VerdictMsg
from enpire_reward.core.images import ENCODINGS, to_rgb
from enpire_reward.core.ports import Verdict


def verifier_image(msg: Image) -> np.ndarray:
    """A camera frame the colour verifier can judge (rgb8 or bgr8), as RGB.

    Raises:
        BadImageError: another encoding (named with the accepted ones), or a malformed frame.
    """
    if msg.encoding not in ENCODINGS:
        to_rgb(np.zeros((1, 1, 3), np.uint8), msg.encoding)  # raises with the standard text
    return image_to_rgb(msg)


def verdict_to_msg(v: Verdict) -> VerdictMsg:
    msg = VerdictMsg()
    msg.view, msg.backend, msg.success = v.view, v.backend, bool(v.success)
    msg.invalid = bool(v.invalid)
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
                   detail=msg.detail, invalid=bool(msg.invalid))
