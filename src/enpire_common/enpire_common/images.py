"""Camera frames from image fields: the one converter every package uses.

ROS ``sensor_msgs/Image`` messages go through :mod:`enpire_common.image_msgs`, which hands
their fields here; recorded bags (CDR bytes) call :func:`rgb_from_image` directly (pure
numpy). ``sensor_msgs/CompressedImage`` (how trial bags store camera frames, see
``RecorderConfig.bag_images``) is written by :func:`compressed_from_rgb` and read back by
:func:`rgb_from_compressed`, both with OpenCV and in compressed_image_transport's format, so
that ROS tools (rqt, Foxglove, ``image_transport republish``) read our bags and we read theirs.
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


#: Codecs of sensor_msgs/CompressedImage written and read here.
COMPRESSED_CODECS = ('jpeg', 'png')
#: What each codec's data starts with: the decoder is handed only these (a bag is untrusted
#: input, and OpenCV would otherwise pick any of its decoders by the bytes).
_MAGIC = {'jpeg': b'\xff\xd8\xff', 'png': b'\x89PNG\r\n\x1a\n'}
_SUPPORTED = ("'<encoding>; jpeg compressed bgr8', '<encoding>; png compressed bgr8' "
              "(or mono8/rgb8 after 'compressed'), or a bare 'jpeg' / 'png'")


def compressed_from_rgb(rgb: np.ndarray, codec: str = 'jpeg', jpeg_quality: int = 90,
                        png_level: int = 3) -> tuple[str, np.ndarray]:
    """``(format, data)`` of a sensor_msgs/CompressedImage holding an RGB frame.

    Written as ROS's compressed_image_transport writes an rgb8 Image: the file holds BGR
    pixels and ``format`` is ``'rgb8; jpeg compressed bgr8'`` (``png`` likewise), so its
    subscriber decodes it back to rgb8. ``png_level`` 3 is that plugin's default.

    Args:
        rgb: H x W x 3 uint8 RGB frame.
        codec: ``'jpeg'`` or ``'png'``.
        jpeg_quality: 1..100.
        png_level: zlib level 0..9.

    Raises:
        UnknownNameError: ``codec`` is not one of :data:`COMPRESSED_CODECS`.
        BadImageError: ``rgb`` is not H x W x 3, or OpenCV cannot encode it.
    """
    import cv2

    if codec not in COMPRESSED_CODECS:
        from enpire_common.errors import UnknownNameError

        raise UnknownNameError('image codec', codec, COMPRESSED_CODECS)
    frame = np.ascontiguousarray(rgb, dtype=np.uint8)
    if frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise BadImageError(f'cannot compress a frame of shape {frame.shape}; expected '
                            'H x W x 3 (RGB)')
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    if codec == 'jpeg':
        ok, data = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok, data = cv2.imencode('.png', bgr, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    if not ok:
        raise BadImageError(f'OpenCV could not encode a {frame.shape[1]}x{frame.shape[0]} '
                            f'frame as {codec}')
    return f'rgb8; {codec} compressed bgr8', data.reshape(-1)


def rgb_from_compressed(format: str, data: Any) -> np.ndarray:  # noqa: A002 - the msg field
    """An HxWx3 uint8 RGB array of a sensor_msgs/CompressedImage (jpeg or png).

    ``format`` is compressed_image_transport's ``'<encoding>; <codec> compressed <order>'``
    (``rgb8; jpeg compressed bgr8``) or its older bare ``'jpeg'`` / ``'png'``. As that
    plugin's subscriber does, the decoded pixels are taken as BGR when the format says
    ``compressed bgr`` or is bare, else as RGB (mono decodes to three equal channels).

    Raises:
        BadImageError: the format is not jpeg/png (``compressedDepth``, ``tiff``, ...), the
            data is empty, does not start like its codec's files, or does not decode.
    """
    import cv2

    fmt = str(format)
    head, sep, tail = fmt.partition(';')
    words = (tail if sep else head).split()
    codec = words[0].lower() if words else ''
    if codec not in COMPRESSED_CODECS or (sep and words[1:2] != ['compressed']):
        raise BadImageError(f'compressed image format {fmt!r} is not supported '
                            f'(supported: {_SUPPORTED})')
    buf = np.frombuffer(data, dtype=np.uint8)
    what = f'compressed image ({fmt!r}, {buf.size} bytes)'
    if bytes(buf[:len(_MAGIC[codec])]) != _MAGIC[codec]:
        raise BadImageError(f'{what} is not {codec} data: it starts with {bytes(buf[:8])!r}')
    why = ''
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        img, why = None, f" ({str(exc).strip().splitlines()[-1]})"
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise BadImageError(f'{what} does not decode as {codec}{why}')
    if not sep or 'compressed bgr' in fmt:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)


__all__ = ['COMPRESSED_CODECS', 'ENCODING_CHANNELS', 'compressed_from_rgb',
           'rgb_from_compressed', 'rgb_from_image']
