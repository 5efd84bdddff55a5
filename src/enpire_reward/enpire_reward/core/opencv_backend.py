"""``opencv-v1``: colour segmentation + moments + template refinement of the Push-T block.

Pipeline per view (cv2 + numpy only; ~1-3 ms for a 480 x 480 frame):

1. **Find** the T: ``cv2.inRange`` on the block's two colours, connected components, a
   region of interest (ROI) around the block.
2. **Unmix** colours in the ROI: each pixel of gym-pusht's resized render is a blend of at
   most a few palette colours (background, goal, walls, pusher, the block's fill and border).
   A 64^3 lookup table maps a colour to the nearest two-colour blend and returns the block's
   share (``alpha``); pixels that blend with the pusher are marked occluded (``weight`` 0).
3. **Initial pose** from image moments of ``alpha``: centroid, major axis (the stem axis:
   the T's second moments differ by 1.7x), and the 180-degree ambiguity resolved by the
   sign of the third moment along that axis (the stem is the long tail).
4. **Refine** (x, y, theta) by Gauss-Newton on the squared difference between ``alpha`` and
   an anti-aliased rendering of the T outline (``cv2.fillPoly`` with ``LINE_AA``), ignoring
   occluded pixels; a poor fit retries from the flipped and the two perpendicular starts.

The score is the goal coverage of the estimated pose, computed analytically
(:func:`enpire_reward.core.geometry.coverage`). Two small constants describe the renderer,
not the scene: gym-pusht draws the block with a 4 px border (so its silhouette is the T grown
by ~2 px) and pygame/cv2 place pixel centres slightly differently; both are calibrated on
gym-pusht renders by ``enpire verify crosscheck`` and live in :class:`OpenCvConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from enpire_common.config import require
from enpire_common.tasks import ViewSpec
from enpire_reward.core import geometry
from enpire_reward.core.ports import Estimate, Segmentation

BACKEND_ID = 'opencv-v1'

#: gym-pusht's palette (pygame colour names), RGB. The block's fill is pymunk's
#: ``light_color`` (1.2 x LightSlateGray); its 4 px border is LightSlateGray itself.
PUSH_T_PALETTE: dict[str, tuple[tuple[int, int, int], str]] = {
    'background': ((255, 255, 255), 'background'),
    'goal': ((144, 238, 144), 'background'),       # LightGreen
    'wall': ((211, 211, 211), 'background'),       # LightGray
    'pusher_rim': ((65, 105, 225), 'occluder'),    # RoyalBlue
    'pusher_fill': ((78, 126, 255), 'occluder'),   # light_color(RoyalBlue)
    'object_border': ((119, 136, 153), 'object'),  # LightSlateGray
    'object_fill': ((143, 163, 184), 'object'),    # light_color(LightSlateGray)
}


@dataclass(frozen=True)
class OpenCvConfig:
    """Tuning of the ``opencv-v1`` backend (defaults fit gym-pusht renders).

    Attributes:
        lut_bits: bits per channel of the colour lookup table (6 -> 64^3 entries, 1 MiB).
        object_margin: how far (RGB units) a pixel may sit from the block's colours and
            still seed the coarse ``inRange`` mask.
        min_object_area_frac: smallest accepted blob, as a fraction of the T's area.
        roi_pad_px: pixels added around the block's blob for refinement.
        dilation_px: how much larger than the geometric T the rendered silhouette is
            (workspace px; gym-pusht's 4 px border lines).
        offset_px: sub-pixel offset (x, y) of the renderer's pixel centres (image px).
        max_iterations: Gauss-Newton iterations per start.
        retry_residual: normalised fit residual above which the other starts are tried.
    """

    lut_bits: int = 6
    object_margin: int = 22
    min_object_area_frac: float = 0.05
    roi_pad_px: int = 8
    dilation_px: float = 2.0
    offset_px: tuple[float, float] = (0.0, 0.0)
    max_iterations: int = 8
    retry_residual: float = 0.08

    def __post_init__(self) -> None:
        require(4 <= self.lut_bits <= 7, 'lut_bits', self.lut_bits, 'must be in 4..7')
        require(0 <= self.object_margin <= 80, 'object_margin', self.object_margin,
                'must be in 0..80 RGB units')
        require(0.0 < self.min_object_area_frac < 1.0, 'min_object_area_frac',
                self.min_object_area_frac, 'must be in (0, 1)')
        require(self.roi_pad_px >= 2, 'roi_pad_px', self.roi_pad_px, 'must be >= 2 px')
        require(0.0 <= self.dilation_px <= 6.0, 'dilation_px', self.dilation_px,
                'must be in [0, 6] px')
        require(len(self.offset_px) == 2, 'offset_px', self.offset_px, 'must be (x, y) px')
        require(self.max_iterations >= 1, 'max_iterations', self.max_iterations, 'must be >= 1')


# --- colour unmixing -----------------------------------------------------------------------
_OCCLUDED = 255  # LUT value for "blends with an occluder"
_LUT_CACHE: dict[tuple, np.ndarray] = {}


def build_lut(palette: dict[str, tuple[tuple[int, int, int], str]], bits: int) -> np.ndarray:
    """Colour -> object share lookup table, uint8 (0..254 = alpha x 254, 255 = occluded).

    Every quantised colour is assigned to the nearest segment between two palette colours
    (a two-colour blend, as resizing produces); its alpha is the object's share of that
    blend. Blends with an occluder whose occluder share is above 10% are marked occluded.
    """
    key = (tuple(sorted(palette.items())), bits)
    if key in _LUT_CACHE:
        return _LUT_CACHE[key]
    n = 1 << bits
    step = 256 // n
    levels = np.arange(n, dtype=np.float64) * step + (step - 1) / 2.0
    q = np.stack(np.meshgrid(levels, levels, levels, indexing='ij'), -1).reshape(-1, 3)
    names = list(palette)
    best = np.full(len(q), np.inf)
    alpha = np.zeros(len(q))
    occluded = np.zeros(len(q), dtype=bool)
    for i, a_name in enumerate(names):
        for b_name in names[i:]:
            ca, kind_a = palette[a_name]
            cb, kind_b = palette[b_name]
            xa, d = np.asarray(ca, float), np.asarray(cb, float) - np.asarray(ca, float)
            dd = float(d @ d)
            t = np.zeros(len(q)) if dd == 0 else np.clip(((q - xa) @ d) / dd, 0.0, 1.0)
            resid = np.linalg.norm(q - (xa + t[:, None] * d), axis=1)
            a = (1 - t) * (kind_a == 'object') + t * (kind_b == 'object')
            occ = (1 - t) * (kind_a == 'occluder') + t * (kind_b == 'occluder')
            better = resid < best
            best[better] = resid[better]
            alpha[better] = a[better]
            occluded[better] = occ[better] > 0.1
    lut = np.round(alpha * 254).astype(np.uint8)
    lut[occluded] = _OCCLUDED
    _LUT_CACHE[key] = lut
    return lut


class ColorSegmenter:
    """Soft-mask segmenter for one flat-coloured object on a known palette.

    Implements :class:`enpire_reward.core.ports.Segmenter`.
    """

    def __init__(self, config: OpenCvConfig | None = None,
                 palette: dict[str, tuple[tuple[int, int, int], str]] | None = None) -> None:
        self.config = config or OpenCvConfig()
        self.palette = dict(palette or PUSH_T_PALETTE)
        self._lut = build_lut(self.palette, self.config.lut_bits)
        obj = np.array([c for c, kind in self.palette.values() if kind == 'object'])
        m = self.config.object_margin
        self._lo = tuple(int(v) for v in np.clip(obj.min(axis=0) - m, 0, 255))
        self._hi = tuple(int(v) for v in np.clip(obj.max(axis=0) + m, 0, 255))
        self._shift = 8 - self.config.lut_bits
        self._kernel = np.ones((3, 3), np.uint8)

    def segment(self, image: np.ndarray, view: ViewSpec) -> Segmentation:
        """Find the object's blob and unmix the colours around it."""
        cfg = self.config
        coarse = cv2.inRange(image, self._lo, self._hi)
        n, _labels, stats, centroids = cv2.connectedComponentsWithStats(coarse, connectivity=8)
        scale = _view_scale(view)
        min_area = cfg.min_object_area_frac * geometry.AREA_PX2 * scale * scale
        if n <= 1:
            return Segmentation(False, detail='no pixel has the block colour')
        areas = stats[1:, cv2.CC_STAT_AREA]
        k = int(np.argmax(areas)) + 1
        if stats[k, cv2.CC_STAT_AREA] < min_area:
            return Segmentation(False, detail=(
                f'largest block-coloured blob is {int(stats[k, cv2.CC_STAT_AREA])} px, '
                f'below {min_area:.0f} px'))
        # The pusher can cut the block in two: keep every sizeable blob near the largest.
        reach = 130.0 * scale
        x0, y0 = stats[k, 0], stats[k, 1]
        x1, y1 = x0 + stats[k, 2], y0 + stats[k, 3]
        for j in range(1, n):
            if j == k or stats[j, cv2.CC_STAT_AREA] < 20:
                continue
            if np.hypot(*(centroids[j] - centroids[k])) <= reach:
                x0, y0 = min(x0, stats[j, 0]), min(y0, stats[j, 1])
                x1 = max(x1, stats[j, 0] + stats[j, 2])
                y1 = max(y1, stats[j, 1] + stats[j, 3])
        h, w = image.shape[:2]
        pad = cfg.roi_pad_px
        x0, y0 = max(0, int(x0) - pad), max(0, int(y0) - pad)
        x1, y1 = min(w, int(x1) + pad), min(h, int(y1) + pad)
        roi = image[y0:y1, x0:x1]
        s = self._shift
        bits = cfg.lut_bits
        idx = ((roi[..., 0] >> s).astype(np.int32) << (2 * bits)) \
            | ((roi[..., 1] >> s).astype(np.int32) << bits) | (roi[..., 2] >> s)
        coded = self._lut[idx]
        occluded = (coded == _OCCLUDED).astype(np.uint8)
        alpha = np.where(occluded > 0, 0, coded).astype(np.float32) * (1.0 / 254.0)
        # Pixels next to an occluder may hide part of the block behind a blend: ignore them.
        weight = 1.0 - cv2.dilate(occluded, self._kernel).astype(np.float32)
        return Segmentation(True, (x0, y0, x1, y1), alpha, weight)


def _view_scale(view: ViewSpec) -> float:
    (a, b, _), (d, e, _) = view.workspace_to_pixel
    return math.sqrt(abs(a * e - b * d))


# --- pose ----------------------------------------------------------------------------------
def _outline_body(dilation: float) -> np.ndarray:
    """The T's 8-vertex outline in the body frame, grown by ``dilation`` on every side."""
    d = dilation
    return np.array([(-60 - d, -d), (60 + d, -d), (60 + d, 30 + d), (15 + d, 30 + d),
                     (15 + d, 120 + d), (-15 - d, 120 + d), (-15 - d, 30 + d),
                     (-60 - d, 30 + d)])


def _render_centroid_body(dilation: float) -> np.ndarray:
    """Centroid of the grown T (what the image moments measure), body frame."""
    d = dilation
    bar = (120 + 2 * d) * (30 + 2 * d)
    stem = (30 + 2 * d) * 90
    cy = (bar * 15.0 + stem * (30 + d + 45.0)) / (bar + stem)
    return np.array([0.0, cy])


class OpenCvTEstimator:
    """Push-T block pose from one top-view image (colour + moments + template refinement).

    Implements :class:`enpire_reward.core.ports.PoseEstimator`; ``backend_id`` is
    ``'opencv-v1'``.
    """

    backend_id = BACKEND_ID

    def __init__(self, config: OpenCvConfig | None = None,
                 segmenter: ColorSegmenter | None = None) -> None:
        self.config = config or OpenCvConfig()
        self.segmenter = segmenter or ColorSegmenter(self.config)
        self._outline = _outline_body(self.config.dilation_px)
        self._centroid = _render_centroid_body(self.config.dilation_px)

    # The affine maps workspace -> image; the top camera is orthographic (a similarity).
    def _affine(self, view: ViewSpec) -> tuple[np.ndarray, np.ndarray]:
        (a, b, c), (d, e, f) = view.workspace_to_pixel
        m = np.array([[a, b], [d, e]])
        t = np.array([c, f]) + np.asarray(self.config.offset_px, dtype=np.float64)
        return m, t

    def estimate(self, image: np.ndarray, view: ViewSpec) -> Estimate:
        """Segment, initialise from moments, refine; pose in workspace px and radians."""
        seg = self.segmenter.segment(image, view)
        if not seg.found:
            return Estimate(False, segmentation=seg, detail=f'no T block found: {seg.detail}')
        m, t = self._affine(view)
        minv = np.linalg.inv(m)
        x0, y0 = seg.roi[0], seg.roi[1]
        mom = cv2.moments(seg.alpha)
        if mom['m00'] <= 1e-6:
            return Estimate(False, segmentation=seg, detail='no T block found: empty mask')
        c_px = np.array([mom['m10'] / mom['m00'] + x0, mom['m01'] / mom['m00'] + y0])
        phi = 0.5 * math.atan2(2.0 * mom['mu11'], mom['mu20'] - mom['mu02'])
        ux, uy = math.cos(phi), math.sin(phi)
        skew = (ux ** 3 * mom['mu30'] + 3 * ux * ux * uy * mom['mu21']
                + 3 * ux * uy * uy * mom['mu12'] + uy ** 3 * mom['mu03'])
        if skew < 0:  # the stem is the long tail of the mass along the major axis
            ux, uy = -ux, -uy
        u_ws = minv @ np.array([ux, uy])
        theta0 = math.atan2(-u_ws[0], u_ws[1])  # stem direction is R(theta) @ (0, 1)
        c_ws = minv @ (c_px - t)
        start = np.array(geometry.pose_from_centroid(c_ws, theta0, self._centroid))
        coarse = _TemplateFit(seg, m, t, self._outline, blur_px=3.0)
        start, _ = coarse.refine(start, self.config.max_iterations)
        fit = _TemplateFit(seg, m, t, self._outline)
        pose, resid = fit.refine(start, self.config.max_iterations)
        if resid > self.config.retry_residual:
            for dtheta in (math.pi, math.pi / 2, -math.pi / 2):
                alt = np.array(geometry.pose_from_centroid(c_ws, theta0 + dtheta,
                                                           self._centroid))
                p2, r2 = fit.refine(alt, self.config.max_iterations)
                if r2 < resid:
                    pose, resid = p2, r2
        confidence = float(np.clip(1.0 - resid, 0.0, 1.0))
        pose_t = (float(pose[0]), float(pose[1]), geometry.wrap_angle(float(pose[2])))
        return Estimate(True, pose_t, confidence, seg, detail=f'fit residual {resid:.3f}')


class _TemplateFit:
    """Gauss-Newton fit of the rendered T outline to a soft mask inside the ROI."""

    # Finite-difference steps: workspace px for x/y, radians for theta.
    _STEPS = (0.5, 0.5, 0.005)

    def __init__(self, seg: Segmentation, m: np.ndarray, t: np.ndarray,
                 outline: np.ndarray, blur_px: float = 0.0) -> None:
        assert seg.alpha is not None and seg.weight is not None
        self.blur_px = blur_px
        self.alpha = self._blur(seg.alpha)
        self.weight = seg.weight
        self.origin = np.array(seg.roi[:2], dtype=np.float64)
        self.m, self.t = m, t
        self.outline = outline
        self.canvas = np.zeros(self.alpha.shape, dtype=np.uint8)
        self.norm = max(1.0, float(self.alpha.sum()))

    def render(self, pose: np.ndarray) -> np.ndarray:
        c, s = math.cos(pose[2]), math.sin(pose[2])
        rot = np.array([[c, -s], [s, c]])
        ws = self.outline @ rot.T + pose[:2]
        px = ws @ self.m.T + self.t - self.origin
        self.canvas.fill(0)
        cv2.fillPoly(self.canvas, [np.round(px * 16.0).astype(np.int32)], 255, cv2.LINE_AA,
                     shift=4)
        return self._blur(self.canvas.astype(np.float32) * (1.0 / 255.0))

    def _blur(self, img: np.ndarray) -> np.ndarray:
        # A blurred fit has a wide basin (coarse stage); the sharp fit is precise.
        if self.blur_px <= 0:
            return img
        return cv2.GaussianBlur(img, (0, 0), self.blur_px)

    def residual(self, pose: np.ndarray) -> np.ndarray:
        return ((self.render(pose) - self.alpha) * self.weight).ravel()

    def refine(self, pose: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
        pose = np.asarray(pose, dtype=np.float64).copy()
        r = self.residual(pose)
        cost = float(r @ r)
        lam = 1e-3
        for _ in range(iterations):
            jac = np.empty((r.size, 3), dtype=np.float32)
            for k, h in enumerate(self._STEPS):
                p = pose.copy()
                p[k] += h
                jac[:, k] = (self.residual(p) - r) / h
            jtj = (jac.T @ jac).astype(np.float64)
            jtr = (jac.T @ r).astype(np.float64)
            improved = False
            for _try in range(4):
                a = jtj + lam * np.diag(np.diag(jtj) + 1e-9)
                try:
                    delta = -np.linalg.solve(a, jtr)
                except np.linalg.LinAlgError:
                    break
                cand = pose + delta
                r2 = self.residual(cand)
                c2 = float(r2 @ r2)
                if c2 < cost:
                    pose, r, cost = cand, r2, c2
                    lam = max(lam * 0.3, 1e-6)
                    improved = True
                    break
                lam *= 10.0
            if not improved or (abs(delta[0]) < 0.02 and abs(delta[1]) < 0.02
                                and abs(delta[2]) < 2e-4):
                break
        return pose, cost / self.norm
