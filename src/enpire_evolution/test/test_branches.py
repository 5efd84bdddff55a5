from __future__ import annotations

import pytest

from enpire_evolution.core.branches import GitError, PolicyWorkspace


@pytest.fixture
def seed(tmp_path):
    d = tmp_path / 'seed'
    d.mkdir()
    (d / 'policy.py').write_text('GAIN = 0.5\n')
    (d / 'policy.yaml').write_text('name: seed\n')
    return d


@pytest.fixture
def ws(tmp_path, seed):
    w = PolicyWorkspace(tmp_path / 'repo')
    w.init(seed)
    return w


def test_init_commits_the_seed_policy_and_is_idempotent(ws, seed):
    head = ws.head('main')
    assert (ws.root / 'policy.py').read_text() == 'GAIN = 0.5\n'
    assert [e.subject for e in ws.log('main')] == ['seed policy']
    assert ws.init(seed) == head


def test_init_with_a_missing_seed_dir_says_so(tmp_path):
    with pytest.raises(GitError, match='seed policy directory .*nope does not exist'):
        PolicyWorkspace(tmp_path / 'repo').init(tmp_path / 'nope')


def test_worktrees_are_per_agent_branch_and_reused(ws):
    wt = ws.worktree_for('a0', 'a0/explore')
    assert wt.parent.parent == ws.worktrees_dir
    (wt / 'policy.py').write_text('GAIN = 0.9\n')
    assert ws.worktree_for('a0', 'a0/explore') == wt
    assert (wt / 'policy.py').read_text() == 'GAIN = 0.9\n'
    assert 'a0/explore' in ws.branches()


def test_commit_returns_the_new_sha_and_is_a_noop_when_clean(ws):
    wt = ws.worktree_for('a0', 'b')
    (wt / 'policy.py').write_text('GAIN = 0.9\n')
    (wt / 'policy.yaml').unlink()
    sha = ws.commit(wt, 'raise gain')
    assert ws.head('b') == sha != ws.head('main')
    assert ws.commit(wt, 'nothing') == sha
    log = ws.log('b')
    assert [e.subject for e in log] == ['raise gain', 'seed policy']
    assert log[0].parents == (log[1].sha,)


def test_revert_to_restores_the_files_as_a_new_commit(ws):
    wt = ws.worktree_for('a0', 'b')
    base = ws.head('b')
    (wt / 'policy.py').write_text('GAIN = 2\n')
    (wt / 'extra.py').write_text('x = 1\n')
    ws.commit(wt, 'bad idea')
    (wt / 'scratch.txt').write_text('untracked\n')
    sha = ws.revert_to(wt, base)
    assert (wt / 'policy.py').read_text() == 'GAIN = 0.5\n'
    assert not (wt / 'extra.py').exists() and not (wt / 'scratch.txt').exists()
    assert [e.subject for e in ws.log('b', max_count=2)] == [f'revert to {base[:12]}',
                                                             'bad idea']
    assert ws.git('rev-parse', f'{sha}^{{tree}}') == ws.git('rev-parse', f'{base}^{{tree}}')


def test_cherry_pick_borrows_another_agents_commit(ws):
    a = ws.worktree_for('a0', 'a')
    b = ws.worktree_for('a1', 'b')
    (a / 'helper.py').write_text('def f():\n    return 1\n')
    idea = ws.commit(a, 'add helper')
    sha = ws.cherry_pick(b, idea)
    assert (b / 'helper.py').exists()
    assert ws.log('b')[0].sha == sha != idea


def test_conflicting_cherry_pick_is_aborted_with_a_clear_error(ws):
    a = ws.worktree_for('a0', 'a')
    b = ws.worktree_for('a1', 'b')
    (a / 'policy.py').write_text('GAIN = 1\n')
    idea = ws.commit(a, 'gain 1')
    (b / 'policy.py').write_text('GAIN = 3\n')
    ws.commit(b, 'gain 3')
    with pytest.raises(GitError, match='cherry-pick of .* failed and was aborted'):
        ws.cherry_pick(b, idea)
    assert (b / 'policy.py').read_text() == 'GAIN = 3\n'
    assert ws.git('status', '--porcelain', cwd=b) == ''


def test_push_and_fetch_share_branches_through_a_bare_remote(ws, tmp_path, seed):
    remote = ws.init_remote(tmp_path / 'remote.git')
    wt = ws.worktree_for('a0', 'a0/x')
    (wt / 'policy.py').write_text('GAIN = 0.7\n')
    sha = ws.commit(wt, 'gain 0.7')
    ws.push('a0/x')
    ws.push('main')
    other = PolicyWorkspace(tmp_path / 'host2')
    other.init(seed)
    other.add_remote('origin', remote)
    assert other.fetch() == ['a0/x', 'main']
    assert other.head('origin/a0/x') == sha


def test_unknown_ref_is_a_git_error_naming_the_command(ws):
    with pytest.raises(GitError, match="'git log .* nope' failed"):
        ws.log('nope')
