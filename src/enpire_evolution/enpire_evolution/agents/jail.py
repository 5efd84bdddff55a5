"""Confine a coding agent's process: it may write only its worktree and its scratch directory.

``python -m enpire_evolution.agents.jail --write DIR ... [--port N ...] -- CMD ...`` restricts
itself, then ``exec``s CMD, so the agent and every process it starts inherit the confinement:

* **Landlock** (Linux >= 5.13, preferred): the whole file system stays readable, only the
  ``--write`` directories (and the terminal/null devices) are writable. Under Landlock ABI 4
  and later TCP connections are refused except to the ``--port`` list (the model's API, 443 by
  default); under ABI 6 and later the agent cannot signal processes outside its sandbox (the
  cell, the supervisor, other agents).
* **bubblewrap** where Landlock is absent: the root file system bound read-only, the
  ``--write`` directories bound writable at the same paths, a private /proc, /dev and PID
  namespace. The network stays shared (the agent needs its API).
* **none**: refused unless ``--allow-unconfined`` (then CMD runs as is).

The task contract, the packages, the store and the revisions are therefore read-only to the
agent, and so are other agents' worktrees. It reaches the cell only through the verbs, which
the supervisor runs outside the sandbox (:mod:`enpire_evolution.agents.gateway`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

#: Devices every tool writes to (shells redirect to /dev/null, git and node open the tty).
DEVICE_WRITES = ('/dev/null', '/dev/zero', '/dev/tty', '/dev/pts', '/dev/ptmx', '/dev/full')
#: Exit code when the confinement could not be applied (nothing was run).
EXIT_NOT_CONFINED = 97


def confinement_mode(mode: str = 'auto') -> tuple[str, str]:
    """(``landlock|bwrap|none``, detail) that an agent gets on this machine."""
    from enpire_common.confinement import detect

    found = detect(mode)
    return found.mode, found.detail


def landlock_exec(cmd: Sequence[str], writes: Sequence[str], ports: Sequence[int]) -> None:
    """Restrict this process with Landlock, then exec ``cmd`` (never returns)."""
    from enpire_common import landlock

    rules = [landlock.Rule('/', landlock.READ)]
    rules += [landlock.Rule(w, landlock.READ | landlock.WRITE) for w in writes]
    rules += [landlock.Rule(d, landlock.READ | landlock.FS_WRITE_FILE | landlock.FS_IOCTL_DEV)
              for d in DEVICE_WRITES]
    landlock.restrict_self(rules, deny_tcp=bool(ports), connect_ports=ports)
    os.execvp(cmd[0], list(cmd))


def bwrap_argv(cmd: Sequence[str], writes: Sequence[str]) -> list[str]:
    """The bubblewrap command line that runs ``cmd`` with only ``writes`` writable."""
    from enpire_common.confinement import bwrap_path

    exe = bwrap_path()
    if not exe:
        raise OSError('bubblewrap is not available')
    argv = [exe, '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc',
            '--unshare-pid', '--unshare-ipc', '--die-with-parent']
    for w in writes:
        argv += ['--bind', w, w]
    return argv + ['--', *cmd]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m enpire_evolution.agents.jail',
                                description=__doc__.split('\n')[0])
    p.add_argument('--write', action='append', default=[], help='a writable directory')
    p.add_argument('--port', action='append', type=int, default=[],
                   help='a TCP port the agent may connect to (default: any)')
    p.add_argument('--mode', default='auto', choices=('auto', 'landlock', 'bwrap', 'none'))
    p.add_argument('--allow-unconfined', action='store_true')
    p.add_argument('cmd', nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ['--'] else args.cmd
    if not cmd:
        p.error('no command given after --')
    writes = [os.path.realpath(w) for w in args.write]
    mode, detail = confinement_mode(args.mode)
    try:
        if mode == 'landlock':
            landlock_exec(cmd, writes, args.port)
        elif mode == 'bwrap':
            argv2 = bwrap_argv(cmd, writes)
            os.execv(argv2[0], argv2)
        elif args.allow_unconfined:
            os.execvp(cmd[0], cmd)
    except OSError as exc:
        print(f'enpire agent jail: cannot run {cmd[0]} confined ({mode}): {exc}',
              file=sys.stderr)
        return EXIT_NOT_CONFINED
    print(f'enpire agent jail: no confinement here ({detail}); refusing to run {cmd[0]}',
          file=sys.stderr)
    return EXIT_NOT_CONFINED


if __name__ == '__main__':
    sys.exit(main())
