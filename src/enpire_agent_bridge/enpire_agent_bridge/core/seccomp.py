"""A tiny seccomp-BPF filter (ctypes, no dependency) that stops a process from spawning others.

Blocks fork, vfork, execve, execveat, clone without CLONE_THREAD (posix_spawn included) with
EAGAIN/EPERM, and clone3 with ENOSYS (glibc then falls back to clone, so threads still work).
It complements RLIMIT_NPROC=0, which root ignores and which also forbids threads. Once set, a
filter cannot be removed by the process (PR_SET_NO_NEW_PRIVS is set first, as the kernel
requires for unprivileged filters).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import platform
import struct

_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_CLONE_THREAD = 0x00010000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2

# arch audit id, {name: nr}, x32 bit (x86_64 only)
_ARCHES = {
    'x86_64': (0xC000003E, {'clone': 56, 'fork': 57, 'vfork': 58, 'execve': 59,
                            'execveat': 322, 'clone3': 435}, 0x40000000),
    'aarch64': (0xC00000B7, {'clone': 220, 'execve': 221, 'execveat': 281, 'clone3': 435}, None),
}


class _SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]


def supported() -> bool:
    return platform.system() == 'Linux' and platform.machine() in _ARCHES


def _program(machine: str) -> list[tuple[int, int, int, int]]:
    arch, nrs, x32_bit = _ARCHES[machine]
    # Labels are resolved after layout: ('goto', label) placeholders in jt/jf.
    prog: list[tuple[int, object, object, int]] = [
        (_LD_W_ABS, 0, 0, 4),                   # seccomp_data.arch
        (_JEQ_K, 1, 0, arch),
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),  # foreign ABI: refuse everything
        (_LD_W_ABS, 0, 0, 0),                   # seccomp_data.nr
    ]
    if x32_bit is not None:
        prog.append((_JGE_K, 'eperm', 0, x32_bit))
    for name in ('fork', 'vfork', 'execve', 'execveat'):
        if name in nrs:
            prog.append((_JEQ_K, 'eagain' if 'fork' in name else 'eperm', 0, nrs[name]))
    prog.append((_JEQ_K, 'enosys', 0, nrs['clone3']))
    prog.append((_JEQ_K, 0, 'allow', nrs['clone']))
    prog.append((_LD_W_ABS, 0, 0, 16))          # args[0] low word: clone flags
    prog.append((_JSET_K, 'allow', 'eagain', _CLONE_THREAD))
    labels = {'allow': _RET_ALLOW, 'eagain': _RET_ERRNO | errno.EAGAIN,
              'eperm': _RET_ERRNO | errno.EPERM, 'enosys': _RET_ERRNO | errno.ENOSYS}
    at = {}
    for label, ret in labels.items():
        at[label] = len(prog)
        prog.append((_RET_K, 0, 0, ret))
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = at[jt] - i - 1 if isinstance(jt, str) else jt
        jf = at[jf] - i - 1 if isinstance(jf, str) else jf
        out.append((code, int(jt), int(jf), k))
    return out


def block_process_creation() -> None:
    """Install the filter on the calling thread (call before any other thread starts).

    Raises:
        OSError: the kernel refused (no seccomp support).
    """
    if not supported():
        raise OSError(errno.ENOSYS, f'seccomp filter not available on {platform.machine()}')
    raw = b''.join(struct.pack('HBBI', c, jt, jf, k) for c, jt, jf, k in
                   _program(platform.machine()))
    buf = ctypes.create_string_buffer(raw, len(raw))
    prog = _SockFprog(len(raw) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f'prctl(NO_NEW_PRIVS) failed: {errno.errorcode.get(err, err)}')
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f'prctl(SECCOMP) failed: {errno.errorcode.get(err, err)}')
