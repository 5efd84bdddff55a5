"""Push-T's rule over a learned segmenter's masks: the block's pose from its ``tblock`` mask.

A learned mask (YOLO-seg, SAM2) finds the block under any lighting, but its edge is good to a
pixel or two, and the coverage threshold needs a tenth of one. So the mask only says where the
block is; the image says where its edges are:

1. the mask's edge band (3 px each way) is unmixed against the block's and the background's
   colours next to it (:func:`enpire_tasks.estimation.unmix_alpha`: exposure and white balance
   do not matter, only that the block differs from what is around it), and the exact
   pixel-coverage model of the T's silhouette is fitted to it
   (:meth:`~enpire_tasks.push_t.opencv_backend.OpenCvTEstimator.fit_coverage`);
2. the fitted silhouette, drawn from the scene geometry, replaces the learned mask, and a
   narrower band (2 px: a camera's blur) is unmixed and fitted again.

Pixels whose colour is on neither side (the pusher, a distractor) get no weight. The score
is the coverage of the fitted pose, as for ``opencv-v1``.

``opencv-unmix-v1`` runs the same rule on the coarse mask of ``opencv-v1``'s colour
segmentation: no training, no forward camera model (a real camera has none).
"""

from __future__ import annotations

import numpy as np

from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks.estimation import (
    Estimate,
    InstanceMask,
    InstanceSegmenter,
    MaskSegmenter,
    Segmentation,
    unmix_alpha,
)
from enpire_tasks.push_t.labels import block_mask
from enpire_tasks.push_t.opencv_backend import OpenCvTEstimator, view_scale
from enpire_tasks.push_t.scene import BORDER_HALF_PX

UNMIX_BACKEND_ID = 'opencv-unmix-v1'
#: Success is a score over the threshold by this much: the fit reads a near-threshold block
#: ~0.001 high on average (measured over 300 seed-0 states, every camera perturbation; at
#: 0.001 no clean, noisy, exposed or compressed image of them was a false success).
SUCCESS_MARGIN = 0.001
#: The learned mask's edge band, the fitted silhouette's, and the ROI's margin (image px).
FIRST_BAND_PX, SECOND_BAND_PX, PAD_PX = 3, 2, 10


class MaskFitEstimator:
    """The block's pose from a learned ``tblock`` mask and the image (see the module doc)."""

    def __init__(self, task: TaskSpec, segmenter: InstanceSegmenter) -> None:
        self.task = task
        self.backend_id = segmenter.backend_id
        self.segmenter = MaskSegmenter(segmenter, 'tblock', pad_px=PAD_PX,
                                       unmix_band_px=FIRST_BAND_PX)
        self.fit = OpenCvTEstimator(goal_pose=task.goal_pose,
                                    threshold=task.success_threshold)
        self.success_margin = SUCCESS_MARGIN

    def estimate(self, image: np.ndarray, view: ViewSpec) -> Estimate:
        seg = self.segmenter.segment(image, view)
        if not seg.found:
            return Estimate(False, segmentation=seg, detail=f'no T block found: {seg.detail}')
        scale = view_scale(view)
        first = self.fit.fit_coverage(seg, view, BORDER_HALF_PX, scale)
        if not first.found or first.pose is None:
            return first
        m = block_mask(self.task, view.name, first.pose).astype(np.uint8)
        rows, cols = np.nonzero(m)
        if rows.size == 0:
            return first
        h, w = m.shape
        x0, y0 = max(0, int(cols.min()) - PAD_PX), max(0, int(rows.min()) - PAD_PX)
        x1, y1 = min(w, int(cols.max()) + 1 + PAD_PX), min(h, int(rows.max()) + 1 + PAD_PX)
        alpha, weight = unmix_alpha(np.asarray(image)[y0:y1, x0:x1], m[y0:y1, x0:x1],
                                    SECOND_BAND_PX)
        second = self.fit.fit_coverage(Segmentation(True, (x0, y0, x1, y1), alpha, weight),
                                       view, BORDER_HALF_PX, scale)
        if not second.found:
            return first
        return Estimate(True, second.pose, min(first.confidence, second.confidence),
                        second.segmentation, detail=f'{self.backend_id} mask; '
                        f'{first.detail} -> {second.detail}')


class ColourInstances:
    """The block's coarse mask from the colour segmentation of ``opencv-v1`` (implements
    :class:`~enpire_tasks.estimation.InstanceSegmenter`): for the ``opencv-unmix-v1``
    backend, which needs no forward camera model and no training."""

    backend_id = UNMIX_BACKEND_ID
    classes = ('tblock',)

    def __init__(self) -> None:
        from enpire_tasks.push_t.opencv_backend import ColorSegmenter

        self.colour = ColorSegmenter()

    def masks(self, image: np.ndarray, view: ViewSpec) -> dict[str, InstanceMask]:
        import cv2

        seg = self.colour.segment(image, view)
        if not seg.found or seg.alpha is None:
            return {}
        x0, y0, x1, y1 = seg.roi
        m = np.zeros(np.asarray(image).shape[:2], np.uint8)
        m[y0:y1, x0:x1] = seg.alpha >= 0.5
        # the pusher can cut the block: close small gaps
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        rows, cols = np.nonzero(m)
        if rows.size == 0:
            return {}
        box = (float(cols.min()), float(rows.min()), float(cols.max() + 1),
               float(rows.max() + 1))
        return {'tblock': InstanceMask(m.astype(np.float32), 1.0, box)}


def make_unmix_estimator(task: TaskSpec) -> MaskFitEstimator:
    """``opencv-unmix-v1``: the colour mask, unmixed and fitted as a learned one is."""
    return MaskFitEstimator(task, ColourInstances())


def mask_rule(task: TaskSpec, segmenter: InstanceSegmenter) -> MaskFitEstimator:
    """The plugin's ``mask_rule``."""
    return MaskFitEstimator(task, segmenter)


__all__ = ['UNMIX_BACKEND_ID', 'ColourInstances', 'MaskFitEstimator', 'make_unmix_estimator',
           'mask_rule']
