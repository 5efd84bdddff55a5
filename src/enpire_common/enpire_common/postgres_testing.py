"""A throwaway PostgreSQL server for tests (shipped code, like the fakes): real ``postgres``.

:class:`PostgresServer` runs ``initdb`` + ``pg_ctl`` from the host's PostgreSQL binaries in a
temporary directory, listening on a free loopback TCP port and a private unix socket, with
durability off (``fsync=off``) because nothing in it outlives the test session. Run as root
(as in containers), it runs the server as the ``postgres`` system user, since ``postgres``
refuses to run as root. Each test takes a fresh database (:meth:`PostgresServer.create_database`)
so tests stay independent; :meth:`terminate_connections` drops a database's sessions the way
a server restart or a network cut would. By default it listens on 127.0.0.1 only; a test whose
clients sit in other network namespaces (``enpire_bringup.netns``) adds the root namespace's
address on their link (``listen_addresses``) and trusts their subnet (``trusted_networks``).

The root ``conftest.py`` wraps it in the ``postgres_server`` (session) and ``postgres_url``
(per test) fixtures, which skip with the reason of :class:`PostgresUnavailableError` where no
PostgreSQL binaries are installed (``scripts/setup.sh`` installs Debian's ``postgresql``); a
server that is installed but fails to start is an error (:class:`PostgresServerError`).
"""

from __future__ import annotations

import glob
import ipaddress
import itertools
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ['PostgresServer', 'PostgresServerError', 'PostgresUnavailableError',
           'find_postgres_bin']

# The system user the server runs as when we are root (Debian's package creates it).
SERVER_USER = 'postgres'
SUPERUSER = 'postgres'
_NAMES = itertools.count()


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server can run here; the message says why and what to install."""


class PostgresServerError(RuntimeError):
    """An installed PostgreSQL failed to initialise, start or stop; the message holds its log."""


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``; None if not installed.

    ``$ENPIRE_POSTGRES_BIN`` wins, then ``pg_ctl`` on PATH, then the newest Debian/Ubuntu
    ``/usr/lib/postgresql/<version>/bin``.
    """
    candidates: list[Path] = []
    if os.environ.get('ENPIRE_POSTGRES_BIN'):
        candidates.append(Path(os.environ['ENPIRE_POSTGRES_BIN']))
    on_path = shutil.which('pg_ctl')
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r'\d+', Path(path).parent.name))
    candidates += [Path(p).parent for p in sorted(
        glob.glob('/usr/lib/postgresql/*/bin/initdb'), key=version, reverse=True)]
    for d in candidates:
        if all(os.access(d / tool, os.X_OK) for tool in ('initdb', 'pg_ctl', 'postgres')):
            return d
    return None


def _base_dir(as_other_user: bool) -> str:
    """Where the cluster's directory goes: the temp dir, unless the server's user could not
    reach it (a root-only TMPDIR) or its path would make the socket path too long (107 bytes
    on Linux), then /tmp."""
    base = Path(tempfile.gettempdir()).resolve()
    reachable = not as_other_user or all(
        os.stat(d).st_mode & 0o001 for d in (base, *base.parents))
    return str(base) if reachable and len(str(base)) <= 60 else '/tmp'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory. Use as a context manager.

    Args:
        bin_dir: PostgreSQL's binaries; None finds them (:func:`find_postgres_bin`).
        icu_locale: the cluster's default collation (ICU, PostgreSQL >= 15) so that text
            sorts like on a typical production server rather than byte-wise; None for 'C'.
        start_timeout_s: how long ``pg_ctl`` waits for the server to accept connections.
        listen_addresses: the IP addresses the server listens on (TCP, one port for all);
            the default is loopback only. Another address must exist when the server starts.
        trusted_networks: CIDR blocks (e.g. ``'10.231.7.0/24'``) whose clients connect with
            trust auth like loopback's (a ``host all all <cidr> trust`` line in
            pg_hba.conf); none by default.

    Raises:
        PostgresUnavailableError: no binaries, or (as root) no ``postgres`` system user, or
            the psycopg driver is missing.
        PostgresServerError: ``initdb`` failed.
    """

    def __init__(self, bin_dir: str | Path | None = None, *, icu_locale: str | None = 'en-US',
                 start_timeout_s: float = 30.0,
                 listen_addresses: Sequence[str] = ('127.0.0.1',),
                 trusted_networks: Sequence[str] = ()) -> None:
        if not listen_addresses:
            raise ValueError('listen_addresses: give at least one address')
        self.listen_addresses = tuple(str(ipaddress.ip_address(a)) for a in listen_addresses)
        self.trusted_networks = tuple(str(ipaddress.ip_network(n, strict=False))
                                      for n in trusted_networks)
        found = Path(bin_dir) if bin_dir else find_postgres_bin()
        if found is None:
            raise PostgresUnavailableError(
                'no PostgreSQL server binaries (initdb, pg_ctl, postgres) found on PATH or in '
                '/usr/lib/postgresql/*/bin; install them (apt-get install postgresql, which '
                'scripts/setup.sh does as root) or set ENPIRE_POSTGRES_BIN')
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PostgresUnavailableError(
                "the psycopg driver is not installed; pip install 'psycopg[binary]' "
                '(requirements.txt)') from None
        self.bin_dir = found
        self.icu_locale = icu_locale
        self.start_timeout_s = float(start_timeout_s)
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailableError(
                    f"running as root, and postgres refuses root, but there is no "
                    f"'{SERVER_USER}' system user to run it as (apt-get install postgresql "
                    'creates one)') from None
            self._user = {'user': pw.pw_uid, 'group': pw.pw_gid, 'extra_groups': []}
            self._owner = (pw.pw_uid, pw.pw_gid)
        self.dir = Path(tempfile.mkdtemp(prefix='enpire-pg-', dir=_base_dir(bool(self._user))))
        if self._user:
            os.chown(self.dir, *self._owner)
        self.data_dir = self.dir / 'data'
        self.socket_dir = self.dir
        self.log_file = self.dir / 'server.log'
        self.port = 0
        self.running = False
        try:
            self._initdb()
            self._trust_networks()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    # --- process control ----------------------------------------------------------------------
    def _tool(self, name: str, *args: str, timeout_s: float = 60.0,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / name), *args]
        try:
            proc = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True,
                                  timeout=timeout_s, check=False, **self._user)
        except (OSError, subprocess.SubprocessError) as exc:
            as_user = f' as {SERVER_USER}' if self._user else ''
            raise PostgresServerError(f'could not run {name}{as_user}: {exc}') from exc
        if check and proc.returncode != 0:
            raise PostgresServerError(
                f'{name} failed (exit {proc.returncode}): '
                f'{(proc.stderr or proc.stdout).strip()[-2000:]}{self._log_tail()}')
        return proc

    def _log_tail(self) -> str:
        try:
            tail = self.log_file.read_text(errors='replace').strip().splitlines()[-15:]
        except OSError:
            return ''
        return '\nserver log:\n' + '\n'.join(tail) if tail else ''

    def _initdb(self) -> None:
        base = ['-D', str(self.data_dir), '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8',
                '--no-sync']
        if self.icu_locale:
            proc = self._tool('initdb', *base, '--locale=C.UTF-8', '--locale-provider=icu',
                              f'--icu-locale={self.icu_locale}', check=False)
            if proc.returncode == 0:
                return
            # An older server or one built without ICU: byte-wise 'C' collation instead.
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._tool('initdb', *base, '--locale=C')

    def _trust_networks(self) -> None:
        """Give ``trusted_networks`` trust auth (initdb's pg_hba.conf trusts loopback only)."""
        if not self.trusted_networks:
            return
        hba = self.data_dir / 'pg_hba.conf'
        with open(hba, 'a', encoding='utf-8') as f:
            f.write('\n# trusted test networks (PostgresServer trusted_networks)\n')
            f.writelines(f'host all all {net} trust\n' for net in self.trusted_networks)

    def start(self) -> None:
        """Start the server (again, after :meth:`stop`) on a free port; idempotent."""
        if self.running:
            return
        for attempt in range(3):
            # Keep the port across restarts, so URLs handed out stay valid.
            self.port = self.port or _free_port()
            opts = ' '.join(shlex.quote(o) for o in (
                '-p', str(self.port), '-k', str(self.socket_dir),
                # fsync=off: commits reach the OS, not the disk. synchronous_commit stays on,
                # so a commit survives an immediate stop (a crash of postgres, not the OS).
                '-c', f'listen_addresses={",".join(self.listen_addresses)}', '-c', 'fsync=off',
                '-c', 'full_page_writes=off',
                '-c', 'max_connections=200', '-c', 'shared_buffers=32MB'))
            proc = self._tool('pg_ctl', '-D', str(self.data_dir), '-l', str(self.log_file),
                              '-w', '-t', str(int(self.start_timeout_s)), '-o', opts, 'start',
                              timeout_s=self.start_timeout_s + 10, check=False)
            if proc.returncode == 0:
                self.running = True
                return
            if 'could not bind' not in self._log_tail() or attempt == 2:
                raise PostgresServerError(
                    f'pg_ctl start failed (exit {proc.returncode}): '
                    f'{(proc.stderr or proc.stdout).strip()}{self._log_tail()}')
            self.port = 0  # someone took the port meanwhile: pick another

    def stop(self, mode: str = 'immediate') -> None:
        """Stop the server (``immediate``: no checkpoint, like a crash; ``fast``: clean)."""
        if not self.running:
            return
        self._tool('pg_ctl', '-D', str(self.data_dir), '-m', mode, '-w', 'stop',
                   timeout_s=60.0, check=False)
        self.running = False

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- databases and sessions ---------------------------------------------------------------
    def url(self, database: str = 'postgres', *, driver: str = 'psycopg',
            password: str | None = None, host: str = '127.0.0.1') -> str:
        """A SQLAlchemy URL of ``database`` over TCP to ``host`` (default loopback; another of
        ``listen_addresses`` for a client elsewhere) with trust auth: any password."""
        scheme = f'postgresql+{driver}' if driver else 'postgresql'
        auth = SUPERUSER + (f':{password}' if password else '')
        netloc = f'[{host}]' if ':' in host else host  # an IPv6 address
        return f'{scheme}://{auth}@{netloc}:{self.port}/{database}'

    def connect(self, database: str = 'postgres') -> Any:
        """An autocommit psycopg connection as the superuser (over the unix socket)."""
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user=SUPERUSER,
                               dbname=database, autocommit=True, connect_timeout=10)

    def create_database(self, prefix: str = 'test') -> str:
        """Create a new, empty database; returns its name."""
        name = f'{re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40]}_{os.getpid()}_{next(_NAMES)}'
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, ending its sessions first."""
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate_connections(self, database: str) -> int:
        """End every session on ``database`` (as a restart or network cut would); how many."""
        with self.connect() as conn:
            rows = conn.execute(
                'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                'WHERE datname = %s AND pid <> pg_backend_pid()', (database,)).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def __repr__(self) -> str:
        state = f'port {self.port}' if self.running else 'stopped'
        return f'PostgresServer({self.bin_dir}, {state})'
