"""``gpu-classic-v1``: the card's bottom edge from one calibrated camera, by colour and geometry.

One rule per view (the verifier fuses them with AND):

- ``task_top`` (straight down): the card's red cooler block is the blob (the 1.57 mm PCB is
  a line a pixel wide from above). The centroid of its lit top face casts a ray that meets
  the plane of a standing card's cooler top (the holder caddy's floors and the slot's floor
  are at one height, so a standing card's cooler top is at one height wherever it stands);
  the edge is under it, the cooler's offset along the card away. Pose ``[x, y, NaN]``. A
  large PCB-green area is a card lying flat: not found.
- ``side`` (level with the cooler, looking +y at the card's face): the blob's top edge is the
  near top edge of the cooler (the camera is below it whenever the card stands at or above
  the slot's floor), on the plane ``y = slot_y - cooler_width / 2``; the bottom edge is the
  cooler's top height below it. Its leftmost column is the cooler's -x end (the gripper may
  hide the +x end). Pose ``[x, NaN, z]``; the connector itself is hidden in the housing, which
  is why the rule measures the cooler.

No blob: not found (score 0). Every number comes from the contract (parts and calibration).
"""

from __future__ import annotations

import math

import numpy as np

from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks.arm import (
    PartFinder,
    PinholeCamera,
    hue_mask,
    lit_face_pixels,
    strip_pixels,
)
from enpire_tasks.estimation import Estimate, InstanceSegmenter, Segmentation
from enpire_tasks.gpu_insertion.geometry import parts

BACKEND_ID = 'gpu-classic-v1'
#: PCB-green pixels in the top view beyond this many times a standing card's (its top edge
#: and the strip beside the cooler) are a card lying flat.
LYING_PCB_RATIO = 4.0
#: The gold fingers washed out: the side camera's fill light washes the gold of a card faced
#: square to it out to (255, 255, 166), saturation 0.35, on the hue mask's default limit (its
#: strip read a third narrow, and the card's depth 4 cm off). Pixels this bright are taken
#: down to this saturation; only those (the blend of the red cooler and the green PCB along
#: their border, (165, 160, 120), has a gold hue and saturation 0.27).
GOLD_WASHED_VALUE, GOLD_WASHED_SATURATION = 0.9, 0.2


def gold_pixels(image: np.ndarray, min_per_row: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, cols) of the card's gold fingers' strip in ``image``."""
    rgb = parts().fingers_rgb
    washed = hue_mask(image, rgb, min_saturation=GOLD_WASHED_SATURATION) & \
        (np.asarray(image).max(axis=-1) > GOLD_WASHED_VALUE * 255.0)
    return strip_pixels(hue_mask(image, rgb) | washed, min_per_row)


def on_plane_y(cam: PinholeCamera, u: float, v: float, y: float) -> np.ndarray:
    """Where the ray through (u, v) meets the vertical plane ``Y = y``."""
    r = cam.ray(u, v)
    if abs(r[1]) < 1e-9:
        return np.full(3, np.nan)
    return cam.position + (y - cam.position[1]) / r[1] * r


def standing_cooler_top_z() -> float:
    p = parts()
    return p.holder_floor_z + p.cooler_top


def top_view_xy(cam: PinholeCamera, image: np.ndarray, blob, z_top: float) -> np.ndarray:
    """The bottom edge's (x, y) under a cooler blob seen from above, its top at ``z_top``."""
    rows, cols = lit_face_pixels(image, blob.mask)
    u, v = (float(cols.mean()), float(rows.mean())) if rows.size else blob.centroid
    xyz = cam.on_plane_z(u, v, z_top)
    return np.array([xyz[0] - parts().cooler_center[0], xyz[1] - parts().cooler_center[1]])


def lying_ratio(cam: PinholeCamera, image: np.ndarray) -> float:
    """PCB-green pixels in a top image over what a standing card shows."""
    p = parts()
    dist = cam.position[2] - standing_cooler_top_z()
    standing = (p.card_length * cam.fx / dist) * 2.0      # a strip ~2 px wide
    return float(hue_mask(image, p.pcb_rgb, 20.0, 0.35, 0.12).sum()) / max(standing, 1.0)


#: Rows above and below a column's top row that :func:`top_edge` reads its colours from.
EDGE_REACH_PX = 3


def top_edge(image: np.ndarray, col: int, top: int, rgb) -> float | None:  # noqa: ANN001
    """The sub-pixel row of a part's top edge in column ``col`` whose topmost part pixel is
    row ``top``: where the part's colour (its dominant channel over the others) crosses
    halfway from what is above to the part (pixel centres at integer rows: a sharp edge
    between rows ``top - 1`` and ``top`` is at ``top - 0.5``). A lens's blur spreads an edge
    both ways and leaves that point; the hue mask's first row moves with it (under
    sigma 1 px, a 0.5 mm higher cooler and a 3% shallower card). None without the rows."""
    lo, hi = top - EDGE_REACH_PX, top + EDGE_REACH_PX
    if lo < 0 or hi >= image.shape[0]:
        return None
    k = int(np.argmax(rgb))
    px = np.asarray(image[lo:hi + 1, col], dtype=np.float32)
    r = px[:, k] - np.delete(px, k, axis=1).max(axis=1)
    above, part = float(r[0]), float(np.median(r[EDGE_REACH_PX + 1:]))
    if part - above < 40.0:
        return None
    half = 0.5 * (above + part)
    for j in range(len(r) - 1):
        if r[j] < half <= r[j + 1]:
            return lo + j + (half - r[j]) / (r[j + 1] - r[j])
    return None


def side_view_xz(cam: PinholeCamera, blob, image: np.ndarray | None = None
                 ) -> tuple[float, float]:
    """The bottom edge's (x, z) from the cooler's blob in the side view (with ``image``:
    the cooler's top edge to a fraction of a pixel, :func:`top_edge`)."""
    p = parts()
    y_near = p.slot_xy[1] - p.cooler_size[1] / 2
    rows, cols = np.nonzero(blob.mask)
    # per column, the topmost row; the median over the columns that show the cooler
    tops = {int(c): int(rows[cols == c].min()) for c in np.unique(cols)
            if np.count_nonzero(cols == c) >= 3}
    top_row = float(np.median(list(tops.values()))) if tops else float(blob.top)
    edge = top_row - 0.5
    if image is not None and tops:
        edges = [e for c, t in tops.items()
                 if (e := top_edge(image, c, t, p.colour_rgb)) is not None]
        if len(edges) * 2 >= len(tops):
            edge = float(np.median(edges))
    u_mid = float(np.median(cols))
    top = on_plane_y(cam, u_mid, edge, y_near)
    left = on_plane_y(cam, blob.left - 0.5, top_row + 2.0, y_near)
    x = float(left[0]) - (p.cooler_center[0] - p.cooler_size[0] / 2)
    return x, float(top[2]) - p.cooler_top


class GpuClassicEstimator:
    """Card edge estimates from the ``task_top`` and ``side`` views (see the module doc)."""

    backend_id = BACKEND_ID
    success_margin = 0.0

    def __init__(self, task: TaskSpec, segmenter: InstanceSegmenter | None = None) -> None:
        """``segmenter``: a learned one whose ``cooler`` mask replaces the colour blob (the
        backend is then the segmenter's, with this rule over its masks)."""
        self.task = task
        self.parts = parts()
        self.finder = PartFinder(self.parts.colour_rgb, segmenter, 'cooler')
        if segmenter is not None:
            self.backend_id = segmenter.backend_id
        self.cameras = {name: PinholeCamera.of(v) for name, v in task.views.items()
                        if v.camera and v.camera.get('position') is not None}

    def estimate(self, image: np.ndarray, view: ViewSpec) -> Estimate:
        cam = self.cameras.get(view.name)
        if cam is None or view.name not in ('task_top', 'side'):
            return Estimate(found=False, detail=f'{BACKEND_ID} does not judge view '
                                                f'{view.name!r}')
        blob = self.finder.find(image, view)
        if blob is None:
            return Estimate(found=False, detail=self.finder.missing('cooler'))
        seg = Segmentation(True, (0, 0, image.shape[1], image.shape[0]),
                           blob.mask.astype(np.float32), np.ones(blob.mask.shape, np.float32))
        return (self._top(image, cam, blob, seg) if view.name == 'task_top'
                else self._side(image, cam, blob, seg))

    def _top(self, image: np.ndarray, cam: PinholeCamera, blob, seg: Segmentation
             ) -> Estimate:
        p = self.parts
        lying = lying_ratio(cam, image)
        if lying > LYING_PCB_RATIO:
            return Estimate(found=False, segmentation=seg,
                            detail=f'the card lies flat (PCB area {lying:.1f} x a standing '
                                   "card's)")
        z_top = standing_cooler_top_z()
        xy = top_view_xy(cam, image, blob, z_top)
        dist = cam.position[2] - z_top
        expected = p.cooler_size[0] * p.cooler_size[1] * (cam.fx / dist) ** 2
        ratio = blob.area / max(expected, 1.0)
        confidence = float(max(0.0, 1.0 - abs(math.log(max(ratio, 1e-3)))))
        detail = f'cooler blob {blob.area} px ({ratio:.2f} x a standing cooler)'
        return Estimate(found=True, pose=(float(xy[0]), float(xy[1]), math.nan),
                        confidence=confidence, segmentation=seg, detail=detail)

    def _side(self, image: np.ndarray, cam: PinholeCamera, blob, seg: Segmentation
              ) -> Estimate:
        x, z = side_view_xz(cam, blob, image)
        detail = f'cooler blob rows {blob.top}..{blob.bottom}, cols {blob.left}..' \
                 f'{blob.right}: edge at x {x * 1000:.1f} mm, z {z * 1000:.1f} mm'
        return Estimate(found=True, pose=(x, math.nan, z), confidence=1.0,
                        segmentation=seg, detail=detail)


def make_estimator(task: TaskSpec) -> GpuClassicEstimator:
    return GpuClassicEstimator(task)


def mask_rule(task: TaskSpec, segmenter: InstanceSegmenter) -> GpuClassicEstimator:
    """The same per-view rule over a learned segmenter's ``cooler`` masks (the plugin's
    ``mask_rule``)."""
    return GpuClassicEstimator(task, segmenter)


__all__ = ['BACKEND_ID', 'GpuClassicEstimator', 'make_estimator', 'mask_rule', 'on_plane_y',
           'side_view_xz', 'top_edge', 'top_view_xy']
