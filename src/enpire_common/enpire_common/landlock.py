"""Landlock (Linux >= 5.13) through ctypes: confine the calling process's file and TCP access.

Landlock is an unprivileged, stackable LSM: a process describes which file hierarchies it may
read or write, then restricts itself (and every thread and child it will have). The kernel
answers any other access with EACCES, which Python raises as ``PermissionError``. A
restriction can never be lifted by the process. This module uses the raw syscalls (no
dependency), picking the newest ABI the kernel offers:

* ABI 1: file access rights; ABI 2: rename/link across directories (REFER); ABI 3: truncate;
* ABI 4: TCP bind/connect (handled with no rule: all TCP is refused);
* ABI 5: ioctl on devices; ABI 6: scoping (no abstract unix sockets or signals that leave the
  domain: a confined policy cannot signal the cell's processes).

Only the stat family of calls is not governed by Landlock: a confined process can still learn
that a path exists, never read or change it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
from collections.abc import Iterable
from dataclasses import dataclass

_NR = {'x86_64': (444, 445, 446), 'aarch64': (444, 445, 446)}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13          # ABI 2
FS_TRUNCATE = 1 << 14       # ABI 3
FS_IOCTL_DEV = 1 << 15      # ABI 5
NET_BIND_TCP = 1 << 0       # ABI 4
NET_CONNECT_TCP = 1 << 1    # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1                # ABI 6

#: Rights that may be granted on a regular file (the rest only make sense on directories).
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
WRITE = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG
         | FS_MAKE_SYM | FS_MAKE_FIFO | FS_MAKE_SOCK | FS_REFER | FS_TRUNCATE)


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [('allowed_access', ctypes.c_uint64), ('parent_fd', ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [('allowed_access', ctypes.c_uint64), ('port', ctypes.c_uint64)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [('handled_access_fs', ctypes.c_uint64), ('handled_access_net', ctypes.c_uint64),
                ('scoped', ctypes.c_uint64)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    if platform.system() != 'Linux' or platform.machine() not in _NR:
        return 0
    try:
        libc = _libc()
    except OSError:
        return 0
    version = libc.syscall(_NR[platform.machine()][0], None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def _handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


@dataclass(frozen=True)
class Rule:
    """Grant ``access`` (READ, READ | WRITE, ...) beneath ``path`` (a directory or a file)."""

    path: str
    access: int


def _add_rule(libc: ctypes.CDLL, nr: int, ruleset: int, kind: int, attr: ctypes.Structure,
              what: str) -> None:
    if libc.syscall(nr, ctypes.c_int(ruleset), ctypes.c_int(kind), ctypes.byref(attr),
                    ctypes.c_uint32(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f'landlock_add_rule({what}) failed: {os.strerror(err)}')


def restrict_self(rules: Iterable[Rule], *, deny_tcp: bool = True, scope: bool = True,
                  connect_ports: Iterable[int] = ()) -> int:
    """Confine the calling process (and its future threads/children) to ``rules``.

    Every file access that no rule grants is refused with EACCES; so are TCP bind/connect
    (ABI >= 4, ``deny_tcp``), and abstract unix sockets and signals to processes outside the
    sandbox (ABI >= 6, ``scope``). With ``deny_tcp``, ``connect_ports`` are the TCP ports
    that may still be connected to (a coding agent's API endpoint). Missing paths are
    skipped. Sets PR_SET_NO_NEW_PRIVS, which Landlock requires of an unprivileged caller.
    Call it from the process's only thread: Landlock confines the calling thread and
    whatever it creates afterwards, not threads that already run.

    Returns:
        The ABI version used.

    Raises:
        OSError: Landlock is not available, or the kernel refused a rule or the restriction.
    """
    abi = abi_version()
    if abi < 1:
        raise OSError(errno.ENOSYS, 'Landlock is not available on this kernel')
    create, add_rule, restrict = _NR[platform.machine()]
    libc = _libc()
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if deny_tcp and abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if scope and abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        err = ctypes.get_errno()
        raise OSError(err, f'landlock_create_ruleset failed: {os.strerror(err)}')
    try:
        for rule in rules:
            try:
                fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                access = rule.access & handled
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= _FILE_RIGHTS
                _add_rule(libc, add_rule, ruleset, _RULE_PATH_BENEATH,
                          _PathBeneath(access, fd), rule.path)
            finally:
                os.close(fd)
        if deny_tcp and abi >= 4:
            for port in sorted({int(p) for p in connect_ports}):
                _add_rule(libc, add_rule, ruleset, _RULE_NET_PORT,
                          _NetPort(NET_CONNECT_TCP, port), f'tcp port {port}')
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                               ctypes.c_ulong]
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            err = ctypes.get_errno()
            raise OSError(err, f'prctl(NO_NEW_PRIVS) failed: {os.strerror(err)}')
        if libc.syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f'landlock_restrict_self failed: {os.strerror(err)}')
    finally:
        os.close(ruleset)
    return abi
