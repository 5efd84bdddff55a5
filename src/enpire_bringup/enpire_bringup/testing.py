"""Reusable helpers for tests of ``enpire up`` (shipped, like ``enpire_common.testing``).

``Launch`` runs ``enpire up`` as a subprocess whose output lines can be waited on; the rest
answers "is this process (still) alive" without being fooled by zombies or reused pids.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

#: ``[enpire] started <label> pid=<pid>`` (or ``respawned``): one per node process.
STARTED = re.compile(r'^\[enpire\] (started|respawned) (\S+) pid=(\d+)')


def enpire_cmd(*args: str) -> list[str]:
    """The argv of ``enpire <args>`` run by this interpreter."""
    return [sys.executable, '-m', 'enpire_bringup.cli', *args]


class Launch:
    """``enpire up <args>`` as a subprocess whose stdout lines can be waited on.

    Args:
        args: what follows ``enpire up``.
        cwd: its working directory.
        env: its environment (default: ours).
        timeout_s: how long :meth:`wait_for` waits.
    """

    def __init__(self, *args: str, cwd: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.proc = subprocess.Popen(enpire_cmd('up', *args), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=cwd,
                                     env=dict(env) if env is not None else None)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip('\n'))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], object], what: str) -> object:
        with self._cond:
            self._cond.wait_for(lambda: predicate(self.lines) or self.proc.poll() is not None,
                                self.timeout_s)
            result = predicate(self.lines)
        assert result, f'timed out waiting for {what}; output:\n' + '\n'.join(self.lines)
        return result

    def pids(self) -> dict[str, list[int]]:
        """Every node process started so far, by node label."""
        out: dict[str, list[int]] = {}
        for line in list(self.lines):
            m = STARTED.match(line)
            if m:
                out.setdefault(m.group(2), []).append(int(m.group(3)))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def kill_marked(mark: str | os.PathLike) -> int:
    """SIGKILL every other process whose command line names ``mark`` (a test's own
    directory: what its launches left behind); returns how many."""
    import psutil

    n = 0
    for p in psutil.process_iter(['pid', 'cmdline']):
        if p.pid != os.getpid() and str(mark) in ' '.join(p.info['cmdline'] or ()):
            try:
                p.kill()
                n += 1
            except psutil.NoSuchProcess:
                pass
    return n


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != 'Z'


def group_members(pgids: set[int]) -> list[int]:
    """The live processes in any of the process groups ``pgids``."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != 'Z' and int(fields[2]) in pgids:
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list:
    """psutil handles of every descendant of ``pid`` now (each remembers its start time, so
    a handle never answers for a later process that reuses the pid)."""
    import psutil

    return psutil.Process(pid).children(recursive=True)


def survivors(procs: Iterable) -> list[str]:
    """``'<pid> <cmdline>'`` of each psutil handle whose process still runs (not a zombie)."""
    import psutil

    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f'{p.pid} {" ".join(p.cmdline())[:160]}')
        except psutil.NoSuchProcess:
            continue
    return out


def wait_gone(procs: Iterable, within_s: float, since: float | None = None,
              poll_s: float = 0.05) -> float:
    """Wait until none of ``procs`` (psutil handles) runs; returns the seconds it took.

    Counts from ``since`` (a ``time.monotonic()``; default: now). Raises AssertionError
    listing the survivors when ``within_s`` has passed first.
    """
    procs = list(procs)
    start = time.monotonic() if since is None else since
    while left := survivors(procs):
        if time.monotonic() - start > within_s:
            raise AssertionError(f'alive {within_s:.1f} s later: {left}')
        time.sleep(poll_s)  # process exit has no event we can wait on here
    return time.monotonic() - start


@contextlib.contextmanager
def trials_session(home: str | os.PathLike, *, cell: str = 'cell_0',
                   launch_args: Mapping[str, str] | None = None,
                   env: Mapping[str, str] | None = None,
                   ready_timeout_s: float = 120.0) -> Iterator[Any]:
    """A started sim cell and a ``TrialsSession`` on it (``home`` attribute added), with
    ``ENPIRE_HOME=home`` and ``env`` in this process's environment (the cell launch inherits
    it) while it lasts; the launch is stopped and the environment restored after."""
    from enpire_evolution.ros.trials_port import TrialsSession

    extra = {'ENPIRE_HOME': str(home), **(env or {})}
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    session = None
    try:
        session = TrialsSession(home=home, cell=cell, probe_s=1.0,
                                ready_timeout_s=ready_timeout_s,
                                launch_args=dict(launch_args or {}))
        session.home = Path(home)
        yield session
    finally:
        if session is not None:
            session.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
