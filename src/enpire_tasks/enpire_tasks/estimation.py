"""What a verifier backend returns: an object's soft mask and its pose estimate.

A backend (a task's :class:`PoseEstimator`, registered by its plugin as a
:class:`enpire_tasks.plugin.VerifierBackend`) turns one camera image into an
:class:`Estimate`; the generic verifier (``enpire_reward``) scores that pose with the task's
``score`` and judges the goal. Plain data and protocols: no ROS, no simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from enpire_common.tasks import ViewSpec


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


__all__ = ['Estimate', 'PoseEstimator', 'Segmentation', 'Segmenter']
