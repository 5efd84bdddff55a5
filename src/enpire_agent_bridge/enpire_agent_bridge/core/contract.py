"""The policy contract (DESIGN.md section 5): what a policy directory holds and what it is given.

A policy directory holds ``policy.py`` defining ``make_policy(spec) -> Policy`` and
``policy.yaml`` (its manifest). ``Policy`` has ``reset(seed)`` and ``act(obs) -> action``.
The :class:`PolicySpec` handed to ``make_policy`` is built from the task contract
(``config/tasks/<task>/task.yaml``) plus the manifest's ``params``; policies read shapes,
bounds, rates and task facts (goal pose, camera mapping) from it instead of hard-coding them.

This module is imported by the sandboxed host worker, so it depends on numpy and the standard
library only (plus PyYAML, imported lazily, for manifests).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

REGIMES = ('heuristic', 'tool_calling', 'bc', 'offline_rl', 'online_rl')
POLICY_FILE = 'policy.py'
MANIFEST_FILE = 'policy.yaml'
_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')


class ContractError(ValueError):
    """A spec, manifest or policy directory breaks the contract (mapped to EnpireError above)."""


@runtime_checkable
class Policy(Protocol):
    """What ``make_policy(spec)`` returns."""

    def reset(self, seed: int | None) -> None: ...

    def act(self, obs: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class ObservationField:
    """One named observation entry: its shape and numpy dtype name (``()`` for scalars)."""

    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {'shape': list(self.shape), 'dtype': self.dtype}


@dataclass(frozen=True)
class PolicySpec:
    """Everything a policy may know about its task; given to ``make_policy``.

    Attributes:
        task: Task name (``config/tasks/<task>/``).
        observation: ``{name: ObservationField}``; ``act`` receives a dict with these keys
            (arrays; shape-``()`` entries arrive as Python scalars).
        action_shape: Shape of the action array.
        action_low: Lower bounds (task units), one per action element.
        action_high: Upper bounds (task units), one per action element.
        rate_hz: Control rate; ``act`` is called once per tick.
        deadline_s: Wall time ``act`` may take per call (1/rate minus a margin).
        params: The manifest's ``params:`` mapping (tunable numbers).
        task_info: Read-only task facts (``goal_pose``, ``workspace``, ``views`` with their
            ``workspace_to_pixel`` matrices or camera calibrations, the arm tasks' ``parts``
            and ``home``, and ``tools``: the task tools offered); never simulator state.
        tools: Inside the sandbox, the task tools' client
            (:class:`~enpire_agent_bridge.core.policy_tools.ToolClient`):
            ``spec.tools.estimate_pose(view='top', image=obs['image_top'])``. None elsewhere.
    """

    task: str
    observation: Mapping[str, ObservationField]
    action_shape: tuple[int, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    rate_hz: float
    deadline_s: float
    params: Mapping[str, Any] = field(default_factory=dict)
    task_info: Mapping[str, Any] = field(default_factory=dict)
    tools: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        size = int(np.prod(self.action_shape)) if self.action_shape else 1
        if len(self.action_low) != size or len(self.action_high) != size:
            raise ContractError(
                f'action_low/action_high need {size} values for action shape '
                f'{list(self.action_shape)}, got {len(self.action_low)}/{len(self.action_high)}')
        if any(lo > hi for lo, hi in zip(self.action_low, self.action_high, strict=True)):
            raise ContractError(f'action_low {list(self.action_low)} exceeds action_high '
                                f'{list(self.action_high)}')
        if not (self.rate_hz > 0 and math.isfinite(self.rate_hz)):
            raise ContractError(f'rate_hz={self.rate_hz!r} must be a positive number')
        if not (self.deadline_s > 0 and math.isfinite(self.deadline_s)):
            raise ContractError(f'deadline_s={self.deadline_s!r} must be a positive number')
        for name, fld in self.observation.items():
            try:
                np.dtype(fld.dtype)
            except TypeError:
                raise ContractError(f"observation '{name}' has unknown dtype "
                                    f'{fld.dtype!r}') from None

    @property
    def low(self) -> np.ndarray:
        return np.asarray(self.action_low, dtype=np.float64).reshape(self.action_shape)

    @property
    def high(self) -> np.ndarray:
        return np.asarray(self.action_high, dtype=np.float64).reshape(self.action_shape)

    def example_observation(self, **values: Any) -> dict[str, Any]:
        """A zero observation that conforms to the spec (warm-ups, checks); ``values`` override."""
        obs: dict[str, Any] = {}
        for name, fld in self.observation.items():
            obs[name] = (np.zeros(fld.shape, dtype=fld.dtype) if fld.shape
                         else np.zeros((), dtype=fld.dtype).item())
        obs.update(values)
        return obs

    def with_params(self, params: Mapping[str, Any]) -> PolicySpec:
        """A copy with ``params`` replaced (the manifest's ``params:``)."""
        return PolicySpec(self.task, self.observation, self.action_shape, self.action_low,
                          self.action_high, self.rate_hz, self.deadline_s, dict(params),
                          self.task_info)

    def with_deadline(self, deadline_s: float) -> PolicySpec:
        return PolicySpec(self.task, self.observation, self.action_shape, self.action_low,
                          self.action_high, self.rate_hz, float(deadline_s), self.params,
                          self.task_info)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (sent to the sandboxed host worker)."""
        return {
            'task': self.task,
            'observation': {k: v.to_dict() for k, v in self.observation.items()},
            'action_shape': list(self.action_shape),
            'action_low': list(self.action_low),
            'action_high': list(self.action_high),
            'rate_hz': self.rate_hz,
            'deadline_s': self.deadline_s,
            'params': dict(self.params),
            'task_info': dict(self.task_info),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicySpec:
        obs = {k: ObservationField(tuple(int(s) for s in v['shape']), str(v['dtype']))
               for k, v in data['observation'].items()}
        return cls(str(data['task']), obs, tuple(int(s) for s in data['action_shape']),
                   tuple(float(x) for x in data['action_low']),
                   tuple(float(x) for x in data['action_high']), float(data['rate_hz']),
                   float(data['deadline_s']), dict(data.get('params') or {}),
                   dict(data.get('task_info') or {}))

    @classmethod
    def from_task_contract(cls, task: Mapping[str, Any], *, deadline_margin_s: float | None = None,
                           params: Mapping[str, Any] | None = None) -> PolicySpec:
        """Build the spec from a parsed ``task.yaml`` (its observation and action blocks).

        Args:
            task: The task contract mapping.
            deadline_margin_s: Overrides ``action.deadline_margin_s``; the per-act deadline is
                ``1 / rate_hz - margin``.
            params: The policy's ``params:``.
        """
        try:
            act = task['action']
            rate_hz = float(act['rate_hz'])
            margin = float(act.get('deadline_margin_s', 0.0) if deadline_margin_s is None
                           else deadline_margin_s)
            obs = {str(k): ObservationField(tuple(int(s) for s in v['shape']), str(v['dtype']))
                   for k, v in task['observation'].items()}
            info = {k: task[k] for k in ('goal_pose', 'workspace', 'views', 'success', 'episode',
                                         'parts', 'home', 'tools') if k in task}
            return cls(task=str(task.get('name') or task.get('id')), observation=obs,
                       action_shape=tuple(int(s) for s in act['shape']),
                       action_low=tuple(float(x) for x in act['low']),
                       action_high=tuple(float(x) for x in act['high']), rate_hz=rate_hz,
                       deadline_s=1.0 / rate_hz - margin, params=dict(params or {}),
                       task_info=info)
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f'task contract lacks or mangles a field the policy spec needs: '
                                f'{exc!r} (need observation.<name>.shape/dtype, action.shape, '
                                f'action.low, action.high, action.rate_hz)') from None


@dataclass(frozen=True)
class PolicyManifest:
    """The validated content of ``policy.yaml``."""

    name: str
    task: str
    version: int
    regime: str
    hypothesis: str
    parent: str = ''
    params: Mapping[str, Any] = field(default_factory=dict)


def load_policy_manifest(policy_dir: str | Path) -> PolicyManifest:
    """Read and validate ``<policy_dir>/policy.yaml``.

    Raises:
        ContractError: naming the file and the field that is missing or wrong.
    """
    import yaml  # lazy: the host worker never needs it

    path = Path(policy_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ContractError(f'{path}: file not found; a policy directory needs {MANIFEST_FILE} '
                            f'(name, task, version, regime, hypothesis, parent, params)')
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}' if mark is not None else str(path)
        raise ContractError(f'{where}: invalid YAML ({getattr(exc, "problem", exc)})') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(f'{path}: cannot read ({exc})') from None
    if not isinstance(data, Mapping):
        raise ContractError(f'{path}: must be a mapping of fields, got {type(data).__name__}')

    def need(key: str, kind: type, rule: str) -> Any:
        if key not in data or data[key] is None:
            raise ContractError(f"{path}: field '{key}' is missing ({rule})")
        value = data[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            raise ContractError(f"{path}: field '{key}'={value!r} must be {rule}")
        return value

    name = need('name', str, 'a name of letters, digits, _ . -')
    if not _NAME_RE.match(name):
        raise ContractError(f"{path}: field 'name'={name!r} must match {_NAME_RE.pattern}")
    task = need('task', str, 'the task name (a directory under config/tasks/)')
    version = need('version', int, 'an integer >= 1')
    if version < 1:
        raise ContractError(f"{path}: field 'version'={version!r} must be an integer >= 1")
    regime = need('regime', str, 'one of ' + ', '.join(REGIMES))
    if regime not in REGIMES:
        raise ContractError(f"{path}: field 'regime'={regime!r} must be one of "
                            f"{', '.join(REGIMES)}")
    hypothesis = need('hypothesis', str, 'a sentence saying what this revision tries')
    parent = data.get('parent') or ''
    if not isinstance(parent, str):
        raise ContractError(f"{path}: field 'parent'={parent!r} must be a revision id or empty")
    params = data.get('params') or {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ContractError(f"{path}: field 'params' must be a mapping of names to values")
    known = {'name', 'task', 'version', 'regime', 'hypothesis', 'parent', 'params'}
    extra = sorted(set(data) - known)
    if extra:
        raise ContractError(f"{path}: unknown field(s) {', '.join(map(repr, extra))}; allowed: "
                            f"{', '.join(sorted(known))}")
    return PolicyManifest(name, task, version, regime, hypothesis, parent, dict(params))


def spec_for_revision(task: Mapping[str, Any], policy_dir: str | Path, *,
                      deadline_margin_s: float = -1.0,
                      deadline_override_s: float = 0.0) -> PolicySpec:
    """The PolicySpec a revision runs under: the task contract plus its ``params``.

    ``deadline_margin_s`` < 0 keeps the contract's margin; ``deadline_override_s`` > 0 fixes
    the per-act deadline (tests, slow debugging). Raises ContractError (manifest problems).
    """
    manifest = load_policy_manifest(policy_dir)
    spec = PolicySpec.from_task_contract(
        task, deadline_margin_s=None if deadline_margin_s < 0 else deadline_margin_s,
        params=manifest.params)
    return spec.with_deadline(deadline_override_s) if deadline_override_s > 0 else spec


@dataclass(frozen=True)
class SizeLimits:
    """Limits on a policy directory (weights included)."""

    max_total_mb: float = 50.0
    max_files: int = 200


def check_policy_dir(policy_dir: str | Path, limits: SizeLimits | None = None) -> None:
    """Check that ``policy_dir`` holds the contract files and stays within ``limits``.

    Raises:
        ContractError: what is missing or too big, with the measured numbers.
    """
    limits = limits or SizeLimits()
    root = Path(policy_dir)
    if not root.is_dir():
        raise ContractError(f'{root}: not a directory; a policy is a directory with '
                            f'{POLICY_FILE} and {MANIFEST_FILE}')
    if not (root / POLICY_FILE).is_file():
        raise ContractError(f'{root / POLICY_FILE}: file not found; define '
                            f'make_policy(spec) there')
    total, count = 0, 0
    for path in root.rglob('*'):
        if path.is_symlink():
            raise ContractError(f'{path}: symbolic links are not allowed in a policy directory; '
                                f'copy the file in')
        if path.is_file():
            if '__pycache__' in path.parts:
                continue
            count += 1
            total += path.stat().st_size
            if count > limits.max_files:
                raise ContractError(f'{root}: more than {limits.max_files} files; keep only '
                                    f'what the policy loads')
    if total > limits.max_total_mb * 1e6:
        raise ContractError(f'{root}: {total / 1e6:.1f} MB exceeds the {limits.max_total_mb:g} MB '
                            f'limit; shrink or quantise the weights')
