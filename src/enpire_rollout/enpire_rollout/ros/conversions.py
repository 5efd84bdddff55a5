"""ROS message <-> core value conversions of the rollout package (the only place that does).

The trial mapper (:func:`trial_to_msg`, :func:`trial_from_msg`) is the one way between a
:class:`~enpire_rollout.core.trial_record.TrialRecord` and its ``TrialResult`` message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time

from enpire_interfaces.msg import Command, SafetyEvent, TrialResult, Verdict
from enpire_rollout.core.safety import SafetyDecision
from enpire_rollout.core.trial_record import TrialRecord

#: error_msg is cut to this many characters in a TrialResult (trial.json keeps it whole).
MAX_ERROR_MSG = 2000


def stamp_ns(stamp: Time) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_s(stamp: Time) -> float:
    """Seconds of a ``builtin_interfaces/Time`` (as the verifier reads a frame's stamp)."""
    return stamp.sec + stamp.nanosec * 1e-9


def time_msg(t: float) -> Time:
    """A ``builtin_interfaces/Time`` of epoch seconds."""
    sec = int(t)
    return Time(sec=sec, nanosec=int((t - sec) * 1e9))


def seconds(stamp: Time) -> float:
    """Epoch seconds of a ``builtin_interfaces/Time`` (the inverse of :func:`time_msg`)."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def verdict_to_dict(v: Any) -> dict[str, Any]:
    """A Verdict message (or anything shaped like one) as a record's verdict dict."""
    return {'view': v.view, 'backend': v.backend, 'success': bool(v.success),
            'invalid': bool(getattr(v, 'invalid', False)),
            'score': float(v.score), 'threshold': float(v.threshold),
            'confidence': float(v.confidence),
            # null: a component the view cannot measure (NaN is not JSON)
            'object_pose': [float(x) if math.isfinite(x) else None for x in v.object_pose],
            'latency_s': float(v.latency_s), 'evidence_path': v.evidence_path,
            'detail': v.detail}


def verdict_from_dict(v: Mapping[str, Any]) -> Verdict:
    """A record's verdict dict as a Verdict message (missing keys take neutral values)."""
    return Verdict(
        view=str(v.get('view', '')), backend=str(v.get('backend', '')),
        success=bool(v.get('success', False)), invalid=bool(v.get('invalid', False)),
        score=float(v.get('score', 0.0)),
        threshold=float(v.get('threshold', 0.0)), confidence=float(v.get('confidence', 1)),
        object_pose=[math.nan if x is None else float(x) for x in v.get('object_pose', [])],
        latency_s=float(v.get('latency_s', 0.0)), evidence_path=str(v.get('evidence_path', '')),
        detail=str(v.get('detail', '')))


def trial_to_msg(record: TrialRecord) -> TrialResult:
    """The TrialResult of a finished trial (``trial_events``, RunTrials feedback and result)."""
    return TrialResult(
        experiment_id=record.experiment_id, trial_id=record.trial_id,
        revision_id=record.revision_id, cell_id=record.cell_id, task=record.task,
        seed=int(record.seed), outcome=record.outcome, reason=record.reason,
        success=bool(record.success), score=float(record.score), steps=int(record.steps),
        duration_s=float(record.duration_s), reset_s=float(record.reset_s),
        started_at=time_msg(record.started_at), ended_at=time_msg(record.ended_at),
        record_dir=record.record_dir, error_code=int(record.error_code),
        error_msg=record.error_msg[:MAX_ERROR_MSG], attempts=record.n_attempts,
        solved_attempt=record.solved_attempt,
        verdicts=[verdict_from_dict(v) for v in record.verdicts],
        stages=[s for s, ok in record.stages.items() if ok])


def trial_from_msg(msg: TrialResult) -> TrialRecord:
    """The TrialRecord a TrialResult carries (:func:`trial_to_msg` the other way).

    What the message leaves out keeps its default: ``index``, ``reset``, ``controller``,
    ``sandbox``, the stages not reached, and of each attempt only its success (trial.json
    under ``record_dir`` has it all). ``trial_to_msg(trial_from_msg(m))`` gives ``m`` back.
    """
    solved = int(msg.solved_attempt)
    return TrialRecord(
        experiment_id=msg.experiment_id, trial_id=msg.trial_id, revision_id=msg.revision_id,
        cell_id=msg.cell_id, task=msg.task, seed=int(msg.seed), index=0, outcome=msg.outcome,
        reason=msg.reason, success=bool(msg.success), score=float(msg.score),
        steps=int(msg.steps), duration_s=float(msg.duration_s), reset_s=float(msg.reset_s),
        started_at=seconds(msg.started_at), ended_at=seconds(msg.ended_at),
        verdicts=[verdict_to_dict(v) for v in msg.verdicts], record_dir=msg.record_dir,
        error_code=int(msg.error_code), error_msg=msg.error_msg,
        attempts=[{'success': i + 1 == solved} for i in range(max(1, int(msg.attempts)))],
        stages=dict.fromkeys(msg.stages, True))


def command_values(msg: Command) -> np.ndarray:
    """The action vector of a Command as float64 (may hold NaN: the filter checks it)."""
    return np.asarray(msg.action, dtype=np.float64)


def applied_command(src: Command, applied: np.ndarray) -> Command:
    """The filtered Command: the source's header, tick and revision with ``applied`` values."""
    out = Command()
    out.header = src.header
    out.tick = src.tick
    out.revision_id = src.revision_id
    out.action = [float(v) for v in applied]
    return out


def safety_event(decision: SafetyDecision, cell_id: str, revision_id: str,
                 stamp: Time, frame_id: str = '') -> SafetyEvent:
    """A SafetyEvent message from a core decision."""
    msg = SafetyEvent()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.cell_id = cell_id
    msg.kind = int(decision.kind)
    msg.action = int(decision.action)
    msg.requested = [float(v) for v in decision.requested]
    msg.applied = [float(v) for v in decision.applied] if decision.applied is not None else []
    msg.revision_id = revision_id
    msg.detail = decision.detail
    return msg


