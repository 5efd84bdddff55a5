"""The launch watchdog (no ROS): its line protocol, what it ends, and that it ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from enpire_bringup.launcher.watchdog import (
    Proc,
    Watchdog,
    WatchdogLink,
    descendants,
    parse_line,
)
from enpire_bringup.testing import alive

#: A process in a group (and session) of its own that ignores the graceful signals.
STUBBORN = ('import signal, time\n'
            'for s in (signal.SIGINT, signal.SIGTERM):\n'
            '    signal.signal(s, signal.SIG_IGN)\n'
            'print("ready", flush=True)\n'
            'time.sleep(600)\n')


def stubborn() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, '-I', '-S', '-c', STUBBORN],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline() == 'ready\n'  # its handlers are in place
    return proc


def wait_dead(pid: int, within_s: float) -> float:
    start = time.monotonic()
    while alive(pid):
        assert time.monotonic() - start < within_s, f'pid {pid} alive after {within_s} s'
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.mark.parametrize(('line', 'parsed'), [
    ('+42\n', ('+', 42)), ('-7', ('-', 7)), ('', None), ('+', None), ('*3', None),
    ('+-3', None), ('+4x', None), ('hello', None),
])
def test_protocol_lines_parse_and_garbage_is_ignored(line, parsed):
    assert parse_line(line) == parsed


def test_descendants_walk_the_whole_tree_below_the_roots():
    procs = {p.pid: p for p in (Proc(10, 'S', 1, 10, 0), Proc(11, 'S', 10, 11, 0),
                                Proc(12, 'S', 11, 12, 0), Proc(13, 'S', 10, 10, 0),
                                Proc(20, 'S', 1, 20, 0))}
    assert descendants(procs, [10]) == {11, 12, 13}
    assert descendants(procs, [11, 20]) == {12}


def test_what_is_left_spares_reused_pids_zombies_and_the_launchers_own_group():
    me = os.getpid()
    dog = Watchdog(parent=me)
    for line in ('+500', '+600', '-600', f'+{os.getpgrp()}'):
        dog.handle(line)
    dog.seen = {700: 1234, 800: 1234, 900: 1234}
    procs = {p.pid: p for p in (
        Proc(500, 'S', 1, 500, 9), Proc(501, 'S', 500, 500, 9),  # group 500 and a member
        Proc(600, 'S', 1, 600, 9),      # its group was removed (-600): not ours any more
        Proc(700, 'S', 1, 700, 1234),   # recorded
        Proc(800, 'S', 1, 800, 5555),   # pid 800 reused by another process: spared
        Proc(900, 'Z', 1, 900, 1234),   # a zombie: nothing to end
        Proc(701, 'S', 700, 701, 99),   # started by a recorded one since: ended too
    )}
    groups, pids = dog.left(procs)
    assert groups == {500, 701}
    assert pids == {700, 701}


def test_end_of_file_sigterms_then_sigkills_a_group_that_ignores_sigterm():
    node = stubborn()
    link = WatchdogLink(grace_s=0.5, scan_s=0.2)
    try:
        link.start()
        link.add(node.pid)
        start = time.monotonic()
        link.close()  # end of file, as when the launcher dies
        assert node.wait(3.0) == -signal.SIGKILL
        took = time.monotonic() - start
        assert 0.5 <= took < 2.5, took
    finally:
        node.kill()
        node.wait()


def test_a_clean_close_with_nothing_left_exits_at_once_and_removed_groups_are_spared():
    # Not our descendant (its parent exited at once), so only the protocol names its group.
    spawn = ('import subprocess, sys\n'
             'p = subprocess.Popen([sys.executable, "-I", "-S", "-c", sys.argv[1]], '
             'start_new_session=True, stdout=subprocess.PIPE, text=True)\n'
             'print(p.pid, p.stdout.readline().strip(), flush=True)\n')
    out = subprocess.run([sys.executable, '-I', '-S', '-c', spawn, STUBBORN],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         timeout=30, check=True).stdout
    pid = int(out.split()[0])
    link = WatchdogLink(grace_s=5.0, scan_s=0.2)
    try:
        link.start()
        link.add(pid)
        link.remove(pid)  # the launcher reaped its node: no longer the watchdog's business
        proc = link.proc
        start = time.monotonic()
        link.close()
        assert proc.returncode == 0
        assert time.monotonic() - start < 1.0
        assert alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid, 5.0)


def test_a_watchdog_that_dies_is_restarted_with_the_groups_replayed():
    node = stubborn()
    link = WatchdogLink(grace_s=0.3, scan_s=0.2)
    try:
        link.start()
        link.add(node.pid)
        first = link.proc
        first.kill()
        first.wait()
        assert link.check() and link.proc is not first and link.restarts == 1
        link.close()
        assert node.wait(3.0) == -signal.SIGKILL
    finally:
        node.kill()
        node.wait()


LAUNCHER = textwrap.dedent('''
    import subprocess, sys, time
    from enpire_bringup.launcher.watchdog import WatchdogLink
    link = WatchdogLink(grace_s=0.5, scan_s=0.1)
    link.start()
    stubborn = [sys.executable, '-I', '-S', '-c', sys.argv[1]]
    node = subprocess.Popen(stubborn, process_group=0, stdout=subprocess.DEVNULL)
    link.add(node.pid)
    # Not announced: found by the watchdog's scan of the launcher's descendants.
    stray = subprocess.Popen(stubborn, start_new_session=True, stdout=subprocess.DEVNULL)
    print(link.pid, node.pid, stray.pid, flush=True)
    time.sleep(600)
''')


def test_a_sigkilled_launcher_takes_announced_groups_and_unannounced_descendants_along():
    launcher = subprocess.Popen([sys.executable, '-c', LAUNCHER, STUBBORN],
                                stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        pids = [int(w) for w in launcher.stdout.readline().split()]
        dog, node, stray = pids
        deadline = time.monotonic() + 10.0
        while not all(alive(p) for p in pids):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.5)  # a few scans: the stray is on record
        killed_at = time.monotonic()
        launcher.kill()
        launcher.wait()
        for pid in (node, stray, dog):
            wait_dead(pid, 2.5 - (time.monotonic() - killed_at))
    finally:
        launcher.kill()
        launcher.wait()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
