"""The trial runner: reset -> run -> verify -> record, under a budget (no ROS here).

``TrialRunner.run`` executes a series of trials of one policy revision on one cell through
four ports, so the same logic drives a ROS cell, a real robot or an in-process fake:

- :class:`CellPort` resets the scene (verified) and makes the cell safe,
- :class:`ControllerPort` runs the revision's policy host for one episode and reports
  progress (steps, faults, safety aborts),
- :class:`VerifierPort` judges success from the cameras,
- :class:`RecorderPort` writes the trial's record.

Outcomes: success, failure (step limit reached, not solved), timeout (episode wall-time
limit), safety_abort, policy_fault, reset_failed, aborted (cancelled, the cell died, or the
record disk ran low mid-episode: see :class:`SpacePort`), invalid (the final verdict could
not be read from the cameras: never a success, counted as a fault towards
``max_consecutive_faults``, not retried).

pass@k (``BudgetConfig.attempts`` = k > 1): a long rollout in which, after a failed
verification (failure or timeout), the policy gets up to k - 1 more attempts at the same
subtask WITHOUT a reset: ``ControllerPort.start_episode(seed, retry_index=i)`` restarts the
policy's episode from the scene as it is (the policy sees ``retry_index`` in its observation).
Each attempt is kept in ``TrialRecord.attempts``; the trial succeeds if any attempt does;
:meth:`RunSummary.pass_at` gives pass@1 (first attempts only) and pass@k.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from enpire_common.clock import Clock
from enpire_common.config import require
from enpire_common.confinement import MAX_NAMED_DENIALS
from enpire_common.errors import (
    CellPausedError,
    CellUnavailableError,
    EnpireError,
    EnpireTimeoutError,
    PolicyError,
    ResetFailedError,
    VerificationError,
)
from enpire_common.metrics import pass_at_k, wilson_interval
from enpire_rollout.core.trial_record import (
    ABORTED,
    FAILURE,
    INVALID,
    OUTCOMES,
    POLICY_FAULT,
    RESET_FAILED,
    SAFETY_ABORT,
    SUCCESS,
    TIMEOUT,
    TrialRecord,
)

#: Outcomes that count towards ``max_consecutive_faults`` (a camera that cannot read the
#: scene trial after trial is a cell fault too).
FAULT_OUTCOMES = frozenset({POLICY_FAULT, SAFETY_ABORT, RESET_FAILED, INVALID})


@dataclass(frozen=True)
class BudgetConfig:
    """Limits of one RunTrials request. Zero means "no limit" for the optional ones."""

    max_trials: int = 0
    max_wall_time_s: float = 0.0
    max_consecutive_faults: int = 3
    max_episode_steps: int = 300
    max_episode_time_s: float = 120.0
    verify_period_s: float = 0.5
    reset_timeout_s: float = 30.0
    attempts: int = 1   # pass@k: k attempts per subtask, retries without reset
    reset_stage: str = ''   # '' = the task's start; a later stage ('pre_insertion')

    def __post_init__(self) -> None:
        require(self.max_trials >= 0, 'budget.max_trials', self.max_trials, 'must be >= 0')
        require(self.max_wall_time_s >= 0, 'budget.max_wall_time_s', self.max_wall_time_s,
                'must be >= 0 seconds (0 = unlimited)')
        require(self.max_consecutive_faults >= 0, 'budget.max_consecutive_faults',
                self.max_consecutive_faults, 'must be >= 0 (0 = unlimited)')
        require(self.max_episode_steps > 0, 'budget.max_episode_steps',
                self.max_episode_steps, 'must be > 0')
        require(self.max_episode_time_s > 0, 'budget.max_episode_time_s',
                self.max_episode_time_s, 'must be > 0 seconds')
        require(self.verify_period_s > 0, 'budget.verify_period_s', self.verify_period_s,
                'must be > 0 seconds')
        require(self.reset_timeout_s > 0, 'budget.reset_timeout_s', self.reset_timeout_s,
                'must be > 0 seconds')
        require(self.attempts >= 1, 'budget.attempts', self.attempts,
                'must be >= 1 (k of pass@k; 1 = no in-context retry)')


@dataclass(frozen=True)
class ResetInfo:
    start_pose: tuple[float, ...] = ()
    observed_pose: tuple[float, ...] = ()
    attempts: int = 1
    method: str = ''    # 'robot', 'sim_place' or 'sim_place (fallback)', as the cell did it
    #: why each attempt before the verified one failed (a robot's reason for the fallback)
    retried_after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    """What happened in the episode so far (cumulative since ``start_episode``)."""

    steps: int
    fault: str | None = None          # policy fault reason, if the policy faulted
    safety_abort: str | None = None   # safety abort reason, if the supervisor aborted
    cell_lost: str | None = None      # the cell / controller process died
    #: the cell's time of its latest state (s), where known: a verdict judges frames no
    #: older than this (a lockstep cell held at a checkpoint shows exactly this tick)
    stamp_s: float | None = None


@dataclass(frozen=True)
class Checkpoints:
    """Where a controller that can hold the cell (a lockstep cell) stops it for a verdict:
    every ``every`` steps of the episode and at step ``last`` (the step limit). A held cell
    does not step until :meth:`ControllerPort.resume`, so the tick a verdict judges, and the
    tick an episode ends on, do not depend on how fast the verifier answers."""

    every: int
    last: int


@dataclass(frozen=True)
class VerifyOutcome:
    success: bool
    score: float
    verdicts: tuple[dict[str, Any], ...] = ()
    #: the views gave no readable decision (never a success)
    invalid: bool = False
    #: the task's stages the views show reached now (VerifyResult.stages)
    stages: tuple[str, ...] = ()


@dataclass
class RunSummary:
    trials: list[TrialRecord]
    stop_reason: str
    #: why the run stopped, for people, where the reason alone does not say (disk_low)
    stop_detail: str = ''

    @property
    def n_success(self) -> int:
        return sum(t.success for t in self.trials)

    @property
    def success_rate(self) -> float:
        return self.n_success / len(self.trials) if self.trials else 0.0

    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.n_success, len(self.trials))

    @property
    def max_attempts(self) -> int:
        return max((len(t.attempts) for t in self.trials), default=0)

    def pass_at(self, k: int) -> float:
        """Fraction of subtasks (trials that reached their episode) solved within ``k``
        attempts; pass_at(1) counts first attempts only."""
        return pass_at_k([[bool(a['success']) for a in t.attempts]
                          for t in self.trials if t.attempts], k)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval()
        return {'n_trials': len(self.trials), 'n_success': self.n_success,
                'success_rate': self.success_rate, 'ci_low': low, 'ci_high': high,
                'stop_reason': self.stop_reason,
                **({'stop_detail': self.stop_detail} if self.stop_detail else {}),
                **({'pass_at_1': self.pass_at(1), 'pass_at_k': self.pass_at(self.max_attempts),
                    'k': self.max_attempts} if self.max_attempts > 1 else {}),
                'outcomes': {o: sum(t.outcome == o for t in self.trials) for o in OUTCOMES
                             if any(t.outcome == o for t in self.trials)},
                'trials': [t.to_dict() for t in self.trials]}


def _merge_sandbox(record: TrialRecord, episode: Mapping[str, Any]) -> None:
    """Add one attempt's sandbox report to the trial's: counts add up, names accumulate
    (the one place that bounds them)."""
    record.sandbox.update({k: episode[k] for k in ('confinement', 'allow_unconfined')
                           if k in episode})
    refused = episode.get('sandbox_denials') or {}
    into = record.sandbox_denials
    into['count'] = int(into.get('count', 0)) + int(refused.get('count', 0) or 0)
    first = into.setdefault('first', [])
    for name in refused.get('first') or ():
        if name not in first and len(first) < MAX_NAMED_DENIALS:
            first.append(str(name))


class CellPort(Protocol):
    def reset(self, seed: int, timeout_s: float) -> ResetInfo: ...

    def make_safe(self) -> None: ...


class ControllerPort(Protocol):
    def start_episode(self, seed: int, retry_index: int = 0,
                      checkpoints: Checkpoints | None = None) -> None:
        """Start an episode. pass@k retries pass ``retry_index`` >= 1: continue from the
        current scene (no reset); progress counts steps from this call. A controller that
        can hold its cell (lockstep) holds it at ``checkpoints``; others ignore them."""
        ...

    def resume(self) -> None:
        """Let a cell held at a checkpoint go on (a no-op where nothing is held)."""
        ...

    def poll(self, timeout_s: float) -> Progress: ...

    def stop_episode(self) -> Mapping[str, int]:
        """Stop the episode; return the controller's counters for it (e.g. ``late_acts``,
        ``resent_commands``), empty when it could not tell."""
        ...

    def sandbox(self) -> Mapping[str, Any]:
        """After stop_episode: the policy's confinement (``confinement``,
        ``allow_unconfined``) and what its sandbox refused in the episode
        (``sandbox_denials``: ``count``, ``first``); may be empty."""
        ...


class VerifierPort(Protocol):
    def verify(self, not_before_s: float | None = None) -> VerifyOutcome:
        """Judge the cell now, from frames stamped ``not_before_s`` or later where it can
        tell (a frame still on its way is waited for, briefly)."""
        ...


class RecorderPort(Protocol):
    def start(self, record: TrialRecord) -> str: ...

    def finish(self, record: TrialRecord) -> None: ...


class SpacePort(Protocol):
    """Room on the records' disk (``enpire_rollout.core.disk.DiskGuard``). Each returns ''
    when there is room, else why not; the run then stops with ``disk_low``."""

    def before_trial(self) -> str:
        """Before a trial starts: a trial that may not start is not started."""
        ...

    def during_trial(self) -> str:
        """While the episode runs (cheap, called every poll): a recording that may not go
        on stops early, the trial ending ``aborted`` (truncated by disk)."""
        ...


class NullRecorder:
    """Records nothing (``record: false``)."""

    def start(self, record: TrialRecord) -> str:
        return ''

    def finish(self, record: TrialRecord) -> None:
        return None


def new_trial_id(cell_id: str, seed: int) -> str:
    return f'{cell_id}-s{seed}-{secrets.token_hex(4)}'


def seed_sequence(seeds: Iterable[int] | None, seed_start: int, count: int) -> Iterator[int]:
    """Explicit seeds, else ``seed_start, seed_start + 1, ...`` (``count`` of them)."""
    if seeds:
        yield from list(seeds)[:count] if count > 0 else seeds
    else:
        yield from itertools.islice(itertools.count(seed_start), count)


class EpisodeTicks:
    """Follows a cell's state ticks during one episode and notices a cell that restarted.

    Within an episode ticks only grow (a pass@k retry continues them); a tick lower than one
    already seen *after the episode made progress* means the cell node restarted (a fresh
    scene at tick 0): the trial cannot go on against a different scene. The first ticks of an
    episode may still carry the previous episode's last tick (the reset's tick 0 can arrive
    after the episode started), so a drop before any progress only rebases.
    """

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        """A new episode begins."""
        self._last: int | None = None
        self._advances = 0

    def observe(self, tick: int) -> str:
        """Feed one state tick; returns why the episode is void ('' when it is fine)."""
        last, self._last = self._last, int(tick)
        if last is None or tick == last:
            return ''
        if tick > last:
            self._advances += 1
            return ''
        if self._advances == 0:
            return ''
        return (f'cell restarted mid-episode: state tick went from {last} back to {tick} '
                '(the cell node was restarted and the scene is no longer the trial\'s)')


class TrialRunner:
    """Runs trials of one revision on one cell through ports, under a budget.

    Args:
        cell, controller, verifier, recorder: the ports.
        clock: monotonic time source (sim time in lockstep is not used for budgets: budgets
            are about the wall time a person waits).
        control_rate_hz: task rate, to turn ``verify_period_s`` into steps.
        on_trial: called with each finished TrialRecord (publish, store, print progress).
        on_phase: called with (trial index, phase) as a trial moves through its phases.
        cancelled: returns True once the caller wants to stop; checked between steps.
        stages: the task's stages (its contract's ``stages``), in order: each trial records
            which of them a verdict showed reached during it (TrialRecord.stages).
        space: room on the records' disk (None: not watched, e.g. nothing is recorded).
    """

    def __init__(self, *, cell: CellPort, controller: ControllerPort, verifier: VerifierPort,
                 recorder: RecorderPort | None, clock: Clock, control_rate_hz: float,
                 wall_time: Callable[[], float] | None = None,
                 on_trial: Callable[[TrialRecord], None] | None = None,
                 on_phase: Callable[[int, str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None,
                 trial_id_factory: Callable[[str, int], str] = new_trial_id,
                 stages: Sequence[str] = (), space: SpacePort | None = None) -> None:
        self.cell, self.controller, self.verifier = cell, controller, verifier
        self.recorder = recorder or NullRecorder()
        self.clock = clock
        self.rate_hz = control_rate_hz
        self.wall_time = wall_time or clock.now_s
        self.on_trial = on_trial or (lambda _r: None)
        self.on_phase = on_phase or (lambda _i, _p: None)
        self.cancelled = cancelled or (lambda: False)
        self.trial_id_factory = trial_id_factory
        self.stages = tuple(stages)
        self.space = space
        self._attempt_stages: set[str] = set()   # the stages the current attempt reached
        self._space_low = ''   # why the disk guard stopped the episode in progress

    def run(self, *, experiment_id: str, revision_id: str, cell_id: str, task: str,
            seeds: Iterable[int], budget: BudgetConfig) -> RunSummary:
        start = self.clock.now_s()
        trials: list[TrialRecord] = []
        consecutive_faults = 0
        stop_reason, stop_detail = 'completed', ''
        self._space_low = ''
        for index, seed in enumerate(seeds):
            if self.cancelled():
                stop_reason = 'cancelled'
                break
            if budget.max_trials and index >= budget.max_trials:
                stop_reason = 'budget_max_trials'
                break
            if budget.max_wall_time_s and self.clock.now_s() - start >= budget.max_wall_time_s:
                stop_reason = 'budget_wall_time'
                break
            low = self.space.before_trial() if self.space is not None else ''
            if low:
                # Not started: a trial the disk cannot hold would fail mid-recording.
                stop_reason, stop_detail = 'disk_low', low
                break
            record = TrialRecord(experiment_id=experiment_id,
                                 trial_id=self.trial_id_factory(cell_id, seed),
                                 revision_id=revision_id, cell_id=cell_id, task=task,
                                 seed=int(seed), index=index,
                                 stages=dict.fromkeys(self.stages, False))
            self._run_one(record, budget)
            trials.append(record)
            self.on_trial(record)
            if record.outcome == ABORTED and self.cancelled():
                stop_reason = 'cancelled'
                break
            if self._space_low:
                stop_reason, stop_detail = 'disk_low', self._space_low
                break
            if record.error_code == CellPausedError.code:
                # The cell paused itself after failed resets and raised an alert: every
                # further trial would be refused the same way until a person resumes it.
                stop_reason = 'cell_paused'
                break
            consecutive_faults = consecutive_faults + 1 if record.outcome in FAULT_OUTCOMES else 0
            limit = budget.max_consecutive_faults
            if limit and consecutive_faults >= limit:
                stop_reason = 'consecutive_faults'
                break
        return RunSummary(trials, stop_reason, stop_detail)

    # -- one trial ---------------------------------------------------------------------------
    def _run_one(self, record: TrialRecord, budget: BudgetConfig) -> None:
        record.started_at = self.wall_time()
        try:
            record.record_dir = self.recorder.start(record) or ''
        except EnpireError as err:  # recording is required when asked for
            self._end(record, ABORTED, f'recorder failed to start: {err}', err)
            return
        try:
            self._reset(record, budget)
            if record.outcome != RESET_FAILED:
                self._attempts(record, budget)
        except CellUnavailableError as err:
            self._end(record, ABORTED, f'cell unavailable: {err}', err)
        finally:
            self._make_safe(record)
            record.ended_at = self.wall_time()
            self.on_phase(record.index, 'recording')
            try:
                self.recorder.finish(record)
            except EnpireError as err:
                record.outcome, record.success = ABORTED, False
                record.reason = f'record could not be written: {err}'
                record.error_code, record.error_msg = err.code, str(err)

    def _reset(self, record: TrialRecord, budget: BudgetConfig) -> None:
        self.on_phase(record.index, 'reset')
        t0 = self.clock.now_s()
        try:
            info = (self.cell.reset(record.seed, budget.reset_timeout_s,
                                    stage=budget.reset_stage) if budget.reset_stage
                    else self.cell.reset(record.seed, budget.reset_timeout_s))
            record.reset = {'start_pose': list(info.start_pose),
                            'observed_pose': list(info.observed_pose),
                            'attempts': info.attempts}
            if info.method:
                record.reset['method'] = info.method
            if info.retried_after:
                record.reset['retried_after'] = list(info.retried_after)
            if budget.reset_stage:
                record.reset['stage'] = budget.reset_stage
        except ResetFailedError as err:
            self._end(record, RESET_FAILED, str(err), err)
        except EnpireTimeoutError as err:
            # A reset that does not finish in time (a dying cell whose services still show
            # in the graph) failed like any other: this trial ends, the run goes on, and a
            # dead cell stops it through max_consecutive_faults.
            self._end(record, RESET_FAILED, f'reset timed out: {err}', err)
        finally:
            record.reset_s = self.clock.now_s() - t0

    def _attempts(self, record: TrialRecord, budget: BudgetConfig) -> None:
        """Up to ``budget.attempts`` episodes on one reset, each after a failed verdict."""
        steps = duration = 0.0
        for retry in range(budget.attempts):
            record.steps, record.duration_s = 0, 0.0
            self._attempt_stages = set()
            self._episode(record, budget, retry)
            steps += record.steps
            duration += record.duration_s
            record.attempts.append({
                'retry_index': retry, 'outcome': record.outcome, 'reason': record.reason,
                'success': record.success, 'steps': record.steps,
                'duration_s': record.duration_s, 'score': record.score,
                'stages': [s for s in self.stages if s in self._attempt_stages]})
            if record.outcome not in (FAILURE, TIMEOUT) or self.cancelled():
                break
        record.steps, record.duration_s = int(steps), duration
        if len(record.attempts) > 1:
            record.reason = f'attempt {len(record.attempts)}/{budget.attempts}: {record.reason}'

    def _episode(self, record: TrialRecord, budget: BudgetConfig, retry_index: int = 0) -> None:
        self.on_phase(record.index, 'running' if not retry_index else f'retry {retry_index}')
        verify_every = max(1, round(budget.verify_period_s * self.rate_hz))
        next_verify = verify_every
        t0 = self.clock.now_s()
        try:
            self.controller.start_episode(
                record.seed, retry_index=retry_index,
                checkpoints=Checkpoints(every=verify_every, last=budget.max_episode_steps))
        except PolicyError as err:
            record.duration_s = self.clock.now_s() - t0
            self._end(record, POLICY_FAULT, str(err), err)
            return
        ended: tuple[str, str] | None = None
        last_stamp: float | None = None   # the cell's time of its latest state
        try:
            while ended is None:
                if self.cancelled():
                    ended = (ABORTED, 'cancelled by the caller')
                    break
                progress = self.controller.poll(timeout_s=min(1.0, budget.max_episode_time_s))
                record.steps = progress.steps
                last_stamp = progress.stamp_s
                if progress.cell_lost:
                    ended = (ABORTED, progress.cell_lost)
                elif progress.fault:
                    ended = (POLICY_FAULT, progress.fault)
                elif progress.safety_abort:
                    ended = (SAFETY_ABORT, progress.safety_abort)
                elif progress.steps >= next_verify or progress.steps >= budget.max_episode_steps:
                    next_verify = progress.steps + verify_every
                    verdict = self._verify(record, progress.stamp_s)
                    if verdict is not None and verdict.success:
                        ended = (SUCCESS, 'verified success')
                    elif progress.steps >= budget.max_episode_steps:
                        ended = (FAILURE, f'step limit {budget.max_episode_steps} reached')
                    else:
                        self.controller.resume()
                if ended is None and self.clock.now_s() - t0 >= budget.max_episode_time_s:
                    ended = (TIMEOUT, f'episode time limit {budget.max_episode_time_s:g} s')
                if ended is None and self.space is not None:
                    self._space_low = self.space.during_trial()
                    if self._space_low:
                        ended = (ABORTED, self._space_low)
        finally:
            for key, value in (self.controller.stop_episode() or {}).items():
                record.controller[key] = record.controller.get(key, 0) + int(value)
            _merge_sandbox(record, self.controller.sandbox() or {})
            record.duration_s = self.clock.now_s() - t0
        outcome, reason = ended
        if outcome in (SUCCESS, FAILURE, TIMEOUT):
            # The final verdict is taken with the cell holding still: it decides success.
            self.on_phase(record.index, 'verifying')
            final = self._verify(record, last_stamp)
            if final is None:
                self._end(record, ABORTED, 'final verification failed: ' + record.error_msg)
                return
            if final.invalid:
                fused = final.verdicts[-1].get('detail', '') if final.verdicts else ''
                outcome, reason = INVALID, ('the final verdict could not be read from the '
                                            f'cameras: {fused}'.rstrip(': '))
            elif final.success:
                outcome, reason = SUCCESS, 'verified success'
            elif outcome == SUCCESS:
                outcome, reason = FAILURE, 'success seen during the episode did not hold'
        self._end(record, outcome, reason)

    def _verify(self, record: TrialRecord, not_before_s: float | None = None
                ) -> VerifyOutcome | None:
        try:
            verdict = self.verifier.verify(not_before_s=not_before_s)
        except (VerificationError, EnpireTimeoutError, CellUnavailableError) as err:
            # No verdict (a verifier that died and did not come back in time): the trial
            # ends aborted ('final verification failed'), never a success; the run goes on.
            record.error_code, record.error_msg = err.code, str(err)
            return None
        record.score = float(verdict.score)
        record.verdicts = [dict(v) for v in verdict.verdicts]
        # A stage once seen stays reached (the tie let go after it was grasped was grasped).
        for stage in verdict.stages:
            if stage in record.stages:
                record.stages[stage] = True
                self._attempt_stages.add(stage)
        return verdict

    def _end(self, record: TrialRecord, outcome: str, reason: str,
             err: EnpireError | None = None) -> None:
        record.outcome, record.reason = outcome, reason
        record.success = outcome == SUCCESS
        if err is not None:
            record.error_code, record.error_msg = err.code, str(err)

    def _make_safe(self, record: TrialRecord) -> None:
        try:
            self.cell.make_safe()
        except EnpireError as err:
            if record.outcome == SUCCESS:
                return
            record.reason = (record.reason + f'; make_safe failed: {err}').lstrip('; ')

