"""Fusion of per-view verdicts into one decision (all / any / mean)."""

from __future__ import annotations

from collections.abc import Sequence

from enpire_common.errors import UnknownNameError
from enpire_reward.core.ports import FUSED_VIEW, Verdict

FUSION_RULES = ('all', 'any', 'mean')


def fuse(verdicts: Sequence[Verdict], rule: str, threshold: float) -> Verdict:
    """Combine per-view verdicts.

    ``all``: success iff every view succeeds, score = min; ``any``: success iff one view
    succeeds, score = max; ``mean``: score = mean, success iff ``score > threshold``.
    The pose comes from the most confident view; latency is the sum.

    Raises:
        UnknownNameError: ``rule`` is not one of all, any, mean.
        ValueError: no verdicts.
    """
    if rule not in FUSION_RULES:
        raise UnknownNameError('fusion rule', rule, FUSION_RULES)
    if not verdicts:
        raise ValueError('fuse() needs at least one verdict')
    scores = [v.score for v in verdicts]
    if rule == 'all':
        success, score = all(v.success for v in verdicts), min(scores)
    elif rule == 'any':
        success, score = any(v.success for v in verdicts), max(scores)
    else:
        score = sum(scores) / len(scores)
        success = score > threshold
    best = max(verdicts, key=lambda v: v.confidence)
    failed = [f'{v.view} ({v.detail})' for v in verdicts if not v.success]
    detail = (f'{rule} of {len(verdicts)} view(s)'
              + (f'; failed: {"; ".join(failed)}' if failed else ''))
    return Verdict(view=FUSED_VIEW, backend=verdicts[0].backend, success=bool(success),
                   score=float(score), threshold=verdicts[0].threshold,
                   confidence=min(v.confidence for v in verdicts),
                   object_pose=best.object_pose,
                   latency_s=sum(v.latency_s for v in verdicts), detail=detail)
