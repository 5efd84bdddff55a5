"""Camera frames from raw image fields: the one converter every package uses (pure numpy).

ROS ``sensor_msgs/Image`` messages go through :mod:`enpire_common.image_msgs`, which hands
their fields here; recorded bags (CDR bytes) call :func:`rgb_from_image` directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from enpire_common.errors import BadImageError

#: Encodings accepted, with their channel counts (sensor_msgs/Image names).
ENCODING_CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}


def rgb_from_image(encoding: str, height: int, width: int, step: int, data: Any) -> np.ndarray:
    """An HxWx3 uint8 RGB array from the fields of a sensor_msgs/Image.

    ``data`` is any buffer (bytes, array.array, a numpy view of a CDR message); rgb8 data
    is returned without a copy when it is already packed.

    Raises:
        BadImageError: unsupported encoding or a data size that does not match the header.
    """
    channels = ENCODING_CHANNELS.get(encoding)
    if channels is None:
        raise BadImageError(f"image encoding '{encoding}' is not supported "
                            f'(supported: {", ".join(ENCODING_CHANNELS)})')
    h, w, step = int(height), int(width), int(step)
    buf = np.frombuffer(data, dtype=np.uint8)
    if h == 0 or w == 0 or step < w * channels or buf.size < h * step:
        raise BadImageError(f'image {w}x{h} step {step} has {buf.size} bytes; expected '
                            f'{h * step} ({encoding})')
    arr = buf[:h * step].reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if encoding.startswith('bgr'):
        arr = arr[:, :, 2::-1]
    elif channels == 4:
        arr = arr[:, :, :3]
    elif channels == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


__all__ = ['ENCODING_CHANNELS', 'rgb_from_image']
