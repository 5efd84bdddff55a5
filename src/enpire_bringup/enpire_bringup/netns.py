"""Test hosts in Linux network namespaces: several "hosts" on one machine (shipped for tests).

:class:`TestNetwork` creates one network namespace per host, each with its own loopback and
one Ethernet link (``eth0``, a veth pair) to a bridge in the root namespace, on a private
``/24`` (``10.231.<k>.0/24``, ``k`` not in use here). The root namespace is ``.1`` on it (a
server there, e.g. PostgreSQL, listens on that address), host ``i`` is ``.<i+2>``. ROS 2 with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` discovers over loopback only, so to DDS every
namespace is a host of its own. What namespaces do NOT separate: the file system, ``/dev/shm``
and process ids (use a ``ROS_DOMAIN_ID`` per host: Fast DDS names its shared-memory segments
by domain and port, which two real hosts never share).

:meth:`TestNetwork.popen` / :meth:`TestNetwork.run` run a command inside a host (``ip netns
exec``, which keeps the caller's environment: pass ``env``). :meth:`TestNetwork.close` (also
on leaving the ``with`` block, and after a failed set-up) kills what still runs in the
namespaces and deletes them and the links. Names are unique per instance
(``enpire-<pid>-<token>-<host>``), so a leftover of a crashed run never collides; leftovers
whose creator died and where nothing runs any more are removed by the next instance.

Needs root (CAP_NET_ADMIN, and CAP_SYS_ADMIN for ``ip netns exec``'s mounts) and iproute2;
:class:`NetnsUnavailableError` says why where it cannot work (tests skip on it).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ['NetnsError', 'NetnsUnavailableError', 'TestHost', 'TestNetwork',
           'netns_unavailable_reason']

#: The /16 whose /24s the test networks use (private, unlikely to be routed here).
SUBNET_PREFIX = '10.231'
_NAME = re.compile(r'^enpire-(\d+)-[0-9a-f]{6}-')
_BRIDGE_ALIAS = 'enpire-test-network pid='


class NetnsError(RuntimeError):
    """An ``ip`` command of the test network failed; the message holds its output."""


class NetnsUnavailableError(NetnsError):
    """Network namespaces cannot be made here (not root, no iproute2, no kernel support)."""


def netns_unavailable_reason() -> str | None:
    """Why :class:`TestNetwork` cannot work here, or None if it may (creating one tells)."""
    if not hasattr(os, 'geteuid') or not os.path.isdir('/proc/self/ns'):
        return 'network namespaces need Linux'
    if os.geteuid() != 0:
        return ('network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN); this runs as '
                f'uid {os.geteuid()}')
    if shutil.which('ip') is None:
        return "no 'ip' command (apt-get install iproute2)"
    return None


def _ip(*args: str, check: bool = True, unavailable: bool = False,
        timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(['ip', *args], capture_output=True, text=True, check=False,
                              timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as exc:
        raise (NetnsUnavailableError if unavailable else NetnsError)(
            f"ip {' '.join(args)}: {exc}") from exc
    if check and proc.returncode != 0:
        raise (NetnsUnavailableError if unavailable else NetnsError)(
            f"ip {' '.join(args)} failed (exit {proc.returncode}): "
            f'{(proc.stderr or proc.stdout).strip()}')
    return proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_pids(netns: str) -> list[int]:
    proc = _ip('netns', 'pids', netns, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()] if proc.returncode == 0 else []


def _reap_stale() -> None:
    """Delete namespaces and bridges of earlier instances whose process is gone (best effort;
    a namespace where something still runs is left alone)."""
    for line in _ip('netns', 'list', check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ''
        m = _NAME.match(name)
        if m and not _alive(int(m.group(1))) and not _netns_pids(name):
            _ip('netns', 'del', name, check=False)
    out = _ip('-d', '-o', 'link', 'show', 'type', 'bridge', check=False).stdout
    for line in out.splitlines():
        m = re.match(r'^\d+:\s+([^:@\s]+).*\balias ' + re.escape(_BRIDGE_ALIAS) + r'(\d+)', line)
        if m and not _alive(int(m.group(2))):
            _ip('link', 'del', m.group(1), check=False)


def _free_third_octet() -> int:
    used = {int(m) for m in re.findall(rf'inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.',
                                       _ip('-4', '-o', 'addr', 'show', check=False).stdout)}
    free = [k for k in range(1, 255) if k not in used]
    if not free:
        raise NetnsError(f'every {SUBNET_PREFIX}.<k>.0/24 is in use on this machine')
    return random.SystemRandom().choice(free)  # two runs at once rarely pick the same


@dataclass(frozen=True)
class TestHost:
    """One host of a :class:`TestNetwork`: its namespace, and its address on ``eth0``."""

    __test__ = False  # not a pytest test class

    name: str
    netns: str
    address: str


class TestNetwork:
    """Hosts in network namespaces on a private /24 bridged to the root namespace.

    Args:
        hosts: the hosts' names (short, e.g. ``['a', 'b']``).

    Attributes:
        hosts: name -> :class:`TestHost`.
        gateway: the root namespace's address on the network (servers listen there).
        subnet: the network, e.g. ``'10.231.17.0/24'``.

    Raises:
        NetnsUnavailableError: namespaces, veth pairs or bridges cannot be made here.
        NetnsError: another step of the set-up failed (everything made is removed again).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, hosts: Sequence[str]) -> None:
        reason = netns_unavailable_reason()
        if reason:
            raise NetnsUnavailableError(reason)
        names = list(hosts)
        if not names or len(set(names)) != len(names) or len(names) > 200:
            raise ValueError(f'hosts: give 1 to 200 distinct names, not {names}')
        for n in names:
            if not re.fullmatch(r'[a-z0-9_]{1,20}', n):
                raise ValueError(f'host name {n!r}: use 1-20 of [a-z0-9_]')
        self.token = secrets.token_hex(3)
        self.bridge = f'enpb{self.token}'
        self._veths: list[str] = []
        self._netns: list[str] = []
        self._bridge_made = False
        self.hosts: dict[str, TestHost] = {}
        with contextlib.suppress(NetnsError):
            _reap_stale()
        try:
            self._set_up(names)
        except BaseException:
            self.close()
            raise

    def _set_up(self, names: list[str]) -> None:
        k = _free_third_octet()
        self.subnet = f'{SUBNET_PREFIX}.{k}.0/24'
        self.gateway = f'{SUBNET_PREFIX}.{k}.1'
        _ip('link', 'add', self.bridge, 'type', 'bridge', unavailable=True)
        self._bridge_made = True
        _ip('link', 'set', 'dev', self.bridge, 'alias', f'{_BRIDGE_ALIAS}{os.getpid()}')
        _ip('addr', 'add', f'{self.gateway}/24', 'dev', self.bridge)
        _ip('link', 'set', 'dev', self.bridge, 'up')
        for i, name in enumerate(names):
            netns = f'enpire-{os.getpid()}-{self.token}-{name}'
            _ip('netns', 'add', netns, unavailable=True)
            self._netns.append(netns)
            veth = f'enpv{self.token}{i}'
            _ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns,
                unavailable=True)
            self._veths.append(veth)
            _ip('link', 'set', 'dev', veth, 'master', self.bridge)
            _ip('link', 'set', 'dev', veth, 'up')
            address = f'{SUBNET_PREFIX}.{k}.{i + 2}'
            _ip('-n', netns, 'addr', 'add', f'{address}/24', 'dev', 'eth0')
            _ip('-n', netns, 'link', 'set', 'dev', 'eth0', 'up')
            # Each host has a loopback of its own (down in a new namespace).
            _ip('-n', netns, 'link', 'set', 'dev', 'lo', 'up')
            self.hosts[name] = TestHost(name, netns, address)

    # --- running commands in a host ---------------------------------------------------------
    def argv(self, host: str, cmd: Sequence[str]) -> list[str]:
        """``cmd`` run inside ``host`` (``ip netns exec``: same environment, same process)."""
        return ['ip', 'netns', 'exec', self.hosts[host].netns, *cmd]

    def popen(self, host: str, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """``subprocess.Popen`` of ``cmd`` inside ``host`` (kwargs: env, stdout, ...)."""
        return subprocess.Popen(self.argv(host, cmd), **kwargs)

    def run(self, host: str, cmd: Sequence[str], **kwargs: Any,
            ) -> subprocess.CompletedProcess:
        """``subprocess.run`` of ``cmd`` inside ``host``."""
        return subprocess.run(self.argv(host, cmd), **kwargs)

    def pids(self, host: str) -> list[int]:
        """The processes that run inside ``host`` now."""
        return _netns_pids(self.hosts[host].netns)

    # --- tear-down ----------------------------------------------------------------------------
    def close(self) -> None:
        """Kill what runs inside the hosts, delete the namespaces and links; idempotent."""
        for netns in self._netns:
            # A namespace outlives `ip netns del` while a process is inside it (and keeps
            # its link and address): nothing of a test may stay behind.
            end = time.monotonic() + 10.0
            while (pids := _netns_pids(netns)) and time.monotonic() < end:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)  # the kernel reaps them; no event to wait on
            _ip('netns', 'del', netns, check=False)
        self._netns = []
        for veth in self._veths:  # gone with its namespace, unless a process held it
            if _ip('link', 'show', 'dev', veth, check=False).returncode == 0:
                _ip('link', 'del', 'dev', veth, check=False)
        self._veths = []
        if self._bridge_made:
            _ip('link', 'del', 'dev', self.bridge, check=False)
            self._bridge_made = False

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        hosts = ', '.join(f'{h.name}={h.address}' for h in self.hosts.values())
        return f'TestNetwork({getattr(self, "subnet", "?")}: {hosts})'
