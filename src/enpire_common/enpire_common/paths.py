"""Runtime locations. No machine paths in code: everything hangs off ENPIRE_HOME."""

from __future__ import annotations

import os
from pathlib import Path


def enpire_home(override: str | Path | None = None) -> Path:
    """The runtime data directory: ``override``, else ``$ENPIRE_HOME``, else ``./runs``."""
    if override:
        return Path(override).expanduser().resolve()
    return Path(os.environ.get('ENPIRE_HOME') or 'runs').expanduser().resolve()
