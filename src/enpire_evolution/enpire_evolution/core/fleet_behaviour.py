"""The fleet behaviour of a built-in agent: split the baseline, share and borrow ideas, stop.

A fleet agent is a :class:`~enpire_evolution.core.agent.BuiltinAgent` composed with a
:class:`FleetBehaviour` (:func:`fleet_agent`); nothing of the agent is overridden. The
behaviour has three parts:

* batching (:func:`share_of`): a revision every agent runs (the baseline, the seed policy:
  one content id for everyone) is split between the cells. Trials are shared through the
  store, where a seed any cell ran counts for everyone (common random numbers), so the fleet's
  baseline costs each cell 1/N of it instead of all of it, and no cell waits for another;
* sharing (:class:`Borrower`): after each kept revision the agent pushes its branch to the
  fleet's bare remote; before proposing, it looks at its peers' best revisions in the shared
  store, and when one beats its own best on the same tuning seeds by ``borrow_margin``
  successes, it cherry-picks the peer's commit onto its own best (a copy of the peer's tree
  when the pick conflicts), commits it as a revision whose ``origin`` is
  ``'borrowed from agent <k> revision <r>'`` and tries it on its OWN cell like any candidate
  (a peer's idea must reproduce here to be kept);
* stopping: the fleet's ``stop_event`` (set when any agent meets the goal) stops the agent.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from enpire_common.errors import ConfigError
from enpire_evolution.core.branches import GitError
from enpire_evolution.core.candidate_writer import (
    Candidate,
    Rejection,
    first_line,
    read_manifest,
    write_manifest,
)
from enpire_evolution.core.ledger import CANDIDATE_STARTED, Ledger
from enpire_evolution.core.store import Revision

if TYPE_CHECKING:
    from enpire_evolution.core.agent import BuiltinAgent

REMOTE = 'origin'


def share_of(seeds: Sequence[int], missing: list[int], rank: int, team_size: int) -> list[int]:
    """The seeds agent ``rank`` of ``team_size`` runs now of a revision every agent runs.

    Its own share of ``seeds`` (the ``rank``-th slice) while any of it is missing; after
    that, one at a time (the caller rechecks the store in between), the peers' seeds that are
    still missing, starting with the next peer's last ones (the least likely to be running
    there right now).
    """
    share = math.ceil(len(seeds) / team_size)
    mine = set(seeds[rank * share:(rank + 1) * share])
    first = [s for s in missing if s in mine]
    if first:
        return first
    order = {s: i for i, s in enumerate(seeds)}
    start = ((rank + 2) * share - 1) % len(seeds)
    rest = sorted(missing, key=lambda s: (start - order[s]) % len(seeds))
    return rest[:1]


class Borrower:
    """Pushes the agent's kept revisions and borrows its peers' better ones through git.

    Args:
        peers: the other agents' ids in the experiment.
        borrow_margin: a peer's best must beat this agent's best by at least this many
            successes on the same tuning seeds to be borrowed.
        remote: the git remote the fleet shares branches through.
    """

    def __init__(self, peers: Sequence[str], borrow_margin: int, remote: str) -> None:
        if borrow_margin < 1:
            raise ConfigError(f'borrow_margin={borrow_margin}: must be >= 1 success (a tie '
                              'is no reason to switch ideas)')
        self.peers = tuple(peers)
        self.borrow_margin = borrow_margin
        self.remote = remote
        self._agent: Any = None

    def bind(self, agent: BuiltinAgent) -> None:
        self._agent = agent

    def _has_remote(self) -> bool:
        return self.remote in self._agent.workspace.git('remote').split()

    def push(self) -> None:
        """Share the agent's branch (best effort: the store still has the revision)."""
        a = self._agent
        if not self._has_remote():
            return
        try:
            a.workspace.push(a.config.git_branch, self.remote)
        except GitError as exc:
            a.say(f'push of {a.config.git_branch} failed (peers will not see it yet): {exc}')

    def peer_best(self, peer: str) -> Revision | None:
        """A peer agent's last kept revision (from the shared store)."""
        a = self._agent
        return Ledger(a.store, a.exp, peer, a.wall).best()

    def borrow(self, best: Revision | None) -> Candidate | None:
        """The peer best that beats ``best`` by the most on common seeds, started as a
        candidate; None when no peer's is better (or it cannot be taken)."""
        a = self._agent
        if best is None or not self.peers:
            return None
        borrowed = {(e.data.get('borrowed_from') or {}).get('revision')
                    for e in a.ledger.events(CANDIDATE_STARTED)}
        own = a.ledger.tuning(best.id)
        pick: tuple[int, str, Revision, int, int, int] | None = None
        for peer in self.peers:
            rev = self.peer_best(peer)
            if (rev is None or rev.id == best.id or rev.id in borrowed
                    or dict(rev.params) == dict(best.params)
                    or a.ledger.duplicate_of(rev.params) is not None):
                continue
            theirs = a.ledger.tuning(rev.id)
            common = sorted(set(own) & set(theirs))
            if len(common) < a.config.stages[1]:
                continue
            mine = sum(own[s].success for s in common)
            their = sum(theirs[s].success for s in common)
            gain = their - mine
            if gain >= self.borrow_margin and (pick is None or gain > pick[0]):
                pick = (gain, peer, rev, mine, their, len(common))
        if pick is None:
            return None
        _gain, peer, rev, mine, their, n = pick
        return self._take(best, peer, rev, f'{their}/{n} vs my best {mine}/{n} on the same '
                                           'tuning seeds')

    def _take(self, best: Revision, peer: str, rev: Revision, why: str) -> Candidate | None:
        """Cherry-pick ``rev``'s commit onto this agent's best and start it as a candidate."""

        a = self._agent
        writer, ws = a.writer, a.workspace
        wt = writer.worktree
        if self._has_remote():
            try:
                ws.fetch(self.remote)
            except GitError as exc:
                a.say(f'fetch from {self.remote} failed: {exc}')
        if not rev.commit or not ws.has_commit(rev.commit):
            a.say(f'cannot borrow {rev.id[:12]} from {peer}: its commit '
                  f'{rev.commit[:12] or "-"} is not on the remote yet')
            return None
        writer.restore(best)
        writer.commit(f'restore the best {best.id[:12]}')
        version = int(read_manifest(wt / 'policy.yaml').get('version', 0) or 0)
        method = 'cherry-pick'
        try:
            ws.git('cherry-pick', '--no-commit', rev.commit, cwd=wt)
        except GitError:
            # The peer changed the same lines from another base (policy.yaml always differs
            # in parent/version): take its files, then restate the manifest below.
            method = 'copy of its tree (the cherry-pick conflicted)'
            ws.git('cherry-pick', '--quit', cwd=wt, check=False)
            ws.git('read-tree', '-u', '--reset', rev.commit, cwd=wt)
            ws.git('clean', '-fdq', cwd=wt)
        origin = f'borrowed from agent {peer} revision {rev.id}'
        hypothesis = (f'borrowed from agent {peer} revision {rev.id[:12]} ({method} of '
                      f'{rev.commit[:12]}): {why}. Its idea: '
                      f'{first_line(rev.hypothesis)}')
        manifest = read_manifest(wt / 'policy.yaml')
        manifest.update(version=version + 1, hypothesis=hypothesis, parent=best.id,
                        params=dict(rev.params))
        write_manifest(wt / 'policy.yaml', manifest)
        sha = writer.commit(f'{hypothesis}\n\n(cherry picked from commit {rev.commit})')
        number = f'borrow:{rev.id[:12]}'
        regime = str(manifest.get('regime') or 'heuristic')
        out = writer.store_commit(
            number, best, sha, hypothesis, regime, dict(rev.params), origin=origin,
            ahead=False, revert_note=lambda why: f'revert: borrowed {rev.id[:12]} rejected: '
                                                 f'{why}',
            extra={'borrowed_from': {'agent': peer, 'revision': rev.id,
                                     'commit': rev.commit, 'method': method}})
        if isinstance(out, Rejection):
            a.ledger.add(CANDIDATE_STARTED, {'optuna_trial': number, 'revision': out.revision,
                                             'borrowed_from': {'agent': peer,
                                                               'revision': rev.id}})
            a.ledger.candidate_done(number, out.revision, 'rejected', 0.0,
                                    {'reason': out.reason})
            return None
        a.say(f'{number} {out.revision[:12]} {origin[:60]}: {why}')
        return out


class FleetBehaviour:
    """How one agent of a fleet works with the others (module docstring).

    Args:
        agent_id: the agent's own id.
        peers: the fleet's agent ids (the agent's own is skipped).
        stop_event: set by the fleet when any agent meets the goal; the agent stops starting
            work.
        borrow_margin: see :class:`Borrower`.
        remote: the git remote the fleet shares branches through.
    """

    def __init__(self, agent_id: str, peers: Sequence[str] = (),
                 stop_event: threading.Event | None = None, borrow_margin: int = 1,
                 remote: str = REMOTE) -> None:
        others = tuple(p for p in peers if p != agent_id)
        self.borrower = Borrower(others, borrow_margin, remote)
        team = sorted({*others, agent_id})
        self.rank, self.team_size = team.index(agent_id), len(team)
        self.stop_event = stop_event or threading.Event()
        #: Revisions every agent of the fleet runs (the seed policy, its baseline).
        self.shared: set[str] = set()

    @property
    def peers(self) -> tuple[str, ...]:
        return self.borrower.peers

    def bind(self, agent: BuiltinAgent) -> None:
        self.borrower.bind(agent)

    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def on_try(self, cand: Candidate) -> None:
        if cand.parent is None:  # the baseline: the same revision (content id) for everyone
            self.shared.add(cand.revision)

    def batch(self, revision: str, seeds: Sequence[int], missing: list[int]) -> list[int]:
        if revision not in self.shared or self.team_size < 2:
            return missing
        return share_of(seeds, missing, self.rank, self.team_size)

    def on_kept(self, cand: Candidate) -> None:
        self.borrower.push()

    def borrow(self, best: Revision | None) -> Candidate | None:
        return self.borrower.borrow(best)


def fleet_agent(config: Any, *args: Any, peers: Sequence[str] = (),
                stop_event: threading.Event | None = None, borrow_margin: int = 1,
                remote: str = REMOTE, **kwargs: Any) -> BuiltinAgent:
    """A :class:`BuiltinAgent` with a :class:`FleetBehaviour` and its own optuna study
    (``<experiment>.<agent>``); other arguments as BuiltinAgent's."""
    from enpire_evolution.core.agent import BuiltinAgent

    behaviour = FleetBehaviour(config.agent_id, peers, stop_event, borrow_margin, remote)
    return BuiltinAgent(config, *args, behaviour=behaviour,
                        study_name=f'{config.experiment_id}.{config.agent_id}', **kwargs)
