"""Filesystem and network confinement of the policy worker, and the record of what it refused.

A policy worker may read only what running Python and its policy needs: the interpreter and
its venv, system libraries, a few device and /proc files, and its own revision copy; it may
write only its scratch directory. Everything else (the task contract under ``config/``, the
store, other revisions, the workspace source, ``$HOME``, ``/tmp`` at large, ``/etc``) is
refused by the kernel with EACCES, which the policy sees as a ``PermissionError`` it may catch.
Sockets are refused by the seccomp filter (:mod:`.seccomp`), TCP also by Landlock.

Mechanisms, best first (:func:`detect`, in :mod:`enpire_common.confinement`):

* ``landlock``: the worker restricts itself (:mod:`enpire_common.landlock`) after importing
  its own modules and before importing the policy. Needs Linux >= 5.13 with Landlock enabled.
* ``bwrap``: where Landlock is absent, bubblewrap runs the worker in new namespaces (no
  network) over read-only binds of the same paths, with only the scratch directory writable.
* ``none``: neither is available. Trials refuse to run unless explicitly allowed
  (``--allow-unconfined`` / ``sandbox.allow_unconfined``), and the trial record says so.

Denials are counted inside the worker by a Python audit hook that applies the same path rules
(``open``, directory listings, file-system changes, ``socket()``). The count is advisory: code
that calls libc directly (ctypes) is still refused by the kernel, but not counted.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterable

from enpire_common import landlock

# Detection lives in enpire_common (the rollout node needs it too); re-exported here.
from enpire_common.confinement import MAX_NAMED_DENIALS as MAX_NAMED
from enpire_common.confinement import MODES, Confinement, bwrap_path, detect

__all__ = ['MAX_NAMED', 'MODES', 'Confinement', 'Denials', 'bwrap_command', 'bwrap_path',
           'confine_worker', 'detect', 'install_audit', 'python_read_paths', 'read_paths']

#: System paths a Python policy needs to read (missing ones are skipped).
SYSTEM_READ = ('/usr', '/lib', '/lib64', '/lib32', '/etc/ld.so.cache', '/etc/localtime',
               '/sys/devices/system/cpu', '/proc/cpuinfo', '/proc/meminfo')
#: Device files a policy may read and write.
DEVICES = ('/dev/null', '/dev/zero', '/dev/urandom', '/dev/random')
_OWN_PACKAGES = frozenset({'enpire_agent_bridge', 'enpire_common'})


def _real(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if p and os.path.exists(p):
            r = os.path.realpath(p)
            if r not in out:
                out.append(r)
    return out


def python_read_paths() -> list[str]:
    """The interpreter's installation and the venv (stdlib, site-packages, shared libs)."""
    paths = [sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))]
    paths += [sysconfig.get_paths()[k] for k in ('stdlib', 'platstdlib', 'purelib', 'platlib')]
    return _real(paths)


def read_paths(policy_dir: str) -> list[str]:
    """Everything a worker may read: its policy, Python, system libraries and devices."""
    return _real([policy_dir, *python_read_paths(), *SYSTEM_READ, *DEVICES])


def bwrap_command(exe: str, policy_dir: str, scratch: str, package_roots: Iterable[str]
                  ) -> list[str]:
    """The bubblewrap prefix that runs the worker over read-only binds of ``read_paths``.

    ``package_roots`` (the worker's own code) are bound too, since under bwrap the worker is
    confined before it starts. No network namespace peer, no /proc of other processes.
    """
    cmd = [exe, '--unshare-all', '--die-with-parent', '--new-session', '--proc', '/proc',
           '--tmpfs', '/tmp']
    raw = [policy_dir, *python_read_paths(), *SYSTEM_READ, *DEVICES, *package_roots]
    done: set[str] = set()
    for path in raw:
        if not path or path in done or not os.path.exists(path):
            continue
        done.add(path)
        real = os.path.realpath(path)
        if os.path.islink(path):
            # Keep the link (merged /usr: /lib64 -> usr/lib64 holds the dynamic loader).
            cmd += ['--symlink', os.readlink(path), path]
            if real in done:
                continue
            done.add(real)
        flag = '--dev-bind' if path in DEVICES else '--ro-bind'
        cmd += [flag, real, real]
    cmd += ['--bind', scratch, scratch, '--chdir', scratch, '--']
    return cmd


class Denials:
    """Refused operations seen by the worker's audit hook: a count and the first few."""

    def __init__(self) -> None:
        self.count = 0
        self.named: list[str] = []
        self._sent = 0
        self._sent_named = 0

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.named) < MAX_NAMED and what not in self.named:
            self.named.append(what)

    def take(self) -> tuple[int, list[str]]:
        """New denials since the last call (count, newly named)."""
        n, names = self.count - self._sent, self.named[self._sent_named:]
        self._sent, self._sent_named = self.count, len(self.named)
        return n, names


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CHANGE_EVENTS = {'os.mkdir', 'os.remove', 'os.rmdir', 'os.rename', 'os.chmod', 'os.chown',
                  'os.truncate', 'os.link', 'os.symlink', 'os.utime', 'os.chflags',
                  'os.mkfifo', 'os.mknod', 'shutil.rmtree'}
_LIST_EVENTS = {'os.listdir', 'os.scandir', 'glob.glob'}


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r + '/') for r in roots)


def install_audit(denials: Denials, read: Iterable[str], write: Iterable[str]) -> None:
    """Count what the kernel will refuse: a Python audit hook over the same path rules.

    Audit hooks cannot be removed once added. The hook itself never raises (the kernel, not
    the hook, refuses), so a policy sees the same ``PermissionError`` either way.
    """
    import socket

    read_roots, write_roots = tuple(read), tuple(write)
    realpath, join, getcwd = os.path.realpath, os.path.join, os.getcwd
    busy = [False]

    def check(path: object, writing: bool, op: str) -> None:
        if isinstance(path, int) or path is None:
            return
        raw = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
        full = realpath(join(getcwd(), raw))
        if _under(full, write_roots) or (not writing and _under(full, read_roots)):
            return
        denials.add(f'{op} {full}')

    def hook(event: str, args: tuple) -> None:
        if busy[0]:
            return
        busy[0] = True
        try:
            if event == 'open':
                flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
                mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ''
                writing = bool(flags & _WRITE_FLAGS) or any(c in mode for c in 'wax+')
                check(args[0], writing, 'write' if writing else 'read')
            elif event in _LIST_EVENTS:
                check(args[0] if args and args[0] is not None else '.', False, 'list')
            elif event in _CHANGE_EVENTS:
                check(args[0] if args else None, True, 'write')
                if event in ('os.rename', 'os.link', 'os.symlink') and len(args) > 1:
                    check(args[1], True, 'write')
            elif event == 'socket.__new__' and len(args) > 1:
                denials.add(f'socket {socket.AddressFamily(args[1]).name}'
                            if args[1] in iter(socket.AddressFamily) else f'socket {args[1]}')
        except Exception:  # noqa: BLE001 - an audit hook must never break the audited call
            pass
        finally:
            busy[0] = False

    sys.addaudithook(hook)


def confine_worker(mode: str, policy_dir: str, scratch: str) -> Denials | None:
    """Confine this (worker) process; return its denial record (None when unconfined).

    Called by the worker after its own imports and before the policy's. ``sys.path`` is cut
    to what stays readable, so imports never probe the workspace (a probe would be a denial).
    """
    if mode == 'none':
        return None
    read = read_paths(policy_dir)
    write = _real([scratch])
    if mode == 'landlock':
        rules = [landlock.Rule(p, landlock.READ) for p in read if p not in DEVICES]
        rules += [landlock.Rule(p, landlock.READ | landlock.FS_WRITE_FILE) for p in read
                  if p in DEVICES]
        rules += [landlock.Rule(f'/proc/{os.getpid()}', landlock.READ)]
        rules += [landlock.Rule(p, landlock.READ | landlock.WRITE) for p in write]
        landlock.restrict_self(rules)
        read = [*read, f'/proc/{os.getpid()}']
    readable = (*read, *write)
    sys.path[:] = [p for p in sys.path
                   if p and _under(os.path.realpath(p), readable)]
    sys.path_importer_cache.clear()
    # The worker keeps its own references; the policy must not reach ENPIRE's code (or learn
    # where the workspace is) through already imported modules.
    for name in [m for m in sys.modules if m.split('.')[0] in _OWN_PACKAGES]:
        del sys.modules[name]
    denials = Denials()
    install_audit(denials, readable, [*write, *_real(DEVICES)])
    return denials
