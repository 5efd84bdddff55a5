"""The trials port of the built-in agent, the recorder of trials, and a deterministic fake.

Contract of :class:`TrialsPort` (``enpire_evolution.ros.trials_port.RosTrialsPort``
implements it over ROS): ``run`` executes one trial per seed of an already-stored revision
and RECORDS each finished trial in the experiment store itself (experiment, revision,
branch = the revision's branch in the store, cell, seed, outcome, ..., ``is_eval`` = the
seed lies in the task's evaluation range). The returned outcomes are a convenience; the
store is the source of truth. Callers therefore ``add_revision`` before running trials of
it and never record trials themselves.

:class:`TrialRecorder` is how every port records: the rollout's one trial record
(``TrialRecord``) becomes the store's row (``Trial.from_record``) and verdict rows. The
rollout itself records nothing here (it is the lower layer); evolution records what the
rollout reports.

:class:`FakeTrialsPort` honours the same contract without ROS: a success model over the
policy's ``params`` decides each trial, time passes on an injected fake clock, and a
``kill_after`` option raises :class:`SimulatedKill` after K recorded trials (a SIGKILL in the
middle of a batch, for resume tests).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError, EnpireError
from enpire_common.tasks import load_task
from enpire_evolution.core.fakes import FAKE_START_S
from enpire_evolution.core.store import ExperimentStore, Revision, Trial, verdicts_of
from enpire_rollout.core.trial_record import TrialRecord

#: Outcomes that say nothing about the policy (the cell failed); excluded from statistics.
VOID_OUTCOMES = ('reset_failed', 'aborted')


@dataclass(frozen=True)
class TrialOutcome:
    """One finished trial as the port reports it (the store holds the full row)."""

    trial_id: str
    seed: int
    outcome: str
    success: bool
    score: float
    steps: int
    duration_s: float
    reason: str = ''

    @classmethod
    def from_record(cls, r: TrialRecord) -> TrialOutcome:
        """The outcome of the rollout's record of a finished trial."""
        return cls(trial_id=r.trial_id, seed=int(r.seed), outcome=r.outcome,
                   success=bool(r.success), score=float(r.score), steps=int(r.steps),
                   duration_s=float(r.duration_s), reason=r.reason)


class TrialRecorder:
    """Records finished trials (the rollout's :class:`TrialRecord`) in the experiment store.

    Args:
        store: the experiment store.
        evaluation_seeds: ``task -> (first, last)`` inclusive seed range of held-out
            evaluation trials (``is_eval``); default: the task contract's.
    """

    def __init__(self, store: ExperimentStore,
                 evaluation_seeds: Callable[[str], tuple[int, int]] | None = None) -> None:
        self.store = store
        self._evaluation_seeds = evaluation_seeds or (
            lambda task: load_task(task).evaluation_seeds)
        self._seeds: dict[str, tuple[int, int]] = {}

    def ensure(self, experiment: str, task: str, revision_id: str, now_s: float,
               describe: Callable[[], Any]) -> str:
        """Make sure the experiment and the revision's rows exist; returns its branch.

        A revision the store does not know yet (a manual ``enpire trial run``) goes on the
        ``manual`` branch with what ``describe()`` tells of it (an agent bridge revision:
        parent, commit, hypothesis, regime, params).
        """
        self.store.create_experiment(experiment, task, now_s)
        try:
            return self.store.revision(experiment, revision_id).branch
        except EnpireError:
            pass
        rev = describe()
        self.store.add_branch(experiment, 'manual', created_at=now_s)
        self.store.add_revision(Revision(
            experiment=experiment, id=revision_id, branch='manual',
            parent=rev.parent or None, commit=rev.commit, hypothesis=rev.hypothesis,
            regime=rev.regime or 'heuristic', created_at=now_s, params=rev.params))
        return 'manual'

    def record(self, record: TrialRecord, branch: str) -> bool:
        """Store a finished trial and its verdicts on ``branch``; False if already stored."""
        if record.task not in self._seeds:
            lo, hi = self._evaluation_seeds(record.task)
            self._seeds[record.task] = (int(lo), int(hi))
        lo, hi = self._seeds[record.task]
        trial = Trial.from_record(record, branch=branch, is_eval=lo <= record.seed <= hi)
        return self.store.record_trial(trial, verdicts_of(record))


class TrialsPort(Protocol):
    """Runs budgeted trials of a stored revision and records them in the experiment store."""

    def run(self, *, experiment_id: str, revision_id: str, revision_dir: Path,
            seeds: Sequence[int], max_wall_time_s: float = 0.0,
            on_trial: Callable[[TrialOutcome], None] | None = None
            ) -> list[TrialOutcome]:
        """Run one trial per seed (in order, possibly on several cells).

        Args:
            experiment_id: experiment the trials belong to.
            revision_id: content id of a revision already added to the store.
            revision_dir: the revision's snapshot directory.
            seeds: reset seeds, one trial each.
            max_wall_time_s: stop starting trials after this long (0 = no limit); the
                unstarted seeds are simply not returned.
            on_trial: called after each trial is recorded.

        Returns:
            The outcomes of the trials that finished, in completion order.
        """
        ...


class SimulatedKill(BaseException):  # noqa: N818 - it stands for a signal, not an error
    """Raised by :class:`FakeTrialsPort` to simulate SIGKILL (BaseException: nothing catches
    it by accident, like a real kill)."""


SuccessModel = Callable[[Mapping[str, Any], int], bool]


def seed_difficulty(seed: int) -> float:
    """A fixed uniform number in [0, 1) per seed: how hard that start state is.

    Sharing it between revisions is what common random numbers mean in the fake world: a
    better policy solves a superset of the starts a worse one solves.
    """
    digest = hashlib.sha256(f'enpire-fake-seed:{int(seed)}'.encode()).digest()
    return int.from_bytes(digest[:8], 'big') / 2**64


def peaked_success_model(optimum: Mapping[str, float], *, peak: float = 0.995,
                         floor: float = 0.02, width: float = 0.35) -> SuccessModel:
    """A synthetic success model: probability peaks at ``optimum`` and falls off in log space.

    ``p(params) = floor + (peak - floor) * exp(-mean_k (ln(params[k] / optimum[k]) / width)^2)``
    over the keys of ``optimum`` (other params do not matter; a missing or non-positive value
    counts as far away). A trial with seed ``s`` succeeds when ``seed_difficulty(s) < p``.
    This is the documented model behind ``enpire improve --fake``.
    """
    keys = sorted(optimum)

    def probability(params: Mapping[str, Any]) -> float:
        total = 0.0
        for k in keys:
            v = params.get(k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                total += 9.0
                continue
            total += (math.log(float(v) / float(optimum[k])) / width) ** 2
        return floor + (peak - floor) * math.exp(-total / max(1, len(keys)))

    def model(params: Mapping[str, Any], seed: int) -> bool:
        return seed_difficulty(seed) < probability(params)

    model.probability = probability  # type: ignore[attr-defined]
    return model


#: Where the ``--fake`` world puts the best Push-T scripted params (within the search space).
PUSH_T_FAKE_OPTIMUM = {'push_gain': 0.5, 'max_step_px': 30.0, 'lever_px': 35.0,
                       'angle_weight_px': 90.0}


def read_params(revision_dir: Path) -> dict[str, Any]:
    """The ``params:`` mapping of ``<revision_dir>/policy.yaml`` (empty if absent)."""
    path = Path(revision_dir) / 'policy.yaml'
    data = yaml.safe_load(path.read_text(encoding='utf-8')) if path.is_file() else {}
    params = (data or {}).get('params') or {}
    return dict(params) if isinstance(params, Mapping) else {}


class FakeTrialsPort:
    """A deterministic :class:`TrialsPort` that records its trials in the store.

    Args:
        store: the experiment store trials are written to.
        success_model: ``(params, seed) -> success``; params are read from the revision's
            ``policy.yaml`` (as the real policy host would).
        evaluation_seeds: inclusive ``(first, last)`` range marking ``is_eval`` trials.
        clock: advanced by ``trial_s`` per trial (a fake of wall time passing).
        trial_s: simulated wall time of one trial (reset included).
        cell: cell id recorded on each trial.
        kill_after: raise :class:`SimulatedKill` once this many trials have been recorded by
            this port instance (None = never).
        wall: epoch seconds stamped on trials (default ``FAKE_START_S + clock``).
        kill_on_seed: raise :class:`SimulatedKill` right after recording a trial of this seed
            (e.g. in the middle of a held-out evaluation).
    """

    def __init__(self, store: ExperimentStore, success_model: SuccessModel, *,
                 evaluation_seeds: tuple[int, int] = (100000, 100999),
                 clock: FakeClock | None = None, trial_s: float = 10.0,
                 cell: str = 'cell_0', kill_after: int | None = None,
                 wall: Callable[[], float] | None = None,
                 kill_on_seed: int | None = None) -> None:
        self.store = store
        self.success_model = success_model
        self.evaluation_seeds = (int(evaluation_seeds[0]), int(evaluation_seeds[1]))
        self.clock = clock or FakeClock()
        self.trial_s = float(trial_s)
        self.cell = cell
        self.kill_after = kill_after
        self.kill_on_seed = kill_on_seed
        self.wall = wall or (lambda: FAKE_START_S + self.clock.now_s())
        self.recorder = TrialRecorder(store, lambda _task: self.evaluation_seeds)
        self.recorded = 0
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def run(self, *, experiment_id: str, revision_id: str, revision_dir: Path,
            seeds: Sequence[int], max_wall_time_s: float = 0.0,
            on_trial: Callable[[TrialOutcome], None] | None = None
            ) -> list[TrialOutcome]:
        if not self.store.has_revision(experiment_id, revision_id):
            raise ConfigError(f"revision '{revision_id[:12]}' is not in experiment "
                              f"'{experiment_id}'; add_revision before running its trials")
        rev = self.store.revision(experiment_id, revision_id)
        params = read_params(revision_dir)
        self.calls.append((revision_id, tuple(int(s) for s in seeds)))
        start = self.clock.now_s()
        out: list[TrialOutcome] = []
        for index, seed in enumerate(seeds):
            if max_wall_time_s > 0 and self.clock.now_s() - start >= max_wall_time_s:
                break
            started = self.wall()
            self.clock.advance(self.trial_s)
            ok = bool(self.success_model(params, int(seed)))
            difficulty = seed_difficulty(int(seed))
            score = 1.0 if ok else round(0.3 + 0.6 * (1.0 - difficulty), 3)
            # Deterministic per cell (a resumed run re-records nothing), distinct across
            # cells (two fleet agents running the same baseline seed both count).
            trial_id = f'{experiment_id}-{self.cell}-{revision_id[:12]}-s{int(seed)}'
            record = TrialRecord(
                experiment_id=experiment_id, trial_id=trial_id, revision_id=revision_id,
                cell_id=self.cell, task='fake', seed=int(seed), index=index,
                outcome='success' if ok else 'timeout', success=ok, score=score,
                steps=120 if ok else 300, started_at=started, ended_at=started + self.trial_s,
                duration_s=self.trial_s * 0.8, reset_s=self.trial_s * 0.2,
                reason='' if ok else 'time limit')
            self.recorder.record(record, rev.branch)
            self.recorded += 1
            outcome = TrialOutcome.from_record(record)
            out.append(outcome)
            if on_trial is not None:
                on_trial(outcome)
            if self.kill_after is not None and self.recorded >= self.kill_after:
                raise SimulatedKill(f'simulated SIGKILL after {self.recorded} trials')
            if self.kill_on_seed is not None and int(seed) == self.kill_on_seed:
                raise SimulatedKill(f'simulated SIGKILL after the trial of seed {seed}')
        return out
