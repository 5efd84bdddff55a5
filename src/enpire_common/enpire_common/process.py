"""Child-process helpers shared by the launcher, the rollout, the client and the coding-agent
supervisor."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable

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


def end_groups(procs: Iterable[subprocess.Popen], first: int = signal.SIGTERM,
               grace_s: float = 2.0, last_words: int | None = None) -> None:
    """End the process groups led by ``procs`` (started with ``start_new_session``).

    ``first`` to every group, up to ``grace_s`` (shared) for the leaders to exit, then
    SIGKILL to every group (members that outlived their leader included) and a bounded wait.
    Groups already gone are skipped. ``last_words``: a signal sent to each leader still
    running after the grace, half a second before the SIGKILL (a child that dumps its stacks
    on it says where it was stuck).
    """
    procs = list(procs)

    def signal_group(proc: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    for proc in procs:
        signal_group(proc, first)
    end = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, end - time.monotonic()))
    stuck = [p for p in procs if p.poll() is None]
    if last_words is not None and stuck:
        for proc in stuck:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, last_words)
        time.sleep(0.5)
    for proc in procs:
        signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)


def owned_tempdir(prefix: str, root: str | None = None) -> str:
    """A new private temp directory named ``<prefix><this pid>-<random>``, after removing
    those of ``prefix`` whose owner died (:func:`sweep_dead_owners`, once per process, root
    and prefix). A SIGKILLed process never runs its cleanup; over a day of faults and
    respawns its directories would pile up in the temp dir."""
    root = root or tempfile.gettempdir()
    if (root, prefix) not in _SWEPT:
        _SWEPT.add((root, prefix))
        sweep_dead_owners(root, prefix)
    return tempfile.mkdtemp(prefix=f'{prefix}{os.getpid()}-', dir=root)


_SWEPT: set[tuple[str, str]] = set()


def sweep_dead_owners(root: str, prefix: str) -> list[str]:
    """Remove the directories ``<root>/<prefix><pid>-*`` whose process ``pid`` no longer
    runs; returns the removed paths. One whose owner runs, or whose name carries no pid, is
    left alone (a reused pid only delays a removal)."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        owner = entry.name[len(prefix):].split('-', 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid():
            continue
        try:
            os.kill(int(owner), 0)
            continue                    # the owner runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue                    # another user's live process
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.path)
    return removed
