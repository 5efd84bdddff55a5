"""How a built-in agent works with other agents: the hooks a fleet fills in.

An agent alone (:class:`SoloBehaviour`) runs every missing seed itself, never stops early and
borrows nothing. A fleet agent composes :class:`core.fleet_behaviour.FleetBehaviour` instead:
it splits the revision every agent runs (the baseline) between the cells, pushes its kept
revisions and borrows its peers' better ones, and stops when the fleet meets the goal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from enpire_evolution.core.candidate_writer import Candidate
from enpire_evolution.core.store import Revision
from enpire_evolution.core.trial_runner import run_all

if TYPE_CHECKING:
    from enpire_evolution.core.agent import BuiltinAgent


class AgentBehaviour(Protocol):
    """How an agent works with others (a fleet); :class:`SoloBehaviour` when it is alone."""

    def bind(self, agent: BuiltinAgent) -> None:
        """Called once by the agent, its components built."""

    def stopped(self) -> bool:
        """Whether to stop starting work now."""

    def batch(self, revision: str, seeds: Sequence[int], missing: list[int]) -> list[int]:
        """Which of the ``missing`` seeds of ``revision`` to run now."""

    def on_try(self, cand: Candidate) -> None:
        """A candidate's trials are about to run."""

    def on_kept(self, cand: Candidate) -> None:
        """A candidate became the best."""

    def borrow(self, best: Revision | None) -> Candidate | None:
        """A peer's better idea, started as a candidate, to try instead of a new proposal."""


class SoloBehaviour:
    """An agent alone: runs every missing seed, never stops early, borrows nothing."""

    def bind(self, agent: BuiltinAgent) -> None:
        pass

    def stopped(self) -> bool:
        return False

    def batch(self, revision: str, seeds: Sequence[int], missing: list[int]) -> list[int]:
        return run_all(revision, seeds, missing)

    def on_try(self, cand: Candidate) -> None:
        pass

    def on_kept(self, cand: Candidate) -> None:
        pass

    def borrow(self, best: Revision | None) -> Candidate | None:
        return None
