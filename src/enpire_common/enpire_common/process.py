"""Child-process helpers shared by the launcher, the rollout and the client."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """``preexec_fn`` body: the child gets ``sig`` when its parent dies (Linux).

    Runs between fork and exec; the flag survives exec. Checks the race where the parent
    died before prctl ran. A no-op where prctl is missing.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def die_with_this_process(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that ties the child's life to the calling process."""
    parent = os.getpid()
    return lambda: die_with_parent(parent, sig)
