"""The coding agents' git repositories: one shared bare remote, one clone per agent.

``<home>/agents/<experiment>/remote.git`` is seeded once with the seed policy on ``main``.
Each agent works in its own clone ``<home>/agents/<experiment>/<agent>/worktree`` on the
branch ``agent/<agent>``; its ``origin`` is the remote, so ``git fetch`` shows it the peers'
branches (read-only to it: the remote lies outside its sandbox). The supervisor publishes an
agent's branch to the remote by *fetching* from the agent's clone, never by running git
inside it unconfined: the clone's hooks and config are the agent's, so anything that could run
them (a WIP commit) runs inside the agent's jail (:func:`commit_wip`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from enpire_common.errors import ConfigError

#: git options for every command the supervisor runs on a repository it owns.
_SAFE = ('-c', 'core.hooksPath=/dev/null', '-c', 'protocol.file.allow=always',
         '-c', 'init.defaultBranch=main')
_IDENTITY = ('-c', 'user.name=enpire', '-c', 'user.email=enpire@localhost')


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    out = subprocess.run(['git', *_SAFE, *_IDENTITY, *args], cwd=cwd, capture_output=True,
                         text=True, check=False)
    if check and out.returncode != 0:
        raise ConfigError(f"git {' '.join(args)} failed: {out.stderr.strip() or out.stdout}")
    return out.stdout.strip()


AGENT_BRANCH_PREFIX = 'agent/'


def branch_of(agent: str) -> str:
    return f'{AGENT_BRANCH_PREFIX}{agent}'


def is_agent_branch(branch: str) -> bool:
    return branch.startswith(AGENT_BRANCH_PREFIX)


class AgentRepos:
    """The bare remote and the agents' clones of one experiment under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.remote = self.root / 'remote.git'

    def ensure_remote(self, seed_policy: Path) -> None:
        """Create the remote with the seed policy on ``main`` (kept when it exists)."""
        if (self.remote / 'HEAD').exists():
            return
        seed_policy = Path(seed_policy)
        if not (seed_policy / 'policy.py').is_file():
            raise ConfigError(f'seed policy {seed_policy} has no policy.py')
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / '.seed'
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(seed_policy, tmp, ignore=shutil.ignore_patterns(
            '__pycache__', '*.pyc', '.git'))
        _git('init', '-q', '-b', 'main', cwd=tmp)
        _git('add', '-A', cwd=tmp)
        _git('commit', '-q', '-m', f'seed policy from {seed_policy}', cwd=tmp)
        _git('init', '-q', '--bare', str(self.remote))
        _git('push', '-q', str(self.remote), 'main', cwd=tmp)
        shutil.rmtree(tmp, ignore_errors=True)

    def agent_dir(self, agent: str) -> Path:
        return self.root / agent

    def worktree(self, agent: str) -> Path:
        """The agent's clone on its branch (created from the remote when missing)."""
        tree = self.agent_dir(agent) / 'worktree'
        branch = branch_of(agent)
        if not (tree / '.git').exists():
            tree.parent.mkdir(parents=True, exist_ok=True)
            _git('clone', '-q', str(self.remote), str(tree))
            exists = _git('ls-remote', '--heads', str(self.remote), branch, cwd=tree)
            if exists:
                _git('checkout', '-q', '-B', branch, f'origin/{branch}', cwd=tree)
            else:
                _git('checkout', '-q', '-b', branch, cwd=tree)
            _git('config', 'user.name', f'enpire agent {agent}', cwd=tree)
            _git('config', 'user.email', f'{agent}@enpire.local', cwd=tree)
        return tree

    def publish(self, agent: str) -> str:
        """Copy the agent's branch into the remote (a fetch from its clone); its head commit."""
        tree = self.agent_dir(agent) / 'worktree'
        branch = branch_of(agent)
        _git('--git-dir', str(self.remote), 'fetch', '-q', '--no-tags', str(tree),
             f'+refs/heads/{branch}:refs/heads/{branch}', check=False)
        return _git('--git-dir', str(self.remote), 'rev-parse', '--verify', '-q', branch,
                    check=False)

    def branches(self) -> list[str]:
        """The agents' branches in the remote."""
        out = _git('--git-dir', str(self.remote), 'for-each-ref', '--format=%(refname:short)',
                   f'refs/heads/{AGENT_BRANCH_PREFIX}', check=False)
        return [b for b in out.splitlines() if b]


def commit_wip(jail: Sequence[str], tree: Path, message: str) -> bool:
    """Commit everything in an agent's clone as a WIP, inside its jail; True if committed."""
    script = ('git add -A >/dev/null 2>&1; git diff --cached --quiet && exit 3; '
              'git commit -q --no-verify -m "$1"')
    out = subprocess.run([*jail, 'bash', '-c', script, 'wip', message], cwd=tree,
                         capture_output=True, text=True, check=False, timeout=60)
    return out.returncode == 0
