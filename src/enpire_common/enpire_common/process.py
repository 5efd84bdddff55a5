"""Child-process helpers shared by the launcher, the rollout and the client."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """``preexec_fn`` body: the child gets ``sig`` when its parent dies (Linux).

    Runs between fork and exec; the flag survives exec (the ROS wheels' re-exec of every
    Python process included; not a set-user-ID binary's). Checks the race where the parent
    died before prctl ran. A no-op where prctl is missing.

    Linux sends the signal when the *thread* that forked the child exits, not the process:
    fork from a thread that lives as long as the parent (the launcher: its main thread).
    """
    _prctl(_PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent_pid:
        os._exit(1)


def die_with_this_process(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that ties the child's life to the calling process."""
    parent = os.getpid()
    return lambda: die_with_parent(parent, sig)


def set_child_subreaper(on: bool = True) -> bool:
    """Make this process adopt its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    A descendant whose parent dies is then re-parented to us instead of to init, so it stays
    findable (``ppid == our pid``) and we must reap it. True where it took effect.
    """
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0)
