"""Push-T's labelled renders: the block's pixels from the scene geometry (sim only).

The block is the T's two rectangles (:func:`~enpire_tasks.push_t.geometry.t_polygons`) with
the 2 px border the camera draws round them, mapped through the view's
``workspace_to_pixel``; the pusher, drawn last, hides what it covers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.tasks import TaskSpec
from enpire_tasks.plugin import LabelSpec
from enpire_tasks.push_t.geometry import t_polygons
from enpire_tasks.push_t.scene import BORDER_HALF_PX, PUSHER_RADIUS_PX

CLASSES = ('tblock',)
_SHIFT = 4      # cv2 fixed-point bits: polygons drawn to 1/16 px


def block_mask(task: TaskSpec, view: str, object_pose: Any, agent_pos: Any = None
               ) -> np.ndarray:
    """The pixels of ``view`` that show the block at ``object_pose`` (HxW bool), less the
    pusher's disk at ``agent_pos`` when given.

    Raises:
        ConfigError: the view has no ``workspace_to_pixel`` map.
    """
    import cv2

    spec = task.views[view]
    if spec.workspace_to_pixel is None:
        raise ConfigError(f"view '{view}' has no workspace_to_pixel map: Push-T labels need "
                          'one')
    a = np.asarray(spec.workspace_to_pixel, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    mask = np.zeros((spec.height_px, spec.width_px), np.uint8)
    k = float(1 << _SHIFT)
    border = max(1, round(2.0 * BORDER_HALF_PX * scale))
    for poly in t_polygons(object_pose):
        px = poly @ a[:, :2].T + a[:, 2]
        pts = np.rint(px * k).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=_SHIFT)
        cv2.polylines(mask, [pts], True, 1, thickness=border, lineType=cv2.LINE_8,
                      shift=_SHIFT)
    if agent_pos is not None:
        c = np.asarray(agent_pos[:2], dtype=np.float64) @ a[:, :2].T + a[:, 2]
        cv2.circle(mask, tuple(int(v) for v in np.rint(c * k)),
                   round(PUSHER_RADIUS_PX * scale * k), 0, thickness=-1, lineType=cv2.LINE_8,
                   shift=_SHIFT)
    return mask.astype(bool)


def instance_masks(task: TaskSpec, cell: Any, view: str, ground_truth: Any
                   ) -> Mapping[str, np.ndarray]:
    return {'tblock': block_mask(task, view, ground_truth.object_pose,
                                 getattr(ground_truth, 'agent_pos', None))}


LABELS = LabelSpec(classes=CLASSES, instance_masks=instance_masks)

__all__ = ['CLASSES', 'LABELS', 'block_mask', 'instance_masks']
