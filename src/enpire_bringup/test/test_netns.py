"""enpire_bringup.netns: test hosts in network namespaces (needs root and iproute2)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from enpire_bringup import netns
from enpire_bringup.netns import TestNetwork, netns_unavailable_reason

_REASON = netns_unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f'test hosts: {_REASON}')

CONNECT = ('import socket, sys\n'
           'try:\n'
           '    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n'
           'except OSError as exc:\n'
           '    sys.exit(f"refused: {exc}")\n')
ACCEPT_TWICE = ('import socket\n'
                's = socket.socket(); s.bind(("", 0)); s.listen()\n'
                'print(s.getsockname()[1], flush=True)\n'
                'for _ in range(2):\n'
                '    s.accept()[0].close()\n')


def _listener(address: str) -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind((address, 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def _connect(net: TestNetwork, host: str, address: str, port: int) -> int:
    return net.run(host, [sys.executable, '-c', CONNECT, address, str(port)],
                   capture_output=True, timeout=30).returncode


def _namespaces() -> str:
    return subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True,
                          check=False).stdout


def _links() -> str:
    return subprocess.run(['ip', '-o', 'link', 'show'], capture_output=True, text=True,
                          check=False).stdout


def test_hosts_reach_the_root_namespace_and_each_other_but_not_its_loopback() -> None:
    with TestNetwork(['a', 'b']) as net:
        a, b = net.hosts['a'], net.hosts['b']
        assert net.subnet.endswith('.0/24') and net.gateway.endswith('.1')
        assert (a.address, b.address) == (net.gateway[:-1] + '2', net.gateway[:-1] + '3')
        root_lo, lo_port = _listener('127.0.0.1')
        root_gw, gw_port = _listener(net.gateway)
        with root_lo, root_gw:
            assert _connect(net, 'a', net.gateway, gw_port) == 0
            assert _connect(net, 'b', net.gateway, gw_port) == 0
            # Each host has a loopback of its own: the root namespace's is out of reach.
            assert _connect(net, 'a', '127.0.0.1', lo_port) != 0
        # Host to host over the bridge, and each host's own loopback is up.
        server = net.popen('b', [sys.executable, '-c', ACCEPT_TWICE],
                           stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            assert _connect(net, 'b', '127.0.0.1', port) == 0
            assert _connect(net, 'a', b.address, port) == 0
            assert server.wait(timeout=10) == 0
        finally:
            server.kill()
            server.wait()
        names = (a.netns, b.netns)
        assert all(n in _namespaces() for n in names)
    assert not any(n in _namespaces() for n in names)
    assert net.bridge not in _links() and f'enpv{net.token}' not in _links()


def test_close_kills_what_still_runs_inside_and_removes_everything() -> None:
    net = TestNetwork(['a'])
    proc = net.popen('a', ['sleep', '600'])
    try:
        end = time.monotonic() + 10.0
        while proc.pid not in net.pids('a'):  # until `ip netns exec` has entered it
            assert time.monotonic() < end, net.pids('a')
            time.sleep(0.05)
    finally:
        net.close()
    assert proc.wait(timeout=10) == -9
    assert net.hosts['a'].netns not in _namespaces()
    assert net.bridge not in _links()
    net.close()  # idempotent


def test_a_set_up_that_fails_half_way_removes_what_it_made(monkeypatch) -> None:
    real = netns._ip
    made: list[str] = []

    def failing_ip(*args: str, **kwargs):
        if args[:2] == ('netns', 'add'):
            made.append(args[2])
            if len(made) == 2:
                raise netns.NetnsError('injected')
        return real(*args, **kwargs)

    monkeypatch.setattr(netns, '_ip', failing_ip)
    with pytest.raises(netns.NetnsError, match='injected'):
        TestNetwork(['a', 'b'])
    monkeypatch.undo()
    assert made and made[0] not in _namespaces()
    token = made[0].split('-')[2]
    assert f'enpb{token}' not in _links() and f'enpv{token}' not in _links()


def test_unique_names_let_two_networks_coexist() -> None:
    with TestNetwork(['a']) as one, TestNetwork(['a']) as two:
        assert one.hosts['a'].netns != two.hosts['a'].netns
        assert one.subnet != two.subnet and one.bridge != two.bridge


CLIENT_ADDR = ('import psycopg, sys\n'
               'with psycopg.connect(sys.argv[1], connect_timeout=10) as conn:\n'
               '    print(conn.execute("SELECT inet_client_addr()").fetchone()[0])\n')


def test_a_postgres_server_listening_on_the_gateway_serves_the_hosts() -> None:
    from enpire_common.postgres_testing import PostgresServer, PostgresUnavailableError

    with TestNetwork(['a']) as net:
        try:
            server = PostgresServer(listen_addresses=('127.0.0.1', net.gateway),
                                    trusted_networks=(net.subnet,))
        except PostgresUnavailableError as exc:
            pytest.skip(f'needs a local PostgreSQL: {exc}')
        with server:
            url = server.url(server.create_database('netns'), driver='', host=net.gateway)
            out = net.run('a', [sys.executable, '-c', CLIENT_ADDR, url], capture_output=True,
                          text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == net.hosts['a'].address
            # Loopback stays where it was: the default URL still works from here.
            with server.connect() as conn:
                assert conn.execute('SELECT 1').fetchone() == (1,)
