"""Area-sampled (anti-aliased) top camera of the Push-T scene, without pygame.

gym-pusht's own camera (pygame at 512 px from corners rounded to whole pixels, then
``cv2.resize``) maps every pose that rounds to the same corners to the same image, so near
the success threshold no verifier can tell some successes from failures. A real camera
integrates the light over each pixel's area instead, so the image moves with sub-pixel
motion of the block. :class:`AreaRenderer` draws that image:

- the same scene as gym-pusht's ``_draw``: a white table, the goal T (LightGreen), the four
  walls (LightGray, 4 px wide), the block T (each of its two rectangles filled with
  ``1.2 x LightSlateGray`` and outlined by a 4 px LightSlateGray border, bar first, then
  stem) and the pusher drawn last (a RoyalBlue disk of radius 15 with a lighter disk of
  radius 11). Geometry is exact: the border is every point within 2 px of a rectangle's
  outline (round outer corners), nothing is rounded to whole pixels. gym-pusht's debug
  marks of contact points (red lines while the pusher touches the block) are not drawn: a
  camera does not see them.
- each pixel's value is the area-weighted mean colour over the pixel: exact along x
  (every shape's extent on a row is analytic), ``subrows`` point samples along y, and the
  layers alpha-composited by their coverage over the static background.

Pixel ``(u, v)`` covers image coordinates ``[u - 0.5, u + 0.5) x [v - 0.5, v + 0.5)`` where
the view's ``workspace_to_pixel`` maps workspace px to image coordinates (pixel centres at
integers, as in OpenCV). Only the block's and the pusher's bounding boxes are drawn per
frame; the static background is drawn once.

Everything here is a pure function of (block pose, pusher position, view): the verifier's
forward camera model (``camera_model: pusht-area-v1``) uses the same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from enpire_common.errors import ConfigError
from enpire_tasks.push_t import scene

#: Renderer names of the Push-T sim cell's top camera.
RENDERER_AREA = 'area'
RENDERER_GYM_PUSHT = 'gym-pusht'
RENDERERS = (RENDERER_AREA, RENDERER_GYM_PUSHT)

#: The scene's colours (``enpire_tasks.push_t.scene``), RGB as floats for compositing.
WHITE = tuple(float(c) for c in scene.TABLE)
GOAL = tuple(float(c) for c in scene.GOAL)
WALL = tuple(float(c) for c in scene.WALL)
BORDER = tuple(float(c) for c in scene.BLOCK_BORDER)
FILL = tuple(float(c) for c in scene.BLOCK_FILL)
PUSHER = tuple(float(c) for c in scene.PUSHER)
PUSHER_FILL = tuple(float(c) for c in scene.PUSHER_FILL)

T_BOXES = scene.T_BOXES
BORDER_HALF_PX = scene.BORDER_HALF_PX
PUSHER_RADIUS_PX = scene.PUSHER_RADIUS_PX
PUSHER_FILL_RADIUS_PX = scene.PUSHER_FILL_RADIUS_PX
WALLS = scene.WALLS
DEFAULT_SUBROWS = 16
_EPS = 1e-12


# --- row intervals of convex shapes (workspace px) -------------------------------------------
def _slab(y: np.ndarray, cx: float, cy: float, ux: float, uy: float, h: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """x-interval of the slab ``|(p - c) . u| <= h`` on rows ``y`` (empty: lo > hi)."""
    t = (y - cy) * uy
    if abs(ux) < _EPS:
        inside = np.abs(t) <= h
        return np.where(inside, -np.inf, np.inf), np.where(inside, np.inf, -np.inf)
    a = cx + (-h - t) / ux
    b = cx + (h - t) / ux
    return np.minimum(a, b), np.maximum(a, b)


def box_interval(y: np.ndarray, centre: Sequence[float], theta: float, half: Sequence[float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Row intervals of a rotated box (centre, angle, half sizes) on rows ``y``."""
    c, s = math.cos(theta), math.sin(theta)
    l1, r1 = _slab(y, centre[0], centre[1], c, s, half[0])
    l2, r2 = _slab(y, centre[0], centre[1], -s, c, half[1])
    lo, hi = np.maximum(l1, l2), np.minimum(r1, r2)
    empty = lo > hi  # as (+inf, -inf), which hulls of intervals ignore
    return np.where(empty, np.inf, lo), np.where(empty, -np.inf, hi)


def disk_interval(y: np.ndarray, centre: Sequence[float], radius: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Row intervals of a disk on rows ``y``."""
    d2 = radius * radius - (y - centre[1]) ** 2
    w = np.sqrt(np.maximum(d2, 0.0))
    ok = d2 > 0.0
    return np.where(ok, centre[0] - w, np.inf), np.where(ok, centre[0] + w, -np.inf)


def rounded_box_interval(y: np.ndarray, centre: Sequence[float], theta: float,
                         half: Sequence[float], radius: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Row intervals of a rotated box grown by ``radius`` with round corners (convex).

    The shape is the union of the box widened along each axis and the four corner disks;
    it is convex, so its interval is the hull of the pieces' intervals.
    """
    c, s = math.cos(theta), math.sin(theta)
    hx, hy = half
    lo, hi = box_interval(y, centre, theta, (hx + radius, hy))
    l2, h2 = box_interval(y, centre, theta, (hx, hy + radius))
    lo, hi = _hull(lo, hi, l2, h2)
    for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        p = (centre[0] + c * sx * hx - s * sy * hy, centre[1] + s * sx * hx + c * sy * hy)
        l2, h2 = disk_interval(y, p, radius)
        lo, hi = _hull(lo, hi, l2, h2)
    return lo, hi


def _hull(l1: np.ndarray, h1: np.ndarray, l2: np.ndarray, h2: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    # Empty intervals are (+inf, -inf), so min / max ignore them.
    return np.minimum(l1, l2), np.maximum(h1, h2)


def _meet(l1: np.ndarray, h1: np.ndarray, l2: np.ndarray, h2: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(l1, l2), np.minimum(h1, h2)


def t_boxes(pose: Sequence[float]) -> list[tuple[tuple[float, float], float,
                                                 tuple[float, float]]]:
    """The T's two rectangles at ``pose`` as (centre, theta, half sizes), bar then stem."""
    x, y, th = float(pose[0]), float(pose[1]), float(pose[2])
    c, s = math.cos(th), math.sin(th)
    return [((x + c * bx - s * by, y + s * bx + c * by), th, (hx, hy))
            for bx, by, hx, hy in T_BOXES]


# --- coverage accumulation ------------------------------------------------------------------
class _Grid:
    """Pixel rows ``v0 .. v0 + h`` and columns ``u0 .. u0 + w`` of one view, sampled by
    ``subrows`` rows per pixel; maps workspace x to pixel-relative columns."""

    def __init__(self, sx: float, ox: float, sy: float, oy: float, box: tuple[int, ...],
                 subrows: int) -> None:
        u0, v0, u1, v1 = box
        self.u0, self.v0, self.w, self.h = u0, v0, u1 - u0, v1 - v0
        self.k = subrows
        # Image y of each sample row, then workspace y (sample rows at (j + 0.5) / k).
        ys = v0 - 0.5 + (np.arange(self.h * subrows) + 0.5) / subrows
        self.y = (ys - oy) / sy
        self.row = np.repeat(np.arange(self.h), subrows)
        self.sx, self.ox = sx, ox

    def coverage(self, *layers: Sequence[tuple[np.ndarray, np.ndarray, float]]
                 ) -> np.ndarray:
        """Pixel coverage (n_layers, h, w) of each layer's signed sum of ``(lo, hi, sign)``.

        A row's interval [l, r] covers column j (image x in [j - 0.5, j + 0.5)) by
        ``F(r, j) - F(l, j)`` with ``F(x, j) = clip(x - j + 0.5, 0, 1)``, accumulated as a
        difference array (3 entries per end) and summed along the row once, all layers in
        one pass.
        """
        w, h = self.w, self.h
        idx, val = [], []
        for n, terms in enumerate(layers):
            for lo, hi, sign in terms:
                ok = lo < hi
                if not ok.any():
                    continue
                base = (self.row[ok] + n * h) * (w + 1)
                for x, sgn in ((hi[ok], sign), (lo[ok], -sign)):
                    xc = np.clip(self.sx * x + self.ox - self.u0 + 0.5, 0.0, float(w))
                    fl = np.minimum(np.floor(xc), w - 1).astype(np.int64)
                    fr = xc - fl
                    # F(x, .) = 1 on columns < fl, fr on fl, 0 after: +1 at 0, fr - 1 at
                    # fl, -fr at fl + 1.
                    idx += [base, base + fl, base + fl + 1]
                    val += [np.full(len(fl), float(sgn)), sgn * (fr - 1.0), sgn * -fr]
        size = len(layers) * h * (w + 1)
        if not idx:
            return np.zeros((len(layers), h, w))
        d = np.bincount(np.concatenate(idx), np.concatenate(val), minlength=size)
        cov = np.cumsum(d.reshape(len(layers), h, w + 1), axis=2)[..., :w] / self.k
        return np.clip(cov, 0.0, 1.0)


class AreaRenderer:
    """Area-sampled top camera of the Push-T scene (see the module docstring).

    Args:
        width_px: image width.
        height_px: image height.
        workspace_to_pixel: the view's affine map (2 x 3); must be axis-aligned
            (``[[sx, 0, ox], [0, sy, oy]]``, ``sx, sy > 0``).
        goal_pose: the goal T's pose (x_px, y_px, theta_rad), drawn LightGreen.
        subrows: sample rows per pixel row (x is exact).

    Raises:
        ConfigError: the map is not axis-aligned or ``subrows`` < 1.
    """

    def __init__(self, width_px: int, height_px: int,
                 workspace_to_pixel: Sequence[Sequence[float]], goal_pose: Sequence[float],
                 subrows: int = DEFAULT_SUBROWS) -> None:
        (a, b, c), (d, e, f) = workspace_to_pixel
        if b or d or a <= 0 or e <= 0:
            raise ConfigError(
                f'the area renderer needs an axis-aligned top camera (workspace_to_pixel = '
                f'[[sx, 0, ox], [0, sy, oy]], sx, sy > 0), got {workspace_to_pixel}: use '
                f'camera.renderer gym-pusht')
        if int(subrows) < 1:
            raise ConfigError(f'subrows={subrows} is invalid: must be >= 1')
        self.width_px, self.height_px = int(width_px), int(height_px)
        self.sx, self.ox, self.sy, self.oy = float(a), float(c), float(e), float(f)
        self.subrows = int(subrows)
        self.goal_pose = tuple(float(g) for g in goal_pose)
        self.background_f = self._render_background()
        #: The static scene (table, goal, walls), (H, W, 3) uint8 RGB.
        self.background = _to_u8(self.background_f)

    # --- geometry ---------------------------------------------------------------------------
    def _grid(self, lo_ws: Sequence[float], hi_ws: Sequence[float]) -> _Grid | None:
        """The pixel box holding the workspace box [lo, hi] (None when off the image)."""
        u0 = max(0, math.floor(self.sx * lo_ws[0] + self.ox - 0.5) - 1)
        v0 = max(0, math.floor(self.sy * lo_ws[1] + self.oy - 0.5) - 1)
        u1 = min(self.width_px, math.ceil(self.sx * hi_ws[0] + self.ox + 0.5) + 1)
        v1 = min(self.height_px, math.ceil(self.sy * hi_ws[1] + self.oy + 0.5) + 1)
        if u1 <= u0 or v1 <= v0:
            return None
        return _Grid(self.sx, self.ox, self.sy, self.oy, (u0, v0, u1, v1), self.subrows)

    def block_coverage(self, pose: Sequence[float]
                       ) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
        """Coverage of the block at ``pose``: ``(box, alpha, fill)``.

        ``box`` = (u0, v0, u1, v1) pixel box (exclusive ends); ``alpha`` (h, w) the share of
        each pixel covered by the block (border or fill), ``fill`` the share covered by its
        lighter fill. None when the block is off the image.
        """
        boxes = t_boxes(pose)
        pts = []
        for (cx, cy), th, (hx, hy) in boxes:
            c, s = math.cos(th), math.sin(th)
            ex = abs(c) * hx + abs(s) * hy + BORDER_HALF_PX
            ey = abs(s) * hx + abs(c) * hy + BORDER_HALF_PX
            pts += [(cx - ex, cy - ey), (cx + ex, cy + ey)]
        pts_a = np.asarray(pts)
        grid = self._grid(pts_a.min(axis=0), pts_a.max(axis=0))
        if grid is None:
            return None
        y = grid.y
        r = BORDER_HALF_PX
        (bc, bt, bh), (sc, st, sh) = boxes
        bar_out = rounded_box_interval(y, bc, bt, bh, r)
        stem_out = rounded_box_interval(y, sc, st, sh, r)
        bar_in = box_interval(y, bc, bt, (bh[0] - r, bh[1] - r))
        stem_in = box_interval(y, sc, st, (sh[0] - r, sh[1] - r))
        # Painter's order: bar border, bar fill, stem border, stem fill.
        alpha, fill = grid.coverage(
            [(*bar_out, 1.0), (*stem_out, 1.0), (*_meet(*bar_out, *stem_out), -1.0)],
            [(*bar_in, 1.0), (*_meet(*bar_in, *stem_out), -1.0), (*stem_in, 1.0)])
        box = (grid.u0, grid.v0, grid.u0 + grid.w, grid.v0 + grid.h)
        return box, alpha, fill

    def pusher_coverage(self, pos: Sequence[float]
                        ) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
        """Coverage of the pusher at ``pos``: ``(box, alpha, inner)`` like
        :meth:`block_coverage` (``inner``: its lighter inner disk)."""
        r = PUSHER_RADIUS_PX
        grid = self._grid((pos[0] - r, pos[1] - r), (pos[0] + r, pos[1] + r))
        if grid is None:
            return None
        alpha, inner = grid.coverage(
            [(*disk_interval(grid.y, pos, r), 1.0)],
            [(*disk_interval(grid.y, pos, PUSHER_FILL_RADIUS_PX), 1.0)])
        box = (grid.u0, grid.v0, grid.u0 + grid.w, grid.v0 + grid.h)
        return box, alpha, inner

    # --- images -----------------------------------------------------------------------------
    def _render_background(self) -> np.ndarray:
        img = np.empty((self.height_px, self.width_px, 3))
        img[:] = WHITE
        full = self._grid((-1e6, -1e6), (1e6, 1e6))
        assert full is not None
        y = full.y
        (bc, bt, bh), (sc, st, sh) = t_boxes(self.goal_pose)
        bar = box_interval(y, bc, bt, bh)
        stem = box_interval(y, sc, st, sh)
        goal = full.coverage([(*bar, 1.0), (*stem, 1.0), (*_meet(*bar, *stem), -1.0)])[0]
        #: The goal T's share of each pixel, (H, W) float in [0, 1].
        self.goal_share = goal
        _over(img, goal, GOAL)
        for (ax, ay), (bx, by), radius in WALLS:
            # A fat segment: its body (a box along the segment) and two round caps.
            centre = (0.5 * (ax + bx), 0.5 * (ay + by))
            th = math.atan2(by - ay, bx - ax)
            half = (0.5 * math.hypot(bx - ax, by - ay), radius)
            lo, hi = rounded_box_interval(y, centre, th, (half[0], 0.0), radius)
            _over(img, full.coverage([(lo, hi, 1.0)])[0], WALL)
        return img

    def render(self, block_pose: Sequence[float], pusher_pos: Sequence[float]) -> np.ndarray:
        """The camera image, (H, W, 3) uint8 RGB."""
        img = self.background.copy()
        blk = self.block_coverage(block_pose)
        if blk is not None:
            (u0, v0, u1, v1), alpha, fill = blk
            img[v0:v1, u0:u1] = _two_tone(self.background_f[v0:v1, u0:u1], alpha, fill,
                                          BORDER, FILL)
        pus = self.pusher_coverage(pusher_pos)
        if pus is not None:
            (u0, v0, u1, v1), alpha, inner = pus
            img[v0:v1, u0:u1] = _two_tone(img[v0:v1, u0:u1].astype(np.float64), alpha, inner,
                                          PUSHER, PUSHER_FILL)
        return img


def _two_tone(under: np.ndarray, alpha: np.ndarray, inner: np.ndarray,
              edge: Sequence[float], core: Sequence[float]) -> np.ndarray:
    """A two-colour shape over ``under``: ``under (1 - a) + edge (a - i) + core i``, uint8.

    ``alpha`` is each pixel's share covered by the shape, ``inner`` the share of its core
    (inside the shape). Channel by channel: cheaper than broadcasting over a colour axis.
    """
    out = np.empty(under.shape)
    for i in range(3):
        out[..., i] = under[..., i] + alpha * (edge[i] - under[..., i]) + inner * (
            core[i] - edge[i])
    return _to_u8(out)


def _over(img: np.ndarray, alpha: np.ndarray, color: Sequence[float]) -> None:
    img *= (1.0 - alpha)[..., None]
    img += np.multiply.outer(alpha, color)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


__all__ = ['BORDER', 'BORDER_HALF_PX', 'DEFAULT_SUBROWS', 'FILL', 'GOAL', 'PUSHER',
           'PUSHER_FILL', 'PUSHER_RADIUS_PX', 'RENDERERS', 'RENDERER_AREA',
           'RENDERER_GYM_PUSHT', 'T_BOXES', 'WALL', 'WHITE', 'AreaRenderer', 'box_interval',
           'disk_interval', 'rounded_box_interval', 't_boxes']
