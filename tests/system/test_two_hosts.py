"""A fleet of two hosts on one PostgreSQL store (issue 15): two network namespaces of this
machine, each running its own sim cell and its own agent.

* host ``a`` (namespace ``enpire-...-a``) runs ``cell_0`` (``enpire up fleet_sim.launch.yaml
  cells:=1``) and ``enpire improve --cells 1`` on it; host ``b`` runs ``cell_1`` (``cells:=1
  first:=1``) and ``enpire improve --cells 1 --first-cell 1`` (agent ``builtin-1``, branch
  ``agent-1``) on it;
* each host has its own ENPIRE_HOME (its own disk: revisions, workspace, trial records), its
  own loopback (ROS discovery is LOCALHOST-only, so neither host's DDS sees the other) and its
  own ROS_DOMAIN_ID; both reach ONE PostgreSQL server in the root namespace over their veth
  link (``ENPIRE_STORE_URL``), the only thing they share, and write ONE experiment;
* both agents end on their budget; the experiment holds the trials of both cells and both
  agents' branches; every trial's record is on its own host's disk and not the other's; the
  root namespace reads it all back (``ExperimentStore``, ``enpire exp show``).

Needs root and iproute2 (``enpire_bringup.netns``) and a local PostgreSQL (scripts/setup.sh);
skips with the reason otherwise. Budgets are short: ~0.75 min per agent, like test_fleet.
"""

from __future__ import annotations

import json
import os
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
EXPERIMENT = 'two-hosts'
BUDGET_MIN = '0.75'
READY_TIMEOUT_S = 150.0

# Waits in the host's namespace (the root namespace's DDS cannot see a host's cells).
PROBE = ('import sys\n'
         'from enpire_rollout.client import RolloutClient\n'
         'client = RolloutClient(sys.argv[1])\n'
         'try:\n'
         '    sys.exit(0 if client.wait_ready(float(sys.argv[2])) else 1)\n'
         'finally:\n'
         '    client.close()\n')
PROBE_TCP = ('import socket, sys\n'
             'try:\n'
             '    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n'
             'except OSError:\n'
             '    sys.exit(1)\n')


@pytest.fixture
def network() -> Any:
    """Hosts ``a`` and ``b``: network namespaces bridged to this one on a private /24."""
    from enpire_bringup.netns import NetnsUnavailableError, TestNetwork

    try:
        net = TestNetwork(['a', 'b'])
    except NetnsUnavailableError as exc:
        pytest.skip(f'two hosts in network namespaces: {exc}')
    with net:
        yield net


@pytest.fixture
def fleet_store(network: Any) -> Any:
    """A PostgreSQL server the hosts reach on the network's gateway address (and this
    namespace on loopback), and a fresh database on it: (server, database)."""
    from enpire_common.postgres_testing import PostgresServer, PostgresUnavailableError

    try:
        server = PostgresServer(listen_addresses=('127.0.0.1', network.gateway),
                                trusted_networks=(network.subnet,))
    except PostgresUnavailableError as exc:
        pytest.skip(f'a fleet store needs a local PostgreSQL server: {exc}')
    with server:
        yield server, server.create_database('two_hosts')


def _host_domains() -> tuple[int, int]:
    """A ROS_DOMAIN_ID per host, next to this session's (and not it): all namespaces share
    /dev/shm, where Fast DDS's shared-memory transport names its segments by domain and
    port; two participants of one domain in two namespaces would take the same port (each
    namespace has its own UDP ports) and so the same segment, which two real hosts never
    share."""
    base = int(os.environ.get('ROS_DOMAIN_ID', '0') or 0)
    return ((base % 100) + 1, ((base + 1) % 100) + 1)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT the process group (the launcher stops its nodes), SIGKILL if it hangs."""
    end_groups([proc], first=signal.SIGINT, grace_s=30.0)


def _kill_orphans(mark: Path) -> int:
    """SIGKILL leftover processes of this test (named by its directory); returns how many."""
    return kill_marked(mark)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors='replace')[-n:] if path.exists() else f'(no {path})'


def _wait_ready(net: Any, hosts: dict[str, dict[str, Any]]) -> None:
    """Wait until every host's cell serves run_trials, probing inside each host at once."""
    probes = {name: net.popen(name, [sys.executable, '-c', PROBE, h['cell'],
                                     str(READY_TIMEOUT_S)],
                              env=h['env'], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
              for name, h in hosts.items()}
    try:
        end = time.monotonic() + READY_TIMEOUT_S + 30.0
        while any(p.poll() is None for p in probes.values()):
            for name, h in hosts.items():
                assert h['up'].poll() is None, (
                    f"host {name}: enpire up exited ({h['up'].returncode}):\n"
                    f"{_tail(h['up_log'])}")
            assert time.monotonic() < end, 'the readiness probes hang'
            time.sleep(0.5)  # polling child processes; no event to wait on
        for name, p in probes.items():
            assert p.returncode == 0, (f"host {name}: /{hosts[name]['cell']}/run_trials not "
                                       f"ready in {READY_TIMEOUT_S:.0f} s:\n"
                                       f"{_tail(hosts[name]['up_log'])}")
    finally:
        for p in probes.values():
            if p.poll() is None:
                p.kill()
            p.wait()


def _result(proc: subprocess.Popen, log: Path, timeout_s: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout_s)
    lines = out.decode().strip().splitlines()
    assert proc.returncode in (0, 1) and lines, (proc.returncode, out[-2000:], _tail(log))
    return json.loads(lines[-1])


def test_two_hosts_each_with_a_cell_and_an_agent_share_one_postgresql_experiment(
        tmp_path: Path, network: Any, fleet_store: tuple[Any, str]) -> None:
    server, database = fleet_store
    # The hosts reach the store over their link; this namespace over loopback.
    host_url = server.url(database, driver='', host=network.gateway)
    domains = _host_domains()
    hosts: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(('a', 'b')):
        home = tmp_path / f'host_{name}' / 'home'
        home.mkdir(parents=True)
        env = {**os.environ, 'ENPIRE_HOME': str(home), 'ENPIRE_STORE_URL': host_url,
               'ROS_DOMAIN_ID': str(domains[i]), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
               'MUJOCO_GL': 'egl'}
        env.pop('ROS_STATIC_PEERS', None)
        hosts[name] = {'cell': f'cell_{i}', 'home': home, 'env': env,
                       'up_log': home.parent / 'up.log', 'agent_log': home.parent / 'agent.log'}
    started: list[subprocess.Popen] = []

    def start(name: str, argv: list[str], log: Path, stdout: Any = None) -> subprocess.Popen:
        """Start ``argv`` in host ``name``: stderr (and stdout unless given) to ``log``."""
        with open(log, 'ab') as err:
            proc = network.popen(name, argv, env=hosts[name]['env'],
                                 stdout=err if stdout is None else stdout, stderr=err,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        started.append(proc)
        return proc

    enpire = [sys.executable, '-m', 'enpire_bringup.cli']
    try:
        # A host's 127.0.0.1 is its own loopback: it reaches the store over its link only.
        reach = network.run('a', [sys.executable, '-c', PROBE_TCP, '127.0.0.1',
                                  str(server.port)], capture_output=True, timeout=30)
        assert reach.returncode != 0, 'host a reaches the root namespace on 127.0.0.1'
        for i, (name, h) in enumerate(hosts.items()):
            h['up'] = start(name, [*enpire, 'up', str(FLEET_LAUNCH), 'cells:=1',
                                   f'first:={i}'], h['up_log'])
        _wait_ready(network, hosts)
        # Host a: agent builtin, branch agent-0, on cell_0; host b: agent builtin-1, branch
        # agent-1, on cell_1 (--first-cell 1). The store from $ENPIRE_STORE_URL.
        for i, (name, h) in enumerate(hosts.items()):
            h['agent'] = start(name, [*enpire, 'improve', '--cells', '1', '--first-cell',
                                      str(i), '--budget-min', BUDGET_MIN, '--experiment',
                                      EXPERIMENT, '--no-report', '--json', '--home',
                                      str(h['home'])], h['agent_log'], subprocess.PIPE)
        results = {name: _result(h['agent'], h['agent_log'], 240.0)
                   for name, h in hosts.items()}
        for name, h in hosts.items():
            r = results[name]
            assert r['stop_reason'] == 'budget' and r['experiment'] == EXPERIMENT, (
                name, r, _tail(h['agent_log']))
            assert h['up'].poll() is None, f'host {name} stopped: {_tail(h["up_log"])}'
        for h in hosts.values():
            text = _tail(h['agent_log'], 100_000)
            assert f"using the running cell /{h['cell']}" in text, text[-3000:]
            assert 'starting the sim cell' not in text, text[-3000:]
    finally:
        for proc in reversed(started):
            _stop(proc)
        _kill_orphans(tmp_path)

    # What the hosts wrote, read back in the root namespace: one experiment, both cells.
    from enpire_evolution.core.store import ExperimentStore

    with ExperimentStore(server.url(database)) as store:
        assert [e.id for e in store.experiments()] == [EXPERIMENT]
        trials = store.trials_for(EXPERIMENT)
        agents = {ag.id: ag.cell for ag in store.agents(EXPERIMENT)}
        branches = {br.name: br.agent for br in store.branches(EXPERIMENT)}
    assert {t.cell for t in trials} == {'cell_0', 'cell_1'}, [(t.cell, t.outcome)
                                                               for t in trials]
    assert agents == {'builtin': 'cell_0', 'builtin-1': 'cell_1'}, agents
    assert branches == {'agent-0': 'builtin', 'agent-1': 'builtin-1'}, branches
    assert len({t.trial_id for t in trials}) == len(trials)
    # Each trial's record is on the disk of the host whose cell ran it, and only there.
    home_of = {h['cell']: h['home'] for h in hosts.values()}
    for t in trials:
        assert t.record_dir, (t.cell, t.trial_id, t.outcome, t.reason)
        own, other = home_of[t.cell], home_of[{'cell_0': 'cell_1', 'cell_1': 'cell_0'}[t.cell]]
        record = own / t.record_dir  # absolute, or relative to its ENPIRE_HOME
        assert record.is_relative_to(own) and (record / 'trial.json').is_file(), t.record_dir
        assert not (other / record.relative_to(own)).exists(), t.record_dir
        ids = json.loads((record / 'trial.json').read_text())['ids']
        assert (ids['trial_id'], ids['cell_id']) == (t.trial_id, t.cell), ids
    # Nothing went to a host's own SQLite store.
    assert not any((h['home'] / 'enpire.db').exists() for h in hosts.values())
    # The CLI reads the fleet's experiment from here too.
    show = subprocess.run([*enpire, 'exp', 'show', EXPERIMENT, '--json', '--url',
                           server.url(database), '--home', str(tmp_path / 'root_home')],
                          capture_output=True, text=True, timeout=120, check=False)
    assert show.returncode == 0, show.stderr[-3000:]
    shown = json.loads(show.stdout)
    assert {br['name'] for br in shown['branches']} == {'agent-0', 'agent-1'}, shown['branches']
    assert set(shown['mru']['per_cell']) == {'cell_0', 'cell_1'}, shown['mru']

