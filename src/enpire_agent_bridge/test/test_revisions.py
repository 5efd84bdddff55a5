from __future__ import annotations

import os
from pathlib import Path

import pytest

from enpire_agent_bridge.core.revisions import RevisionStore, SizeLimits, content_id
from enpire_common.errors import PolicyRejectedError, UnknownNameError

POLICY_YAML = 'name: mine\ntask: push_t\nversion: 3\nregime: heuristic\nhypothesis: push harder\n'


def make_policy(d: Path, body: str = 'def make_policy(spec):\n    return None\n') -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / 'policy.py').write_text(body)
    (d / 'policy.yaml').write_text(POLICY_YAML)
    return d


def test_submitting_the_same_content_twice_yields_the_same_revision(tmp_path):
    store = RevisionStore(tmp_path / 'revisions')
    a, created_a = store.submit(make_policy(tmp_path / 'a'))
    b, created_b = store.submit(make_policy(tmp_path / 'elsewhere'))
    assert a.id == b.id and created_a and not created_b
    assert len(a.id) == 64 and a.hypothesis == 'push harder' and a.version == 3


def test_a_changed_file_is_a_new_revision_and_caches_are_ignored(tmp_path):
    store = RevisionStore(tmp_path / 'revisions')
    d = make_policy(tmp_path / 'p')
    first, _ = store.submit(d)
    (d / '__pycache__').mkdir()
    (d / '__pycache__' / 'policy.cpython-311.pyc').write_bytes(b'junk')
    assert store.submit(d)[0].id == first.id
    (d / 'policy.py').write_text('def make_policy(spec):\n    return 1\n')
    second, created = store.submit(d, parent=first.id)
    assert created and second.id != first.id and second.parent == first.id


def test_revisions_are_read_only_and_verifiable(tmp_path):
    store = RevisionStore(tmp_path / 'revisions')
    rev, _ = store.submit(make_policy(tmp_path / 'p'))
    mode = (rev.path / 'policy.py').stat().st_mode
    assert not mode & 0o222
    assert store.verify(rev.id[:8])
    os.chmod(rev.path / 'policy.py', 0o644)
    (rev.path / 'policy.py').write_text('tampered = True\n')
    assert not store.verify(rev.id)


def test_a_rejected_validation_stores_nothing(tmp_path):
    store = RevisionStore(tmp_path / 'revisions')

    def reject(snapshot: Path) -> None:
        raise PolicyRejectedError('act() returned shape (3,), expected (2,)')

    with pytest.raises(PolicyRejectedError, match=r'expected \(2,\)'):
        store.submit(make_policy(tmp_path / 'p'), validate=reject)
    assert store.list() == []
    assert list((tmp_path / 'revisions').iterdir()) == []


@pytest.mark.parametrize(('setup', 'message'), [
    (lambda d: (d / 'policy.py').unlink(), 'missing policy.py'),
    (lambda d: (d / 'big.bin').write_bytes(b'0' * 2048), 'exceeds the limit of 0.001 MiB'),
    (lambda d: (d / 'link.py').symlink_to(d / 'policy.py'), 'symbolic links are not allowed'),
    (lambda d: (d / 'policy.yaml').write_text('name: [unclosed\n'), r'policy.yaml:\d+: invalid'),
])
def test_bad_policy_directories_are_rejected_with_a_specific_message(tmp_path, setup, message):
    d = make_policy(tmp_path / 'p')
    setup(d)
    store = RevisionStore(tmp_path / 'revisions', SizeLimits(max_total_mb=0.001))
    with pytest.raises(PolicyRejectedError, match=message):
        store.submit(d)


def test_unknown_revision_lists_the_known_ones(tmp_path):
    store = RevisionStore(tmp_path / 'revisions')
    rev, _ = store.submit(make_policy(tmp_path / 'p'))
    with pytest.raises(UnknownNameError, match='unknown revision'):
        store.get('deadbeef00')
    assert store.get(rev.id[:10]).id == rev.id


def test_content_id_depends_on_paths_and_contents_only(tmp_path):
    a = make_policy(tmp_path / 'a')
    b = make_policy(tmp_path / 'b')
    assert content_id(a)[0] == content_id(b)[0]
    (b / 'extra.txt').write_text('x')
    assert content_id(a)[0] != content_id(b)[0]


def test_an_agent_killed_mid_submit_leaves_no_half_revision_and_the_resubmit_works(
        tmp_path) -> None:
    """A coding agent SIGKILLed while its submit copies the policy (a big weights file): the
    store shows no revision, never a partial one, and the same directory submits whole."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from enpire_agent_bridge.core.revisions import RevisionStore

    policy = tmp_path / 'policy'
    policy.mkdir()
    src = Path(__file__).resolve().parents[3] / 'examples' / 'policies' / 'push_t' / 'scripted'
    for name in ('policy.py', 'policy.yaml'):
        (policy / name).write_bytes((src / name).read_bytes())
    (policy / 'weights.bin').write_bytes(os.urandom(40 * 2**20))
    root = tmp_path / 'revisions'
    code = ('import sys\nfrom pathlib import Path\n'
            'from enpire_agent_bridge.core.revisions import RevisionStore\n'
            'RevisionStore(Path(sys.argv[1])).submit(sys.argv[2])\n')
    killed = False
    for delay_s in (0.05, 0.15, 0.3, 0.6):      # kills at several points of the submit
        proc = subprocess.Popen([sys.executable, '-c', code, str(root), str(policy)])
        time.sleep(delay_s)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
        proc.wait()
        store = RevisionStore(root)
        revs = store.list()
        for rev in revs:                        # whole, or not there at all
            assert (rev.path / 'weights.bin').stat().st_size == 40 * 2**20
        if revs:
            break
    assert killed, 'every submit finished before it could be killed'
    rev, _created = RevisionStore(root).submit(policy)
    assert (rev.path / 'weights.bin').read_bytes() == (policy / 'weights.bin').read_bytes()
    assert [r.id for r in RevisionStore(root).list()] == [rev.id]
