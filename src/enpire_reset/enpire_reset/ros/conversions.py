"""Message <-> core conversions of enpire_reset."""

from __future__ import annotations

from enpire_interfaces.action import ResetCell
from enpire_interfaces.msg import Verdict
from enpire_interfaces.srv import VerifySuccess
from enpire_reset.core.ports import ResetVerdict
from enpire_reset.core.procedure import ResetOutcome


def verdict_from_response(resp: VerifySuccess.Response) -> ResetVerdict:
    """The fused verdict (last) carries the decision; the pose comes from the first verdict
    that has one (fused first)."""
    verdicts = list(resp.verdicts)
    fused = verdicts[-1] if verdicts else None
    pose: tuple[float, ...] = ()
    for v in ([fused] if fused else []) + verdicts:
        if len(v.object_pose) >= 1:
            pose = tuple(float(x) for x in v.object_pose)
            break
    detail = resp.error_msg or (fused.detail if fused else '')
    return ResetVerdict(bool(resp.success), float(resp.score), pose, int(resp.error_code),
                        detail, fused)


def result_from_outcome(outcome: ResetOutcome, result: ResetCell.Result) -> ResetCell.Result:
    result.success = bool(outcome.success)
    result.attempts = int(outcome.attempts)
    result.duration_s = float(outcome.duration_s)
    result.method = outcome.method
    result.retried_after = [str(r) for r in outcome.reasons]
    if outcome.placement is not None:
        result.start_pose = [float(v) for v in outcome.placement.object_pose]
    if outcome.verdict is not None:
        result.observed_pose = [float(v) for v in outcome.verdict.observed_pose]
        raw = outcome.verdict.raw
        if isinstance(raw, Verdict):
            result.verdict = raw
        else:
            result.verdict = Verdict(view='fused', success=bool(outcome.verdict.success),
                                     score=float(outcome.verdict.score),
                                     object_pose=list(result.observed_pose),
                                     detail=outcome.verdict.detail)
    return result
