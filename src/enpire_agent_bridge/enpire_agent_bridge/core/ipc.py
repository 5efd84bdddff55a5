"""Compact framing for the policy host pipes (no pickle: the sandboxed side is untrusted).

A frame is ``<II`` (header length, body length), a JSON header
``{"k": kind, "m": meta, "a": [[name, dtype, shape], ...]}`` and the raw array bytes back to
back. Arrays travel as their own memory (``os.writev``, no copy on the sending side) and are
rebuilt with ``np.frombuffer`` over one received ``bytearray``. A 480x480x3 image is 691 KB,
which fits the 1 MiB pipe buffer we ask for, so a request is written in one go.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import struct
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

_PREFIX = struct.Struct('<II')
MAX_HEADER_BYTES = 1 << 16
#: The largest body either side accepts (a 4K rgb frame plus change).
MAX_BODY_BYTES = 64 << 20
_F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)
PIPE_SIZE_BYTES = 1 << 20
_ALLOWED_KINDS = frozenset('biuf')


class FrameError(Exception):
    """The peer sent something that is not a valid frame, or the pipe closed."""


class FrameTimeoutError(Exception):
    """The peer did not answer within the given time."""


def enlarge_pipe(fd: int, size: int = PIPE_SIZE_BYTES) -> None:
    """Best effort: a bigger pipe buffer lets a full image go through in one write."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)


def encode(kind: str, meta: Mapping[str, Any] | None = None,
           arrays: Mapping[str, np.ndarray] | None = None) -> list[Any]:
    """Encode one message into a list of buffers for ``os.writev``."""
    descr, bufs = [], []
    for name, arr in (arrays or {}).items():
        a = np.ascontiguousarray(arr)
        if a.dtype.kind not in _ALLOWED_KINDS:
            raise FrameError(f"array '{name}' has non-numeric dtype {a.dtype}")
        descr.append([name, a.dtype.str, list(a.shape)])
        if a.nbytes:
            bufs.append(memoryview(a).cast('B'))
    header = json.dumps({'k': kind, 'm': dict(meta or {}), 'a': descr},
                        separators=(',', ':')).encode()
    body_len = sum(b.nbytes for b in bufs)
    return [_PREFIX.pack(len(header), body_len), header, *bufs]


def decode(header: bytes, body: bytearray) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Decode a header + body pair; validates every length against the descriptors."""
    try:
        head = json.loads(header)
        kind, meta, descr = str(head['k']), dict(head['m']), list(head['a'])
    except (ValueError, KeyError, TypeError) as exc:
        raise FrameError(f'malformed frame header ({exc})') from None
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    view = memoryview(body)
    for item in descr:
        try:
            name, dtype_str = str(item[0]), np.dtype(item[1])
            shape = tuple(int(s) for s in item[2])
        except (TypeError, ValueError, IndexError) as exc:
            raise FrameError(f'malformed array descriptor {item!r} ({exc})') from None
        if dtype_str.kind not in _ALLOWED_KINDS or any(s < 0 for s in shape):
            raise FrameError(f"array '{name}' has a forbidden dtype/shape {dtype_str}/{shape}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype_str.itemsize
        if offset + nbytes > len(body):
            raise FrameError(f"array '{name}' runs past the end of the frame")
        arrays[name] = np.frombuffer(view[offset:offset + nbytes], dtype=dtype_str).reshape(shape)
        offset += nbytes
    if offset != len(body):
        raise FrameError(f'frame body has {len(body) - offset} trailing bytes')
    return kind, meta, arrays


# --- blocking side (the worker) --------------------------------------------------------------
def write_blocking(fd: int, bufs: list[Any]) -> None:
    """Write every buffer to a blocking fd."""
    pending = [memoryview(b).cast('B') if not isinstance(b, bytes) else memoryview(b)
               for b in bufs]
    while pending:
        _advance(pending, os.writev(fd, pending))


def _advance(pending: list[memoryview], n: int) -> None:
    """Drop the first ``n`` bytes written by a (partial) writev from ``pending``."""
    while n and pending:
        if n >= pending[0].nbytes:
            n -= pending[0].nbytes
            pending.pop(0)
        else:
            pending[0] = pending[0][n:]
            n = 0


def _read_exact_blocking(fd: int, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise FrameError('pipe closed')
        got += k
    return buf


def read_blocking(fd: int, max_body: int = MAX_BODY_BYTES
                  ) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Read one frame from a blocking fd."""
    hlen, blen = _PREFIX.unpack(_read_exact_blocking(fd, _PREFIX.size))
    if hlen > MAX_HEADER_BYTES or blen > max_body:
        raise FrameError(f'frame too large (header {hlen} B, body {blen} B)')
    header = _read_exact_blocking(fd, hlen)
    return decode(bytes(header), _read_exact_blocking(fd, blen))


# --- non-blocking side with deadlines (the host) ---------------------------------------------
def write_deadline(fd: int, bufs: list[Any], end_s: float) -> None:
    """Write every buffer to a non-blocking fd before monotonic time ``end_s``."""
    pending = [memoryview(b).cast('B') if not isinstance(b, bytes) else memoryview(b)
               for b in bufs]
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while pending:
        try:
            n = os.writev(fd, pending)
        except BlockingIOError:
            n = 0
        except (BrokenPipeError, ConnectionResetError):
            raise FrameError('pipe closed') from None
        _advance(pending, n)
        if pending:
            remaining_ms = (end_s - time.monotonic()) * 1000.0
            if remaining_ms <= 0:
                raise FrameTimeoutError('write timed out')
            events = poller.poll(max(1, int(remaining_ms)))
            if any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events):
                raise FrameError('pipe closed')


class FrameReader:
    """Reads frames from a non-blocking fd with a deadline, keeping partial data between calls."""

    def __init__(self, fd: int, max_body: int = MAX_BODY_BYTES) -> None:
        self.fd = fd
        self.max_body = max_body
        self._buf = bytearray()
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def _fill(self, want: int, end_s: float) -> None:
        while len(self._buf) < want:
            try:
                chunk = os.read(self.fd, max(want - len(self._buf), 65536))
            except BlockingIOError:
                chunk = None
            if chunk == b'':
                raise FrameError('pipe closed')
            if chunk:
                self._buf += chunk
                continue
            remaining_ms = (end_s - time.monotonic()) * 1000.0
            if remaining_ms <= 0:
                raise FrameTimeoutError('read timed out')
            # poll's resolution is 1 ms; round up so we never spin.
            self._poller.poll(max(1, int(remaining_ms + 0.999)))

    def read(self, end_s: float) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
        """One frame; FrameTimeoutError at monotonic ``end_s``, FrameError on EOF/garbage."""
        self._fill(_PREFIX.size, end_s)
        hlen, blen = _PREFIX.unpack_from(self._buf)
        if hlen > MAX_HEADER_BYTES or blen > self.max_body:
            raise FrameError(f'frame too large (header {hlen} B, body {blen} B)')
        total = _PREFIX.size + hlen + blen
        self._fill(total, end_s)
        header = bytes(self._buf[_PREFIX.size:_PREFIX.size + hlen])
        body = bytearray(self._buf[_PREFIX.size + hlen:total])
        del self._buf[:total]
        return decode(header, body)
