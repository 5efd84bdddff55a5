"""Fake experiment data for tests and demos (shipped so other packages can reuse it)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from enpire_common.tasks import DEFAULT_TASK
from enpire_evolution.core.store import ExperimentStore, Revision, Trial, Verdict

#: A fixed epoch so fake data is identical run to run (2023-11-14).
FAKE_START_S = 1_700_000_000.0


def revision_id(text: str) -> str:
    """A deterministic sha256 hex id standing in for a policy revision's content hash."""
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def make_trial(experiment: str, revision: str, branch: str, index: int, success: bool, *,
               cell: str = 'cell_0', started_at: float = FAKE_START_S, duration_s: float = 8.0,
               reset_s: float = 2.0, score: float | None = None, is_eval: bool = False,
               seed: int | None = None) -> Trial:
    """One plausible trial; ``started_at`` is when the reset began."""
    trial_id = f'{experiment}-{branch}-{revision[:8]}-{index:04d}'
    return Trial(
        trial_id=trial_id, experiment=experiment, revision=revision, branch=branch, cell=cell,
        seed=index if seed is None else seed, outcome='success' if success else 'timeout',
        success=success, score=(1.0 if success else 0.4) if score is None else score,
        steps=120 if success else 300, started_at=started_at,
        ended_at=started_at + reset_s + duration_s, duration_s=duration_s, reset_s=reset_s,
        record_dir=f'{experiment}/trials/{trial_id}', reason='' if success else 'time limit',
        is_eval=is_eval)


@dataclass
class FakeExperiment:
    """What :func:`populate_fake_experiment` wrote."""

    experiment: str
    task: str
    revisions: dict[str, list[str]] = field(default_factory=dict)  # branch -> revision ids
    trials: list[Trial] = field(default_factory=list)


def populate_fake_experiment(
        store: ExperimentStore, experiment: str = 'exp-fake', *, task: str = DEFAULT_TASK,
        branch_rates: Mapping[str, Sequence[float]] | None = None,
        trials_per_revision: int = 20, cells: Sequence[str] = ('cell_0', 'cell_1'),
        seed: int = 0, start_s: float = FAKE_START_S, eval_trials: int = 0,
        views: Sequence[str] = ('top',)) -> FakeExperiment:
    """Write a deterministic experiment: branches of revisions with given true success rates.

    Each branch belongs to agent ``agent_<i>``; its revisions form a chain (each one's parent
    is the previous). The first revision of every branch after the first is borrowed from the
    first branch's first revision (``origin`` says so). A revision is 'kept' when its observed
    success rate beats its parent's, else 'reverted'. Trials are dealt round-robin over
    ``cells``, each cell running them back to back with a one-second gap.

    Args:
        store: where to write.
        experiment: experiment id.
        task: task id.
        branch_rates: branch name -> true success probability of each successive revision.
        trials_per_revision: tuning trials per revision.
        cells: cell ids.
        seed: random seed of the outcomes.
        start_s: experiment start (epoch s).
        eval_trials: additional held-out evaluation trials per revision (``is_eval=True``).
        views: camera views whose verdicts are recorded (plus the 'fused' verdict).
    """
    rates = dict(branch_rates or {'main': (0.3, 0.6, 0.5), 'wide': (0.4, 0.7)})
    rng = random.Random(seed)
    store.create_experiment(experiment, task, start_s, {'fake': True, 'seed': seed})
    fake = FakeExperiment(experiment, task)
    cell_free = dict.fromkeys(cells, start_s)
    counter = 0
    first_revision: str | None = None
    t_create = start_s
    for b_index, (branch, probs) in enumerate(rates.items()):
        agent = f'agent_{b_index}'
        store.add_agent(experiment, agent, 'builtin', cells[b_index % len(cells)])
        store.add_branch(experiment, branch, agent=agent,
                         parent=None if b_index == 0 else next(iter(rates)),
                         created_at=start_s + b_index)
        parent: str | None = None
        parent_rate = -1.0
        origin = ''
        if b_index > 0 and first_revision is not None:
            parent = first_revision
            origin = f'borrowed from agent agent_0 revision {first_revision}'
        for r_index, p in enumerate(probs):
            rev = revision_id(f'{experiment}/{branch}/{r_index}/{p}')
            t_create += 1.0
            n_total = trials_per_revision + eval_trials
            outcomes = [rng.random() < p for _ in range(n_total)]
            for i, ok in enumerate(outcomes):
                cell = cells[counter % len(cells)]
                counter += 1
                trial = make_trial(experiment, rev, branch, i, ok, cell=cell,
                                   started_at=cell_free[cell],
                                   score=1.0 if ok else round(rng.uniform(0.2, 0.9), 3),
                                   is_eval=i >= trials_per_revision, seed=1000 * r_index + i)
                cell_free[cell] = trial.ended_at + 1.0
                verdicts = [Verdict(trial.trial_id, v, 'opencv-v1', ok, trial.score)
                            for v in (*views, 'fused')]
                store.record_trial(trial, verdicts)
                fake.trials.append(trial)
            tuning = outcomes[:trials_per_revision]
            rate = sum(tuning) / len(tuning) if tuning else 0.0
            store.add_revision(Revision(
                experiment=experiment, id=rev, branch=branch, parent=parent,
                commit=revision_id(f'commit/{rev}')[:40],
                hypothesis=f'{branch} idea {r_index}: gain {0.5 + 0.25 * r_index:.2f}',
                regime='heuristic', created_at=t_create,
                params={'gain': 0.5 + 0.25 * r_index, 'branch_bias': b_index},
                origin=origin if r_index == 0 else '',
                status='kept' if rate > parent_rate else 'reverted'))
            fake.revisions.setdefault(branch, []).append(rev)
            if first_revision is None:
                first_revision = rev
            if rate > parent_rate:
                parent, parent_rate = rev, rate
    return fake


#: ``outcome(revision, seed)``: True (success), False (a timeout) or an outcome name such as
#: ``'aborted'`` (void).
Script = Callable[[str, int], bool | str]


class ScriptedTrialsPort:
    """A trials port whose outcomes are scripted per revision and seed (tests of the agent's
    parts: ledger, trial runner, judge, evaluator). It records each trial in the store, as the
    contract of :class:`~enpire_evolution.core.trials_port.TrialsPort` says.

    Args:
        store: where trials are recorded.
        outcome: ``(revision, seed) -> True | False | outcome name``.
        clock: advanced by ``trial_s`` per trial (optional).
        trial_s: simulated duration of one trial.
        cell: the cell recorded on each trial.
        evaluation_seeds: inclusive range of seeds recorded as ``is_eval``.
        record: False makes the port return without recording anything (a stalled cell).

    Attributes:
        calls: ``(revision, seeds, max_wall_time_s)`` of each run, in order.
    """

    def __init__(self, store: ExperimentStore, outcome: Script, *, clock: Any = None,
                 trial_s: float = 10.0, cell: str = 'cell_0',
                 evaluation_seeds: tuple[int, int] = (100_000, 100_999),
                 record: bool = True) -> None:
        self.store = store
        self.outcome = outcome
        self.clock = clock
        self.trial_s = trial_s
        self.cell = cell
        self.evaluation_seeds = evaluation_seeds
        self.record = record
        self.calls: list[tuple[str, tuple[int, ...], float]] = []
        self._n = 0

    def run(self, *, experiment_id: str, revision_id: str, revision_dir: Any,
            seeds: Sequence[int], max_wall_time_s: float = 0.0,
            on_trial: Callable[[Any], None] | None = None) -> list[Any]:
        from enpire_evolution.core.trials_port import TrialOutcome

        self.calls.append((revision_id, tuple(int(s) for s in seeds), max_wall_time_s))
        if not self.record:
            return []
        branch = self.store.revision(experiment_id, revision_id).branch
        lo, hi = self.evaluation_seeds
        out = []
        for seed in seeds:
            got = self.outcome(revision_id, int(seed))
            outcome = got if isinstance(got, str) else ('success' if got else 'timeout')
            started = FAKE_START_S + (self.clock.now_s() if self.clock else 0.0)
            if self.clock is not None:
                self.clock.advance(self.trial_s)
            self._n += 1
            trial = make_trial(experiment_id, revision_id, branch, self._n, outcome == 'success',
                               cell=self.cell, started_at=started, duration_s=self.trial_s,
                               reset_s=0.0, is_eval=lo <= int(seed) <= hi, seed=int(seed))
            if isinstance(got, str):
                trial = replace(trial, outcome=got, reason=f'scripted {got}')
            trial = replace(trial, trial_id=f'{trial.trial_id}-{self.cell}')
            self.store.record_trial(trial)
            o = TrialOutcome(trial.trial_id, int(seed), trial.outcome, trial.success,
                             trial.score, trial.steps, trial.duration_s, trial.reason)
            out.append(o)
            if on_trial is not None:
                on_trial(o)
        return out
