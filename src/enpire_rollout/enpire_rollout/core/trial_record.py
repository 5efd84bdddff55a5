"""The one record of a trial, from the runner to trial.json, the message and the store."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from enpire_common.errors import OK

SUCCESS, FAILURE, TIMEOUT = 'success', 'failure', 'timeout'
SAFETY_ABORT, POLICY_FAULT, RESET_FAILED, ABORTED = (
    'safety_abort', 'policy_fault', 'reset_failed', 'aborted')
#: The final verdict could not be read from the cameras (occluded, out of view, unreadable):
#: never a success, and not a failure the policy can be credited or blamed for.
INVALID = 'invalid'
OUTCOMES = (SUCCESS, FAILURE, TIMEOUT, SAFETY_ABORT, POLICY_FAULT, RESET_FAILED, ABORTED,
            INVALID)


@dataclass
class TrialRecord:
    """Everything known about one finished trial: THE record of a trial.

    The runner fills it; trial.json is :meth:`to_dict`; ``TrialResult`` is its message
    (``enpire_rollout.ros.conversions.trial_to_msg`` / ``trial_from_msg``); the experiment
    store's row and the agent's outcome are built from it (``enpire_evolution``).
    """

    experiment_id: str
    trial_id: str
    revision_id: str
    cell_id: str
    task: str
    seed: int
    index: int
    outcome: str = ABORTED
    reason: str = ''
    success: bool = False
    score: float = 0.0
    steps: int = 0
    duration_s: float = 0.0
    reset_s: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    reset: dict[str, Any] = field(default_factory=dict)
    record_dir: str = ''
    error_code: int = OK
    error_msg: str = ''
    #: pass@k: one entry per attempt (retry_index, outcome, reason, success, steps,
    #: duration_s, score); empty when the trial never reached its episode.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    #: The controller's counters summed over the attempts: ``late_acts`` (acts past the
    #: deadline in wall time, CPU time within it), ``resent_commands`` (lost-message
    #: recoveries); see ControllerPort.stop_episode.
    controller: dict[str, int] = field(default_factory=dict)
    #: How the policy was confined (ControllerPort.sandbox): ``confinement``
    #: (landlock|bwrap|none) and ``allow_unconfined``.
    sandbox: dict[str, Any] = field(default_factory=dict)
    #: What its sandbox refused over the attempts, in the policy host's own shape:
    #: ``count`` and ``first`` (the first few refused operations).
    sandbox_denials: dict[str, Any] = field(
        default_factory=lambda: {'count': 0, 'first': []})
    #: The task's stages (its contract's ``stages``, in order) -> whether a verdict showed
    #: it reached during the trial (over all attempts; each attempt's own are in
    #: ``attempts``). Empty for a task without stages.
    stages: dict[str, bool] = field(default_factory=dict)

    @property
    def n_attempts(self) -> int:
        """Attempts made on the subtask (1 without pass@k, and for a trial with none)."""
        return max(1, len(self.attempts))

    @property
    def solved_attempt(self) -> int:
        """The 1-based attempt that succeeded; 0 when the trial did not succeed."""
        return next((i + 1 for i, a in enumerate(self.attempts) if a.get('success')),
                    1 if self.success else 0)

    def to_dict(self) -> dict[str, Any]:
        """Every field (trial.json's ``trial`` data)."""
        return dataclasses.asdict(self)

    def summary(self) -> dict[str, Any]:
        """The fields a person reads (``enpire trial run --json``), rounded for reading."""
        return {'trial_id': self.trial_id, 'revision_id': self.revision_id,
                'cell_id': self.cell_id, 'seed': int(self.seed), 'outcome': self.outcome,
                'reason': self.reason, 'success': bool(self.success),
                'score': round(float(self.score), 6), 'steps': int(self.steps),
                'duration_s': round(float(self.duration_s), 3),
                'attempts': self.n_attempts, 'solved_attempt': self.solved_attempt,
                'reset_s': round(float(self.reset_s), 3), 'record_dir': self.record_dir,
                'error_code': int(self.error_code), 'error_msg': self.error_msg,
                **({'stages': [s for s, ok in self.stages.items() if ok]}
                   if self.stages else {})}
