"""System tests of ``enpire up``: real processes, real DDS, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from std_msgs.msg import String

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / 'launch' / 'demo_heartbeat.launch.yaml'
DATA = ROOT / 'tests' / 'data' / 'launch'
STARTED = re.compile(r'^\[enpire\] (started|respawned) (\S+) pid=(\d+)')
TIMEOUT_S = 60.0  # generous: the CI machine is shared and slow


def enpire_cmd(*args: str) -> list[str]:
    return [sys.executable, '-m', 'enpire_bringup.cli', *args]


class Launch:
    """``enpire up`` as a subprocess whose stdout lines can be waited on."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(enpire_cmd('up', *args), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=ROOT)
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
            result = self._cond.wait_for(lambda: predicate(self.lines) or
                                         self.proc.poll() is not None, TIMEOUT_S)
            result = predicate(self.lines)
        assert result, f'timed out waiting for {what}; output:\n' + '\n'.join(self.lines)
        return result

    def pids(self) -> dict[str, list[int]]:
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


def alive(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != 'Z'


def group_members(pgids: set[int]) -> list[int]:
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != 'Z' and int(fields[2]) in pgids:
            found.append(int(stat.parent.name))
    return found


def wait_until(predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        pause.wait(0.1)


@pytest.mark.system
def test_demo_launch_runs_nodes_respawns_a_killed_one_and_stops_everything_on_sigint(ros):
    launch = Launch(str(DEMO))
    try:
        launch.wait_for(lambda lines: len(launch.pids()) >= 3, 'three nodes to start')
        probe = ros.node('launch_probe')
        want = {('heartbeat', '/cell_0'), ('watchdog', '/cell_0'), ('heartbeat', '/cell_1')}
        wait_until(lambda: want <= set(probe.get_node_names_and_namespaces()),
                   f'nodes {sorted(want)} in the graph')

        counters: list[int] = []
        got = threading.Condition()

        def on_beat(msg: String) -> None:
            with got:
                counters.append(int(msg.data.rsplit(' ', 1)[1]))
                got.notify_all()

        probe.create_subscription(String, '/cell_0/heartbeat', on_beat, 10)
        with got:
            assert got.wait_for(lambda: len(counters) >= 3, TIMEOUT_S)
        topic = '/cell_0/heartbeat'
        old_gids = {bytes(i.endpoint_gid) for i in probe.get_publishers_info_by_topic(topic)}
        old_pid = launch.pids()['cell_0/heartbeat'][-1]
        os.kill(old_pid, signal.SIGKILL)
        launch.wait_for(lambda lines: len(launch.pids()['cell_0/heartbeat']) >= 2,
                        'the respawn status line')
        new_pid = launch.pids()['cell_0/heartbeat'][-1]
        assert new_pid != old_pid and not alive(old_pid)
        assert any(f'exited cell_0/heartbeat pid={old_pid} code=-9; respawning' in line
                   for line in launch.lines)
        # A new publisher endpoint (the respawned process) appears, and beats arrive again.
        wait_until(lambda: {bytes(i.endpoint_gid) for i in probe.get_publishers_info_by_topic(
            topic)} - old_gids, 'a new heartbeat publisher in the graph')
        with got:
            seen = len(counters)
            assert got.wait_for(lambda: len(counters) > seen, TIMEOUT_S)

        all_pids = {p for ps in launch.pids().values() for p in ps}
        launch.proc.send_signal(signal.SIGINT)
        assert launch.proc.wait(TIMEOUT_S) == 0
        assert launch.lines[-1].startswith('[enpire] done (received SIGINT)')
        assert [p for p in all_pids if alive(p)] == []
        assert group_members(all_pids) == []
    finally:
        launch.stop()


@pytest.mark.system
def test_children_die_when_the_launcher_is_sigkilled():
    launch = Launch(str(DEMO))
    try:
        launch.wait_for(lambda lines: len(launch.pids()) >= 3, 'three nodes to start')
        pids = {p for ps in launch.pids().values() for p in ps}
        launch.proc.kill()
        launch.proc.wait(TIMEOUT_S)
        wait_until(lambda: not any(alive(p) for p in pids), f'children {sorted(pids)} to die')
    finally:
        launch.stop()


@pytest.mark.system
def test_a_required_node_exiting_brings_the_launch_down_with_an_error():
    launch = Launch(str(DATA / 'required_exits.launch.yaml'))
    try:
        assert launch.proc.wait(TIMEOUT_S) == 1
        launch.wait_for(lambda lines: lines and lines[-1].startswith('[enpire] done'), 'done')
        assert any('exited bad_rate' in line and 'required' in line for line in launch.lines)
        assert any('exited bystander' in line for line in launch.lines)
        assert [p for ps in launch.pids().values() for p in ps if alive(p)] == []
    finally:
        launch.stop()


@pytest.mark.system
@pytest.mark.parametrize(('file', 'line', 'problem'), [
    ('bad_pkg_typo.launch.yaml', 4,
     "package 'enpire_bringpu' not found in the ament index; did you mean 'enpire_bringup'"),
    ('bad_required_arg.launch.yaml', 4,
     "launch argument 'cell' is required (no default) and was not given: pass cell:=<value>"),
    ('bad_missing_param_file.launch.yaml', 8,
     f"param file '{DATA / 'no_such_params.yaml'}' does not exist"),
])
def test_bad_launch_files_exit_2_with_one_line_naming_file_line_and_problem(file, line,
                                                                            problem):
    res = subprocess.run(enpire_cmd('up', str(DATA / file)), capture_output=True, text=True,
                         timeout=TIMEOUT_S, cwd=ROOT, check=False)
    assert res.returncode == 2
    assert res.stdout == ''
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f'enpire: error: {DATA / file}:{line}: {problem}')
