"""Forward camera models: render what a camera would see for a hypothesised object pose.

A *camera model* lets a backend compare the observed image with the image a candidate pose
would produce (analysis by synthesis). It is part of the view's configuration in the task
contract (``views.<name>.camera_model``), never guessed:

- ``none``: no forward model (real cameras; the backend uses its analytic fit alone).
- ``gym-pusht-pygame``: gym-pusht's top camera. gym-pusht draws the scene with pygame at
  512 x 512 px from corners rounded to whole pixels (pymunk's ``to_pygame``): each of the T's
  two rectangles is a filled polygon in the block's light colour, then each edge a 4 px
  ``pygame.draw.lines`` stroke, a polygon widened by whole-pixel offsets and two radius-2
  circles (gym-pusht's ``DrawOptions``); the goal is a LightGreen polygon under it and the
  walls are fat segments. ``cv2.resize`` (bilinear) then maps 512 -> 480 px. That image is a
  deterministic function of the 8 rounded corners, so this model reproduces it bit for bit
  from those corners: see :class:`PushTPygameCamera`.
- ``pusht-area-v1``: the sim cell's area-sampled (anti-aliased) top camera
  (:mod:`enpire_tasks.push_t.render`, the cell's ``camera.renderer: area``): every pixel is the
  area-weighted mean colour of the same scene, so the image moves with sub-pixel motion of
  the block. Its model (:class:`PushTAreaCamera`) is that renderer's own code (a pure
  function of pose -> image; no simulator state) and unmixes each pixel's block share
  against the known static background.

The model knows only what the camera and the task contract define (the renderer, the goal
pose from the task, the T's geometry, the static walls of the scene): never the simulator's
state. The plugin declares them by name (:data:`CAMERA_MODELS`); a view's name is looked up
with :func:`enpire_tasks.camera_models.make_camera_model`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.tasks import ViewSpec
from enpire_tasks.push_t import geometry, render, scene

CAMERA_MODEL_PUSHT = 'gym-pusht-pygame'
CAMERA_MODEL_AREA = 'pusht-area-v1'

#: The scene's walls (``enpire_tasks.push_t.scene``) in pygame's integer coordinates.
_WALLS = tuple(((int(ax), int(ay)), (int(bx), int(by)), radius)
               for (ax, ay), (bx, by), radius in scene.WALLS)
#: Render size of gym-pusht (workspace px = render px).
_RENDER_PX = scene.TABLE_PX


def _pygame():
    os.environ.setdefault('PYGAME_HIDE_SUPPORT_PROMPT', '1')
    import pygame  # a dependency of gym-pusht; drawing on a plain Surface needs no display

    return pygame


def t_corners(poses: np.ndarray) -> np.ndarray:
    """World corners of the T for an (N, 3) pose array: (N, 2, 4, 2) float64.

    Same arithmetic as Chipmunk's ``cpTransformPoint`` (``cos * x - sin * y + tx``) in
    pymunk's vertex order (gym-pusht's ``add_tee``: bar, then stem).
    """
    poses = np.atleast_2d(np.asarray(poses, dtype=np.float64))
    c = np.cos(poses[:, 2])[:, None, None]
    s = np.sin(poses[:, 2])[:, None, None]
    body = np.stack(geometry.RECTS)  # (2, 4, 2)
    bx, by = body[..., 0][None], body[..., 1][None]
    x = c * bx - s * by + poses[:, 0][:, None, None]
    y = s * bx + c * by + poses[:, 1][:, None, None]
    return np.stack([x, y], axis=-1)


def round_half_even(v: np.ndarray) -> np.ndarray:
    """Python's ``round`` (what ``to_pygame`` applies) for arrays: half to even."""
    return np.rint(v).astype(np.int64)


class _FatSegmentDrawer:
    """gym-pusht's ``DrawOptions.draw_fat_segment`` with integer (rounded) end points."""

    def __init__(self, pygame) -> None:
        self.pg = pygame

    def draw(self, surface, p1: tuple[int, int], p2: tuple[int, int], radius: float,
             color: tuple[int, int, int]) -> None:
        pg = self.pg
        r = round(max(1, radius * 2))
        pg.draw.lines(surface, color, False, [p1, p2], r)
        if r > 2:
            orthog = [abs(p2[1] - p1[1]), abs(p2[0] - p1[0])]
            if orthog[0] == 0 and orthog[1] == 0:
                return
            scale = radius / (orthog[0] * orthog[0] + orthog[1] * orthog[1]) ** 0.5
            orthog[0] = round(orthog[0] * scale)
            orthog[1] = round(orthog[1] * scale)
            points = [(p1[0] - orthog[0], p1[1] - orthog[1]),
                      (p1[0] + orthog[0], p1[1] + orthog[1]),
                      (p2[0] + orthog[0], p2[1] + orthog[1]),
                      (p2[0] - orthog[0], p2[1] - orthog[1])]
            pg.draw.polygon(surface, color, points)
            pg.draw.circle(surface, color, p1, round(radius))
            pg.draw.circle(surface, color, p2, round(radius))


@dataclass(frozen=True)
class Crop:
    """A render-aligned crop: ``render`` box at 512 px and its exact ``image`` box.

    Boxes are ``(x0, y0, x1, y1)``, exclusive ends. The render box is aligned to the
    resize's period (16 px at 512 -> 480), so the image box (15 px) is computed from the
    render box's pixels alone, bit for bit as in the full frame.
    """

    render: tuple[int, int, int, int]
    image: tuple[int, int, int, int]


class PushTPygameCamera:
    """gym-pusht's top camera as a forward model (``camera_model: gym-pusht-pygame``).

    Args:
        goal_pose: the task's goal pose (drawn LightGreen under the block).
        view: the camera view; its image must be the 512 px render resized by a rational
            factor ``p / q`` (480 / 512 = 15 / 16), e.g. 480 x 480.

    Raises:
        ConfigError: the view is not a resize of gym-pusht's square 512 px render.
    """

    name = CAMERA_MODEL_PUSHT

    def __init__(self, goal_pose: Sequence[float], view: ViewSpec) -> None:
        (a, b, c), (d, e, f) = view.workspace_to_pixel
        scale = view.width_px / _RENDER_PX
        if (view.width_px != view.height_px or b or d or c or f
                or abs(a - scale) > 1e-9 or abs(e - scale) > 1e-9):
            raise ConfigError(
                f"camera model '{CAMERA_MODEL_PUSHT}' needs a square view that is gym-pusht's "
                f'512 px render resized (workspace_to_pixel = diag(s, s), s = width / 512); '
                f"view '{view.name}' is {view.width_px} x {view.height_px} with "
                f'{view.workspace_to_pixel}: set its camera_model to none')
        g = math.gcd(view.width_px, _RENDER_PX)
        #: Resize period: ``self.src_period`` render px -> ``self.dst_period`` image px.
        self.src_period = _RENDER_PX // g
        self.dst_period = view.width_px // g
        self.view = view
        self.goal_pose = tuple(float(v) for v in goal_pose)
        self._pg = _pygame()
        self._fat = _FatSegmentDrawer(self._pg)
        self._background = self._render_background()
        self._surfaces: dict[tuple[int, int], object] = {}

    # --- rendering ------------------------------------------------------------------------
    def _render_background(self):
        """The static scene (white, goal, walls) at 512 px, as gym-pusht draws it."""
        pg = self._pg
        screen = pg.Surface((_RENDER_PX, _RENDER_PX))
        screen.fill(scene.TABLE)
        goal = round_half_even(t_corners(np.asarray([self.goal_pose]))[0])
        for poly in goal:
            pts = [(int(x), int(y)) for x, y in poly]
            pg.draw.polygon(screen, scene.GOAL, [*pts, pts[0]])
        for a, b, radius in _WALLS:
            self._fat.draw(screen, a, b, radius, scene.WALL)
        return screen

    def _draw_block(self, surface, corners: np.ndarray, dx: int, dy: int) -> None:
        pg = self._pg
        for poly in corners:
            pts = [(int(x) - dx, int(y) - dy) for x, y in poly]
            pg.draw.polygon(surface, scene.BLOCK_FILL, [*pts, pts[0]])
            # gym-pusht's four fat segments, whose strokes share one colour: their union
            # does not depend on order, so each corner's two identical end circles are
            # drawn once.
            for i in range(4):
                p1, p2 = pts[i], pts[(i + 1) % 4]
                pg.draw.lines(surface, scene.BLOCK_BORDER, False, [p1, p2], 4)
                ox, oy = abs(p2[1] - p1[1]), abs(p2[0] - p1[0])
                if ox or oy:
                    scale = 2.0 / (ox * ox + oy * oy) ** 0.5
                    ox, oy = round(ox * scale), round(oy * scale)
                    pg.draw.polygon(surface, scene.BLOCK_BORDER, [(p1[0] - ox, p1[1] - oy),
                                                      (p1[0] + ox, p1[1] + oy),
                                                      (p2[0] + ox, p2[1] + oy),
                                                      (p2[0] - ox, p2[1] - oy)])
            for p in pts:
                pg.draw.circle(surface, scene.BLOCK_BORDER, p, 2)

    def crop_for(self, corners: np.ndarray, margin_px: int = 8) -> Crop | None:
        """The aligned crop holding the block drawn at integer ``corners`` (2, 4, 2).

        Returns None when the block (plus ``margin_px``) reaches the frame's edge, where
        clipped strokes would not be reproduced exactly.
        """
        lo = corners.reshape(-1, 2).min(axis=0) - margin_px
        hi = corners.reshape(-1, 2).max(axis=0) + margin_px + 1
        if lo.min() < 0 or hi.max() > _RENDER_PX:
            return None
        p, q = self.src_period, self.dst_period
        x0, y0 = (int(v) // p * p for v in lo)
        x1, y1 = (-(-int(v) // p) * p for v in hi)
        return Crop((x0, y0, x1, y1), (x0 // p * q, y0 // p * q, x1 // p * q, y1 // p * q))

    def render_crop(self, corners: np.ndarray, crop: Crop) -> np.ndarray:
        """The camera image inside ``crop.image`` with the block at integer ``corners``.

        Args:
            corners: (2, 4, 2) integer corners (bar, stem) at 512 px, as drawn.
            crop: from :meth:`crop_for`.

        Returns:
            (h, w, 3) uint8 RGB, bit-identical to the same pixels of the full camera image
            when no pusher is near.
        """
        return np.ascontiguousarray(self.render_crop_rgbx(corners, crop)[..., :3])

    def render_crop_rgbx(self, corners: np.ndarray, crop: Crop) -> np.ndarray:
        """:meth:`render_crop` as (h, w, 4) RGBX (the 4th channel is padding, not compared).

        pygame hands out 32-bit pixels ~10x faster than packed RGB, and the bilinear resize
        treats every channel alike, so the first three channels are bit-identical.
        """
        x0, y0, x1, y1 = crop.render
        key = (x1 - x0, y1 - y0)
        surface = self._surfaces.get(key)
        if surface is None:
            surface = self._surfaces[key] = self._pg.Surface(key)
        surface.blit(self._background, (0, 0), (x0, y0, x1 - x0, y1 - y0))
        self._draw_block(surface, corners, x0, y0)
        raw = np.frombuffer(self._pg.image.tobytes(surface, 'RGBX'), dtype=np.uint8)
        raw = raw.reshape(key[1], key[0], 4)
        ix0, iy0, ix1, iy1 = crop.image
        return cv2.resize(raw, (ix1 - ix0, iy1 - iy0))

    def occluded(self, rgb: np.ndarray) -> np.ndarray:
        """Pixels of ``rgb`` (h, w, 3) that the pusher tints, (h, w) bool.

        The pusher (RoyalBlue) is the scene's only bluish colour: every blend of the block,
        goal, wall and background colours has ``B - R <= 41`` (the block's fill), so a
        larger difference means some pusher share (>= ~1%).
        """
        return (rgb[..., 2].astype(np.int16) - rgb[..., 0]) > 41

    def render_full(self, corners: np.ndarray) -> np.ndarray:
        """The whole camera image with the block at integer ``corners`` (tests, evidence)."""
        surface = self._background.copy()
        self._draw_block(surface, corners, 0, 0)
        raw = np.frombuffer(self._pg.image.tobytes(surface, 'RGB'), dtype=np.uint8)
        raw = raw.reshape(_RENDER_PX, _RENDER_PX, 3)
        return cv2.resize(raw, (self.view.width_px, self.view.height_px))


class PushTAreaCamera:
    """The sim cell's area-sampled top camera as a forward model (``pusht-area-v1``).

    Each pixel of that camera is ``background * (1 - a) + border * (a - f) + fill * f``
    (then the pusher over it), where ``a`` is the pixel's share covered by the block's
    silhouette (the T grown by its 2 px border, round outer corners) and ``f`` the share of
    its lighter fill, which lies >= 4 px inside the silhouette's edge. So a pixel on the
    block's edge is a two-colour blend of the known background and the border colour, and
    its block share is a linear unmix (:meth:`unmix`).

    Args:
        goal_pose: the task's goal pose (drawn under the block).
        view: the camera view; its ``workspace_to_pixel`` must be an isotropic scale plus
            offset (``[[s, 0, ox], [0, s, oy]]``).

    Raises:
        ConfigError: the view's map is not an isotropic scale.
    """

    name = CAMERA_MODEL_AREA
    #: Unmixing residual (RGB units) above which a pixel is not a block/background blend.
    residual_tol = 8.0

    def __init__(self, goal_pose: Sequence[float], view: ViewSpec) -> None:
        (a, b, c), (d, e, f) = view.workspace_to_pixel
        if b or d or a <= 0 or abs(a - e) > 1e-9:
            raise ConfigError(
                f"camera model '{CAMERA_MODEL_AREA}' needs a top view with an isotropic scale "
                f'(workspace_to_pixel = [[s, 0, ox], [0, s, oy]]); view {view.name!r} has '
                f'{view.workspace_to_pixel}: set its camera_model to none')
        self.view = view
        self.goal_pose = tuple(float(v) for v in goal_pose)
        self.scale = float(a)
        self.renderer = render.AreaRenderer(view.width_px, view.height_px,
                                            view.workspace_to_pixel, self.goal_pose)
        self.background = self.renderer.background_f.astype(np.float32)
        self.border = np.asarray(scene.BLOCK_BORDER, dtype=np.float32)
        self.fill = np.asarray(scene.BLOCK_FILL, dtype=np.float32)
        #: The silhouette: the T's boxes grown by this much with round corners, workspace px.
        self.grow_px = float(scene.BORDER_HALF_PX)
        g = self.fill - self.border
        self._g, self._gg = [float(v) for v in g], float(g @ g)
        self._bg = [np.ascontiguousarray(self.background[..., i]) for i in range(3)]
        self._edge = [float(self.border[i]) - self._bg[i] for i in range(3)]
        self._edge_sq = self._edge[0] ** 2 + self._edge[1] ** 2 + self._edge[2] ** 2
        self._kernel = np.ones((3, 3), np.uint8)

    def render_full(self, pose: Sequence[float],
                    pusher_pos: Sequence[float] | None = None) -> np.ndarray:
        """The whole camera image with the block at ``pose`` (pusher off-image if None)."""
        return self.renderer.render(pose, (-1e4, -1e4) if pusher_pos is None else pusher_pos)

    def unmix(self, rgb: np.ndarray, box: tuple[int, int, int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
        """Block share and usable-pixel weight of the crop ``rgb`` at ``box`` (x0, y0, x1, y1).

        A pixel is either a blend of its background and the border colour (on the
        silhouette's edge or outside: share = the blend's border fraction) or a blend of the
        border and the fill (inside: share 1), whichever explains its colour better. Pixels
        that neither explains within :attr:`residual_tol` (the pusher, and pixels it tints,
        which also fail the bluish test) get weight 0, as do their neighbours.

        Returns:
            ``(alpha, weight)``, both (h, w) float32.
        """
        x0, y0, x1, y1 = box
        # Per channel in float32: ~5x faster than reductions over a colour axis.
        c = [rgb[..., i].astype(np.float32) for i in range(3)]
        e = [ch[y0:y1, x0:x1] for ch in self._edge]
        d = [c[i] - self._bg[i][y0:y1, x0:x1] for i in range(3)]
        de = d[0] * e[0] + d[1] * e[1] + d[2] * e[2]
        ee = self._edge_sq[y0:y1, x0:x1]
        alpha = np.clip(de / ee, 0.0, 1.0)
        dd = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
        res_edge = dd - alpha * (2.0 * de - alpha * ee)  # |d - alpha e|^2
        cb = [c[i] - self.border[i] for i in range(3)]
        g = self._g
        cg = cb[0] * g[0] + cb[1] * g[1] + cb[2] * g[2]
        t = np.clip(cg / self._gg, 0.0, 1.0)
        res_in = (cb[0] * cb[0] + cb[1] * cb[1] + cb[2] * cb[2]) - t * (2.0 * cg - t * self._gg)
        # Near the border colour a little white and a little fill look alike (their
        # directions from it differ by ~14 degrees): a pixel with a small fill share is read
        # as an edge blend unless the edge blend clearly fails. Fill lies >= 3.75 px inside
        # the edge, outside the fit's band, so that costs nothing.
        inside = (res_in < res_edge) & ((t > 0.2) | (res_edge > 6.25))
        alpha[inside] = 1.0
        bluish = (c[2] - c[0]) > 41.0  # only the pusher is bluer than the fill
        tol2 = self.residual_tol * self.residual_tol
        bad = (bluish | (np.minimum(res_in, res_edge) > tol2)).astype(np.uint8)
        weight = 1.0 - cv2.dilate(bad, self._kernel).astype(np.float32)
        alpha[bad > 0] = 0.0
        return alpha, weight


#: The task's forward camera models by name (``views.<view>.camera_model``).
CAMERA_MODELS = {
    CAMERA_MODEL_PUSHT: lambda task, view: PushTPygameCamera(task.goal_pose, view),
    CAMERA_MODEL_AREA: lambda task, view: PushTAreaCamera(task.goal_pose, view),
}

#: The sim cell renderer (``camera.renderer``) whose images each camera model describes.
CAMERA_MODEL_RENDERERS: dict[str, str] = {CAMERA_MODEL_AREA: render.RENDERER_AREA,
                                          CAMERA_MODEL_PUSHT: render.RENDERER_GYM_PUSHT}


__all__ = ['CAMERA_MODELS', 'CAMERA_MODEL_AREA', 'CAMERA_MODEL_PUSHT', 'CAMERA_MODEL_RENDERERS',
           'Crop', 'PushTAreaCamera', 'PushTPygameCamera', 'round_half_even', 't_corners']
