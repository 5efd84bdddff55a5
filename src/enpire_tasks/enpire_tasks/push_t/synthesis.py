"""Analysis by synthesis of the Push-T block's pixel-quantised pose near the success threshold.

When the view has a forward camera model (:mod:`enpire_tasks.push_t.camera_model`) whose image
is a deterministic function of the block's *rounded* corners (gym-pusht rounds its 8 corners
to whole pixels before drawing), the image cannot tell apart two poses that round to the same
corners, and every pose that does is equally likely. So the best possible verdict is: find
the corner set that reproduces the image, then judge the poses consistent with it.

:class:`SynthesisRefiner` does this around an analytic fit:

1. round the fit's corners and render them with the camera model into a small crop aligned
   to the resize period; compare with the observed crop, ignoring occluded (pusher) pixels.
   An exact match (the fit's rounding is often right) ends the search;
2. else shift the corners in doubt by each of the 9 whole-pixel shifts, score every shift
   per corner on a small window around it, move each corner to its best shift, render the
   result and repeat until it reproduces the image (a few passes);
3. integrate the matched set's cell (every pose that rounds to it; exact, see
   :meth:`SynthesisRefiner._cell`) and return its mean: the posterior mean pose under a flat
   prior, whose coverage is the Bayes estimate of the score (coverage is close to linear
   across a cell a fraction of a pixel and a few milliradians wide).

Only near-threshold states pay for it (the backend's ``synthesis_band``), which keeps the
verifier's p95 latency low.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from enpire_tasks.push_t import geometry
from enpire_tasks.push_t.camera_model import PushTPygameCamera, round_half_even, t_corners


@dataclass(frozen=True)
class SynthesisResult:
    """Outcome of one refinement.

    Attributes:
        pose: posterior mean pose of the matched corner set (x_px, y_px, theta_rad).
        exact: the matched set reproduces every unoccluded pixel of the crop.
        mismatch: mean absolute colour difference per compared pixel of the best set.
        rendered: how many corner sets were rendered.
        cell_extent_rad: the angular extent of the matched set's cell (0 without one).
    """

    pose: tuple[float, float, float]
    exact: bool
    mismatch: float
    rendered: int
    cell_extent_rad: float


#: Integer shifts of the whole corner set tried per pass, (0, 0) first (it wins ties).
_SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, -1), (-1, 1), (1, 1))


class SynthesisRefiner:
    """Find the rounded corner set that reproduces the image; return its cell's mean pose.

    Search: start from the fit's rounded corners; render the whole set shifted by each of 9
    whole-pixel shifts and score each shift *per corner* on a small window around that
    corner (the pixels there depend on that corner almost alone); move every corner to its
    best shift; render the result and stop on an exact match, else repeat from it.

    Args:
        camera: the view's forward model.
        window_px: half size of the per-corner scoring window (image px).
        max_passes: most search passes (each renders 10 corner sets).
        max_renders: no single-corner moves are tried past this many renders.
        theta_range_rad: half range of the angle grid that integrates the cell.
        theta_steps: points of that grid.
    """

    def __init__(self, camera: PushTPygameCamera, window_px: int = 5, max_passes: int = 4,
                 max_renders: int = 60,
                 theta_range_rad: float = 0.015, theta_steps: int = 241) -> None:
        self.camera = camera
        self.window_px = int(window_px)
        self.max_passes = int(max_passes)
        self.max_renders = int(max_renders)
        self.theta_range_rad = float(theta_range_rad)
        self.theta_steps = int(theta_steps)
        self._kernel = np.ones((9, 9), np.uint8)
        (a, _, c), (_, e, f) = camera.view.workspace_to_pixel
        self._to_image = (a, c, e, f)

    def refine(self, pose: Sequence[float], image: np.ndarray,
               occluded: Callable[[np.ndarray], np.ndarray] | None = None
               ) -> SynthesisResult | None:
        """Refine ``pose`` (the analytic fit) against ``image`` (the full view image).

        Args:
            pose: the analytic fit (x_px, y_px, theta_rad).
            image: (H, W, 3) uint8 RGB, the observed view.
            occluded: maps an (h, w, 3) crop to an (h, w) bool mask, True where an occluder
                (the pusher) tints the pixel; its neighbours are ignored too. None: the
                camera model's own ``occluded`` test.

        Returns:
            The refined pose, or None when the block is too close to the frame's edge.
        """
        p0 = np.asarray(pose, dtype=np.float64)
        corners = round_half_even(t_corners(p0[None]))[0]  # (2, 4, 2)
        span = np.stack([corners - self.max_passes, corners + self.max_passes])
        crop = self.camera.crop_for(span, margin_px=5)
        if crop is None:
            return None
        x0, y0, x1, y1 = crop.image
        obs = image[y0:y1, x0:x1]
        occluded = occluded or getattr(self.camera, 'occluded', None)
        if occluded is not None:
            occ = cv2.dilate(occluded(obs).astype(np.uint8), self._kernel)
            valid = np.where(occ == 0, 255, 0).astype(np.uint8)
        else:
            valid = np.full(obs.shape[:2], 255, dtype=np.uint8)
        valid4 = cv2.cvtColor(valid, cv2.COLOR_GRAY2RGBA)  # the 4th channel is not counted
        obs4 = cv2.cvtColor(obs, cv2.COLOR_RGB2RGBA)  # compared as RGBX: only 3 channels count
        n_valid = max(1, cv2.countNonZero(valid))
        h, w = obs.shape[:2]
        a, c, e, f = self._to_image
        r = self.window_px
        best, best_err, rendered = corners, np.inf, 0

        def mismatch_map(cs: np.ndarray) -> np.ndarray:
            ren = self.camera.render_crop_rgbx(cs, crop)
            return cv2.bitwise_and(cv2.absdiff(ren, obs4), valid4)

        def window_scores(d: np.ndarray, boxes: list) -> np.ndarray:
            return np.array([sum(cv2.sumElems(d[b0:b1, b2:b3])[:3])
                             for b0, b1, b2, b3 in boxes])

        def windows(cs: np.ndarray) -> list:
            u = np.rint(cs[..., 0] * a + c - x0).astype(int).ravel()
            v = np.rint(cs[..., 1] * e + f - y0).astype(int).ravel()
            return [(max(0, vv - r), min(h, vv + r + 1), max(0, uu - r), min(w, uu + r + 1))
                    for uu, vv in zip(u, v, strict=True)]

        shifts = np.array(_SHIFTS)
        active = np.ones(8, dtype=bool)  # corners still in doubt
        # The fit's own rounding is often right already: one render settles it.
        current = mismatch_map(corners)  # mismatch map of ``corners``
        rendered += 1
        best_err = sum(cv2.sumElems(current)[:3]) / n_valid
        for _ in range(self.max_passes if best_err > 0.0 else 0):
            boxes = windows(corners)
            scores = np.empty((len(shifts), 8))
            for i, dxy in enumerate(shifts):
                if i == 0:
                    d = current
                else:
                    moved = corners.reshape(8, 2) + active[:, None] * dxy
                    d = mismatch_map(moved.reshape(2, 4, 2))
                    rendered += 1
                scores[i] = window_scores(d, boxes)
            pick = np.where(active, np.argmin(scores, axis=0), 0)  # (0, 0) wins ties
            moved = corners + shifts[pick].reshape(2, 4, 2)
            rendered += 1
            current = mismatch_map(moved)
            err = sum(cv2.sumElems(current)[:3]) / n_valid
            if err < best_err:
                best, best_err = moved, err
            if err == 0.0:
                break
            now_active = window_scores(current, windows(moved)) > 0
            if np.array_equal(moved, corners) and np.array_equal(now_active, active):
                break
            corners, active = moved, now_active
            if not active.any():
                break
        if best_err > 0.0:
            # Joint shifts can stall where corners interact (the stem's inner corners sit
            # on the bar's edge): move one doubtful corner at a time, keep what helps.
            if np.array_equal(best, corners):
                m = current
            else:
                m = mismatch_map(best)
                rendered += 1
            doubt = window_scores(m, windows(best))
            for k in np.argsort(-doubt):
                if doubt[k] <= 0.0 or rendered >= self.max_renders or best_err == 0.0:
                    break
                start = best
                for dxy in shifts[1:]:
                    moved = start.reshape(8, 2).copy()
                    moved[k] += dxy
                    moved = moved.reshape(2, 4, 2)
                    rendered += 1
                    err = sum(cv2.sumElems(mismatch_map(moved))[:3]) / n_valid
                    if err < best_err:
                        best, best_err = moved, err
                    if err == 0.0:
                        break
        cell = self._cell(best, float(p0[2]))
        mean, extent = cell if cell is not None else (p0, 0.0)
        return SynthesisResult((float(mean[0]), float(mean[1]), float(mean[2])),
                               best_err == 0.0 and cell is not None, float(best_err),
                               rendered, extent)

    def _cell(self, corners: np.ndarray, theta0: float) -> tuple[np.ndarray, float] | None:
        """Mean pose and angular extent of ``corners``' cell (None: no pose rounds to it)."""
        cell = corner_cell(corners, theta0, self.theta_range_rad, self.theta_steps)
        return None if cell is None else (cell.mean(), cell.extent_rad())


@dataclass(frozen=True)
class CornerCell:
    """Every pose whose T corners round to one corner set, as slices over a fine angle grid.

    For a fixed angle each corner's rounding bounds ``x`` and ``y`` independently, so the
    cell's slice at angle ``theta`` is the rectangle ``max(V - 0.5 - R b) <= (x, y) <=
    min(V + 0.5 - R b)`` over the corners ``V`` and body corners ``b``: exact up to the grid.
    """

    theta: np.ndarray
    x_lo: np.ndarray
    x_hi: np.ndarray
    y_lo: np.ndarray
    y_hi: np.ndarray
    area: np.ndarray

    def mean(self) -> np.ndarray:
        """The cell's centroid (x_px, y_px, theta_rad): the posterior mean, flat prior."""
        w = self.area / self.area.sum()
        return np.array([(w * 0.5 * (self.x_lo + self.x_hi)).sum(),
                         (w * 0.5 * (self.y_lo + self.y_hi)).sum(), (w * self.theta).sum()])

    def extent_rad(self) -> float:
        inside = np.nonzero(self.area > 0.0)[0]
        return float(self.theta[inside[-1]] - self.theta[inside[0]])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` poses drawn uniformly from the cell, (n, 3)."""
        k = rng.choice(len(self.theta), n, p=self.area / self.area.sum())
        u = rng.uniform(0.0, 1.0, (n, 2))
        return np.column_stack([self.x_lo[k] + u[:, 0] * (self.x_hi - self.x_lo)[k],
                                self.y_lo[k] + u[:, 1] * (self.y_hi - self.y_lo)[k],
                                self.theta[k]])


def corner_cell(corners: np.ndarray, theta0: float, theta_range_rad: float = 0.015,
                theta_steps: int = 241) -> CornerCell | None:
    """The cell of integer ``corners`` (2, 4, 2) around angle ``theta0``; None if empty.

    The angle grid is ``theta0 +- theta_range_rad``, widened (up to 4x) while the cell
    reaches its ends.
    """
    body = np.concatenate(geometry.RECTS)  # (8, 2), same order as t_corners
    vx, vy = corners.reshape(8, 2).astype(np.float64).T
    half = float(theta_range_rad)
    for _ in range(3):
        th = theta0 + np.linspace(-half, half, int(theta_steps))
        c, s = np.cos(th)[:, None], np.sin(th)[:, None]
        ax = c * body[:, 0] - s * body[:, 1]
        ay = s * body[:, 0] + c * body[:, 1]
        xlo, xhi = (vx - 0.5 - ax).max(axis=1), (vx + 0.5 - ax).min(axis=1)
        ylo, yhi = (vy - 0.5 - ay).max(axis=1), (vy + 0.5 - ay).min(axis=1)
        area = np.clip(xhi - xlo, 0.0, None) * np.clip(yhi - ylo, 0.0, None)
        inside = np.nonzero(area > 0.0)[0]
        if len(inside) == 0:
            return None
        if inside[0] > 0 and inside[-1] < len(th) - 1:
            break
        half *= 2.0  # the cell reaches the grid's end: widen
    return CornerCell(th, xlo, xhi, ylo, yhi, area)


__all__ = ['CornerCell', 'SynthesisRefiner', 'SynthesisResult', 'corner_cell']
