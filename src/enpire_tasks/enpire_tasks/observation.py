"""Observations from the contract's ``source`` fields: the part every task shares.

Each observation entry of ``task.yaml`` names its ``source``: a camera topic
(``camera/<view>/image_raw``: the frame as is), ``state`` (values of the cell's state
vector, which the task's plugin maps: Push-T's ``agent_pos`` is ``x, y``) or ``rollout``
(values the rollout supplies, such as ``retry_index``). :func:`build_from_sources` builds the
observation a policy gets from one :class:`~enpire_tasks.plugin.CellReading`, typed by the
spec (arrays of the field's dtype; shape-``()`` entries as Python scalars).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from enpire_common.errors import CellError, ConfigError
from enpire_common.tasks import TaskSpec
from enpire_tasks.plugin import CellReading

CAMERA_PREFIX = 'camera/'
SOURCE_STATE = 'state'
SOURCE_ROLLOUT = 'rollout'
#: A state field that is the control tick rather than values of the state vector.
TICK = 'tick'


def camera_sources(task: TaskSpec) -> dict[str, str]:
    """Observation name -> camera topic (``camera/<view>/image_raw``) of the contract."""
    return {name: f.source for name, f in task.observation.items()
            if f.source.startswith(CAMERA_PREFIX)}


def source_view(source: str) -> str:
    """The view of a camera source: ``camera/top/image_raw`` -> ``top``."""
    parts = source.split('/')
    if len(parts) < 3 or parts[0] + '/' != CAMERA_PREFIX:
        raise ConfigError(f"observation source '{source}' is not a camera topic "
                          f"'{CAMERA_PREFIX}<view>/image_raw'")
    return parts[1]


def build_from_sources(task: TaskSpec, reading: CellReading,
                       state_fields: Mapping[str, Sequence[str] | str]) -> dict[str, Any]:
    """The observation of ``reading``, entry by entry from the contract's ``source`` fields.

    Args:
        task: the task contract (its ``observation`` section).
        reading: what the cell showed at one tick.
        state_fields: for each ``state``-sourced entry, the state vector names it holds (in
            order), or :data:`TICK` for the control tick.

    Raises:
        CellError: the reading lacks a camera frame or a state value the spec needs.
        ConfigError: an entry has a source this builder does not know.
    """
    obs: dict[str, Any] = {}
    for name, f in task.observation.items():
        if f.source.startswith(CAMERA_PREFIX):
            if f.source not in reading.images:
                raise CellError(f"observation '{name}' needs a frame from '{f.source}'; "
                                f'none arrived (is the camera publishing?)')
            value: Any = reading.images[f.source]
        elif f.source == SOURCE_STATE:
            keys = state_fields.get(name)
            if keys is None:
                raise ConfigError(f"observation '{name}' (source state) is not a state field "
                                  f"of task '{task.name}' (known: {', '.join(state_fields)})")
            if keys == TICK:
                value = reading.tick
            else:
                missing = [k for k in keys if k not in reading.state]
                if missing:
                    raise CellError(f"state vector names {list(reading.state)} lack "
                                    f"{', '.join(missing)} (observation '{name}')")
                value = [reading.state[k] for k in keys]
        elif f.source == SOURCE_ROLLOUT:
            value = reading.rollout.get(name, 0)
        else:
            raise ConfigError(f"observation '{name}' has source '{f.source}'; known sources: "
                              f"{CAMERA_PREFIX}<view>/image_raw, {SOURCE_STATE}, "
                              f'{SOURCE_ROLLOUT}')
        obs[name] = (np.asarray(value, dtype=f.dtype) if f.shape
                     else np.asarray(value, dtype=f.dtype).item())
    return obs


def validation_observations(task: TaskSpec, n: int = 4, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` seeded observations of plausible scenes from the task's plugin (no simulator).

    Raises:
        UnknownNameError: the task has no plugin.
    """
    from enpire_tasks import registry

    plugin = registry.get(task)
    return [plugin.build_observation(task, r) for r in plugin.sample_readings(task, n, seed)]


def check_observation(task: TaskSpec, obs: Mapping[str, Any], where: str = 'observation'
                      ) -> None:
    """Check ``obs`` against the contract's observation spec (names, shapes, dtypes).

    Raises:
        ConfigError: naming the first entry that is missing or mistyped.
    """
    extra = sorted(set(obs) - set(task.observation))
    if extra:
        raise ConfigError(f'{where} has entries the spec does not name: {", ".join(extra)}')
    for name, f in task.observation.items():
        if name not in obs:
            raise ConfigError(f"{where} lacks '{name}' of the spec")
        value = obs[name]
        if np.shape(value) != tuple(f.shape):
            raise ConfigError(f"{where} '{name}' has shape {list(np.shape(value))}, the spec "
                              f'says {list(f.shape)}')
        if f.shape and np.asarray(value).dtype != np.dtype(f.dtype):
            raise ConfigError(f"{where} '{name}' has dtype {np.asarray(value).dtype}, the "
                              f'spec says {f.dtype}')


__all__ = ['CAMERA_PREFIX', 'SOURCE_ROLLOUT', 'SOURCE_STATE', 'TICK', 'build_from_sources',
           'camera_sources', 'check_observation', 'source_view', 'validation_observations']
