"""Branches of the policy workspace as git worktrees (one per agent and branch).

The workspace is a plain git repository of policy directories. Each agent edits its own
worktree; every revision records its commit, so the idea tree can be rebuilt from the store
and git alone. Branches are shared between hosts through a git remote (a bare repository on
disk or anywhere git can reach without prompting).

Git runs as a subprocess with a fixed identity, no prompts, no hooks and no signing, so the
same commands behave the same on every machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enpire_common.errors import EnpireError, EnpireTimeoutError

GIT_IDENTITY = ('-c', 'user.name=enpire', '-c', 'user.email=agent@enpire.local')
# Global configs may sign commits or run hooks; neither belongs in an agent's workspace.
GIT_NEUTRAL = ('-c', 'commit.gpgsign=false', '-c', 'core.hooksPath=/dev/null')


class GitError(EnpireError):
    """A git command of the policy workspace failed; the message has the command and stderr."""


@dataclass(frozen=True)
class LogEntry:
    """One commit of a branch's history (newest first in :meth:`PolicyWorkspace.log`)."""

    sha: str
    parents: tuple[str, ...]
    subject: str
    author_time_s: float


class PolicyWorkspace:
    """A git repository of policies with one worktree per (agent, branch).

    Args:
        root: the main repository directory.
        worktrees_dir: where worktrees go; default ``<root>-worktrees`` next to ``root``
            (outside ``root``, so the main checkout never sees them as untracked files).
        timeout_s: limit of each git command.
        main_branch: the branch created by :meth:`init`.
    """

    def __init__(self, root: str | Path, *, worktrees_dir: str | Path | None = None,
                 timeout_s: float = 60.0, main_branch: str = 'main') -> None:
        self.root = Path(root).absolute()
        self.worktrees_dir = (Path(worktrees_dir).absolute() if worktrees_dir is not None
                              else self.root.with_name(self.root.name + '-worktrees'))
        self.timeout_s = timeout_s
        self.main_branch = main_branch

    # --- plumbing --------------------------------------------------------------------------
    def git(self, *args: str, cwd: str | Path | None = None, check: bool = True) -> str:
        """Run ``git <args>`` in ``cwd`` (default the root); return stdout without the newline.

        Raises:
            GitError: non-zero exit (unless ``check`` is False) or git missing.
            EnpireTimeoutError: the command ran past ``timeout_s``.
        """
        cmd = ['git', *GIT_IDENTITY, *GIT_NEUTRAL, *args]
        env = {**os.environ, 'GIT_TERMINAL_PROMPT': '0', 'GIT_ASKPASS': 'true',
               'LC_ALL': 'C'}
        for var in ('GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE'):
            env.pop(var, None)  # inherited from a hook, these would redirect every command
        where = Path(cwd) if cwd is not None else self.root
        try:
            proc = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False)
        except FileNotFoundError as exc:
            raise GitError(f'cannot run git in {where} ({exc.strerror}); install git or '
                           'check the directory exists') from None
        except subprocess.TimeoutExpired:
            raise EnpireTimeoutError(f"'git {' '.join(args)}' in {where} took longer than "
                                     f'{self.timeout_s} s') from None
        if check and proc.returncode != 0:
            detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise GitError(f"'git {' '.join(args)}' failed in {where} (exit "
                           f"{proc.returncode}): {' / '.join(detail[-3:]) or 'no output'}")
        return proc.stdout.rstrip('\n')

    def exists(self) -> bool:
        """Whether ``root`` is already a git repository."""
        return (self.root / '.git').exists()

    # --- setup ------------------------------------------------------------------------------
    def init(self, seed_dir: str | Path | None = None, *,
             message: str = 'seed policy') -> str:
        """Create the repository with one commit holding a copy of ``seed_dir``.

        Idempotent: an existing repository is left alone and its main branch head returned.

        Returns:
            The sha of the initial commit (or the current main head).
        """
        if self.exists():
            return self.head(self.main_branch)
        if seed_dir is not None and not Path(seed_dir).is_dir():
            raise GitError(f'seed policy directory {seed_dir} does not exist; pass an '
                           'existing directory or None')
        self.root.mkdir(parents=True, exist_ok=True)
        self.git('init', '-q', '-b', self.main_branch)
        if seed_dir is not None:
            shutil.copytree(seed_dir, self.root, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns('.git', '__pycache__'))
        self.git('add', '-A')
        self.git('commit', '-q', '--allow-empty', '-m', message)
        return self.head(self.main_branch)

    def init_remote(self, path: str | Path, name: str = 'origin') -> Path:
        """Create a bare repository at ``path`` (if absent) and register it as ``name``."""
        path = Path(path).absolute()
        if not (path / 'HEAD').exists():
            path.mkdir(parents=True, exist_ok=True)
            self.git('init', '-q', '--bare', '-b', self.main_branch, str(path))
        self.add_remote(name, path)
        return path

    def add_remote(self, name: str, url: str | Path) -> None:
        """Register (or re-point) remote ``name``."""
        if name in self.git('remote').split():
            self.git('remote', 'set-url', name, str(url))
        else:
            self.git('remote', 'add', name, str(url))

    # --- branches and worktrees ---------------------------------------------------------------
    def branches(self) -> list[str]:
        """Local branch names."""
        out = self.git('for-each-ref', '--format=%(refname:short)', 'refs/heads')
        return sorted(out.split()) if out else []

    def head(self, ref: str = 'HEAD', cwd: str | Path | None = None) -> str:
        """The full sha ``ref`` points to."""
        return self.git('rev-parse', '--verify', '-q', f'{ref}^{{commit}}', cwd=cwd)

    def has_commit(self, sha: str) -> bool:
        """Whether this workspace holds commit ``sha`` (a commit made by another host's
        workspace, named in a shared store, is not here)."""
        return bool(sha) and bool(self.git('rev-parse', '--verify', '-q', f'{sha}^{{commit}}',
                                           check=False))

    def checkout_files(self, worktree: str | Path, files: str | Path) -> None:
        """Make ``worktree`` hold exactly the files of directory ``files`` (uncommitted):
        what :meth:`revert_to` does for a commit this workspace lacks but whose files are
        here (a revision snapshot). Ignored files stay, as with ``git clean``."""
        import shutil

        tree = Path(worktree)
        self.git('rm', '-rq', '--cached', '--ignore-unmatch', '.', cwd=tree)
        for path in self.git('ls-files', '--others', '--exclude-standard', '-z',
                             cwd=tree).split('\0'):
            if path:
                (tree / path).unlink(missing_ok=True)
        for src in sorted(Path(files).rglob('*')):
            dst = tree / src.relative_to(files)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.unlink(missing_ok=True)
                shutil.copyfile(src, dst)      # a snapshot is read-only; the copy is not
                dst.chmod(0o755 if os.access(src, os.X_OK) else 0o644)
        self.git('add', '-A', cwd=tree)

    def worktree_path(self, agent: str, branch: str) -> Path:
        """Where :meth:`worktree_for` puts (agent, branch)."""
        return self.worktrees_dir / agent / branch.replace('/', '__')

    def worktree_for(self, agent: str, branch: str, *, base: str | None = None) -> Path:
        """A worktree of ``branch`` for ``agent``, created from ``base`` if the branch is new.

        Idempotent: an existing worktree is returned as it is (an agent resuming after a crash
        finds its uncommitted edits still there).
        """
        path = self.worktree_path(agent, branch)
        if (path / '.git').exists():
            return path
        self.git('worktree', 'prune')  # forget worktrees whose directory was deleted
        path.parent.mkdir(parents=True, exist_ok=True)
        if branch in self.branches():
            self.git('worktree', 'add', '-q', str(path), branch)
        else:
            self.git('worktree', 'add', '-q', '-b', branch, str(path),
                     base or self.main_branch)
        return path

    def commit(self, worktree: str | Path, message: str, *, allow_empty: bool = False) -> str:
        """Commit everything in ``worktree`` (new, changed and deleted files).

        With nothing to commit (and not ``allow_empty``) no commit is made and the current
        head is returned, so repeating a commit after a crash is harmless.

        Returns:
            The sha of the branch head after the commit.
        """
        self.git('add', '-A', cwd=worktree)
        dirty = self.git('status', '--porcelain', cwd=worktree)
        if dirty or allow_empty:
            self.git('commit', '-q', '--allow-empty', '-m', message, cwd=worktree)
        return self.head(cwd=worktree)

    def revert_to(self, worktree: str | Path, sha: str, message: str | None = None) -> str:
        """Make ``worktree`` hold exactly the files of ``sha``, as a new commit.

        History is kept (no reset): the tree records that the idea was tried and undone, and
        the branch can still be pushed without force. Untracked files are removed; ignored
        ones (weights, caches) stay.

        Returns:
            The sha of the new commit (or the head, if the tree already equals ``sha``'s).
        """
        full = self.head(sha, cwd=worktree)
        self.git('read-tree', '-u', '--reset', full, cwd=worktree)
        self.git('clean', '-fdq', cwd=worktree)
        return self.commit(worktree, message or f'revert to {full[:12]}')

    def cherry_pick(self, worktree: str | Path, sha: str) -> str:
        """Apply commit ``sha`` (e.g. another agent's idea) on top of ``worktree``'s branch.

        Raises:
            GitError: the change conflicts; the cherry-pick is aborted and the worktree is
                left as it was.

        Returns:
            The sha of the new commit.
        """
        try:
            self.git('cherry-pick', '-x', '--allow-empty', sha, cwd=worktree)
        except GitError as exc:
            self.git('cherry-pick', '--abort', cwd=worktree, check=False)
            raise GitError(f'cherry-pick of {sha[:12]} onto {worktree} failed and was '
                           f'aborted; merge by hand or port the idea: {exc}') from None
        return self.head(cwd=worktree)

    # --- sharing ----------------------------------------------------------------------------
    def push(self, branch: str, remote: str = 'origin') -> None:
        """Push ``branch`` to ``remote`` (fast-forward only; no force)."""
        self.git('push', '-q', remote, f'refs/heads/{branch}:refs/heads/{branch}')

    def fetch(self, remote: str = 'origin') -> list[str]:
        """Fetch every branch of ``remote``; returns the remote branch names."""
        self.git('fetch', '-q', '--prune', remote)
        out = self.git('for-each-ref', '--format=%(refname:short)', f'refs/remotes/{remote}')
        prefix = f'{remote}/'
        return sorted(r[len(prefix):] for r in out.split()
                      if r.startswith(prefix) and r != f'{remote}/HEAD')

    def log(self, branch: str, max_count: int | None = None) -> list[LogEntry]:
        """Commits reachable from ``branch``, newest first."""
        args: Sequence[str] = ('log', '--format=%H%x1f%P%x1f%at%x1f%s', branch)
        if max_count is not None:
            args = (*args, f'--max-count={max_count}')
        entries = []
        for line in self.git(*args).splitlines():
            sha, parents, at, subject = line.split('\x1f', 3)
            entries.append(LogEntry(sha, tuple(parents.split()), subject, float(at)))
        return entries
