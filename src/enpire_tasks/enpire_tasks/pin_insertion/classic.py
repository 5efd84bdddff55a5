"""``pin-classic-v1``: the pin's tip from one calibrated camera, by colour and geometry.

One rule per view (the verifier fuses them with AND):

- ``task_top`` (straight down): the pin's colour blob is its head (the shaft hides under it
  when the pin stands). The centroid of its lit top face (its brightest pixels; the side wall
  that perspective shows off the optical axis would pull the centroid by up to 4 mm) casts a
  ray that meets the plane of a standing pin's head top (tip on a floor ~3 mm up, plus the
  pin's length); the tip is under it. Pose ``[x, y, NaN]``.
  A blob much larger than a head (a pin lying down, seen along its length) still gives its
  centre, with low confidence.
- ``side`` (level with the fixture, looking along +x): the blob's top row is the far edge of
  the head's top face, on the plane ``x = hole_x + head_radius``; the tip is the pin's length
  below it. Pose ``[NaN, y, z]``. Below the fixture's top the shaft is hidden, which is why
  the rule measures the head, not the tip.

No blob: not found (score 0). Every number comes from the contract (parts and calibration).
"""

from __future__ import annotations

import math

import numpy as np

from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks.arm import PartFinder, PinholeCamera, lit_centroid
from enpire_tasks.estimation import Estimate, InstanceSegmenter, Segmentation
from enpire_tasks.pin_insertion.geometry import parts

BACKEND_ID = 'pin-classic-v1'
#: The floor a standing pin's tip rests on, between the rack's (2 mm) and the hole's (4 mm).
STANDING_TIP_Z = 0.003


class PinClassicEstimator:
    """Pin tip estimates from the ``task_top`` and ``side`` views (see the module doc)."""

    backend_id = BACKEND_ID
    success_margin = 0.0

    def __init__(self, task: TaskSpec, segmenter: InstanceSegmenter | None = None) -> None:
        """``segmenter``: a learned one whose ``pin`` mask replaces the colour blob (the
        backend is then the segmenter's, with this rule over its masks)."""
        self.task = task
        self.parts = parts()
        self.finder = PartFinder(self.parts.colour_rgb, segmenter, 'pin')
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
            return Estimate(found=False, detail=self.finder.missing('pin'))
        seg = Segmentation(True, (0, 0, image.shape[1], image.shape[0]),
                           blob.mask.astype(np.float32), np.ones(blob.mask.shape, np.float32))
        return (self._top(image, cam, blob, seg) if view.name == 'task_top'
                else self._side(cam, blob, seg))

    def _top(self, image: np.ndarray, cam: PinholeCamera, blob, seg: Segmentation
             ) -> Estimate:
        p = self.parts
        head_top_z = STANDING_TIP_Z + p.pin_length
        u, v = lit_centroid(image, blob.mask) or blob.centroid
        xyz = cam.on_plane_z(u, v, head_top_z)
        # expected head area at that height, in pixels
        dist = cam.position[2] - head_top_z
        expected = math.pi * (p.head_radius * cam.fx / dist) ** 2
        ratio = blob.area / max(expected, 1.0)
        confidence = float(max(0.0, 1.0 - abs(math.log(max(ratio, 1e-3)))))
        detail = f'head blob {blob.area} px ({ratio:.2f} x a standing head)'
        return Estimate(found=True, pose=(float(xyz[0]), float(xyz[1]), math.nan),
                        confidence=confidence, segmentation=seg, detail=detail)

    def _side(self, cam: PinholeCamera, blob, seg: Segmentation) -> Estimate:
        p = self.parts
        centre = cam.on_plane_x(blob.centroid[0], blob.centroid[1], p.hole_xy[0])
        # The hole's rim hides what is below it. A blob that ends clearly above the rim
        # (where the shaft's near side meets the fixture's top) shows the tip itself (a pin
        # held over the hole); otherwise the tip is hidden and the head's top gives it (the
        # head can be partly hidden by fingers, so the tip is preferred when it shows).
        rim_row = float(cam.project(np.array([p.hole_xy[0] - p.shaft_radius, p.hole_xy[1],
                                              p.hole_top_z]))[1])
        if blob.bottom < rim_row - 2.0:
            cols = np.nonzero(blob.mask[blob.bottom])[0]
            tip = cam.on_plane_x(float(cols.mean()), blob.bottom + 0.5,
                                 p.hole_xy[0] - p.shaft_radius)
            tip_z = float(tip[2])
            how = f'tip seen at row {blob.bottom}'
        else:
            tip_z = tip_z_below_head_top(cam, blob, p.hole_xy[0])
            how = f'head top at row {blob.top} (tip hidden by the fixture)'
        detail = f'pin blob rows {blob.top}..{blob.bottom}: {how}, tip at z ' \
                 f'{tip_z * 1000:.1f} mm'
        return Estimate(found=True, pose=(math.nan, float(centre[1]), tip_z),
                        confidence=1.0, segmentation=seg, detail=detail)


def tip_z_below_head_top(cam: PinholeCamera, blob, pin_x: float) -> float:  # noqa: ANN001
    """The tip's height of a standing pin at ``pin_x`` seen by the side camera ``cam``: the
    top row of its ``blob`` is the far edge of the head's top face, on the plane
    ``x = pin_x + head_radius``; the tip is the pin's length below it."""
    p = parts()
    cols = np.nonzero(blob.mask[blob.top])[0]
    top = cam.on_plane_x(float(cols.mean()), blob.top - 0.5, pin_x + p.head_radius)
    return float(top[2]) - p.pin_length


def make_estimator(task: TaskSpec) -> PinClassicEstimator:
    return PinClassicEstimator(task)


def mask_rule(task: TaskSpec, segmenter: InstanceSegmenter) -> PinClassicEstimator:
    """The same per-view rule over a learned segmenter's ``pin`` masks (the plugin's
    ``mask_rule``)."""
    return PinClassicEstimator(task, segmenter)


__all__ = ['BACKEND_ID', 'PinClassicEstimator', 'make_estimator', 'mask_rule',
           'tip_z_below_head_top']
