"""System tests of ``enpire up``: real processes, real DDS, real signals."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from std_msgs.msg import String

from enpire_bringup import testing
from enpire_bringup.testing import alive, enpire_cmd, group_members

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / 'launch' / 'demo_heartbeat.launch.yaml'
DATA = ROOT / 'tests' / 'data' / 'launch'
TIMEOUT_S = 60.0  # generous: the CI machine is shared and slow


Launch = functools.partial(testing.Launch, cwd=ROOT, timeout_s=TIMEOUT_S)


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
