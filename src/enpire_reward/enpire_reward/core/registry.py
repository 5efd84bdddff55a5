"""Backend registry: string ids -> verifier factories, per task.

A task's backends come from its plugin (``enpire_tasks.<task>``: ``verifier_backends``;
Push-T's ``opencv-v1``). Backends that judge any task register here with
:func:`register_backend` (planned slots: ``yolo``, ultralytics YOLO-seg masks -> the task's
pose stage; ``sam2``, box-prompted SAM2 masks, ~3 s per frame on CPU, for occasional final
verdicts). A factory takes the task contract and returns a :class:`PoseEstimator`; nothing
else changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from enpire_common.clock import Clock
from enpire_common.errors import ConfigError, UnknownNameError
from enpire_common.tasks import TaskSpec
from enpire_reward.core.ports import PoseEstimator
from enpire_reward.core.verifier import VisionVerifier
from enpire_tasks import registry as tasks
from enpire_tasks.plugin import EstimatorFactory, VerifierBackend

#: One registered backend: ``id``, ``description``, ``factory`` (None: planned).
BackendInfo = VerifierBackend

_BACKENDS: dict[str, BackendInfo] = {}


def register_backend(backend_id: str, factory: EstimatorFactory | None,
                     description: str = '', *, replace: bool = False) -> None:
    """Register a task-independent backend; ``factory(task)`` returns a PoseEstimator."""
    if backend_id in _BACKENDS and not replace and _BACKENDS[backend_id].factory is not None:
        raise ConfigError(f"verifier backend '{backend_id}' is already registered")
    _BACKENDS[backend_id] = BackendInfo(backend_id, description, factory)


def available_backends(task: TaskSpec | str | None = None) -> dict[str, BackendInfo]:
    """Every backend id (implemented and planned) for ``task``, or for any task when None.

    The task plugins' backends come first, then the task-independent ones.
    """
    if task is None:
        plugins = list(tasks.available().values())
    else:
        plugin = tasks.find(task)
        plugins = [plugin] if plugin is not None else []
    out: dict[str, BackendInfo] = {}
    for plugin in plugins:
        for backend in plugin.verifier_backends:
            out.setdefault(backend.id, backend)
    for backend_id, info in _BACKENDS.items():
        out.setdefault(backend_id, info)
    return out


def make_estimator(backend_id: str, task: TaskSpec) -> PoseEstimator:
    """The backend's PoseEstimator for ``task``.

    Raises:
        UnknownNameError: ``backend_id`` is not registered for the task (with a did-you-mean).
        ConfigError: the backend is planned but not implemented.
    """
    backends = available_backends(task)
    if not backend_id:      # the task plugin's own first backend
        plugin = tasks.find(task)
        if plugin is None or not plugin.verifier_backends:
            raise ConfigError(f"task '{task.name}' registers no verifier backend; name one "
                              f"(known: {', '.join(backends)})")
        backend_id = plugin.verifier_backends[0].id
    info = backends.get(backend_id)
    if info is None:
        raise UnknownNameError('verifier backend', backend_id, backends)
    if info.factory is None:
        implemented = sorted(k for k, v in backends.items() if v.factory is not None)
        raise ConfigError(
            f"verifier backend '{backend_id}' is planned but not implemented yet "
            f"({info.description}); use one of: {', '.join(implemented)}")
    return info.factory(task)


def make_verifier(backend_id: str, task: TaskSpec, views: Sequence[str] | None = None,
                  fusion: str | None = None, clock: Clock | None = None) -> VisionVerifier:
    """A ready :class:`VisionVerifier` for ``task`` with backend ``backend_id``."""
    return VisionVerifier(task, make_estimator(backend_id, task), views=views,
                          fusion=fusion or None, clock=clock)


def _yolo(task: TaskSpec) -> PoseEstimator:
    from enpire_reward.core.yolo import make_yolo_estimator

    return make_yolo_estimator(task)


register_backend('yolo', _yolo, "ultralytics YOLO-seg masks, trained here on the task's "
                 "labelled renders, under the task's rule (enpire verify train)")
def _sam2(task: TaskSpec) -> PoseEstimator:
    from enpire_reward.core.sam2_backend import make_sam2_estimator

    return make_sam2_estimator(task)


register_backend('sam2', _sam2, 'SAM2 masks prompted by the yolo boxes (~3 s/frame on CPU); '
                 'weights: a user-supplied checkpoint (enpire verify register), quality '
                 'measured only with real weights')
