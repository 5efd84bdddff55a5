"""The revision store: immutable, content-addressed snapshots of policy directories.

``submit(dir)`` copies a policy directory into ``<root>/<sha256>/`` where the id is the hash
of every file's relative path and content (identical content -> same id, whatever the
directory is called or when it was submitted). A revision is read-only on disk and carries a
manifest (``revision.json`` beside the snapshot, outside the hashed content) with its parent,
the workspace's git commit, and the hypothesis and regime from ``policy.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from enpire_agent_bridge.core.contract import SizeLimits
from enpire_common.errors import ConfigError, PolicyRejectedError, UnknownNameError
from enpire_common.paths import REVISION_MANIFEST, REVISION_POLICY_DIR

#: Never part of a revision: caches, VCS metadata, editor droppings.
IGNORED_DIRS = frozenset({'__pycache__', '.git', '.pytest_cache', '.ruff_cache', '.mypy_cache'})
IGNORED_SUFFIXES = ('.pyc', '.pyo', '.swp', '~')
MANIFEST = REVISION_MANIFEST
HOLD = 'hold'


@dataclass
class Revision:
    """One stored revision. ``path`` is the read-only snapshot directory."""

    id: str
    path: Path
    name: str = ''
    task: str = ''
    version: int = 0
    regime: str = ''
    hypothesis: str = ''
    parent: str = ''
    commit: str = ''
    created_at: float = 0.0
    source_dir: str = ''
    files: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.id[:12]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d['path'] = str(self.path)
        return d


def _policy_files(policy_dir: Path, limits: SizeLimits) -> list[Path]:
    if not policy_dir.is_dir():
        raise PolicyRejectedError(f'{policy_dir}: not a directory; submit a policy directory '
                                  'holding policy.py and policy.yaml')
    files: list[Path] = []
    total = 0
    for root, dirs, names in os.walk(policy_dir, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS)
        for name in sorted(names):
            # A '.git' FILE is a git worktree's link to its repository (its path differs per
            # worktree): not policy content, or one policy would get one id per checkout.
            if name.endswith(IGNORED_SUFFIXES) or name == '.git':
                continue
            p = Path(root) / name
            rel = p.relative_to(policy_dir)
            if p.is_symlink():
                raise PolicyRejectedError(
                    f'{rel}: symbolic links are not allowed in a policy directory; copy the '
                    'file in instead')
            total += p.stat().st_size
            files.append(p)
    if len(files) > limits.max_files:
        raise PolicyRejectedError(f'{policy_dir}: {len(files)} files exceed the limit of '
                                  f'{limits.max_files}; remove generated files')
    if total > limits.max_total_mb * 2**20:
        raise PolicyRejectedError(f'{policy_dir}: {total / 2**20:.2f} MiB exceeds the limit of '
                                  f'{limits.max_total_mb:g} MiB; keep large weights out of '
                                  'the policy directory or shrink them')
    for required in ('policy.py', 'policy.yaml'):
        if not (policy_dir / required).is_file():
            raise PolicyRejectedError(f'{policy_dir}: missing {required}; a policy directory '
                                      'needs policy.py (make_policy) and policy.yaml')
    return files


def content_id(policy_dir: Path, limits: SizeLimits | None = None) -> tuple[str, dict[str, str]]:
    """The revision id of a directory and the sha256 of each file (by relative path)."""
    files = _policy_files(policy_dir, limits or SizeLimits())
    digests = {p.relative_to(policy_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in files}
    h = hashlib.sha256()
    for rel in sorted(digests):
        h.update(f'{rel}\0{digests[rel]}\n'.encode())
    return h.hexdigest(), digests


def _git_commit(policy_dir: Path) -> str:
    try:
        out = subprocess.run(['git', '-C', str(policy_dir), 'rev-parse', 'HEAD'],
                             capture_output=True, text=True, timeout=10, check=False,
                             env={**os.environ, 'GIT_TERMINAL_PROMPT': '0'})
    except (OSError, subprocess.TimeoutExpired):
        return ''
    return out.stdout.strip() if out.returncode == 0 else ''


def _read_manifest_yaml(policy_dir: Path) -> dict[str, Any]:
    path = policy_dir / 'policy.yaml'
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8')) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        line = f':{mark.line + 1}' if mark is not None else ''
        raise PolicyRejectedError(f'{path}{line}: invalid YAML ({exc})') from None
    if not isinstance(data, dict):
        raise PolicyRejectedError(f'{path}: must be a mapping (name, task, regime, ...)')
    return data


def _make_read_only(root: Path) -> None:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.chmod(Path(dirpath) / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
                 | stat.S_IROTH | stat.S_IXOTH)


class RevisionStore:
    """Content-addressed revisions under ``root`` (normally ``$ENPIRE_HOME/revisions``)."""

    def __init__(self, root: Path, limits: SizeLimits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits or SizeLimits()

    def submit(self, policy_dir: str | Path, *, parent: str = '', now_s: float = 0.0,
               validate: Callable[[Path], None] | None = None) -> tuple[Revision, bool]:
        """Snapshot ``policy_dir``; returns (revision, created). Same content -> same id.

        ``validate(snapshot_dir)`` runs on the staged copy before it becomes visible; it raises
        PolicyRejectedError to refuse the revision (nothing is stored then).
        """
        src = Path(policy_dir).resolve()
        rid, digests = content_id(src, self.limits)
        existing = self._load(rid)
        if existing is not None:
            return existing, False
        meta = _read_manifest_yaml(src)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f'.staging-{rid[:12]}-', dir=self.root))
        try:
            snap = staging / REVISION_POLICY_DIR
            snap.mkdir()
            for rel in digests:
                dst = snap / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / rel, dst)
            # The copy must be what was hashed (the agent may still be writing).
            again, _ = content_id(snap, self.limits)
            if again != rid:
                raise PolicyRejectedError(
                    f'{src}: files changed while being submitted; submit again once the '
                    'agent has finished writing')
            if validate is not None:
                validate(snap)
            params = meta.get('params') or {}
            rev = Revision(
                id=rid, path=self.root / rid / REVISION_POLICY_DIR,
                name=str(meta.get('name', src.name)),
                task=str(meta.get('task', '')), version=int(meta.get('version', 0) or 0),
                regime=str(meta.get('regime', '')), hypothesis=str(meta.get('hypothesis', '')),
                parent=str(parent or meta.get('parent', '') or ''), commit=_git_commit(src),
                created_at=now_s, source_dir=str(src), files=digests,
                params=params if isinstance(params, dict) else {})
            (staging / MANIFEST).write_text(json.dumps(rev.to_dict(), indent=2))
            _make_read_only(snap)
            try:
                os.rename(staging, self.root / rid)
            except OSError:
                # Another submitter won the race with identical content: use theirs.
                found = self._load(rid)
                if found is None:
                    raise
                return found, False
            staging = None
            return rev, True
        finally:
            if staging is not None and staging.exists():
                for dirpath, _d, _n in os.walk(staging):
                    os.chmod(dirpath, 0o700)
                shutil.rmtree(staging, ignore_errors=True)

    def _load(self, rid: str) -> Revision | None:
        manifest = self.root / rid / MANIFEST
        if not manifest.is_file():
            return None
        data = json.loads(manifest.read_text())
        data['path'] = Path(self.root / rid / REVISION_POLICY_DIR)
        return Revision(**data)

    def get(self, ref: str) -> Revision:
        """A revision by full id or unique prefix (>= 6 characters)."""
        if len(ref) < 6:
            raise ConfigError(f"revision reference '{ref}' is too short; give >= 6 characters")
        rev = self._load(ref)
        if rev is not None:
            return rev
        matches = [p.name for p in self.root.glob(f'{ref}*') if (p / MANIFEST).is_file()]
        if len(matches) == 1:
            return self._load(matches[0])  # type: ignore[return-value]
        if len(matches) > 1:
            raise ConfigError(f"revision prefix '{ref}' is ambiguous ({len(matches)} matches)")
        raise UnknownNameError('revision', ref, [r.short for r in self.list()])

    def list(self) -> list[Revision]:
        if not self.root.is_dir():
            return []
        revs = [self._load(p.name) for p in self.root.iterdir() if not p.name.startswith('.')]
        return sorted((r for r in revs if r is not None), key=lambda r: (r.created_at, r.id))

    def verify(self, ref: str) -> bool:
        """True when the snapshot still hashes to its id (nobody tampered with it)."""
        rev = self.get(ref)
        return content_id(rev.path, self.limits)[0] == rev.id
