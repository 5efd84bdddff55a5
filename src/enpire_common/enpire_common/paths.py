"""Runtime locations. No machine paths in code: everything hangs off ENPIRE_HOME."""

from __future__ import annotations

import os
from pathlib import Path

from enpire_common.errors import UnknownNameError


def enpire_home(override: str | Path | None = None) -> Path:
    """The runtime data directory: ``override``, else ``$ENPIRE_HOME``, else ``./runs``."""
    if override:
        return Path(override).expanduser().resolve()
    return Path(os.environ.get('ENPIRE_HOME') or 'runs').expanduser().resolve()


# Revisions: ``<home>/revisions/<id>/`` holds ``revision.json`` (the manifest) beside
# ``policy/`` (the read-only snapshot). The agent bridge's RevisionStore writes this layout;
# the rollout node reads it (it must not import the agent bridge).
REVISIONS_DIR = 'revisions'
REVISION_MANIFEST = 'revision.json'
REVISION_POLICY_DIR = 'policy'


def revisions_root(home: str | Path) -> Path:
    """The revision store's directory under a runtime data directory."""
    return Path(home) / REVISIONS_DIR


def revision_policy_dir(home: str | Path, revision_id: str) -> Path:
    """The snapshot directory of the stored revision ``revision_id`` (its full content id).

    Raises:
        UnknownNameError: no revision with that id is stored under ``home`` (did you mean).
    """
    root = revisions_root(home)
    rev = root / revision_id
    if revision_id and '/' not in revision_id and (rev / REVISION_MANIFEST).is_file():
        return rev / REVISION_POLICY_DIR
    known = [p.name[:12] for p in root.glob('*') if (p / REVISION_MANIFEST).is_file()]
    raise UnknownNameError('revision', revision_id, known)
