"""enpire_common.claims: one process per node name on a host and ROS domain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from enpire_common.claims import NameTakenError, claim_node_name, claim_path, claimed_by

HOLD = ('import sys, time\n'
        'from enpire_common.claims import claim_node_name\n'
        'fd = claim_node_name(sys.argv[1])\n'
        'print(fd is not None, flush=True)\n'
        'time.sleep(60)\n')


@pytest.fixture
def domain(monkeypatch: pytest.MonkeyPatch) -> str:
    # A domain of its own: nothing else on the host holds its names.
    d = f'claims{os.getpid()}'
    monkeypatch.setenv('ROS_DOMAIN_ID', d)
    return d


def _holder(name: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, '-c', HOLD, name], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    assert proc.stdout.readline().strip() == 'True'
    return proc


def test_a_second_claim_names_the_holder_and_a_killed_holder_frees_the_name(domain) -> None:
    name = '/cell_7/rollout'
    assert claimed_by(name) is None
    proc = _holder(name)
    try:
        assert claimed_by(name) == proc.pid
        with pytest.raises(NameTakenError) as err:
            claim_node_name(name)
        assert err.value.pid == proc.pid and f'ROS_DOMAIN_ID={domain}' in str(err.value)
        assert '/cell_7/rollout already runs' in str(err.value)
    finally:
        proc.send_signal(signal.SIGKILL)    # no clean-up runs: the kernel drops the lock
        proc.wait()
    assert claimed_by(name) is None
    fd = claim_node_name(name)
    try:
        assert fd is not None and claimed_by(name) is None or claimed_by(name) == os.getpid()
    finally:
        os.close(fd)
    claim_path(name).unlink()


def test_names_are_per_domain_and_a_probe_never_blocks_a_claim(domain,
                                                               monkeypatch) -> None:
    name = '/cell_0/rollout'
    fd = claim_node_name(name)
    try:
        monkeypatch.setenv('ROS_DOMAIN_ID', f'{domain}x')
        other = claim_node_name(name)     # another domain: another cell
        os.close(other)
        claim_path(name).unlink()
    finally:
        os.close(fd)
    monkeypatch.setenv('ROS_DOMAIN_ID', domain)
    # Probing (a shared lock for a moment) while a node starts must not refuse the node.
    end = time.monotonic() + 0.5
    fd = None
    while time.monotonic() < end:
        assert claimed_by(name) in (None, os.getpid())
        if fd is None:
            fd = claim_node_name(name)
    os.close(fd)
    claim_path(name).unlink()


def test_an_unwritable_lock_directory_enforces_nothing(domain, monkeypatch, tmp_path) -> None:
    # A file where the directory should be (permissions alone do not stop root).
    blocked = tmp_path / 'not_a_dir'
    blocked.write_text('')
    monkeypatch.setattr('tempfile.gettempdir', lambda: str(blocked))
    assert claim_node_name('/cell_0/rollout') is None
    assert claimed_by('/cell_0/rollout') is None
