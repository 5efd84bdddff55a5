"""System tests of the fleet: `enpire improve --cells 2` on real sim cells (embedded launcher).

* one cell's sim node (push_t_cell) SIGKILLed mid-episode: the fleet launch stays up (a cell
  node's exit is local to its cell), the open trial ends `aborted` (store, trial.json and the
  command's result), that cell's agent stops with the cell reported lost, the other cell
  keeps running trials and the fleet finishes;
* all of one cell's nodes SIGKILLed mid-run (rollout included): its agent stops with a clear
  message and its open trial is stored as aborted; the other cell's agent keeps running
  trials to its budget;
* two "hosts" (two `enpire up` processes, one cell each, same ROS_DOMAIN_ID) form one fleet
  that `enpire improve --cells 2` drives without starting anything.

Budgets are short (a lockstep Push-T trial takes ~10-30 s on a loaded 2-core machine).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from enpire_bringup.testing import kill_marked
from enpire_common.process import end_groups

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FLEET_LAUNCH = ROOT / 'launch' / 'fleet_sim.launch.yaml'


def _enpire(*args: str, home: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, 'ENPIRE_HOME': str(home)}
    with open(log, 'ab') as out:
        return subprocess.Popen([sys.executable, '-m', 'enpire_bringup.cli', *args],
                                stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT the process group (the launcher stops its nodes), SIGKILL if it hangs."""
    end_groups([proc], first=signal.SIGINT, grace_s=30.0)


def _wait_for_line(path: Path, needle: str, proc: subprocess.Popen, timeout_s: float) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        text = path.read_text(errors='replace') if path.exists() else ''
        for line in text.splitlines():
            if needle in line:
                return line
        if proc.poll() is not None:
            pytest.fail(f'process exited ({proc.returncode}) before {needle!r}:\n{text[-3000:]}')
        time.sleep(0.5)  # polling a log file written by another process; no event to wait on
    pytest.fail(f'{needle!r} not in {path} within {timeout_s} s:\n'
                f'{path.read_text(errors="replace")[-3000:]}')


def _node_pid(root_pid: int, package: str, executable: str, namespace: str) -> int:
    """The pid of node ``package/executable`` in ``namespace`` among root_pid's descendants."""
    import psutil

    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            argv = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if (any(a.endswith(f'/{package}/{executable}') for a in argv)
                and f'__ns:={namespace}' in argv):
            return child.pid
    raise AssertionError(f'no {package}/{executable} process in {namespace} under pid '
                         f'{root_pid}')


def _wait_ready(cell: str, host: subprocess.Popen, timeout_s: float) -> None:
    from enpire_rollout.client import RolloutClient

    client = RolloutClient(cell)
    try:
        end = time.monotonic() + timeout_s
        while not client.wait_ready(2.0):
            assert host.poll() is None, f'the host of /{cell} exited ({host.returncode})'
            assert time.monotonic() < end, f'/{cell}/run_trials not ready in {timeout_s} s'
    finally:
        client.close()


class _StateProbe:
    """Watches ``/<cell>/state`` (``tick`` = control steps since the cell's last reset)."""

    def __init__(self, cell: str) -> None:
        import threading

        from rclpy.qos import qos_profile_sensor_data

        from enpire_common.testing import RosHarness
        from enpire_interfaces.msg import StateVector

        self.cell = cell
        self._window = (1, 0)
        self._hit = threading.Event()
        self._ros = RosHarness(num_threads=1)
        node = self._ros.node('fleet_test_state_probe', namespace=f'/{cell}')
        node.create_subscription(StateVector, 'state', self._on_state, qos_profile_sensor_data)

    def _on_state(self, msg: Any) -> None:
        lo, hi = self._window
        if lo <= int(msg.tick) <= hi:
            self._hit.set()

    def wait_tick(self, lo: int, hi: int, proc: subprocess.Popen, timeout_s: float) -> None:
        """Wait for a state with ``lo <= tick <= hi`` from now on: the cell is mid-episode."""
        self._hit.clear()
        self._window = (lo, hi)
        end = time.monotonic() + timeout_s
        while not self._hit.wait(0.5):
            assert proc.poll() is None, f'the command exited ({proc.returncode})'
            assert time.monotonic() < end, f'/{self.cell}/state: no tick in {lo}..{hi}'
        self._window = (1, 0)

    def close(self) -> None:
        self._ros.close()


def _kill_orphans(home: Path) -> int:
    """SIGKILL leftover processes of this test (named by its home); returns how many."""
    return kill_marked(home)


def _result(proc: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout_s)
    return json.loads(out.decode().strip().splitlines()[-1])


def _store(home: Path) -> Any:
    from enpire_evolution.core.store import ExperimentStore

    return ExperimentStore.open(home)


def test_killing_one_cells_sim_node_aborts_its_trial_and_only_that_cell_stops(
        tmp_path: Path) -> None:
    log = tmp_path / 'improve.log'
    proc = _enpire('improve', '--cells', '2', '--budget-min', '1.5', '--goal-consecutive', '5',
                   '--no-report', '--json', '--home', str(tmp_path), home=tmp_path, log=log)
    probe = _StateProbe('cell_1')
    try:
        _wait_for_line(log, '[agent-1@cell_1]', proc, 150.0)   # cell_1 ran its first trial
        # Mid-episode (not in a reset or the final verdict): its next episode is stepping.
        probe.wait_tick(20, 150, proc, 90.0)
        sim = _node_pid(proc.pid, 'enpire_sim', 'push_t_cell', '/cell_1')
        killed_at = time.time()
        os.kill(sim, signal.SIGKILL)
        result = _result(proc, 240.0)
    finally:
        probe.close()
        _stop(proc)
        _kill_orphans(tmp_path)
    text = log.read_text()
    assert proc.returncode == 1, text[-3000:]   # budget, goal not met: the fleet finished
    launch = (tmp_path / 'logs' / 'launch-fleet.log').read_text()
    assert 'exited cell_1/push_t_cell' in launch, launch[-3000:]
    assert 'shutting down (required node' not in launch
    with _store(tmp_path) as store:
        trials = store.trials_for(result['experiment'])
    # The trial that was running on cell_1 when its cell died is aborted...
    open_trial = [t for t in trials if t.cell == 'cell_1' and t.started_at <= killed_at
                  and t.ended_at >= killed_at]
    assert [t.outcome for t in open_trial] == ['aborted'], \
        [(t.cell, t.seed, t.outcome, t.reason) for t in trials]
    (dead,) = open_trial
    # ... on disk too (trial.json of its record), and in the command's result.
    record = json.loads((Path(dead.record_dir) / 'trial.json').read_text())
    assert record['outcome'] == 'aborted', record
    cells = {c['cell']: c for c in result['cells']}
    assert cells['cell_1']['aborted'] >= 1 and cells['cell_1']['last_aborted_reason']
    assert cells['cell_1']['status'] == 'lost' and cells['cell_0']['status'] == 'ok'
    assert re.search(r'\[fleet\] cell_1: LOST, \d+ trials this run, [1-9]\d* aborted \(last: ',
                     text), text[-3000:]
    # Its agent stopped with the cell named, instead of running void trials to its budget.
    a1 = result['agents'][1]
    assert a1['stop_reason'] == 'cell_lost' and 'cell_1' in a1['error'], a1
    assert not [t for t in trials if t.cell == 'cell_1' and t.started_at > dead.ended_at
                and t.outcome not in ('aborted', 'reset_failed')]
    # cell_0 went on running trials after cell_1's sim node died ...
    assert any(t.cell == 'cell_0' and t.started_at > killed_at for t in trials)
    # ... and lost none: the SIGKILL used to starve image readers across the host for ~45 s
    # (a shared-memory segment smaller than a frame, config/dds/fastdds.xml).
    lost = [t for t in trials if t.cell == 'cell_0' and t.outcome == 'aborted'
            and t.started_at <= killed_at <= t.ended_at]
    assert not lost, [t.reason for t in lost]
    assert result['agents'][0]['stop_reason'] == 'budget', result['agents']


def test_killing_all_of_one_cells_nodes_stops_only_its_agent_and_the_fleet_finishes(
        tmp_path: Path) -> None:
    log = tmp_path / 'improve.log'
    proc = _enpire('improve', '--cells', '2', '--budget-min', '1.5', '--goal-consecutive', '5',
                   '--no-report', '--json', '--home', str(tmp_path), home=tmp_path, log=log)
    try:
        _wait_for_line(log, '[agent-1@cell_1]', proc, 150.0)   # cell_1 ran its first trial
        pids = [_node_pid(proc.pid, pkg, exe, '/cell_1') for pkg, exe in (
            ('enpire_rollout', 'rollout'), ('enpire_sim', 'push_t_cell'),
            ('enpire_reset', 'reset_server'), ('enpire_reward', 'verifier'),
            ('enpire_rollout', 'safety_supervisor'), ('enpire_rollout', 'recorder'))]
        killed_at = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        result = _result(proc, 240.0)
    finally:
        _stop(proc)
        # The killed rollout's policy host outlives it (it does not die with its parent).
        _kill_orphans(tmp_path)
    assert proc.returncode == 1, log.read_text()[-3000:]   # budget, goal not met
    a0, a1 = result['agents']
    assert a1['stop_reason'] == 'cell_lost', a1
    # Its rollout node was respawned at once (it never left the graph): the client saw its
    # pid change. Its cell node was not (a fleet's on_cell_exit:=none), so the agent stops.
    assert 'rollout node died' in a1['error'] and 'restart the cell' in a1['error'], a1
    assert a0['stop_reason'] == 'budget' and not a0['error'], a0
    assert 'STOPPED (cell_lost)' in log.read_text()
    with _store(tmp_path) as store:
        trials = store.trials_for(result['experiment'])
    aborted = [t for t in trials if t.outcome == 'aborted']
    # The killed cell's open trial is stored aborted. (On a heavily loaded machine the live
    # cell may abort a trial of its own, e.g. a stall: that is not what this tests.)
    lost = [t for t in aborted if t.cell == 'cell_1']
    assert len(lost) == 1, [(t.cell, t.outcome, t.reason) for t in trials]
    assert 'cell cell_1 lost' in lost[0].reason
    # cell_0 went on running trials after cell_1 died.
    assert any(t.cell == 'cell_0' and t.started_at > killed_at for t in trials)
    assert result['mru']['per_cell']['cell_0'] > result['mru']['per_cell']['cell_1']


def test_two_hosts_with_one_cell_each_form_one_fleet(tmp_path: Path) -> None:
    hosts = []
    logs = [tmp_path / 'host_a.log', tmp_path / 'host_b.log']
    try:
        hosts.append(_enpire('up', str(FLEET_LAUNCH), 'cells:=1', home=tmp_path, log=logs[0]))
        hosts.append(_enpire('up', str(FLEET_LAUNCH), 'cells:=1', 'first:=1',
                             home=tmp_path, log=logs[1]))
        for host, cell in zip(hosts, ('cell_0', 'cell_1'), strict=True):
            _wait_ready(cell, host, 150.0)
        log = tmp_path / 'improve.log'
        proc = _enpire('improve', '--cells', '2', '--budget-min', '0.75', '--no-report',
                       '--json', '--home', str(tmp_path), home=tmp_path, log=log)
        try:
            result = _result(proc, 240.0)
        finally:
            _stop(proc)
        text = log.read_text()
        assert 'using the running cells cell_0, cell_1' in text, (text[-3000:], result)
        assert 'starting' not in text
        assert [a['stop_reason'] for a in result['agents']] == ['budget', 'budget'], result
        with _store(tmp_path) as store:
            cells = {t.cell for t in store.trials_for(result['experiment'])}
        assert cells == {'cell_0', 'cell_1'}
        assert all(h.poll() is None for h in hosts)   # the fleet did not stop the hosts
    finally:
        for h in hosts:
            _stop(h)
        _kill_orphans(tmp_path)
