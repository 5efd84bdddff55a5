"""MP4 video of one camera view, encoded with PyAV (H.264 via libx264 where available).

One frame per recorded image at a constant rate (the control rate), so the frame count of the
file equals the number of images recorded. Written to a temp file in the same directory and
renamed on close (atomic); an unclosed video is never mistaken for a complete one.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import BadImageError

FALLBACK_CODEC = 'mpeg4'


def pick_codec(preferred: str = 'libx264') -> str:
    """``preferred`` when PyAV's FFmpeg has that encoder, else ``mpeg4``."""
    import av

    for name in (preferred, FALLBACK_CODEC):
        try:
            av.codec.Codec(name, 'w')
        except Exception:  # noqa: BLE001 - PyAV raises several types for a missing codec
            continue
        return name
    raise BadImageError(f'neither {preferred} nor {FALLBACK_CODEC} encoders exist in PyAV\'s '
                        'FFmpeg; reinstall av from PyPI')


_CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}


def rgb_from_image(encoding: str, height: int, width: int, step: int, data: Any) -> np.ndarray:
    """An HxWx3 uint8 RGB array from the fields of a sensor_msgs/Image.

    ``data`` is any buffer (bytes, array.array, a numpy view of a CDR message); rgb8 data
    is returned without a copy when it is already packed.

    Raises:
        BadImageError: unsupported encoding or a data size that does not match the header.
    """
    channels = _CHANNELS.get(encoding)
    if channels is None:
        raise BadImageError(f"image encoding '{encoding}' is not supported "
                            f'(supported: {", ".join(_CHANNELS)})')
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


class VideoWriter:
    """Encodes RGB frames (H x W x 3, uint8) into an MP4 file.

    The size is taken from the first frame; later frames must match it. Odd sizes are cropped
    by one pixel (yuv420p needs even sizes).
    """

    def __init__(self, path: str | Path, fps: float, codec: str = 'libx264') -> None:
        self.path = Path(path)
        self.fps = fps
        self.codec = pick_codec(codec)
        self.frames = 0
        self.width = 0
        self.height = 0
        self._tmp = self.path.with_name(f'.{self.path.name}.tmp')
        self._container: Any = None
        self._stream: Any = None

    def _open(self, height: int, width: int) -> None:
        import av

        self.height, self.width = height - height % 2, width - width % 2
        self._container = av.open(str(self._tmp), mode='w', format='mp4')
        rate = Fraction(self.fps).limit_denominator(1000)
        # ultrafast + zerolatency: ~1.2 ms a 480x480 frame instead of ~2.1 ms (veryfast) on
        # a CPU the control loop shares; the price is a ~4x larger file (~1 KB a frame of a
        # sim scene), and no B-frames, so every frame leaves the encoder at once.
        options = ({'preset': 'ultrafast', 'tune': 'zerolatency', 'crf': '23'}
                   if self.codec == 'libx264' else {})
        self._stream = self._container.add_stream(self.codec, rate=rate, options=options)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = 'yuv420p'
        self._stream.time_base = 1 / rate
        # One encoder thread: a frame this small gains nothing from more, and the machine
        # is shared with the control loop.
        self._stream.thread_count = 1

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB frame.

        Raises:
            BadImageError: the frame is not H x W x 3 uint8 or its size changed.
        """
        import av

        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise BadImageError(f'video frame must be HxWx3 uint8 RGB, got shape {frame.shape} '
                                f'dtype {frame.dtype}')
        if self._container is None:
            self._open(frame.shape[0], frame.shape[1])
        frame = frame[:self.height, :self.width]
        if frame.shape[:2] != (self.height, self.width):
            raise BadImageError(f'video frame size {frame.shape[1]}x{frame.shape[0]} differs '
                                f'from the first frame {self.width}x{self.height}')
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format='rgb24')
        vf.pts = self.frames
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> dict[str, Any]:
        """Flush, fsync and rename into place; returns the video's facts for trial.json."""
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
            fd = os.open(self._tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
        return {'path': self.path.name if self.frames else None, 'codec': self.codec,
                'fps': self.fps, 'frames': self.frames, 'width': self.width, 'height': self.height}

    def abort(self) -> None:
        """Drop a partial video (its temp file)."""
        if self._container is not None:
            # The temp file is removed either way.
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        self._tmp.unlink(missing_ok=True)
