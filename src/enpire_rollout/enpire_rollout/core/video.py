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
