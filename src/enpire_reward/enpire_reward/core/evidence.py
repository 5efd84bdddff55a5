"""Evidence images: the frame with the goal outline and the detected object, written atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from enpire_common.tasks import ViewSpec
from enpire_reward.core.ports import Segmentation

GOAL_BGR = (0, 160, 0)
POSE_BGR = (0, 0, 255)
MASK_BGR = (255, 0, 255)


def _to_px(points: np.ndarray, view: ViewSpec) -> np.ndarray:
    (a, b, c), (d, e, f) = view.workspace_to_pixel
    m = np.array([[a, b], [d, e]])
    return np.round((points @ m.T + (c, f)) * 16.0).astype(np.int32)


def overlay(image: np.ndarray, view: ViewSpec, goal: Sequence[float],
            pose: Sequence[float] | None, segmentation: Segmentation | None,
            caption: str = '', *,
            outline: Callable[[Sequence[float]], Sequence[np.ndarray]]) -> np.ndarray:
    """A BGR overlay: mask tinted magenta, goal outline green, estimated outline red.

    ``outline(pose)`` gives the object's polygons in workspace units (the task plugin's).
    """
    out = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    if segmentation is not None and segmentation.found:
        mask = segmentation.full_mask(image.shape[:2]) > 0
        tint = np.array(MASK_BGR, dtype=np.float32)
        out[mask] = (0.6 * out[mask] + 0.4 * tint).astype(np.uint8)
    # A view without a workspace plane map (an arm cell's side camera) gets no outlines;
    # the outline of a pose with a component the view cannot measure (NaN) is skipped.
    if view.workspace_to_pixel is not None:
        for colour, p in ((GOAL_BGR, goal), (POSE_BGR, pose)):
            if p is None or not np.all(np.isfinite(np.asarray(p, dtype=float)[:2])):
                continue
            for poly in outline(p):
                cv2.polylines(out, [_to_px(poly, view)], True, colour, 1, cv2.LINE_AA,
                              shift=4)
    if caption:
        cv2.putText(out, caption, (6, out.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return out


def write_png_atomic(path: str | Path, bgr: np.ndarray) -> Path:
    """Write ``bgr`` as PNG via a temp file + rename (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode('.png', bgr)
    if not ok:
        raise OSError(f'cannot encode evidence image for {path}')
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
    return path
