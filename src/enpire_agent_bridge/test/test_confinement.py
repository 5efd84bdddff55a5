"""The policy worker's confinement: files, network, denial records, life tied to its host.

These run a real PolicyHost (a sandboxed worker process) without ROS. The hostile corpus on a
live cell is tests/system/test_sandbox.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from enpire_agent_bridge.core.config import SandboxConfig
from enpire_agent_bridge.core.confinement import bwrap_path, detect
from enpire_agent_bridge.core.contract import spec_for_revision
from enpire_agent_bridge.core.host import PolicyHost
from enpire_agent_bridge.testing import policy_with_params
from enpire_common import landlock
from enpire_common.errors import UnconfinedError
from enpire_common.tasks import load_task

ROOT = Path(__file__).resolve().parents[3]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
needs_landlock = pytest.mark.skipif(landlock.abi_version() < 1,
                                    reason='this kernel has no Landlock')

PROBE = ROOT / 'tests' / 'data' / 'hostile_policies' / 'probe'


def _probe_dir(tmp_path: Path, ops: list[list[str]], port: int = 9) -> Path:
    """The hostile probe policy with its operations (``[op, arg, expected]``) in params."""
    return policy_with_params(PROBE, tmp_path / 'probe', {'ops': ops, 'port': port})


def _host(policy_dir: Path, tmp_path: Path, config: SandboxConfig | None = None) -> PolicyHost:
    spec = spec_for_revision(load_task('push_t').raw, policy_dir)
    return PolicyHost(policy_dir, spec, config=config, log_dir=tmp_path / 'logs')


def _act(host: PolicyHost) -> None:
    # The probe raises (a PolicyFaultError here) when an operation is not as expected.
    host.act(host.spec.example_observation(), deadline_s=5.0)


@needs_landlock
@pytest.mark.parametrize('target', ['contract', 'tmp', 'home'])
def test_reads_and_writes_outside_the_sandbox_are_refused_and_counted(tmp_path, target):
    secret = f'canary-{os.getpid()}-{target}'
    if target == 'contract':
        path = ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml'
    elif target == 'tmp':
        path = Path('/tmp') / f'enpire-canary-{os.getpid()}'
        path.write_text(secret)
    else:
        path = Path.home() / f'.enpire-canary-{os.getpid()}'
        path.write_text(secret)
    before = path.read_bytes()
    try:
        ops = [['read', str(path), 'denied'], ['write', str(path), 'denied']]
        with _host(_probe_dir(tmp_path, ops), tmp_path) as host:
            assert host.confinement is not None and host.confinement.mode == 'landlock'
            _act(host)
            denials = host.take_denials()
        assert path.read_bytes() == before
        real = os.path.realpath(path)
        assert denials['count'] == 2
        assert denials['first'] == [f'read {real}', f'write {real}']
        log = (tmp_path / 'logs' / 'stderr.log').read_text()
        assert 'LEAK' not in log and secret not in log
    finally:
        if target != 'contract':
            path.unlink()


@needs_landlock
def test_sockets_are_refused_and_no_connection_is_made(tmp_path):
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        ops = [['socket', fam, 'denied'] for fam in ('AF_INET', 'AF_INET6', 'AF_UNIX')]
        with _host(_probe_dir(tmp_path, ops, port=port), tmp_path) as host:
            _act(host)
            denials = host.take_denials()
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert denials['count'] == 3
    assert denials['first'] == ['socket AF_INET', 'socket AF_INET6', 'socket AF_UNIX']


@needs_landlock
def test_the_scratch_directory_is_writable_and_the_workspace_is_not_importable(tmp_path):
    ops = [['scratch', '', 'allowed'], ['import', str(ROOT / 'src' / 'enpire_common'), 'denied']]
    source = ROOT / 'src' / 'enpire_common' / 'enpire_common' / '__init__.py'
    before = source.read_bytes()
    with _host(_probe_dir(tmp_path, ops), tmp_path) as host:
        _act(host)
        denials = host.take_denials()
    assert source.read_bytes() == before
    assert denials['count'] >= 1
    assert any(d.startswith('list ') and 'enpire_common' in d for d in denials['first'])


@needs_landlock
@needs_landlock
def test_an_escape_is_a_policy_fault_naming_it(tmp_path):
    # The probe's own check: an operation that is allowed but expected denied raises.
    from enpire_common.errors import PolicyFaultError

    with _host(_probe_dir(tmp_path, [['scratch', '', 'denied']]), tmp_path) as host, \
            pytest.raises(PolicyFaultError, match='ESCAPED: scratch'):
        _act(host)


@needs_landlock
def test_a_good_policy_acts_the_same_confined(tmp_path):
    spec = spec_for_revision(load_task('push_t').raw, SCRIPTED)
    obs = spec.example_observation()
    outs = []
    for mode in ('landlock', 'none'):
        cfg = SandboxConfig(confinement=mode, allow_unconfined=True)
        with PolicyHost(SCRIPTED, spec, config=cfg) as host:
            host.reset(3)
            outs.append(host.act(obs, deadline_s=5.0))
            assert host.confinement.mode == mode
            assert host.take_denials() == {'count': 0, 'first': []}
    np.testing.assert_array_equal(outs[0], outs[1])


def test_running_unconfined_is_refused_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv('ENPIRE_ALLOW_UNCONFINED', raising=False)
    spec = spec_for_revision(load_task('push_t').raw, SCRIPTED)
    with pytest.raises(UnconfinedError, match='--allow-unconfined'):
        PolicyHost(SCRIPTED, spec, config=SandboxConfig(confinement='none')).start()
    assert detect('none').confined is False
    with pytest.raises(ValueError, match='confinement'):
        detect('chroot')


_ORPHAN = textwrap.dedent('''
    import sys, threading
    from pathlib import Path
    from enpire_agent_bridge.core.contract import spec_for_revision
    from enpire_agent_bridge.core.host import PolicyHost
    from enpire_common.tasks import load_task

    policy = Path(sys.argv[1])
    spec = spec_for_revision(load_task('push_t').raw, policy)
    host = PolicyHost(policy, spec)
    host.start()
    print(host.pid, flush=True)
    host.act(spec.example_observation(), deadline_s=3600.0, hard_deadline_s=3600.0)
''')


def test_the_worker_dies_with_its_host_even_inside_an_endless_act(tmp_path):
    """SIGKILL the host process while its policy spins in act(): the worker goes too."""
    loop = ROOT / 'tests' / 'data' / 'bad_policies' / 'infinite_loop'
    script = tmp_path / 'orphan.py'
    script.write_text(_ORPHAN)
    env = {**os.environ, 'ENPIRE_ALLOW_UNCONFINED': '1'}
    proc = subprocess.Popen([sys.executable, str(script), str(loop)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        worker = int(proc.stdout.readline())
        time.sleep(0.5)  # inside act's endless loop
        os.kill(worker, 0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        end = time.monotonic() + 2.0
        while time.monotonic() < end and _alive(worker):
            time.sleep(0.05)
        assert not _alive(worker), f'policy worker {worker} outlived its host'
    finally:
        proc.kill()
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


@pytest.mark.skipif(bwrap_path() is None, reason='bubblewrap cannot run here')
def test_bubblewrap_fallback_refuses_the_same_operations(tmp_path):
    secret = tmp_path / 'secret.txt'
    secret.write_text('canary')
    contract = ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml'
    before = contract.read_bytes()
    ops = [['read', '/etc/hostname', 'denied'], ['read', str(secret), 'denied'],
           ['write', str(contract), 'denied'], ['socket', 'AF_INET', 'denied'],
           ['import', str(ROOT / 'src' / 'enpire_common'), 'denied'],
           ['scratch', '', 'allowed']]
    with _host(_probe_dir(tmp_path, ops), tmp_path,
               SandboxConfig(confinement='bwrap')) as host:
        assert host.confinement.mode == 'bwrap'
        _act(host)
        denials = host.take_denials()
    assert contract.read_bytes() == before
    assert {'read /etc/hostname', f'read {secret}', f'write {contract}',
            'socket AF_INET'} <= set(denials['first'])
