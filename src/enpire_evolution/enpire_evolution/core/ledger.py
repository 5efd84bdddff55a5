"""What one built-in agent has done, as the experiment store holds it.

Every decision of the agent derives from the store (that is what makes it resumable), so the
queries live in one place: this agent's events, its best revision, the tuning trials of a
revision, the params it has already tried. Several agents may share one experiment (a fleet);
events carry the agent's id, trials do not (a seed any cell ran counts for everyone).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from enpire_evolution.core.store import Event, ExperimentStore, Revision, Trial
from enpire_evolution.core.trials_port import VOID_OUTCOMES

#: Event kinds of the built-in agent (the units of work a resumed run finishes).
CANDIDATE_STARTED = 'candidate_started'
CANDIDATE_DONE = 'candidate_done'
EVALUATION_STARTED = 'evaluation_started'
EVALUATION_DONE = 'evaluation_done'
AGENT_STARTED = 'agent_started'
AGENT_STOPPED = 'agent_stopped'
#: Decisions of a candidate that ran trials (a duplicate of one re-uses its result).
TRIED = ('keep', 'revert', 'baseline')


class Ledger:
    """One agent's view of the experiment store.

    Args:
        store: the experiment store.
        experiment: the experiment id.
        agent_id: whose events these are (events written before events named their agent
            belong to the default agent 'builtin').
        wall: epoch seconds for event timestamps.
    """

    def __init__(self, store: ExperimentStore, experiment: str, agent_id: str,
                 wall: Callable[[], float]) -> None:
        self.store = store
        self.experiment = experiment
        self.agent_id = agent_id
        self.wall = wall

    def events(self, kind: str) -> list[Event]:
        """This agent's events of ``kind``, in the order they were written."""
        me = self.agent_id
        return [e for e in self.store.events(self.experiment, kind)
                if e.data.get('agent', 'builtin') == me]

    def add(self, kind: str, data: Mapping[str, Any]) -> None:
        """Store an event of this agent (its id is added to ``data``)."""
        self.store.add_event(self.experiment, kind, self.wall(),
                             {**data, 'agent': self.agent_id})

    def candidate_done(self, number: int | str, revision: str, decision: str, value: float,
                       data: Mapping[str, Any]) -> None:
        """Close a unit of work: the candidate ``number`` ended with ``decision``."""
        self.add(CANDIDATE_DONE, {**data, 'optuna_trial': number, 'revision': revision,
                                  'decision': decision, 'value': value})

    def revision(self, revision: str) -> Revision:
        return self.store.revision(self.experiment, revision)

    def set_status(self, revision: str, status: str) -> None:
        self.store.set_revision_status(self.experiment, revision, status)

    def best(self) -> Revision | None:
        """The last kept revision (events are in decision order)."""
        kept = [e.data['revision'] for e in self.events(CANDIDATE_DONE)
                if e.data.get('decision') == 'keep']
        return self.revision(kept[-1]) if kept else None

    def tuning(self, revision: str) -> dict[int, Trial]:
        """Valid tuning trials of a revision by seed (the first one of each seed)."""
        out: dict[int, Trial] = {}
        for t in self.store.trials_for(self.experiment, revision=revision, is_eval=False):
            if t.outcome not in VOID_OUTCOMES:
                out.setdefault(int(t.seed), t)
        return out

    def tally(self, revision: str) -> tuple[int, int]:
        """(successes, valid tuning trials) of a revision."""
        trials = self.tuning(revision)
        return sum(t.success for t in trials.values()), len(trials)

    def seeds_done(self, revision: str, is_eval: bool) -> set[int]:
        """Seeds of ``revision`` the store holds a trial of (void ones included)."""
        return {int(t.seed) for t in self.store.trials_for(self.experiment, revision=revision,
                                                            is_eval=is_eval)}

    def duplicate_of(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The done event of a tried candidate with exactly these params, if any."""
        for e in self.events(CANDIDATE_DONE):
            if (e.data.get('decision') in TRIED
                    and dict(self.revision(e.data['revision']).params) == dict(params)):
                return e.data
        return None

    def eval_trials(self) -> list[Trial]:
        """Every held-out evaluation trial of the experiment (any agent's)."""
        return self.store.trials_for(self.experiment, is_eval=True)
