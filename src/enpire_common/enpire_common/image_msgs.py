"""sensor_msgs/Image <-> (H, W, 3) uint8 RGB arrays: written once for every node.

Both directions take the fast path: reading wraps the message buffer without copying it
(packed rgb8 comes back as a view), and writing hands the generated setter an
``array('B')`` (a memcpy; bytes or a list make it check every pixel in Python).
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

from enpire_common.images import rgb_from_image


def image_to_rgb(msg: Image) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array of an Image (rgb8, bgr8, rgba8, bgra8, mono8).

    Raises:
        BadImageError: an unsupported encoding, an empty frame or a data size that does not
            match the header.
    """
    return rgb_from_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def rgb_to_image(frame: np.ndarray, stamp: Time | None = None, frame_id: str = '',
                 encoding: str = 'rgb8') -> Image:
    """An rgb8 (or bgr8) Image of an (H, W, 3) uint8 RGB array."""
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(frame.shape[1]) * 3
    data = frame[..., ::-1] if encoding == 'bgr8' else frame
    msg.data = array.array('B', np.ascontiguousarray(data, dtype=np.uint8).tobytes())
    return msg


__all__ = ['image_to_rgb', 'rgb_to_image']
