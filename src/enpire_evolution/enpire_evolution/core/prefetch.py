"""Pipelining: the next proposal is prepared while the cell runs the current one's trials.

While a candidate's trials run (or the best's held-out evaluation, which may fail and send
the agent back to the search), a background thread asks optuna for the NEXT proposal, writes
it on top of the current best into a scratch directory and validates + snapshots it in the
revision store (:meth:`CandidateWriter.prepare_ahead`), so the cell does not wait for the
agent's thinking between candidates. The revision store is content-addressed: when the agent
then writes the same files into its worktree and commits them, the submit finds the snapshot
(and a rejection is remembered by content id), so nothing is validated twice.

A prepared proposal is used only if the best is still the one it was built on; otherwise (the
running candidate was kept) the same optuna trial is rebuilt on the new best in the
foreground. The search itself changes in one way: optuna proposes candidate k+1 before it is
told candidate k's result (a one-candidate lag; TPE ignores running trials). The order of asks
and tells is fixed by construction (the ask for k+1 always falls between the start of k and
the tell of k), and the best's tally in the hypothesis is read before the thread starts, so a
run is as deterministic as without pipelining for a given sampler seed and trial outcomes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.candidate_writer import CandidateWriter
from enpire_evolution.core.ledger import Ledger
from enpire_evolution.core.proposer import Proposer
from enpire_evolution.core.store import Revision


@dataclass(frozen=True)
class Prepared:
    """A proposal made ahead of time: its optuna trial, params and the best it builds on."""

    number: int
    params: dict[str, Any]
    parent: str
    hypothesis: str = ''
    duplicate: bool = False


class Prefetcher:
    """Prepares one proposal ahead in a background thread (when ``config.pipeline``).

    Args:
        config: the agent's config (``pipeline``, ``max_candidates``).
        proposer: asked for the next proposal.
        ledger: the best's tally and the params already tried.
        writer: writes, validates and snapshots the proposal in a scratch copy.
        say: where a failed preparation is reported.
    """

    def __init__(self, config: BuiltinAgentConfig, proposer: Proposer, ledger: Ledger,
                 writer: CandidateWriter, say: Callable[[str], None]) -> None:
        self.config = config
        self.proposer = proposer
        self.ledger = ledger
        self.writer = writer
        self.say = say
        self._prepared: Prepared | None = None
        self._thread: threading.Thread | None = None

    def start(self, best: Revision | None, candidates_run: int) -> None:
        """Prepare the next proposal on top of ``best`` in a background thread (if enabled,
        another candidate may still start, and none is prepared or being prepared)."""
        if (not self.config.pipeline or best is None or self._thread is not None
                or (self._prepared is not None and self._prepared.parent == best.id)):
            return
        if self.config.max_candidates and candidates_run >= self.config.max_candidates:
            return
        # The best's tally is read here, in the foreground: the thread would read it while
        # this candidate's stages add trials of the best, and the hypothesis (part of the
        # revision's content, so its id) would depend on thread timing.
        self._thread = threading.Thread(target=self._prepare_safely,
                                        args=(best, self.ledger.tally(best.id)),
                                        name=f'prefetch-{self.config.agent_id}', daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait for a running preparation without taking its result (tests, demos)."""
        th = self._thread
        if th is not None:
            th.join(timeout_s)

    def join(self) -> None:
        """Wait for the background preparation (before optuna is told, or it is used)."""
        th, self._thread = self._thread, None
        if th is not None:
            th.join()

    def claim(self, best: Revision | None) -> Prepared | None:
        """The prepared proposal if it was built on ``best`` (else its optuna trial is handed
        out again by Proposer.next and rebuilt on the new best)."""
        self.join()
        prep, self._prepared = self._prepared, None
        if prep is None or best is None or prep.parent != best.id:
            return None
        return prep

    def _prepare_safely(self, best: Revision, tally: tuple[int, int]) -> None:
        try:
            self._prepared = self._prepare(best, tally)
        except Exception as exc:  # noqa: BLE001 - a failed prefetch only costs the overlap
            self._prepared = None
            self.say(f'preparing the next candidate ahead failed ({exc!r}); it will be made '
                     'when needed')

    def _prepare(self, best: Revision, tally: tuple[int, int]) -> Prepared:
        """Ask optuna, write, validate and snapshot. No git, no store events: the foreground
        commits and starts it (or drops it when the best changed)."""
        number, sampled = self.proposer.next()
        params = self.proposer.params(sampled, best)
        if self.ledger.duplicate_of(params) is not None:
            return Prepared(number, params, best.id, duplicate=True)
        hypothesis = self.proposer.hypothesis(number, best, params, tally)
        self.writer.prepare_ahead(best, params, hypothesis)
        return Prepared(number, params, best.id, hypothesis)
