"""The launch watchdog: ends every process of a launch once its launcher is gone.

``PR_SET_PDEATHSIG`` only sends a node a graceful SIGTERM when the launcher dies, and only
reaches the node itself: a node stuck in (or ignoring) shutdown, or something it started in a
session of its own, outlives a SIGKILLed launcher. So the Supervisor starts this watchdog, a
small separate process in its own session (a terminal's Ctrl-C does not reach it), and keeps
the write end of a pipe to its stdin. The line protocol:

    +<pgid>   a node started; it leads process group <pgid>
    -<pgid>   that node is being reaped: forget the group

In between, every ``scan_s`` the watchdog records every descendant of the launcher (pid and
start time, so a reused pid is never hit) and the process groups that descendants lead (a
policy worker in its own session, say). End of file means the launcher is gone -- it closed
the pipe after a clean shutdown, or it died, however it died: the watchdog then SIGTERMs (and
SIGCONTs, for a stopped process) every recorded group and process still alive and everything
they started since, waits up to ``grace_s`` for them, SIGKILLs whatever is left and exits.
After a clean shutdown nothing is left and it exits at once.

Standard library only: the launcher runs it as ``python -I -S <this file>`` (no
site-packages: a fast start, and no re-exec by the ROS wheels' ``.pth``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

#: Defaults: time the processes left get between SIGTERM and SIGKILL; how often the
#: launcher's descendants are recorded.
GRACE_S = 1.0
SCAN_S = 1.0


@dataclass(frozen=True)
class Proc:
    """One line of ``/proc/<pid>/stat``, the fields we use."""

    pid: int
    state: str
    ppid: int
    pgid: int
    start: int  # clock ticks after boot: (pid, start) names a process for good

    @property
    def live(self) -> bool:
        return self.state not in ('Z', 'X')


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = data.rsplit(b')', 1)[1].split()
    return Proc(pid, rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[19]))


def signal_all(groups: Iterable[int], pids: Iterable[int], sig: int) -> None:
    """``sig`` to every process group in ``groups`` and every process in ``pids``; with a
    graceful signal also SIGCONT (a stopped process acts on it only once continued). Those
    already gone (or not ours) are skipped."""
    for target, kill in ((groups, os.killpg), (pids, os.kill)):
        for n in target:
            for s in (sig, signal.SIGCONT) if sig != signal.SIGKILL else (sig,):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(n, s)


def snapshot() -> dict[int, Proc]:
    """Every process on the machine (that we can see), by pid."""
    out = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            p = read_proc(int(name))
            if p is not None:
                out[p.pid] = p
    return out


def descendants(procs: dict[int, Proc], roots: Iterable[int]) -> set[int]:
    """The pids below ``roots`` (not the roots themselves) in the ``procs`` tree."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def parse_line(line: str) -> tuple[str, int] | None:
    """``'+42'`` -> ``('+', 42)``; anything malformed -> None (ignored)."""
    line = line.strip()
    if len(line) < 2 or line[0] not in '+-' or not line[1:].isdigit():
        return None
    return line[0], int(line[1:])


class Watchdog:
    """The watchdog's state: the groups it was told about and the processes it saw.

    Args:
        parent: the launcher's pid (whose descendants are recorded).
        grace_s: SIGTERM -> SIGKILL delay at the end.
        say: where the (rare) report of what was ended goes.
        parent_is_ppid: the launcher started us, so our parent pid changing means it died
            (a second way to notice, should its pipe's write end have leaked somewhere).
    """

    def __init__(self, parent: int, grace_s: float = GRACE_S, say: IO[str] | None = None,
                 parent_is_ppid: bool = False) -> None:
        self.parent = parent
        self.grace_s = grace_s
        self.say = say
        self.parent_is_ppid = parent_is_ppid
        self.groups: set[int] = set()        # announced by the launcher (+/-)
        self.seen_groups: set[int] = set()   # led by a recorded descendant
        self.seen: dict[int, int] = {}       # recorded descendants: pid -> start time
        me = read_proc(os.getpid())
        launcher = read_proc(parent)
        self._parent_start = launcher.start if launcher is not None else None
        # Never signal our own group or the launcher's (its caller's shell may share it).
        self._spare = {os.getpid(), *(p.pgid for p in (me, launcher) if p is not None)}

    def handle(self, line: str) -> None:
        msg = parse_line(line)
        if msg is None:
            return
        op, pgid = msg
        if op == '+':
            self.groups.add(pgid)
        else:
            self.groups.discard(pgid)
            self.seen_groups.discard(pgid)

    def scan(self, procs: dict[int, Proc] | None = None) -> None:
        """Record the launcher's live descendants; forget recorded processes that are gone."""
        procs = snapshot() if procs is None else procs
        self.seen = {pid: start for pid, start in self.seen.items()
                     if pid in procs and procs[pid].start == start and procs[pid].live}
        # A group with no member left is forgotten: its id may be reused one day.
        self.seen_groups &= {p.pgid for p in procs.values() if p.live}
        parent = procs.get(self.parent)
        if parent is None or parent.start != self._parent_start:
            return  # the launcher is gone (its pid may even be someone else's by now)
        for pid in descendants(procs, [self.parent]) - {os.getpid()}:
            p = procs[pid]
            if p.live:
                self.seen[pid] = p.start
                if p.pgid == pid and pid not in self._spare:
                    self.seen_groups.add(pid)

    def left(self, procs: dict[int, Proc]) -> tuple[set[int], set[int]]:
        """(groups, pids) still alive among what we were told about or recorded, plus
        everything those processes started since the last scan."""
        groups = (self.groups | self.seen_groups) - self._spare
        members = {p.pid for p in procs.values() if p.live and p.pgid in groups}
        pids = {pid for pid, start in self.seen.items()
                if pid in procs and procs[pid].start == start and procs[pid].live}
        for pid in descendants(procs, members | pids):
            p = procs[pid]
            if p.live and pid != os.getpid():
                pids.add(pid)
                if p.pgid == pid and pid not in self._spare:
                    groups.add(pid)
        live_groups = {p.pgid for p in procs.values() if p.live and p.pgid in groups}
        return live_groups, pids - members

    def end_all(self) -> bool:
        """SIGTERM what is left, SIGKILL it after the grace. True when anything was left."""
        self.scan()  # the launcher may still be alive (a clean close): see its last state
        groups, pids = self.left(snapshot())
        if not groups and not pids:
            return False
        self._report(f'ending {len(groups)} process group(s) and {len(pids)} other '
                     f'process(es) the launch left (launcher pid {self.parent}): SIGTERM, '
                     f'SIGKILL after {self.grace_s:.1f} s')
        signal_all(groups, pids, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            time.sleep(0.02)
            groups, pids = self.left(snapshot())
            if not groups and not pids:
                return True
        groups, pids = self.left(snapshot())
        if groups or pids:
            self._report(f'SIGKILL to {len(groups)} group(s), {len(pids)} process(es) that '
                         'outlived SIGTERM')
            signal_all(groups, pids, signal.SIGKILL)
        return True

    def _report(self, text: str) -> None:
        if self.say is not None:
            with contextlib.suppress(OSError, ValueError):
                self.say.write(f'[enpire] watchdog: {text}\n')
                self.say.flush()

    def run(self, stream: IO[bytes], scan_s: float = SCAN_S) -> int:
        """Follow the protocol on ``stream`` until end of file, then end what is left."""
        fd = stream.fileno()
        buf = b''
        self.scan()
        next_scan = time.monotonic() + scan_s
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, next_scan - time.monotonic()))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                *lines, buf = (buf + chunk).split(b'\n')
                for line in lines:
                    self.handle(line.decode(errors='replace'))
            if time.monotonic() >= next_scan:
                if self.parent_is_ppid and os.getppid() != self.parent:
                    break  # the launcher is gone although the pipe is not closed
                self.scan()
                next_scan = time.monotonic() + scan_s
        self.end_all()
        return 0


class WatchdogLink:
    """The launcher's end: starts the watchdog and reports node process groups to it.

    A watchdog that dies is started again (with the groups replayed) at the next write or
    :meth:`check`: the Supervisor checks every couple of seconds.
    """

    def __init__(self, grace_s: float = GRACE_S, scan_s: float = SCAN_S,
                 output: IO[str] | None = None) -> None:
        self.grace_s = grace_s
        self.scan_s = scan_s
        self.groups: set[int] = set()
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._wanted = False  # started and not closed yet
        self._out_fd: int | None = None
        with contextlib.suppress(AttributeError, OSError, ValueError):
            self._out_fd = output.fileno() if output is not None else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        self._wanted = True
        cmd = [sys.executable, '-I', '-S', os.path.abspath(__file__), '--parent',
               str(os.getpid()), '--grace', str(self.grace_s), '--scan', str(self.scan_s)]
        env = {**os.environ, '_ROS_WHEELS_BOOTSTRAP_COMPLETE': '1'}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self._out_fd, env=env, start_new_session=True,
                                     close_fds=True)
        for pgid in sorted(self.groups):
            self._send(f'+{pgid}', restart=False)

    def add(self, pgid: int) -> None:
        self.groups.add(pgid)
        self._send(f'+{pgid}')

    def remove(self, pgid: int) -> None:
        self.groups.discard(pgid)
        self._send(f'-{pgid}')

    def check(self) -> bool:
        """Restart a watchdog that died (or could not be restarted); True when it had to."""
        if self._wanted and (self.proc is None or self.proc.poll() is not None):
            self._restart()
            return True
        return False

    def _restart(self) -> None:
        old, self.proc = self.proc, None
        if old is not None:
            with contextlib.suppress(OSError):
                old.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                old.wait(1.0)  # its stdin's read end is closed: it has exited, or is exiting
        self.restarts += 1
        with contextlib.suppress(OSError):  # no start now: check() tries again later
            self.start()

    def _send(self, line: str, restart: bool = True) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(line.encode() + b'\n')
            self.proc.stdin.flush()
        except OSError:
            if restart:
                self._restart()

    def close(self, timeout_s: float | None = None) -> None:
        """End of file for the watchdog; wait for it to end what is left (it exits at once
        when nothing is)."""
        proc, self.proc = self.proc, None
        self._wanted = False
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(self.grace_s + 2.0 if timeout_s is None else timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    ap.add_argument('--parent', type=int, default=os.getppid())
    ap.add_argument('--grace', type=float, default=GRACE_S)
    ap.add_argument('--scan', type=float, default=SCAN_S)
    args = ap.parse_args(argv)
    # Only end of file (or the launcher's death) ends the watchdog: not a terminal's signals.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    dog = Watchdog(args.parent, args.grace, say=sys.stderr,
                   parent_is_ppid=args.parent == os.getppid())
    return dog.run(sys.stdin.buffer, args.scan)


if __name__ == '__main__':
    sys.exit(main())
