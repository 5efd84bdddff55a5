"""What a verifier backend returns: an object's soft mask and its pose estimate.

A backend (a task's :class:`PoseEstimator`, registered by its plugin as a
:class:`enpire_tasks.plugin.VerifierBackend`) turns one camera image into an
:class:`Estimate`; the generic verifier (``enpire_reward``) scores that pose with the task's
``score`` and judges the goal. Plain data and protocols: no ROS, no simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
    #: What the backend measured in the image beyond the pose, for the task's
    #: ``stage_rule`` (e.g. the part's centroid in px, a count of pieces); never simulator
    #: state.
    features: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Segmenter(Protocol):
    """Image -> soft mask of the task object (colour threshold, YOLO-seg, SAM2, ...)."""

    def segment(self, image: np.ndarray, view: ViewSpec) -> Segmentation: ...


@dataclass(frozen=True)
class InstanceMask:
    """One class's instance in one image, as a learned segmenter sees it.

    Attributes:
        mask: (H, W) float32 in [0, 1], full frame: how surely each pixel is the instance.
        confidence: the detector's score for the instance, in [0, 1].
        box: ``(x0, y0, x1, y1)`` pixel box of the detection.
    """

    mask: np.ndarray
    confidence: float
    box: tuple[float, float, float, float]


@runtime_checkable
class InstanceSegmenter(Protocol):
    """Image -> the best instance of each class it finds (YOLO-seg, SAM2 prompted by boxes):
    what a task's geometric rule (its plugin's ``mask_rule``) turns into a pose."""

    backend_id: str
    classes: tuple[str, ...]

    def masks(self, image: np.ndarray, view: ViewSpec) -> dict[str, InstanceMask]: ...


def require_class(segmenter: InstanceSegmenter, cls: str) -> None:
    """Raise ConfigError unless ``segmenter`` segments class ``cls``."""
    if cls not in segmenter.classes:
        from enpire_common.errors import ConfigError

        raise ConfigError(f"the {segmenter.backend_id} model has no class '{cls}' (its "
                          f"classes: {', '.join(segmenter.classes)})")


@dataclass(frozen=True)
class Marking:
    """A region of the background drawn in a second, known colour: Push-T's goal T on the
    table. A camera sees it through the object's edge pixels wherever its edge runs next
    to the object's, which near Push-T's goal is everywhere.

    ``share`` is each pixel's covered share (HxW in [0, 1]: from the cell's geometry, like
    the goal pose the rule scores against); ``colour_ratio`` the marking's colour over the
    object's, per channel (reflectances: a camera's exposure and white balance cancel).
    """

    share: np.ndarray
    colour_ratio: tuple[float, float, float]

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> Marking:
        return Marking(self.share[y0:y1, x0:x1], self.colour_ratio)


def unmix_alpha(image: np.ndarray, mask: np.ndarray, band_px: int = 3,
                marking: Marking | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel soft mask of an object from a coarse binary ``mask`` of it and the image:
    (alpha, weight), both HxW float32.

    A learned mask places the object to a pixel or two; its edge pixels are a mix of the
    object's and the background's colours, which a camera's exposure and white balance
    change. Within ``band_px`` of the mask's edge each pixel is unmixed against the colours
    of the object and of the background *next to it* (local means of the pixels more than
    ``band_px`` inside and outside): alpha is where its colour lies on the line between
    the two. Inside the band alpha is 1, outside 0. A band pixel far from that line (an
    occluder, a distractor, a shadow's hue) gets weight 0, so a pose fit ignores it.

    With a ``marking`` (:class:`Marking`) a pixel's background is ``table (1 - s) +
    marking s`` for the marking's share ``s`` of it (the renderer's compositing, and a
    lens's blur of the two): the table's colour is the local mean of the pure table pixels
    outside, the marking's the object's times its ratio (the marking is mostly hidden
    exactly when it matters). Without it a sliver of the marking in the object's edge
    pixels reads as object: 0.1-0.5 px of pose error next to Push-T's goal, right where
    its label is decided.
    """
    import cv2

    m = (np.asarray(mask) >= 0.5).astype(np.uint8)
    k = 2 * band_px + 1
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    inner = cv2.erode(m, ker).astype(np.float32)
    outer = 1.0 - cv2.dilate(m, ker).astype(np.float32)
    band = 1.0 - inner - outer
    img = image.astype(np.float32)
    size = (4 * band_px + 1, 4 * band_px + 1)

    def local_mean(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        num = cv2.boxFilter(img * w[:, :, None], -1, size, normalize=False)
        den = cv2.boxFilter(w, -1, size, normalize=False)
        return num / np.maximum(den, 1e-6)[:, :, None], den

    obj, n_obj = local_mean(inner)
    if marking is None:
        bg, n_bg = local_mean(outer)
    else:
        table, n_bg = _table_colour(img, outer, marking, local_mean)
        colour = np.clip(obj * np.asarray(marking.colour_ratio, np.float32), 0.0, 255.0)
        bg = table + np.asarray(marking.share, np.float32)[:, :, None] * (colour - table)
    d = obj - bg
    dd = np.maximum((d * d).sum(axis=2), 1e-6)
    t = ((img - bg) * d).sum(axis=2) / dd
    resid = np.sqrt(np.maximum(((img - bg) ** 2).sum(axis=2) - t * t * dd, 0.0))
    # a band pixel without both colours near it, or too close colours, is not unmixed
    ok = (n_obj > 0.5) & (n_bg > 0.5) & (dd > 400.0)
    alpha = np.where(band > 0, np.clip(t, 0.0, 1.0), inner)
    alpha = np.where((band > 0) & ~ok, m.astype(np.float32), alpha)
    off_line = (band > 0) & ok & (resid > 0.25 * np.sqrt(dd) + 12.0)
    weight = np.where(off_line, 0.0, 1.0).astype(np.float32)
    return alpha.astype(np.float32), weight


#: A pixel is pure table when a marking covers at most this share of it.
_PURE_TABLE = 0.01


def _table_colour(img: np.ndarray, outer: np.ndarray, marking: Marking, local_mean
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The table's colour next to each pixel, from the pure table pixels outside the mask
    (the crop's mean where none is near): (HxWx3, HxW sample count)."""
    s = np.asarray(marking.share, np.float32)
    if s.shape != outer.shape:
        raise ValueError(f'unmix_alpha: the marking is {s.shape}, the mask {outer.shape}')
    table_px = outer * (s <= _PURE_TABLE)
    total = float(table_px.sum())
    if total < 1.0:
        return local_mean(outer)
    table, n = local_mean(table_px)
    far = n <= 0.5
    if far.any():
        table[far] = (img * table_px[:, :, None]).sum(axis=(0, 1)) / total
        n = np.where(far, 1.0, n)
    return table, n


class MaskSegmenter:
    """A :class:`Segmenter` over one class of an :class:`InstanceSegmenter`: its soft mask
    in the detection's box grown by ``pad_px`` (a task's colour pipeline, such as Push-T's
    pose fit, then runs on learned masks)."""

    def __init__(self, segmenter: InstanceSegmenter, cls: str, pad_px: int = 6,
                 unmix_band_px: int = 0,
                 marking: Callable[[ViewSpec], Marking | None] | None = None) -> None:
        require_class(segmenter, cls)
        self.segmenter, self.cls, self.pad_px = segmenter, cls, int(pad_px)
        self.unmix_band_px = int(unmix_band_px)
        #: view -> the :class:`Marking` on its background (whole image), or None
        self.marking = marking

    def segment(self, image: np.ndarray, view: ViewSpec) -> Segmentation:
        inst = self.segmenter.masks(image, view).get(self.cls)
        if inst is None:
            return Segmentation(False, detail=f'{self.segmenter.backend_id} found no {self.cls}')
        h, w = inst.mask.shape
        x0, y0, x1, y1 = inst.box
        p = self.pad_px
        roi = (max(0, int(x0) - p), max(0, int(y0) - p), min(w, int(np.ceil(x1)) + p),
               min(h, int(np.ceil(y1)) + p))
        alpha = np.ascontiguousarray(inst.mask[roi[1]:roi[3], roi[0]:roi[2]], np.float32)
        if not alpha.size or float(alpha.max()) < 0.5:
            return Segmentation(False, detail=f'{self.segmenter.backend_id}: empty {self.cls} '
                                              'mask')
        if self.unmix_band_px:
            crop = np.asarray(image)[roi[1]:roi[3], roi[0]:roi[2]]
            mark = self.marking(view) if self.marking else None
            alpha, weight = unmix_alpha(crop, alpha, self.unmix_band_px,
                                        mark.crop(*roi) if mark is not None else None)
            return Segmentation(True, roi, alpha, weight)
        return Segmentation(True, roi, alpha, np.ones_like(alpha))


@runtime_checkable
class PoseEstimator(Protocol):
    """Image -> object pose in task units (uses a Segmenter inside)."""

    backend_id: str

    def estimate(self, image: np.ndarray, view: ViewSpec) -> Estimate: ...


__all__ = ['Estimate', 'InstanceMask', 'InstanceSegmenter', 'Marking', 'MaskSegmenter',
           'PoseEstimator', 'Segmentation', 'Segmenter', 'require_class', 'unmix_alpha']
