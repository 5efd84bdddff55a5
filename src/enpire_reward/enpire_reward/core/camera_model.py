"""Forward camera models of the task contract's views (``views.<view>.camera_model``).

The models are the task plugins' (``enpire_tasks.<task>``: Push-T's ``pusht-area-v1`` and
``gym-pusht-pygame``); the lookup by name lives in :mod:`enpire_tasks.camera_models` and is
re-exported here for the verifier's callers.
"""

from __future__ import annotations

from enpire_tasks.camera_models import (
    CAMERA_MODEL_NONE,
    camera_model_for_renderer,
    camera_model_renderers,
    make_camera_model,
    view_camera_model_name,
    with_camera_model,
)

#: Every registered camera model -> the sim cell renderer it describes (all task plugins).
CAMERA_MODEL_RENDERERS: dict[str, str] = camera_model_renderers()

__all__ = ['CAMERA_MODEL_NONE', 'CAMERA_MODEL_RENDERERS', 'camera_model_for_renderer',
           'camera_model_renderers', 'make_camera_model', 'view_camera_model_name',
           'with_camera_model']
