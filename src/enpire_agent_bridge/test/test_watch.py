"""PolicyWatcher: a revision per version bump, debounced, never from half-written files."""

from __future__ import annotations

from pathlib import Path

import pytest

from enpire_agent_bridge.core.watch import (
    FakeFs,
    LocalFs,
    PolicyWatcher,
    WatchConfig,
    read_version,
)
from enpire_common.clock import FakeClock
from enpire_common.errors import PolicyRejectedError

ROOT = Path('/ws/policy')


def manifest(version: int) -> str:
    return (f'name: mine\ntask: push_t\nversion: {version}\nregime: heuristic\n'
            f'hypothesis: try {version}\n')


class Recorder:
    """A fake submit: records what it saw, optionally rejecting."""

    def __init__(self, fs: FakeFs) -> None:
        self.fs = fs
        self.calls: list[dict[str, str]] = []
        self.reject = False

    def __call__(self, policy_dir: Path) -> dict:
        self.calls.append(dict(self.fs.files[policy_dir]))
        if self.reject:
            raise PolicyRejectedError('policy rejected: act returned NaN; guard against NaN')
        return {'ok': True, 'revision_id': f'rev{len(self.calls)}', 'created': True}


@pytest.fixture
def setup():
    fs, clock = FakeFs(), FakeClock()
    fs.write(ROOT, 'policy.py', 'v1 code')
    fs.write(ROOT, 'policy.yaml', manifest(1))
    rec = Recorder(fs)
    watcher = PolicyWatcher(ROOT, rec, clock, WatchConfig(debounce_s=1.0, submit_initial=False),
                            fs=fs)
    return fs, clock, rec, watcher


def settle(watcher: PolicyWatcher, clock: FakeClock, seconds: float, step: float = 0.25):
    events = []
    for _ in range(int(seconds / step)):
        ev = watcher.poll()
        if ev:
            events.append(ev)
        clock.advance(step)
    return events


def test_a_version_bump_is_submitted_once_after_the_debounce_window(setup):
    fs, clock, rec, watcher = setup
    assert settle(watcher, clock, 3.0) == []  # the version found at start is not re-submitted
    fs.write(ROOT, 'policy.py', 'v2 code')
    fs.write(ROOT, 'policy.yaml', manifest(2))
    assert watcher.poll() is None  # not before the content has been stable for 1 s
    clock.advance(0.5)
    assert watcher.poll() is None
    clock.advance(0.5)
    ev = watcher.poll()
    assert ev is not None and ev.kind == 'submitted' and ev.version == 2
    assert ev.result['revision_id'] == 'rev1'
    assert settle(watcher, clock, 5.0) == [] and len(rec.calls) == 1


def test_files_still_being_written_are_never_submitted(setup):
    fs, clock, rec, watcher = setup
    watcher.poll()
    fs.write(ROOT, 'policy.yaml', manifest(2))
    for i in range(12):  # the agent keeps writing policy.py every 0.5 s
        fs.write(ROOT, 'policy.py', 'partial ' * i)
        assert watcher.poll() is None
        clock.advance(0.5)
    events = settle(watcher, clock, 2.0)
    assert [e.kind for e in events] == ['submitted']
    assert rec.calls[0]['policy.py'] == 'partial ' * 11  # the final content, whole


def test_a_half_written_policy_yaml_waits_for_a_parsable_version(setup):
    fs, clock, rec, watcher = setup
    watcher.poll()
    fs.write(ROOT, 'policy.yaml', 'name: mine\ntask: push_t\nversion: [')
    assert settle(watcher, clock, 3.0) == []
    fs.write(ROOT, 'policy.yaml', manifest(3))
    assert [e.version for e in settle(watcher, clock, 2.0)] == [3]


def test_edits_without_a_version_bump_are_not_submitted(setup):
    fs, clock, rec, watcher = setup
    watcher.poll()
    fs.write(ROOT, 'policy.py', 'tweak without bumping')
    assert settle(watcher, clock, 3.0) == [] and rec.calls == []


def test_a_rejected_version_is_retried_once_its_content_changes(setup):
    fs, clock, rec, watcher = setup
    watcher.poll()
    rec.reject = True
    fs.write(ROOT, 'policy.yaml', manifest(2))
    events = settle(watcher, clock, 2.0)
    assert [(e.kind, e.version, e.error_code) for e in events] == [('rejected', 2, 401)]
    assert 'guard against NaN' in events[0].message
    assert settle(watcher, clock, 3.0) == []  # same content: not hammered again
    rec.reject = False
    fs.write(ROOT, 'policy.py', 'fixed code')  # fixed, same version (it was never stored)
    assert [e.kind for e in settle(watcher, clock, 2.0)] == ['submitted']


def test_submit_initial_submits_the_version_found_at_start():
    fs, clock = FakeFs(), FakeClock()
    fs.write(ROOT, 'policy.py', 'code')
    fs.write(ROOT, 'policy.yaml', manifest(4))
    rec = Recorder(fs)
    seen = []
    watcher = PolicyWatcher(ROOT, rec, clock, WatchConfig(debounce_s=0.5), fs=fs,
                            on_event=seen.append)
    watcher.run(lambda: False, max_polls=4)
    assert [e.version for e in seen] == [4] and clock.now_s() == pytest.approx(1.0)


def test_read_version_accepts_only_an_integer():
    assert read_version(manifest(7)) == 7
    assert read_version('version: true') is None
    assert read_version('version: "3"') is None
    assert read_version(None) is None


def test_local_fingerprint_follows_content_and_ignores_caches(tmp_path):
    fs = LocalFs()
    (tmp_path / 'policy.py').write_text('a')
    first = fs.fingerprint(tmp_path)
    (tmp_path / '__pycache__').mkdir()
    (tmp_path / '__pycache__' / 'policy.cpython-311.pyc').write_bytes(b'x')
    assert fs.fingerprint(tmp_path) == first
    (tmp_path / 'policy.py').write_text('b')
    assert fs.fingerprint(tmp_path) != first
    assert fs.fingerprint(tmp_path / 'missing') == ''
