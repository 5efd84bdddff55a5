"""Ports and result types of the verifier (no ROS, no simulator).

A *verifier* judges a task from camera images only: it never sees simulator state. It is
built from a *segmenter* (image -> soft mask of the object) and a pose/score stage; backends
(``opencv-v1`` now; ``yolo`` and ``sam2`` planned) plug in through
:mod:`enpire_reward.core.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from enpire_common.tasks import ViewSpec

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


@dataclass(frozen=True)
class VerifyResult:
    """The fused decision plus the per-view verdicts (views first, ``fused`` last)."""

    success: bool
    score: float
    fusion: str
    goal: str
    verdicts: tuple[Verdict, ...] = field(default_factory=tuple)

    @property
    def fused(self) -> Verdict:
        return self.verdicts[-1]

    def view(self, name: str) -> Verdict:
        """The verdict of view ``name``; KeyError if it was not judged."""
        for v in self.verdicts:
            if v.view == name:
                return v
        raise KeyError(name)


@dataclass(frozen=True)
class Segmentation:
    """An object's soft mask inside a region of interest of one image.

    Attributes:
        found: whether the object was found at all.
        roi: ``(x0, y0, x1, y1)`` pixel box (exclusive end) that ``alpha``/``weight`` cover.
        alpha: (h, w) float32 in [0, 1], the fraction of each pixel that is the object.
        weight: (h, w) float32 in [0, 1]; 0 where the object may be hidden (occluders), so
            pose fitting ignores those pixels.
        detail: why nothing was found, when ``found`` is false.
    """

    found: bool
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)
    alpha: np.ndarray | None = None
    weight: np.ndarray | None = None
    detail: str = ''

    def full_mask(self, shape: tuple[int, int], level: float = 0.5) -> np.ndarray:
        """A full-frame uint8 mask (255 = object) of shape ``shape`` (h, w)."""
        out = np.zeros(shape, dtype=np.uint8)
        if self.found and self.alpha is not None:
            x0, y0, x1, y1 = self.roi
            out[y0:y1, x0:x1] = np.where(self.alpha >= level, 255, 0).astype(np.uint8)
        return out


@dataclass(frozen=True)
class Estimate:
    """What a backend sees in one view: the object's pose and the fit quality.

    ``success_margin``, when not None, replaces the backend's calibrated margin for this
    estimate (e.g. 0 when the pose is the Bayes estimate of an exact image match).
    """

    found: bool
    pose: tuple[float, float, float] | None = None
    confidence: float = 0.0
    segmentation: Segmentation | None = None
    detail: str = ''
    success_margin: float | None = None


@runtime_checkable
class Segmenter(Protocol):
    """Image -> soft mask of the task object (colour threshold, YOLO-seg, SAM2, ...)."""

    def segment(self, image: np.ndarray, view: ViewSpec) -> Segmentation: ...


@runtime_checkable
class PoseEstimator(Protocol):
    """Image -> object pose in task units (uses a Segmenter inside)."""

    backend_id: str

    def estimate(self, image: np.ndarray, view: ViewSpec) -> Estimate: ...


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
