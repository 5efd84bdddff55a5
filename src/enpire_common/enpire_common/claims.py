"""One process per ROS node name on a host and domain.

ROS 2 lets two nodes share a fully qualified name; for a cell that is a silent disaster. Two
``/cell_0/rollout`` nodes on one domain are two ``run_trials`` servers: both accept every
goal, both run it (the second recorder then fails on the first one's episode directory), and
the client gets two goal responses for one request (rclpy raises "Two goals were accepted
with the same ID" in its executor and the caller waits forever). That happened when a loaded
host's client missed a running cell in its discovery probe and started a second one.

A node claims its name with an flock on ``<tmp>/enpire-<uid>/nodes/d<domain>/<name>.lock``
for its lifetime; the kernel releases it when the process dies, SIGKILL included, so a
crashed cell never blocks its successor. :func:`claim_node_name` takes the claim,
:func:`claimed_by` tells a would-be starter that a cell already runs here (its pid).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path


class NameTakenError(RuntimeError):
    """Another live process on this host and domain holds the node name."""

    def __init__(self, name: str, pid: int | None, domain: str) -> None:
        self.name, self.pid, self.domain = name, pid, domain
        who = f'pid {pid}' if pid else 'another process'
        super().__init__(
            f'node {name} already runs on this host on ROS_DOMAIN_ID={domain} ({who}): '
            'two nodes with one name would both serve its requests (two cells answering one '
            'goal); stop the running one, or launch this one under another namespace')


def _domain() -> str:
    return os.environ.get('ROS_DOMAIN_ID', '0').strip() or '0'


def claim_path(fq_name: str, domain: str | None = None) -> Path:
    """The lock file of the fully qualified node name ``fq_name`` (e.g. ``/cell_0/rollout``)."""
    safe = fq_name.strip('/').replace('/', '%') or '%'
    root = Path(tempfile.gettempdir()) / f'enpire-{os.getuid()}' / 'nodes'
    return root / f'd{domain if domain is not None else _domain()}' / f'{safe}.lock'


def _holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    return None


def claim_node_name(fq_name: str) -> int | None:
    """Claim ``fq_name`` for this process; returns the lock's fd (keep it open).

    Raises:
        NameTakenError: a live process holds the name.

    Returns None (no claim, nothing enforced) where the lock directory cannot be written,
    e.g. inside a sandbox: the check guards cells, it must never stop one from starting.
    """
    path = claim_path(fq_name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    # A prober (claimed_by) holds a shared lock for microseconds: a few tries tell it from a
    # live owner.
    for attempt in range(6):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 5:
                pid = _holder(fd)
                os.close(fd)
                raise NameTakenError(fq_name, pid, _domain()) from None
            time.sleep(0.05)
        except OSError:
            os.close(fd)
            return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    return fd


def claimed_by(fq_name: str, domain: str | None = None) -> int | None:
    """The pid holding ``fq_name`` on this host and domain (0 if unknown), else None."""
    try:
        fd = os.open(claim_path(fq_name, domain), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd) or 0
    except OSError:
        return None
    finally:
        os.close(fd)
    return None
