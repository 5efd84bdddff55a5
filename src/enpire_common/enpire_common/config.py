"""Config dataclasses <-> flat dotted parameters (ROS parameters, YAML, CLI overrides).

One source of truth per component: a frozen dataclass ``<Thing>Config`` with defaults, units
in field names and ``__post_init__`` validation raising :class:`ConfigError`. Nested
dataclasses become dotted groups (``budget.max_wall_time_s``), as ROS parameters are named.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from enpire_common.errors import ConfigError, UnknownNameError

T = TypeVar('T')

_SCALARS = (bool, int, float, str)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def to_parameters(cfg: Any, prefix: str = '') -> dict[str, Any]:
    """Flatten a config dataclass instance into ``{'group.field': value}``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f'{prefix}{f.name}'
        if dataclasses.is_dataclass(value):
            out.update(to_parameters(value, key + '.'))
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config field '{key}' must not be empty (null)")
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item_tp = args[0] if args else Any
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"config field '{key}' must be a list, got {value!r}")
        items = [_coerce(v, item_tp, f'{key}[{i}]') for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config field '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config field '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config field '{key}' must be a number, got {value!r}")
        value = float(value)
        if math.isnan(value):
            raise ConfigError(f"config field '{key}' must not be NaN")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config field '{key}' must be a string, got {value!r}")
        return value
    return value


def from_parameters(cls: type[T], params: Mapping[str, Any], prefix: str = '',
                    *, strict: bool = True) -> T:
    """Build ``cls`` from flat dotted parameters; unknown keys raise when ``strict``.

    Missing keys keep the dataclass defaults. Types are checked and coerced (int -> float).
    The dataclass's own ``__post_init__`` validates the values.
    """
    hints = _field_types(cls)
    if strict:
        own = {k[len(prefix):] for k in params if k.startswith(prefix)}
        known = set(to_parameters_schema(cls))
        for key in sorted(own):
            if key not in known:
                raise UnknownNameError(f'{cls.__name__} parameter', prefix + key,
                                       [prefix + k for k in known])
    kwargs: dict[str, Any] = {}
    for name in (f.name for f in dataclasses.fields(cls)):
        tp = hints[name]
        key = f'{prefix}{name}'
        inner, _ = _unwrap_optional(tp)
        if dataclasses.is_dataclass(inner):
            if any(k.startswith(key + '.') for k in params):
                kwargs[name] = from_parameters(inner, params, key + '.', strict=False)
        elif key in params:
            kwargs[name] = _coerce(params[key], tp, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'{cls.__name__}: {exc}') from exc


def to_parameters_schema(cls: type) -> dict[str, Any]:
    """``{'group.field': type}`` for every leaf field of ``cls``."""
    out: dict[str, Any] = {}
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            out.update({f'{f.name}.{k}': v for k, v in to_parameters_schema(tp).items()})
        else:
            out[f.name] = hints[f.name]
    return out


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    """Nested mappings -> dotted keys (``{'a': {'b': 1}}`` -> ``{'a.b': 1}``)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f'{prefix}{k}'
        if isinstance(v, Mapping):
            out.update(flatten(v, key + '.'))
        else:
            out[key] = v
    return out


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with errors that name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise ConfigError(f'{path}: file not found') from None
    except OSError as exc:
        raise ConfigError(f'{path}: cannot read ({exc.strerror})') from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}' if mark is not None else str(path)
        problem = getattr(exc, 'problem', None) or str(exc)
        raise ConfigError(f'{where}: invalid YAML ({problem})') from None


def load_config(cls: type[T], path: str | Path, node: str = '/**') -> T:
    """Load ``cls`` from a ``ros__parameters`` YAML file (the shape launch_ros accepts)."""
    data = load_yaml(path) or {}
    params: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key in ('/**', node):
            block = data.get(key)
            if isinstance(block, Mapping):
                params.update(flatten(block.get('ros__parameters') or {}))
    return from_parameters(cls, params, strict=False)


def require(cond: bool, field: str, value: Any, rule: str) -> None:
    """Validation helper for ``__post_init__``: raise ConfigError naming field, value, rule."""
    if not cond:
        raise ConfigError(f'{field}={value!r} is invalid: {rule}')
