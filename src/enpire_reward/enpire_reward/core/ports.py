"""Ports and result types of the verifier (no ROS, no simulator).

A *verifier* judges a task from camera images only: it never sees simulator state. It is
built from a *segmenter* (image -> soft mask of the object) and a pose/score stage; backends
come from the task plugins (``enpire_tasks``: Push-T's ``opencv-v1``) or are registered
generically (``yolo`` and ``sam2`` planned) through :mod:`enpire_reward.core.registry`. The
backend's result types (:class:`Estimate`, :class:`Segmentation`) and protocols live with the
plugin interface (:mod:`enpire_tasks.estimation`) and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from enpire_tasks.estimation import Estimate, PoseEstimator, Segmentation, Segmenter

GOAL_SUCCESS = 'success'
GOAL_RESET = 'reset'
GOALS = (GOAL_SUCCESS, GOAL_RESET)
FUSED_VIEW = 'fused'


@dataclass(frozen=True)
class Verdict:
    """One judgement of one camera view, or the fused judgement (``view == 'fused'``).

    Attributes:
        view: camera view name, or ``'fused'``.
        backend: backend id, e.g. ``'opencv-v1'``.
        success: the decision for the requested goal.
        score: task score in [0, 1] (Push-T: goal coverage fraction).
        threshold: the threshold applied to ``score``.
        confidence: backend confidence in [0, 1] (0 when no object was found).
        object_pose: estimated object pose in task units (Push-T: x_px, y_px, theta_rad);
            empty when none was found.
        latency_s: time spent on this verdict, seconds.
        evidence_path: path of the evidence PNG, empty when not written.
        detail: one human-readable line saying why.
        invalid: the view could not be read (no object found: occluded, out of view,
            unreadable; or its confidence under the task's ``success.min_confidence``).
            An invalid verdict is never a success. Fused: the views gave no readable
            decision under the fusion rule (:func:`enpire_reward.core.fusion.fuse`).
    """

    view: str
    backend: str
    success: bool
    score: float
    threshold: float
    confidence: float
    object_pose: tuple[float, ...] = ()
    latency_s: float = 0.0
    evidence_path: str = ''
    detail: str = ''
    invalid: bool = False


@dataclass(frozen=True)
class VerifyResult:
    """The fused decision plus the per-view verdicts (views first, ``fused`` last).

    Three outcomes, as AutoEval's: success, failure, and ``invalid`` (the cameras could not
    tell: never a success, and recorded as such).
    """

    success: bool
    score: float
    fusion: str
    goal: str
    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)
    #: The task's stages (its contract's ``stages``) the views show reached now, in the
    #: contract's order (success goal of a task with a ``stage_rule``; empty otherwise).
    stages: tuple[str, ...] = ()
    #: view -> the evidence overlay (BGR: mask, goal and estimated outlines, caption) of the
    #: views ``verify(overlays=...)`` asked for; empty otherwise.
    overlays: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fused(self) -> Verdict:
        return self.verdicts[-1]

    @property
    def invalid(self) -> bool:
        """The views gave no readable decision (the fused verdict is invalid)."""
        return bool(self.verdicts) and self.fused.invalid

    def view(self, name: str) -> Verdict:
        """The verdict of view ``name``; KeyError if it was not judged."""
        for v in self.verdicts:
            if v.view == name:
                return v
        raise KeyError(name)


@runtime_checkable
class Verifier(Protocol):
    """Judges a goal from camera images only (never simulator state).

    ``verify`` raises :class:`enpire_common.errors.BadImageError` for unusable images and
    :class:`enpire_common.errors.ViewUnavailableError` for unknown/missing views.
    """

    backend_id: str
    views: Sequence[str]

    def verify(self, images: Mapping[str, np.ndarray], goal: str = GOAL_SUCCESS,
               expected_pose: Sequence[float] | None = None, *,
               write_evidence: bool = False, evidence_dir: str | None = None
               ) -> VerifyResult: ...


__all__ = ['FUSED_VIEW', 'GOALS', 'GOAL_RESET', 'GOAL_SUCCESS', 'Estimate', 'PoseEstimator',
           'Segmentation', 'Segmenter', 'Verdict', 'Verifier', 'VerifyResult']
