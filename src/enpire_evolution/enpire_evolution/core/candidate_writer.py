"""The built-in agent's candidate writer: git, the policy manifest, validation and the stores.

A candidate is the best revision's files with new ``params:``, ``version`` + 1, ``parent`` =
the best's id and a ``hypothesis`` naming the changes. The writer commits it on the agent's
git branch (message = hypothesis), validates and snapshots it in the content-addressed
revision store, and adds it to the experiment store BEFORE its trials run (with a
``candidate_started`` event). A rejected candidate is stored as 'rejected' and the worktree
goes back to the best's commit.

Validation happens once per content: a candidate prepared ahead of time (core.prefetch)
is validated in a scratch copy, and a rejection is remembered by content id, so the same
files committed later are not validated again (an accepted snapshot is found by the store).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from enpire_common.errors import ConfigError, PolicyRejectedError
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.branches import GitError, PolicyWorkspace
from enpire_evolution.core.ledger import CANDIDATE_DONE, CANDIDATE_STARTED, Ledger
from enpire_evolution.core.store import Revision

Validator = Callable[[Path], None]


@dataclass(frozen=True)
class Candidate:
    """A stored revision about to be tried (or being tried when the agent was killed).

    Attributes:
        number: its optuna trial, or ``'borrow:<revision>'`` for a peer's idea (fleet).
        revision: its content id.
        path: its snapshot directory.
        parent: the best it was built on (None for the baseline, the seed policy).
        hypothesis: what it changes and why.
        params: its full ``params:``.
    """

    number: int | str
    revision: str
    path: Path
    parent: str | None
    hypothesis: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    """A candidate the validator refused (stored as 'rejected'; the worktree is reverted)."""

    number: int | str
    revision: str
    reason: str


def read_manifest(path: Path) -> dict[str, Any]:
    """A ``policy.yaml`` as a mapping."""
    data = yaml.safe_load(Path(path).read_text(encoding='utf-8')) or {}
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: must be a mapping (name, task, version, params, ...)')
    return data


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(manifest), sort_keys=False, width=1000),
                    encoding='utf-8')


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ''


def make_candidate_manifest(tree: Path, best: Revision | None, params: dict[str, Any],
                            hypothesis: str) -> str:
    """Turn ``tree`` (a copy of the best's files) into the candidate; returns its hypothesis
    (the seed policy's own for the baseline). The same inputs give the same bytes (a
    candidate prepared ahead of time relies on it)."""
    manifest_path = tree / 'policy.yaml'
    manifest = read_manifest(manifest_path)
    if best is None:  # the baseline: the seed policy as it is
        return str(manifest.get('hypothesis', '')).strip() or 'seed policy'
    manifest['version'] = int(manifest.get('version', 0) or 0) + 1
    manifest['hypothesis'] = hypothesis
    manifest['parent'] = best.id
    manifest['params'] = params
    write_manifest(manifest_path, manifest)
    return hypothesis


class CandidateWriter:
    """Writes candidates into the agent's worktree, commits, validates and stores them.

    Args:
        config: the agent's config (its id, branch).
        ledger: the agent's view of the experiment store.
        revisions: the content-addressed revision store.
        workspace: the git workspace of policies.
        validate: raises PolicyRejectedError for a bad candidate.
        home: runtime directory (scratch copies of candidates prepared ahead).
    """

    def __init__(self, config: BuiltinAgentConfig, ledger: Ledger, revisions: Any,
                 workspace: PolicyWorkspace, validate: Validator, home: Path) -> None:
        self.config = config
        self.ledger = ledger
        self.revisions = revisions
        self.workspace = workspace
        self.validate = validate
        self.home = home
        self.worktree: Path | None = None
        self._rejections: dict[str, PolicyRejectedError] = {}

    def open(self, seed_policy: Path) -> None:
        """The workspace (seeded from ``seed_policy`` if new) and the agent's worktree."""
        self.workspace.init(seed_policy, message=f'seed policy {seed_policy.name}')
        self.worktree = self.workspace.worktree_for(self.config.agent_id,
                                                    self.config.git_branch,
                                                    base=self.workspace.main_branch)

    def revision_dir(self, revision: str) -> Path:
        return Path(self.revisions.get(revision).path)

    # --- git ---------------------------------------------------------------------------------
    def restore(self, best: Revision | None) -> None:
        """Make the worktree's files exactly the best's commit (or the seed), uncommitted.

        A revision row names the commit of the host that stored it first: another host's
        agent of the same experiment (its own git workspace) restores the revision's files
        from its own revision store instead.
        """
        assert self.worktree is not None, 'open() first'
        if best is not None and not self.workspace.has_commit(best.commit):
            self.workspace.checkout_files(self.worktree, self._local_files(best))
            return
        sha = best.commit if best is not None else self.workspace.head(
            self.workspace.main_branch)
        self.workspace.git('read-tree', '-u', '--reset', sha, cwd=self.worktree)
        self.workspace.git('clean', '-fdq', cwd=self.worktree)

    def _local_files(self, best: Revision) -> Path:
        from enpire_common.errors import UnknownNameError

        try:
            return self.revision_dir(best.id)
        except UnknownNameError:
            raise GitError(
                f'revision {best.id[:12]} (commit {best.commit[:12]}) was made on another host: '
                'neither its commit nor its files are here; share the revision store and the '
                'git remote between hosts to build on it') from None

    def commit(self, message: str) -> str:
        assert self.worktree is not None, 'open() first'
        return self.workspace.commit(self.worktree, message)

    def revert(self, best: Revision, message: str) -> None:
        """Put the worktree back on ``best`` with a ``revert: ...`` commit (its files, where
        its commit was made on another host)."""
        assert self.worktree is not None, 'open() first'
        if self.workspace.has_commit(best.commit):
            self.workspace.revert_to(self.worktree, best.commit, message)
        else:
            self.workspace.checkout_files(self.worktree, self._local_files(best))
            self.commit(message)

    # --- validation and the stores -----------------------------------------------------------
    def submit(self, tree: Path, parent: str, *, ahead: bool = True) -> Any:
        """Validate and snapshot ``tree``; returns the revision store's revision.

        Args:
            ahead: honour rejections remembered from candidates prepared ahead of time.

        Raises:
            PolicyRejectedError: the validator refused it.
        """
        validate = self._validate_once if ahead else self.validate
        rev, _created = self.revisions.submit(tree, parent=parent, now_s=self.ledger.wall(),
                                              validate=validate)
        return rev

    def _validate_once(self, snapshot: Path) -> None:
        """The validator, but a content already rejected ahead of time is not run again."""
        from enpire_agent_bridge.core.revisions import content_id

        known = self._rejections.get(content_id(snapshot)[0])
        if known is not None:
            raise known
        self.validate(snapshot)

    def prepare_ahead(self, best: Revision, params: dict[str, Any], hypothesis: str) -> None:
        """Write the candidate into a scratch copy of the best's files, validate and snapshot
        it (a rejection is remembered by content id). No git, no experiment store."""
        from enpire_agent_bridge.core.revisions import content_id

        scratch = Path(tempfile.mkdtemp(prefix=f'.prepare-{self.config.agent_id}-',
                                        dir=self.home))
        try:
            tree = scratch / 'policy'
            shutil.copytree(self.revision_dir(best.id), tree)
            make_candidate_manifest(tree, best, params, hypothesis)
            try:
                self.revisions.submit(tree, parent=best.id, now_s=self.ledger.wall(),
                                      validate=self.validate)
            except PolicyRejectedError as exc:
                self._rejections[content_id(tree)[0]] = exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def add_revision(self, revision: str, parent: str | None, commit: str, hypothesis: str,
                     regime: str, params: dict[str, Any], *, status: str,
                     origin: str = '') -> None:
        """Store a revision of this agent's branch."""
        self.ledger.store.add_revision(Revision(
            self.ledger.experiment, revision, self.config.branch, parent, commit, hypothesis,
            regime, self.ledger.wall(), params, origin=origin, status=status))

    def start(self, number: int | str, snapshot: Any, parent: str | None, commit: str,
              params: dict[str, Any], hypothesis: str,
              extra: Mapping[str, Any] | None = None) -> Candidate:
        """Record that the candidate's trials begin (a resumed run finishes it)."""
        self.ledger.add(CANDIDATE_STARTED, {
            'optuna_trial': number, 'revision': snapshot.id, 'parent': parent,
            'commit': commit, 'params': params, 'hypothesis': hypothesis, **(extra or {})})
        return Candidate(number, snapshot.id, Path(snapshot.path), parent, hypothesis, params)

    # --- a proposal, start to end --------------------------------------------------------------
    def write(self, number: int, best: Revision | None, params: dict[str, Any],
              hypothesis: str) -> Candidate | Rejection:
        """Commit, validate and store a proposal built on ``best`` (None: the baseline).

        Raises:
            PolicyRejectedError: the baseline (the seed policy) was rejected.
        """
        assert self.worktree is not None, 'open() first'
        self.restore(best)
        hypothesis = make_candidate_manifest(self.worktree, best, params, hypothesis)
        sha = self.commit(hypothesis)
        regime = str(read_manifest(self.worktree / 'policy.yaml').get('regime') or 'heuristic')
        return self.store_commit(
            number, best, sha, hypothesis, regime, params,
            revert_note=lambda why: f'revert: {first_line(hypothesis)} (rejected: {why[:200]})')

    def store_commit(self, number: int | str, best: Revision | None, sha: str,
                     hypothesis: str, regime: str, params: dict[str, Any], *,
                     revert_note: Callable[[str], str], origin: str = '',
                     extra: Mapping[str, Any] | None = None,
                     ahead: bool = True) -> Candidate | Rejection:
        """Validate and store the worktree's commit ``sha`` as a revision built on ``best``.

        Accepted: stored as ``running`` and started as a candidate. Rejected: stored as
        ``rejected`` (also when that content was stored before), the branch reverted to
        ``best`` with ``revert_note(first line of the reason)``, and the rejection returned.

        Raises:
            PolicyRejectedError: the baseline (``best`` None) was rejected.
        """
        from enpire_agent_bridge.core.revisions import content_id

        assert self.worktree is not None, 'open() first'
        parent = best.id if best is not None else None
        try:
            snap = self.submit(self.worktree, parent or '', ahead=ahead)
        except PolicyRejectedError as exc:
            if best is None:
                raise
            rid = content_id(self.worktree)[0]
            self.add_revision(rid, parent, sha, hypothesis, regime, params, origin=origin,
                              status='rejected')
            self.ledger.set_status(rid, 'rejected')
            self.revert(best, revert_note(first_line(str(exc))))
            return Rejection(number, rid, str(exc))
        self.add_revision(snap.id, parent, sha, hypothesis, regime, params, origin=origin,
                          status='running')
        return self.start(number, snap, parent, sha, params, hypothesis, extra)

    def unfinished(self) -> Candidate | None:
        """A candidate started but not done (the agent was killed while trying it)."""
        done = {e.data['optuna_trial'] for e in self.ledger.events(CANDIDATE_DONE)}
        for e in self.ledger.events(CANDIDATE_STARTED):
            d = e.data
            if d['optuna_trial'] not in done:
                return Candidate(d['optuna_trial'], d['revision'],
                                 self.revision_dir(d['revision']), d.get('parent'),
                                 d.get('hypothesis', ''), dict(d.get('params') or {}))
        return None
