"""A tiny seccomp-BPF filter (ctypes, no dependency) for the policy worker.

* Process creation: fork, vfork, execve, execveat and clone without CLONE_THREAD (posix_spawn
  included) fail with EAGAIN/EPERM; clone3 with ENOSYS (glibc then falls back to clone, so
  threads still work). It complements RLIMIT_NPROC=0, which root ignores and which also
  forbids threads.
* Network (``block_network``): ``socket()`` fails with EACCES for every family (the worker's
  IPC is a pair of inherited pipes and needs no socket); ``socketpair()`` is allowed for
  AF_UNIX only (a connected pair inside the process, e.g. asyncio's self-pipe).
* Escape hatches of a privileged process, refused with EPERM: io_uring (it can open sockets
  and files beside the filtered syscalls), ptrace and cross-process memory access, new
  namespaces and mounts, file handles (open_by_handle_at bypasses path checks), bpf,
  perf_event_open, keys, userfaultfd, modules, reboot/kexec, clock and host-name changes,
  and prctl(PR_SET_PDEATHSIG) (the worker's tie to its host's life).

Python raises EACCES/EPERM as ``PermissionError``. Once set, a filter cannot be removed by the
process (PR_SET_NO_NEW_PRIVS is set first, as the kernel requires for unprivileged filters).
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
_AF_UNIX = 1
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2

# Syscalls refused with EPERM (see the module docstring), by name.
_PRIVILEGED = ('ptrace', 'process_vm_readv', 'process_vm_writev', 'unshare', 'setns', 'mount',
               'umount2', 'pivot_root', 'chroot', 'open_tree', 'move_mount', 'fsopen',
               'fsconfig', 'fsmount', 'fspick', 'name_to_handle_at', 'open_by_handle_at',
               'bpf', 'perf_event_open', 'add_key', 'keyctl', 'userfaultfd', 'init_module',
               'finit_module', 'delete_module', 'reboot', 'kexec_load', 'kexec_file_load',
               'settimeofday', 'clock_settime', 'adjtimex', 'clock_adjtime', 'sethostname',
               'setdomainname', 'swapon', 'swapoff', 'acct', 'iopl', 'ioperm',
               'io_uring_setup', 'io_uring_enter', 'io_uring_register')

# arch audit id, {name: nr}, x32 bit (x86_64 only). Numbers from the kernel's unistd headers
# (asm/unistd_64.h for x86_64, asm-generic/unistd.h for aarch64).
_ARCHES = {
    'x86_64': (0xC000003E, {
        'clone': 56, 'fork': 57, 'vfork': 58, 'execve': 59, 'execveat': 322, 'clone3': 435,
        'socket': 41, 'socketpair': 53, 'prctl': 157, 'ptrace': 101, 'process_vm_readv': 310,
        'process_vm_writev': 311, 'unshare': 272, 'setns': 308, 'mount': 165, 'umount2': 166,
        'pivot_root': 155, 'chroot': 161, 'open_tree': 428, 'move_mount': 429, 'fsopen': 430,
        'fsconfig': 431, 'fsmount': 432, 'fspick': 433, 'name_to_handle_at': 303,
        'open_by_handle_at': 304, 'bpf': 321, 'perf_event_open': 298, 'add_key': 248,
        'keyctl': 250, 'userfaultfd': 323, 'init_module': 175, 'finit_module': 313,
        'delete_module': 176, 'reboot': 169, 'kexec_load': 246, 'kexec_file_load': 320,
        'settimeofday': 164, 'clock_settime': 227, 'adjtimex': 159, 'clock_adjtime': 305,
        'sethostname': 170, 'setdomainname': 171, 'swapon': 167, 'swapoff': 168, 'acct': 163,
        'iopl': 172, 'ioperm': 173, 'io_uring_setup': 425, 'io_uring_enter': 426,
        'io_uring_register': 427}, 0x40000000),
    'aarch64': (0xC00000B7, {
        'clone': 220, 'execve': 221, 'execveat': 281, 'clone3': 435,
        'socket': 198, 'socketpair': 199, 'prctl': 167, 'ptrace': 117, 'process_vm_readv': 270,
        'process_vm_writev': 271, 'unshare': 97, 'setns': 268, 'mount': 40, 'umount2': 39,
        'pivot_root': 41, 'chroot': 51, 'open_tree': 428, 'move_mount': 429, 'fsopen': 430,
        'fsconfig': 431, 'fsmount': 432, 'fspick': 433, 'name_to_handle_at': 264,
        'open_by_handle_at': 265, 'bpf': 280, 'perf_event_open': 241, 'add_key': 217,
        'keyctl': 219, 'userfaultfd': 282, 'init_module': 105, 'finit_module': 273,
        'delete_module': 106, 'reboot': 142, 'kexec_load': 104, 'kexec_file_load': 294,
        'settimeofday': 170, 'clock_settime': 112, 'adjtimex': 171, 'clock_adjtime': 266,
        'sethostname': 161, 'setdomainname': 162, 'swapon': 224, 'swapoff': 225, 'acct': 89,
        'io_uring_setup': 425, 'io_uring_enter': 426, 'io_uring_register': 427}, None),
}


class _SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]


def supported() -> bool:
    return platform.system() == 'Linux' and platform.machine() in _ARCHES


def _program(machine: str, block_network: bool = True) -> list[tuple[int, int, int, int]]:
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
    for name in _PRIVILEGED:
        if name in nrs:
            prog.append((_JEQ_K, 'eperm', 0, nrs[name]))
    if block_network:
        prog.append((_JEQ_K, 'eacces', 0, nrs['socket']))
        prog.append((_JEQ_K, 0, 'not_socketpair', nrs['socketpair']))
        prog.append((_LD_W_ABS, 0, 0, 16))      # args[0] low word: the address family
        prog.append((_JEQ_K, 'allow', 'eacces', _AF_UNIX))
        prog.append(('label', 'not_socketpair', None, 0))
    # prctl(PR_SET_PDEATHSIG, ...) would undo the worker's tie to its host.
    prog.append((_JEQ_K, 0, 'not_prctl', nrs['prctl']))
    prog.append((_LD_W_ABS, 0, 0, 16))          # args[0] low word: the option
    prog.append((_JEQ_K, 'eperm', 'allow', _PR_SET_PDEATHSIG))
    prog.append(('label', 'not_prctl', None, 0))
    prog.append((_JEQ_K, 'enosys', 0, nrs['clone3']))
    prog.append((_JEQ_K, 0, 'allow', nrs['clone']))
    prog.append((_LD_W_ABS, 0, 0, 16))          # args[0] low word: clone flags
    prog.append((_JSET_K, 'allow', 'eagain', _CLONE_THREAD))
    labels = {'allow': _RET_ALLOW, 'eagain': _RET_ERRNO | errno.EAGAIN,
              'eperm': _RET_ERRNO | errno.EPERM, 'enosys': _RET_ERRNO | errno.ENOSYS,
              'eacces': _RET_ERRNO | errno.EACCES}
    # Inline labels mark the next instruction; they take no slot.
    at: dict[str, int] = {}
    body: list[tuple[int, object, object, int]] = []
    for ins in prog:
        if ins[0] == 'label':
            at[str(ins[1])] = len(body)
        else:
            body.append(ins)
    for label, ret in labels.items():
        at[label] = len(body)
        body.append((_RET_K, 0, 0, ret))
    out = []
    for i, (code, jt, jf, k) in enumerate(body):
        jt = at[jt] - i - 1 if isinstance(jt, str) else jt
        jf = at[jf] - i - 1 if isinstance(jf, str) else jf
        if not (0 <= int(jt) <= 255 and 0 <= int(jf) <= 255):
            raise ValueError(f'seccomp jump out of range at {i}')
        out.append((code, int(jt), int(jf), k))
    return out


def block_process_creation(block_network: bool = True) -> None:
    """Install the filter on the calling thread (call before any other thread starts).

    Args:
        block_network: also refuse sockets (see the module docstring).

    Raises:
        OSError: the kernel refused (no seccomp support).
    """
    if not supported():
        raise OSError(errno.ENOSYS, f'seccomp filter not available on {platform.machine()}')
    raw = b''.join(struct.pack('HBBI', c, jt, jf, k) for c, jt, jf, k in
                   _program(platform.machine(), block_network))
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
