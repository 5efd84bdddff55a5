"""Test helpers for policy directories (used by unit and system tests alike)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def policy_with_params(source: str | Path, dest: str | Path, params: Mapping[str, Any]) -> Path:
    """Copy the policy directory ``source`` to ``dest`` with ``params`` in its policy.yaml."""
    dest = Path(dest)
    shutil.copytree(source, dest)
    manifest = yaml.safe_load((dest / 'policy.yaml').read_text())
    manifest['params'] = dict(params)
    (dest / 'policy.yaml').write_text(yaml.safe_dump(manifest))
    return dest
