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

Pixels whose colour is on neither side (the pusher, a distractor) get no weight. The goal T
is a second background tone (an :class:`~enpire_tasks.estimation.Marking`): where its edge
runs next to the block's (every near-goal state) a sliver of it shows in the block's edge
pixels, and would read as block, 0.1-0.5 px of pose error exactly where the 0.95 label is
decided. Its share of each pixel comes from the geometry (:func:`goal_coverage`), its colour
from the block's times the scene's ratio. The score is the coverage of the fitted pose, as
for ``opencv-v1``.

``opencv-unmix-v1`` runs the same rule on the coarse mask of ``opencv-v1``'s colour
segmentation: no training, no forward camera model (a real camera has none).
"""

from __future__ import annotations

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks.estimation import (
    Estimate,
    InstanceMask,
    InstanceSegmenter,
    Marking,
    MaskSegmenter,
    Segmentation,
    unmix_alpha,
)
from enpire_tasks.push_t.geometry import t_polygons
from enpire_tasks.push_t.labels import block_mask
from enpire_tasks.push_t.opencv_backend import OpenCvTEstimator, view_scale
from enpire_tasks.push_t.render import AreaRenderer
from enpire_tasks.push_t.scene import BLOCK_BORDER, BORDER_HALF_PX, GOAL

UNMIX_BACKEND_ID = 'opencv-unmix-v1'
#: Success is a score over the threshold by this much: the fit's near-goal coverage error is
#: ~0.0006 (p95, clean) to ~0.002 (blur sigma 1 px). Set on 300 states each of seeds 0 and
#: 2024 under every camera perturbation (at most one false success a kind), held out on 7919.
SUCCESS_MARGIN = 0.0005
#: The learned mask's edge band, the fitted silhouette's, and the ROI's margin (image px).
FIRST_BAND_PX, SECOND_BAND_PX, PAD_PX = 3, 2, 10
#: The edge widths (px: a pixel's box, then wider by a lens's blur) the second fit tries;
#: the one that fits best is the camera's. A 1 px box fitted to an edge blurred by sigma
#: 1 px put near-goal poses 0.24 px off (p95); the best of these, 0.05 px.
EDGE_WIDTHS_PX = (1.0, 2.0, 3.0, 4.0)


class MaskFitEstimator:
    """The block's pose from a learned ``tblock`` mask and the image (see the module doc)."""

    def __init__(self, task: TaskSpec, segmenter: InstanceSegmenter) -> None:
        self.task = task
        self.backend_id = segmenter.backend_id
        self._goal: dict[str, Marking | None] = {}
        self.segmenter = MaskSegmenter(segmenter, 'tblock', pad_px=PAD_PX,
                                       unmix_band_px=FIRST_BAND_PX, marking=self.goal)
        self.fit = OpenCvTEstimator(goal_pose=task.goal_pose,
                                    threshold=task.success_threshold)
        self.success_margin = SUCCESS_MARGIN

    def goal(self, view: ViewSpec) -> Marking | None:
        """The goal T drawn on ``view``'s table (cached; None without a pixel map)."""
        if view.name not in self._goal:
            share = goal_coverage(self.task, view)
            self._goal[view.name] = None if share is None else Marking(share, GOAL_RATIO)
        return self._goal[view.name]

    def prepare(self, view: ViewSpec) -> None:
        """Build ``view``'s caches now (its goal marking, ~60 ms), not in a first estimate
        that a policy's act deadline pays for."""
        self.goal(view)

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
        goal = self.goal(view)
        alpha, weight = unmix_alpha(np.asarray(image)[y0:y1, x0:x1], m[y0:y1, x0:x1],
                                    SECOND_BAND_PX,
                                    None if goal is None else goal.crop(x0, y0, x1, y1))
        seg2 = Segmentation(True, (x0, y0, x1, y1), alpha, weight)
        second = None
        for width in EDGE_WIDTHS_PX:
            fit = self.fit.fit_coverage(seg2, view, BORDER_HALF_PX, scale, width)
            if fit.found and (second is None or fit.confidence > second.confidence):
                second = fit
        if second is None:
            return first
        return Estimate(True, second.pose, min(first.confidence, second.confidence),
                        second.segmentation, detail=f'{self.backend_id} mask; '
                        f'{first.detail} -> {second.detail}')


#: The goal's colour over the block border's, per channel (the scene's reflectances).
GOAL_RATIO = tuple(g / b for g, b in zip(GOAL, BLOCK_BORDER, strict=True))
#: Sub-samples per pixel side of :func:`goal_coverage` (shares to 1/256).
GOAL_SUPERSAMPLE = 16


def goal_coverage(task: TaskSpec, view: ViewSpec) -> np.ndarray | None:
    """The share of each pixel of ``view`` that the goal T (drawn on the table at
    ``task.goal_pose``) covers, HxW float32; None when the view has no pixel map.

    Pixel ``(u, v)`` covers image coordinates ``[u - 0.5, u + 0.5)^2``. An axis-aligned
    view takes the area camera's exact shares (:mod:`~enpire_tasks.push_t.render`); any
    other is sampled on a 16 x 16 grid per pixel.
    """
    import cv2

    if view.workspace_to_pixel is None:
        return None
    try:
        return AreaRenderer(view.width_px, view.height_px, view.workspace_to_pixel,
                            task.goal_pose).goal_share.astype(np.float32)
    except ConfigError:
        pass
    a = np.asarray(view.workspace_to_pixel, dtype=np.float64)
    out = np.zeros((view.height_px, view.width_px), np.float32)
    polys = [p @ a[:, :2].T + a[:, 2] for p in t_polygons(task.goal_pose)]
    pts = np.concatenate(polys)
    u0, v0 = (max(0, int(np.floor(c)) - 1) for c in pts.min(axis=0))
    u1 = min(view.width_px, int(np.ceil(pts[:, 0].max())) + 2)
    v1 = min(view.height_px, int(np.ceil(pts[:, 1].max())) + 2)
    if u1 <= u0 or v1 <= v0:
        return out
    k = GOAL_SUPERSAMPLE
    fine = np.zeros(((v1 - v0) * k, (u1 - u0) * k), np.uint8)
    shift = 4
    for poly in polys:
        # sub-sample (i, j) of the crop sits at image (u0 - 0.5 + (i + 0.5) / k, ...)
        q = (poly - (u0 - 0.5, v0 - 0.5)) * k - 0.5
        cv2.fillPoly(fine, [np.rint(q * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)],
                     1, lineType=cv2.LINE_8, shift=shift)
    out[v0:v1, u0:u1] = fine.reshape(v1 - v0, k, u1 - u0, k).mean(axis=(1, 3))
    return out


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


__all__ = ['UNMIX_BACKEND_ID', 'ColourInstances', 'MaskFitEstimator', 'goal_coverage',
           'make_unmix_estimator', 'mask_rule']
