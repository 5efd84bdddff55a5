"""Backend registry: string ids -> verifier factories.

``opencv-v1`` is implemented (:mod:`enpire_reward.core.opencv_backend`). Planned slots:
``yolo`` (ultralytics YOLO-seg masks -> the same moments + template pose stage) and ``sam2``
(box-prompted SAM2 masks; ~3 s per frame on CPU, for occasional final verdicts). A new backend
is one :func:`register_backend` call with a factory returning a :class:`PoseEstimator`;
nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from enpire_common.clock import Clock
from enpire_common.errors import ConfigError, UnknownNameError
from enpire_common.tasks import TaskSpec
from enpire_reward.core.ports import PoseEstimator
from enpire_reward.core.verifier import VisionVerifier

EstimatorFactory = Callable[[TaskSpec], PoseEstimator]


@dataclass(frozen=True)
class BackendInfo:
    id: str
    description: str
    factory: EstimatorFactory | None  # None: planned, not implemented yet


_BACKENDS: dict[str, BackendInfo] = {}


def register_backend(backend_id: str, factory: EstimatorFactory | None,
                     description: str = '', *, replace: bool = False) -> None:
    """Register ``backend_id``; ``factory(task)`` returns a PoseEstimator (None = planned)."""
    if backend_id in _BACKENDS and not replace and _BACKENDS[backend_id].factory is not None:
        raise ConfigError(f"verifier backend '{backend_id}' is already registered")
    _BACKENDS[backend_id] = BackendInfo(backend_id, description, factory)


def available_backends() -> dict[str, BackendInfo]:
    """Every registered backend id (implemented and planned)."""
    return dict(_BACKENDS)


def make_estimator(backend_id: str, task: TaskSpec) -> PoseEstimator:
    """The backend's PoseEstimator for ``task``.

    Raises:
        UnknownNameError: ``backend_id`` is not registered (with a did-you-mean).
        ConfigError: the backend is planned but not implemented.
    """
    info = _BACKENDS.get(backend_id)
    if info is None:
        raise UnknownNameError('verifier backend', backend_id, _BACKENDS)
    if info.factory is None:
        implemented = sorted(k for k, v in _BACKENDS.items() if v.factory is not None)
        raise ConfigError(
            f"verifier backend '{backend_id}' is planned but not implemented yet "
            f"({info.description}); use one of: {', '.join(implemented)}")
    return info.factory(task)


def make_verifier(backend_id: str, task: TaskSpec, views: Sequence[str] | None = None,
                  fusion: str | None = None, clock: Clock | None = None) -> VisionVerifier:
    """A ready :class:`VisionVerifier` for ``task`` with backend ``backend_id``."""
    return VisionVerifier(task, make_estimator(backend_id, task), views=views,
                          fusion=fusion or None, clock=clock)


def _opencv_factory(task: TaskSpec) -> PoseEstimator:
    from enpire_reward.core.camera_model import make_camera_model, view_camera_model_name
    from enpire_reward.core.opencv_backend import OpenCvTEstimator

    if task.name != 'push_t' and not task.id.startswith('push_t'):
        raise ConfigError(f"backend 'opencv-v1' judges Push-T only, not task '{task.name}'")
    models = {name: make_camera_model(view_camera_model_name(task, name), task, view)
              for name, view in task.views.items()}
    return OpenCvTEstimator(goal_pose=task.goal_pose, threshold=task.success_threshold,
                            camera_models=models)


register_backend('opencv-v1', _opencv_factory,
                 'colour segmentation + moments + SDF template refinement (CPU, ~5 ms)')
register_backend('yolo', None, 'ultralytics YOLO-seg masks + the opencv pose stage')
register_backend('sam2', None, 'box-prompted SAM2 masks, for occasional final verdicts')
