"""Fusion of per-view verdicts into one decision (all / any / mean), with confidences and
the ``invalid`` class.

A view is *invalid* when it could not be read (its object not found: occluded, out of view,
an unreadable image; or a confidence under the task's floor). Invalid views never count as
a success; ``all`` and ``any`` read them as *unknown* (Kleene's three-valued logic), so a
readable view decides whenever it can:

- ``all``: failure when a readable view fails (whatever the others would say); otherwise
  invalid when a view is unreadable (the rule cannot be confirmed on it); otherwise success.
- ``any``: success when a readable view succeeds; otherwise invalid when a view is
  unreadable (it might have seen the success); otherwise failure.
- ``mean``: the confidence-weighted mean score of the readable views, success iff it is
  above the threshold; invalid only when no view is readable.

An invalid fused verdict is never a success (AutoEval's third class: it catches the false
successes of a scene that was not what it should have been).
"""

from __future__ import annotations

from collections.abc import Sequence

from enpire_common.errors import UnknownNameError
from enpire_reward.core.ports import FUSED_VIEW, Verdict

FUSION_RULES = ('all', 'any', 'mean')


def fuse(verdicts: Sequence[Verdict], rule: str, threshold: float) -> Verdict:
    """Combine per-view verdicts (see the module doc for the rules and ``invalid``).

    Scores: ``all`` the minimum, ``any`` the maximum, ``mean`` the confidence-weighted mean
    (equal weights where every confidence is 0), each over the readable views (0 when none).
    The confidence is the minimum over the readable views (``any``: over the ones that
    succeeded, when one did); the pose comes from the most confident readable view; latency
    is the sum.

    Raises:
        UnknownNameError: ``rule`` is not one of all, any, mean.
        ValueError: no verdicts.
    """
    if rule not in FUSION_RULES:
        raise UnknownNameError('fusion rule', rule, FUSION_RULES)
    if not verdicts:
        raise ValueError('fuse() needs at least one verdict')
    readable = [v for v in verdicts if not v.invalid]
    unread = [v for v in verdicts if v.invalid]
    scores = [v.score for v in readable]
    deciding = readable
    if rule == 'all':
        failed_view = any(not v.success for v in readable)
        invalid = bool(unread) and not failed_view
        success = not invalid and not failed_view
        score = min(scores) if scores else 0.0
    elif rule == 'any':
        success = any(v.success for v in readable)
        invalid = bool(unread) and not success
        deciding = [v for v in readable if v.success] or readable
        score = max(scores) if scores else 0.0
    else:
        invalid = not readable
        weights = [max(0.0, v.confidence) for v in readable]
        if sum(weights) <= 0.0:
            weights = [1.0] * len(readable)
        score = (sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights)
                 if readable else 0.0)
        success = bool(readable) and score > threshold
    best = max(readable or verdicts, key=lambda v: v.confidence)
    failed = [f'{v.view} ({v.detail})' for v in readable if not v.success]
    parts = [f'{rule} of {len(verdicts)} view(s)']
    if unread:
        parts.append(f'unreadable: {"; ".join(f"{v.view} ({v.detail})" for v in unread)}')
    if failed:
        parts.append(f'failed: {"; ".join(failed)}')
    if invalid:
        parts[0] = f'INVALID: {parts[0]}'
    return Verdict(view=FUSED_VIEW, backend=verdicts[0].backend,
                   success=bool(success and not invalid), score=float(score),
                   threshold=verdicts[0].threshold,
                   confidence=min((v.confidence for v in deciding), default=0.0),
                   object_pose=best.object_pose if not best.invalid else (),
                   latency_s=sum(v.latency_s for v in verdicts), detail='; '.join(parts),
                   invalid=invalid)
