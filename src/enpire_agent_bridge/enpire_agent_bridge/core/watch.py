"""Watch a policy workspace and submit a revision whenever ``policy.yaml``'s version is bumped.

Polling, not inotify: a workspace is a handful of files, polling works on every filesystem
(bind mounts, network shares) and needs no dependency. Each poll takes a fingerprint of the
directory (relative paths + content hashes; the real filesystem re-hashes a file only when its
mtime, size or inode changed). A submission happens only when

* ``policy.yaml`` parses and its ``version`` differs from the last one handled, and
* the fingerprint has stayed the same for ``debounce_s`` (a half-written file never loads;
  the revision store re-hashes its own copy anyway).

A rejected version is not retried until the content changes again (the agent fixed the code
without bumping the version: that is still the same, never-stored version).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from enpire_agent_bridge.core.revisions import IGNORED_DIRS, IGNORED_SUFFIXES
from enpire_common.clock import Clock
from enpire_common.config import require
from enpire_common.errors import EnpireError


class WorkspaceFs(Protocol):
    """What the watcher reads of a workspace."""

    def fingerprint(self, root: Path) -> str:
        """A hash of every relative path and file content under ``root`` ('' if absent)."""
        ...

    def read_text(self, path: Path) -> str | None:
        """The file's text, None when it does not exist or cannot be read."""
        ...


class LocalFs:
    """The real filesystem, with content hashes cached by (mtime_ns, size, inode)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int, int], str]] = {}

    def fingerprint(self, root: Path) -> str:
        if not root.is_dir():
            return ''
        h = hashlib.sha256()
        seen: set[Path] = set()
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS)
            for name in sorted(names):
                if name.endswith(IGNORED_SUFFIXES):
                    continue
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                    key = (st.st_mtime_ns, st.st_size, st.st_ino)
                    cached = self._cache.get(p)
                    if cached is None or cached[0] != key:
                        cached = (key, hashlib.sha256(p.read_bytes()).hexdigest())
                        self._cache[p] = cached
                except OSError:
                    continue  # deleted between listing and reading: the next poll sees it
                seen.add(p)
                h.update(f'{p.relative_to(root).as_posix()}\0{cached[1]}\n'.encode())
        for stale in set(self._cache) - seen:
            del self._cache[stale]
        return h.hexdigest()

    def read_text(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding='utf-8')
        except (OSError, UnicodeDecodeError):
            return None


class FakeFs:
    """An in-memory workspace for tests: ``files[root][relative path] = text``."""

    def __init__(self) -> None:
        self.files: dict[Path, dict[str, str]] = {}

    def write(self, root: Path, rel: str, text: str) -> None:
        self.files.setdefault(Path(root), {})[rel] = text

    def fingerprint(self, root: Path) -> str:
        files = self.files.get(Path(root))
        if files is None:
            return ''
        h = hashlib.sha256()
        for rel in sorted(files):
            h.update(f'{rel}\0{hashlib.sha256(files[rel].encode()).hexdigest()}\n'.encode())
        return h.hexdigest()

    def read_text(self, path: Path) -> str | None:
        return self.files.get(Path(path).parent, {}).get(Path(path).name)


@dataclass(frozen=True)
class WatchConfig:
    """Timing of the watcher.

    Attributes:
        debounce_s: The content must be unchanged this long before it is submitted.
        poll_interval_s: Time between two polls of the workspace.
        submit_initial: Also submit the version found when watching starts.
    """

    debounce_s: float = 1.0
    poll_interval_s: float = 0.25
    submit_initial: bool = True

    def __post_init__(self) -> None:
        require(self.debounce_s >= 0, 'debounce_s', self.debounce_s, 'must be >= 0 seconds')
        require(self.poll_interval_s > 0, 'poll_interval_s', self.poll_interval_s,
                'must be > 0 seconds')


@dataclass
class WatchEvent:
    """One thing the watcher did: ``submitted`` or ``rejected`` (with the error)."""

    kind: str
    version: int
    time_s: float
    result: dict[str, Any] = field(default_factory=dict)
    error_code: int = 0
    message: str = ''

    def to_dict(self) -> dict[str, Any]:
        return {'event': self.kind, 'version': self.version, 'time_s': self.time_s,
                'error_code': self.error_code, 'message': self.message, **self.result}


def read_version(text: str | None) -> int | None:
    """``version`` of a policy.yaml text; None while it is missing or half-written."""
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    v = data.get('version')
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class PolicyWatcher:
    """Submits ``policy_dir`` on every version bump, once its content is stable.

    Args:
        policy_dir: The workspace directory holding ``policy.py`` and ``policy.yaml``.
        submit: Called with ``policy_dir``; returns a JSON-able result dict or raises
            EnpireError (a rejection).
        clock: Time source (FakeClock in tests).
        config: Debounce and polling.
        fs: Filesystem port (LocalFs, FakeFs in tests).
        on_event: Called with each event (printing, activation).
    """

    def __init__(self, policy_dir: str | Path, submit: Callable[[Path], dict[str, Any]],
                 clock: Clock, config: WatchConfig | None = None,
                 fs: WorkspaceFs | None = None,
                 on_event: Callable[[WatchEvent], None] | None = None) -> None:
        self.policy_dir = Path(policy_dir)
        self.submit = submit
        self.clock = clock
        self.config = config or WatchConfig()
        self.fs = fs or LocalFs()
        self.on_event = on_event or (lambda _e: None)
        self.events: list[WatchEvent] = []
        self._candidate = ''
        self._stable_since = 0.0
        self._handled_version: int | None = None
        self._handled_fp = ''
        self._started = False

    def poll(self) -> WatchEvent | None:
        """Look at the workspace once; submit when a bumped version has settled."""
        now = self.clock.now_s()
        fp = self.fs.fingerprint(self.policy_dir)
        version = read_version(self.fs.read_text(self.policy_dir / 'policy.yaml'))
        if not self._started:
            self._started = True
            if not self.config.submit_initial:
                self._handled_version, self._handled_fp = version, fp
        if fp != self._candidate:
            self._candidate, self._stable_since = fp, now
        if not fp or version is None or fp == self._handled_fp:
            return None
        last = self.events[-1] if self.events else None
        retry = last is not None and last.kind == 'rejected' and last.version == version
        if version == self._handled_version and not retry:
            return None
        if now - self._stable_since < self.config.debounce_s:
            return None
        self._handled_version, self._handled_fp = version, fp
        try:
            event = WatchEvent('submitted', version, now, self.submit(self.policy_dir))
        except EnpireError as err:
            event = WatchEvent('rejected', version, now, error_code=err.code, message=str(err))
        self.events.append(event)
        self.on_event(event)
        return event

    def run(self, should_stop: Callable[[], bool], max_polls: int | None = None) -> None:
        """Poll until ``should_stop()`` (or ``max_polls``), sleeping on the clock in between."""
        n = 0
        while not should_stop() and (max_polls is None or n < max_polls):
            self.poll()
            n += 1
            self.clock.sleep_s(self.config.poll_interval_s)
