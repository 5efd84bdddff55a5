"""Forward camera models by name: what a view's ``camera_model`` in the task contract means.

A *camera model* renders what a view would see for a hypothesised object pose, so that a
verifier backend can compare an image with it (analysis by synthesis). The models themselves
are a task's (its plugin's ``camera_models``); this module is the lookup every task shares:
``none`` (no forward model: a real camera) plus the models of the task's plugin.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from enpire_common.errors import UnknownNameError
from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks import registry

CAMERA_MODEL_NONE = 'none'


def _models(task: TaskSpec) -> dict[str, Any]:
    plugin = registry.find(task)
    return {CAMERA_MODEL_NONE: None, **(dict(plugin.camera_models) if plugin else {})}


def view_camera_model_name(task: TaskSpec, view_name: str) -> str:
    """``views.<view_name>.camera_model`` of the task contract (default ``none``)."""
    raw = (task.section('views') or {}).get(view_name) or {}
    return str(raw.get('camera_model', CAMERA_MODEL_NONE) or CAMERA_MODEL_NONE)


def make_camera_model(name: str, task: TaskSpec, view: ViewSpec) -> Any:
    """The forward model ``name`` for ``view`` of ``task`` (None for ``none``).

    Raises:
        UnknownNameError: the task's plugin has no model ``name`` (with a did-you-mean).
        ConfigError: the model does not fit the view.
    """
    models = _models(task)
    if name not in models:
        raise UnknownNameError('camera model', name, models)
    factory = models[name]
    return None if factory is None else factory(task, view)


def with_camera_model(task: TaskSpec, view_name: str, model: str) -> TaskSpec:
    """A copy of ``task`` whose view ``view_name`` declares camera model ``model``.

    For judging images of a sim cell that runs another renderer than the contract's default
    (e.g. Push-T's ``camera.renderer: gym-pusht`` -> ``gym-pusht-pygame``).
    """
    models = _models(task)
    if model not in models:
        raise UnknownNameError('camera model', model, models)
    raw = dict(task.raw)
    views = {k: dict(v or {}) for k, v in (raw.get('views') or {}).items()}
    views.setdefault(view_name, {})['camera_model'] = model
    raw['views'] = views
    return dataclasses.replace(task, raw=raw)


def without_camera_models(task: TaskSpec) -> TaskSpec:
    """A copy of ``task`` whose every view declares ``none``: what a real camera is judged
    with (the backends see the images alone)."""
    for name in task.views:
        task = with_camera_model(task, name, CAMERA_MODEL_NONE)
    return task


def camera_model_renderers(task: TaskSpec | str | None = None) -> dict[str, str]:
    """Camera model -> the sim cell renderer it describes (the task's, or every plugin's)."""
    plugins = [registry.get(task)] if task is not None else registry.available().values()
    out: dict[str, str] = {}
    for plugin in plugins:
        out.update(plugin.camera_model_renderers)
    return out


def camera_model_for_renderer(renderer: str, task: TaskSpec | str | None = None) -> str:
    """The camera model of the sim cell's ``camera.renderer`` (``none`` when unknown)."""
    for model, r in camera_model_renderers(task).items():
        if r == renderer:
            return model
    return CAMERA_MODEL_NONE


__all__ = ['CAMERA_MODEL_NONE', 'camera_model_for_renderer', 'camera_model_renderers',
           'make_camera_model', 'view_camera_model_name', 'with_camera_model',
           'without_camera_models']
