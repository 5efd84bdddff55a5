"""``zip-classic-v1``: is the tail through the head, from one calibrated camera.

Per view, from colour alone (the contract's ``parts``): the head's mask is its hue (blue),
the strap's its own (yellow: natural nylon's off-white clips to white under the lights, as
the robot's grey does, so only a coloured strap separates from the grippers holding it).
The contract judges a tie shown to the cameras held up: its head level, the passage along x
(within 20 degrees), the loop hanging below. The rules look at the strap's
connected pieces **near the head**, within ``reach`` of its mask (the head's own pixels
included), where the head's walls hide the tail inside the passage:

- ``side`` (level, looking across the passage): a tail through the head shows as two pieces,
  the one going in and the one coming out, beside the root (going down): **3 pieces**. A tail
  passing in front of the head stays one piece (it hides the head where it crosses); one that
  stops short, or has not reached the head, is one piece beside the root.
- ``task_top`` (straight down): the strap overlaps the head and sticks out past it: **two
  pieces on opposite sides of the head, each running towards it** (the tail going in and
  coming out; the root hangs below the head), among the strap's lit pixels (the faces
  turned up: the shaded loop going down under the exit would join its piece). A tail
  passing over the head is one piece; one passing beside it runs across the line to the
  head, not along it.

AND fusion: a tail behind the head from one camera (which splits it in that view) passes
beside or over it in the other. A view that cannot see the head (occluded, out of the frame)
is ``invalid``: not found, so the fused verdict is invalid unless another view fails.

Pose: ``[x, y, through]``; the top view gives the head's (x, y) on the plane of a head lying
on its start rail (NaN from the side view).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks.arm import Blob, PartFinder, PinholeCamera, hue_mask
from enpire_tasks.estimation import Estimate, InstanceSegmenter, Segmentation
from enpire_tasks.zip_tie import stages
from enpire_tasks.zip_tie.geometry import parts

BACKEND_ID = 'zip-classic-v1'
#: A piece of strap counts with at least this many pixels inside the reach.
MIN_PIECE_PX = 3
#: The head's face a camera sees of a shown tie (m^2: 9 x 6 mm from above, 8.2 x 6 mm from
#: the side): its mask's area gives the view's scale (px per m) at the head.
HEAD_FACE_M2 = 52e-6
#: The reach round the head: the success protrusion plus this (m).
REACH_EXTRA_M = 0.004
#: A piece must reach this fraction of the success protrusion from the head (the scale from
#: the head's area is good to about 20%).
NEED_FRAC = 0.8
#: The side view's count of pieces of a tail through the head (root, in, out).
SIDE_PIECES_THROUGH = 3
#: Two top-view pieces are on opposite sides of the head when their directions from its
#: centre differ by at least this much (rad).
OPPOSITE_RAD = math.radians(120.0)
#: The top view judges the strap's pixels at least this bright, relative to the brightest
#: (95th percentile) within ``LIT_NEAR_PX`` of the head: the faces turned up (lit_strap).
LIT_FRAC, LIT_NEAR_PX = 0.8, 40
#: A top-view piece runs towards the head when its axis is within this of the line to it.
POINTS_AT_RAD = math.radians(60.0)


def strap_mask(image: np.ndarray, rgb: Sequence[int] | None = None) -> np.ndarray:
    """The strap's pixels: its hue (the contract's ``colour_rgb``), one-pixel gaps closed
    (seen edge-on the strap is a line a pixel or two wide, which aliasing breaks; its pixels
    mixed with the table's keep the hue at a lower saturation)."""
    raw = hue_mask(image, rgb or parts().strap_rgb, min_saturation=0.25)
    return cv2.morphologyEx(raw.astype(np.uint8), cv2.MORPH_CLOSE,
                            np.ones((3, 3), np.uint8)).astype(bool)


@dataclass(frozen=True)
class Piece:
    """A piece of strap near the head: its centroid (u, v) and its direction (unit, the
    principal axis of its pixels; a tail coming out and the loop beyond it can merge into one
    piece across the line to the head: such a tail is missed, never taken)."""

    centroid: np.ndarray
    axis: np.ndarray

    def points_at(self, centre: Sequence[float], max_rad: float) -> bool:
        """Whether the piece runs towards ``centre`` (within ``max_rad``): a tail going into
        or out of the head does; one passing beside it runs across."""
        to = np.asarray(centre, dtype=np.float64) - self.centroid
        n = float(np.linalg.norm(to))
        if n < 1e-6:
            return True
        return abs(float(self.axis @ to) / n) >= math.cos(max_rad)


def pieces_near(head: np.ndarray, strap: np.ndarray, protrusion_m: float
                ) -> tuple[list[Piece], int]:
    """(The pieces of ``strap`` near ``head``, the reach in px).

    Near: within ``protrusion + REACH_EXTRA_M`` of the head's mask, at the scale its area
    gives; a piece counts when it reaches at least ``protrusion`` from the head (a tail's tip
    that shows only just past the exit is not out past it) and has ``MIN_PIECE_PX``."""
    scale = math.sqrt(max(int(head.sum()), 1) / HEAD_FACE_M2)          # px per m
    reach = max(3, int(math.ceil((protrusion_m + REACH_EXTRA_M) * scale)))
    away = cv2.distanceTransform((~head).astype(np.uint8), cv2.DIST_L2, 3)
    near = strap & (away <= reach)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(near.astype(np.uint8), 8)
    need = NEED_FRAC * protrusion_m * scale
    out = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < MIN_PIECE_PX:
            continue
        mine = labels == i
        if float(away[mine].max()) < need:
            continue
        rows, cols = np.nonzero(mine)
        pts = np.stack([cols, rows], axis=1).astype(np.float64)
        c = pts.mean(axis=0)
        if len(pts) >= 2 and np.ptp(pts, axis=0).max() > 0:
            _, vecs = np.linalg.eigh(np.cov((pts - c).T))
            axis = vecs[:, -1]
        else:
            axis = np.array([1.0, 0.0])
        out.append(Piece(c, axis))
    return out, reach


def count_near(head: np.ndarray, strap: np.ndarray, reach_m: float) -> int:
    """How many pieces of ``strap`` (``MIN_PIECE_PX`` or more) lie within ``reach_m`` of
    ``head``'s mask, at the scale its area gives."""
    scale = math.sqrt(max(int(head.sum()), 1) / HEAD_FACE_M2)
    reach = max(1, int(math.ceil(reach_m * scale)))
    away = cv2.distanceTransform((~head).astype(np.uint8), cv2.DIST_L2, 3)
    near = (strap & ~head & (away <= reach)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(near, 8)
    return int(sum(stats[i, cv2.CC_STAT_AREA] >= MIN_PIECE_PX for i in range(1, n)))


def opposite(pieces: list[Piece], centre: Sequence[float]) -> bool:
    """Whether two of ``pieces`` that run towards ``centre`` lie on opposite sides of it."""
    towards = [p for p in pieces if p.points_at(centre, POINTS_AT_RAD)]
    ang = [math.atan2(p.centroid[1] - centre[1], p.centroid[0] - centre[0]) for p in towards]
    return any(abs((a - b + math.pi) % (2 * math.pi) - math.pi) >= OPPOSITE_RAD
               for i, a in enumerate(ang) for b in ang[i + 1:])


def lit_strap(image: np.ndarray, head: np.ndarray, strap: np.ndarray) -> np.ndarray:
    """The strap's pixels lit like its faces turned up (at least ``LIT_FRAC`` of the
    brightest near the head). From above, the tail through a shown head lies face up and is
    lit; the loop going down under it turns its face sideways, into the shade, and its
    pixels would join the tail's exit piece into one that no longer runs into the head."""
    value = np.asarray(image).max(axis=-1)
    away = cv2.distanceTransform((~head).astype(np.uint8), cv2.DIST_L2, 3)
    near = strap & (away <= LIT_NEAR_PX)
    if not near.any():
        return strap
    return strap & (value >= LIT_FRAC * float(np.percentile(value[near], 95)))


def through(view: str, head: Blob, strap: np.ndarray, protrusion: float
            ) -> tuple[bool, list[Piece], int, str]:
    """One view's rule (module doc) for a tip at least ``protrusion`` past the exit: (through,
    the pieces near the head, the reach in px, the rule in words). ``strap``: the top view's
    lit strap (:func:`lit_strap`), the side view's whole one."""
    pieces, reach = pieces_near(head.mask, strap, protrusion)
    if view == 'task_top':
        return (opposite(pieces, head.centroid), pieces, reach,
                'two on opposite sides of it needed')
    return len(pieces) >= SIDE_PIECES_THROUGH, pieces, reach, f'{SIDE_PIECES_THROUGH} needed'


class ZipTieClassicEstimator:
    """Through-or-not and the head's position from ``task_top`` and ``side`` (module doc)."""

    backend_id = BACKEND_ID
    success_margin = 0.0

    def __init__(self, task: TaskSpec, segmenter: InstanceSegmenter | None = None) -> None:
        """``segmenter``: a learned one whose ``head`` mask replaces the head's colour blob
        (the backend is then the segmenter's, with this rule over its masks)."""
        self.task = task
        self.parts = parts()
        self.finder = PartFinder(self.parts.head_rgb, segmenter, 'head')
        self.segmenter = segmenter
        if segmenter is not None:
            self.backend_id = segmenter.backend_id
        self.cameras = {name: PinholeCamera.of(v) for name, v in task.views.items()
                        if v.camera and v.camera.get('position') is not None}

    def _strap(self, image: np.ndarray, view: ViewSpec) -> np.ndarray:
        if self.segmenter is not None:
            inst = self.segmenter.masks(image, view).get('strap')
            if inst is not None:
                return np.asarray(inst.mask) >= 0.5
        return strap_mask(image)

    def estimate(self, image: np.ndarray, view: ViewSpec) -> Estimate:
        cam = self.cameras.get(view.name)
        if cam is None or view.name not in ('task_top', 'side'):
            return Estimate(found=False, detail=f'{BACKEND_ID} does not judge view '
                                                f'{view.name!r}')
        head = self.finder.find(image, view)
        if head is None:
            return Estimate(found=False, detail=self.finder.missing('head') +
                            ' (hidden or out of view)')
        strap = self._strap(image, view)
        judged = lit_strap(image, head.mask, strap) if view.name == 'task_top' else strap
        ok, pieces, reach, rule = through(view.name, head, judged, self.parts.protrusion)
        if view.name == 'task_top':
            xyz = cam.on_plane_z(head.centroid[0], head.centroid[1],
                                 self.parts.rail_top_z + self.parts.head_half[2])
            pose = (float(xyz[0]), float(xyz[1]), 1.0 if ok else 0.0)
        else:
            pose = (math.nan, math.nan, 1.0 if ok else 0.0)
        seg = Segmentation(True, (0, 0, image.shape[1], image.shape[0]),
                           head.mask.astype(np.float32), np.ones(head.mask.shape, np.float32))
        # A head seen by only a few pixels is a guess.
        confidence = float(min(1.0, head.area / 12.0))
        detail = (f'head {head.area} px; {len(pieces)} strap piece(s) within {reach} px of '
                  f'it ({"through" if ok else "not through"}: {rule})')
        feats = stages.features(
            head.centroid, head.area, strap & ~head.mask,
            count_near(head.mask, strap, stages.ALIGN_REACH_M),
            through(view.name, head, judged, stages.INSERT_PROTRUSION_M)[0])
        return Estimate(found=True, pose=pose, confidence=confidence, segmentation=seg,
                        detail=detail, features=feats)


def make_estimator(task: TaskSpec) -> ZipTieClassicEstimator:
    return ZipTieClassicEstimator(task)


def mask_rule(task: TaskSpec, segmenter: InstanceSegmenter) -> ZipTieClassicEstimator:
    """The same per-view rule over a learned segmenter's ``head`` / ``strap`` masks."""
    return ZipTieClassicEstimator(task, segmenter)


__all__ = ['BACKEND_ID', 'Piece', 'ZipTieClassicEstimator', 'make_estimator', 'mask_rule',
           'count_near', 'lit_strap', 'opposite', 'pieces_near', 'strap_mask', 'through']
