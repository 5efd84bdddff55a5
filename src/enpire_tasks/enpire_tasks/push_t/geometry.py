"""Push-T block geometry: the T polygons, pose transforms and analytic goal coverage.

The pose convention is gym-pusht's: ``(x_px, y_px, theta_rad)`` of the pymunk body origin
(the middle of the bar's outer edge, the side away from the stem; NOT the T's centroid), in
workspace pixels of the 512 x 512 table with y down. A body-frame point ``v`` lands at
``p + R(theta) v``.

Coverage is computed with ``cv2.intersectConvexConvex`` over the two rectangles of each T
(the rectangles of one T only share an edge, so the pairwise intersection areas add up). It
equals gym-pusht's shapely ``_get_coverage`` to float32 precision and takes ~20 us, which keeps
shapely out of the verifier's per-call path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from enpire_tasks.push_t import scene

SCALE_PX = 30.0
#: The T as gym-pusht's ``add_tee`` builds it (scale 30): the bar and the stem, body frame
#: (``enpire_tasks.push_t.scene.T_BOXES``), each as its four corners.
BAR, STEM = (np.array(scene.box_corners(box)) for box in scene.T_BOXES)
RECTS = (BAR, STEM)
_BOX_AREAS = [4.0 * hx * hy for _, _, hx, hy in scene.T_BOXES]   # 3600 and 2700
AREA_PX2 = sum(_BOX_AREAS)  # 6300
#: Centroid of the T in the body frame: the area-weighted mean of the two rectangles.
CENTROID_BODY = np.array(
    [0.0, sum(a * box[1] for a, box in zip(_BOX_AREAS, scene.T_BOXES, strict=True)) / AREA_PX2]
)  # (0, 40.714)


def rotation(theta: float) -> np.ndarray:
    """pymunk's rotation: ``Vec2d.rotated(theta)`` (counter-clockwise in y-up terms)."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def wrap_angle(theta: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (theta + math.pi) % (2.0 * math.pi) - math.pi


def angle_diff(a: float, b: float) -> float:
    """Smallest signed difference ``a - b`` of two angles, in [-pi, pi)."""
    return wrap_angle(a - b)


def t_polygons(pose: Sequence[float]) -> list[np.ndarray]:
    """The two rectangles of a T at ``pose`` in workspace pixels, each (4, 2) float64."""
    x, y, theta = float(pose[0]), float(pose[1]), float(pose[2])
    r = rotation(theta)
    return [rect @ r.T + (x, y) for rect in RECTS]


def centroid_from_pose(pose: Sequence[float], offset_body: np.ndarray = CENTROID_BODY
                       ) -> np.ndarray:
    """Where a body-frame point (default: the T centroid) lands for ``pose``."""
    return np.asarray(pose[:2], dtype=np.float64) + rotation(float(pose[2])) @ offset_body


def pose_from_centroid(centroid: Sequence[float], theta: float,
                       offset_body: np.ndarray = CENTROID_BODY) -> tuple[float, float, float]:
    """Invert :func:`centroid_from_pose`: the body origin whose centroid is ``centroid``."""
    p = np.asarray(centroid, dtype=np.float64) - rotation(theta) @ offset_body
    return float(p[0]), float(p[1]), wrap_angle(theta)


def coverage(pose: Sequence[float], goal: Sequence[float]) -> float:
    """Fraction of the goal T's area covered by the T at ``pose``, in [0, 1].

    Same definition as gym-pusht's ``PushTEnv._get_coverage`` (intersection / goal area).
    """
    a = [p.astype(np.float32) for p in t_polygons(pose)]
    b = [p.astype(np.float32) for p in t_polygons(goal)]
    # Cheap reject: the two Ts are at most ~2 x 125 px across.
    if np.hypot(pose[0] - goal[0], pose[1] - goal[1]) > 260.0:
        return 0.0
    total = 0.0
    for pa in a:
        for pb in b:
            area, _ = cv2.intersectConvexConvex(pa, pb)
            total += max(0.0, float(area))
    return min(1.0, max(0.0, total / AREA_PX2))
