"""Task contracts: the frozen description of a task (DESIGN.md section 4).

A task is a directory ``<tasks_dir>/<name>/`` holding ``task.yaml`` (observation and action
spec, camera views, success rule, reset, episode limits, seeds) and ``safety.yaml`` (the
envelope). Tasks are discovered, not hard-coded: adding one is adding a directory. The
contract hash covers the listed files and the source of the listed code modules, so a change
to the environment, reset or verifier code is a contract change too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.config import load_yaml, require
from enpire_common.errors import ConfigError, ContractMismatchError, UnknownNameError

TASK_FILE = 'task.yaml'
SAFETY_FILE = 'safety.yaml'


@dataclass(frozen=True)
class FieldSpec:
    """One observation entry: shape, dtype and the topic/source it is built from."""

    shape: tuple[int, ...]
    dtype: str
    source: str = ''


@dataclass(frozen=True)
class ActionSpec:
    shape: tuple[int, ...]
    dtype: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    rate_hz: float
    deadline_margin_s: float = 0.02

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def deadline_s(self) -> float:
        """How long one ``act`` may take: one control period less the margin."""
        return max(0.005, self.period_s - self.deadline_margin_s)


@dataclass(frozen=True)
class ViewSpec:
    name: str
    width_px: int
    height_px: int
    encoding: str
    #: Workspace (plane) -> pixel affine; None for a view that has none (a side or wrist
    #: camera of an arm cell: evidence overlays then draw no outline).
    workspace_to_pixel: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    #: The view's calibration as task.yaml gives it (intrinsics, mount), if any.
    camera: Mapping[str, Any] | None = field(default=None, compare=False)

    def scaled(self, width_px: int, height_px: int) -> ViewSpec:
        """The same camera at another resolution (the affine map scales with it)."""
        sx, sy = width_px / self.width_px, height_px / self.height_px
        if self.workspace_to_pixel is None:
            return ViewSpec(self.name, width_px, height_px, self.encoding, None, self.camera)
        (a, b, c), (d, e, f) = self.workspace_to_pixel
        return ViewSpec(self.name, width_px, height_px, self.encoding,
                        ((a * sx, b * sx, c * sx), (d * sy, e * sy, f * sy)), self.camera)


@dataclass(frozen=True)
class SafetySpec:
    low: tuple[float, ...]
    high: tuple[float, ...]
    max_step_px: float
    max_rate_hz: float
    mode: str = 'clamp'


@dataclass(frozen=True)
class TaskSpec:
    """A loaded task contract. ``raw`` keeps task-specific sections (reset, success, ...)."""

    id: str
    name: str
    directory: Path
    workspace_low: tuple[float, ...]
    workspace_high: tuple[float, ...]
    goal_pose: tuple[float, ...]
    observation: dict[str, FieldSpec]
    action: ActionSpec
    views: dict[str, ViewSpec]
    safety: SafetySpec
    success_threshold: float
    success_fusion: str
    max_steps: int
    max_time_s: float
    tuning_seeds: tuple[int, int]
    evaluation_seeds: tuple[int, int]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: The task's stages towards success, in order (``stages:`` in task.yaml; the zip tie's
    #: grasp_head ... pull): what a partial success reached, judged by the verifier from the
    #: cameras and reported per trial. Empty: the task has none.
    stages: tuple[str, ...] = ()

    def section(self, name: str) -> dict[str, Any]:
        """A raw section of task.yaml (e.g. ``'reset'``), empty if absent."""
        value = self.raw.get(name) or {}
        return dict(value) if isinstance(value, dict) else {}


def _num_tuple(value: Any, where: str, n: int | None = None) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ConfigError(f'{where} must be a list of numbers, got {value!r}')
    if n is not None and len(value) != n:
        raise ConfigError(f'{where} must have {n} numbers, got {len(value)}')
    out = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in out):
        raise ConfigError(f'{where} must be finite numbers, got {value!r}')
    return out


def _get(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ConfigError(f"{where}: missing required key '{key}'")
    return data[key]


def parse_task(directory: Path) -> TaskSpec:
    """Load and validate ``directory/task.yaml`` and ``safety.yaml``."""
    tfile = directory / TASK_FILE
    data = load_yaml(tfile)
    if not isinstance(data, dict):
        raise ConfigError(f'{tfile}: must be a mapping of sections')
    where = str(tfile)
    ws = _get(data, 'workspace', where)
    low = _num_tuple(_get(ws, 'low', where), f'{where}: workspace.low')
    high = _num_tuple(_get(ws, 'high', where), f'{where}: workspace.high', len(low))
    obs = {}
    for name, spec in (_get(data, 'observation', where) or {}).items():
        obs[name] = FieldSpec(tuple(int(s) for s in spec.get('shape', [])),
                              str(spec.get('dtype', 'float64')), str(spec.get('source', '')))
    a = _get(data, 'action', where)
    action = ActionSpec(
        shape=tuple(int(s) for s in _get(a, 'shape', where)),
        dtype=str(a.get('dtype', 'float64')),
        low=_num_tuple(_get(a, 'low', where), f'{where}: action.low'),
        high=_num_tuple(_get(a, 'high', where), f'{where}: action.high'),
        rate_hz=float(_get(a, 'rate_hz', where)),
        deadline_margin_s=float(a.get('deadline_margin_s', 0.02)))
    require(action.rate_hz > 0, f'{where}: action.rate_hz', action.rate_hz, 'must be > 0 Hz')
    views = {}
    for name, v in (_get(data, 'views', where) or {}).items():
        m = v.get('workspace_to_pixel')
        camera = v.get('camera')
        if m is None and camera is None:
            raise ConfigError(f'{where}: views.{name} needs a workspace_to_pixel (2 x 3) or a '
                              'camera calibration')
        if m is not None and (not isinstance(m, list) or len(m) != 2
                              or not all(isinstance(r, list) and len(r) == 3 for r in m)):
            raise ConfigError(f'{where}: views.{name}.workspace_to_pixel must be a 2 x 3 matrix')
        if camera is not None and not isinstance(camera, dict):
            raise ConfigError(f'{where}: views.{name}.camera must be a mapping')
        views[name] = ViewSpec(name, int(v['width_px']), int(v['height_px']),
                               str(v.get('encoding', 'rgb8')),
                               None if m is None else (_num_tuple(m[0], 'row 0', 3),
                                                       _num_tuple(m[1], 'row 1', 3)),
                               camera)
    succ = data.get('success') or {}
    threshold = float(succ.get('threshold', 0.95))
    require(0.0 < threshold <= 1.0, f'{where}: success.threshold', threshold, 'must be in (0, 1]')
    fusion = str(succ.get('fusion', 'all'))
    require(fusion in ('all', 'any', 'mean'), f'{where}: success.fusion', fusion,
            'must be one of all, any, mean')
    ep = data.get('episode') or {}
    seeds = data.get('seeds') or {}
    tuning = tuple(int(s) for s in seeds.get('tuning', [0, 9999]))
    evaluation = tuple(int(s) for s in seeds.get('evaluation', [100000, 100999]))
    require(len(tuning) == 2 and len(evaluation) == 2, f'{where}: seeds', seeds,
            'tuning and evaluation must be [first, last] ranges')
    require(tuning[1] < evaluation[0] or evaluation[1] < tuning[0], f'{where}: seeds', seeds,
            'tuning and evaluation seed ranges must not overlap')
    sfile = directory / SAFETY_FILE
    s = load_yaml(sfile) if sfile.exists() else {}
    s = s or {}
    b = s.get('bounds') or {}
    # The supervisor's bounds are on the action. A task whose action lives in its workspace
    # (Push-T: pusher targets in table px) defaults them to the workspace; one whose action
    # is joint targets (arm cells: a Cartesian workspace box, checked by the cell) to the
    # action's own limits.
    n_action = int(math.prod(action.shape)) if action.shape else 1
    default_low, default_high = ((low, high) if len(low) == n_action
                                 else (action.low, action.high))
    safety = SafetySpec(
        low=_num_tuple(b.get('low', list(default_low)), f'{sfile}: bounds.low', n_action),
        high=_num_tuple(b.get('high', list(default_high)), f'{sfile}: bounds.high', n_action),
        # max_step: in action units (rad for joint targets); max_step_px is Push-T's name.
        max_step_px=float(s.get('max_step', s.get('max_step_px', math.inf))),
        max_rate_hz=float(s.get('max_rate_hz', math.inf)),
        mode=str(s.get('mode', 'clamp')))
    require(safety.mode in ('clamp', 'abort'), f'{sfile}: mode', safety.mode,
            'must be clamp or abort')
    stages = data.get('stages') or []
    require(isinstance(stages, list) and all(
        isinstance(x, str) and x.isidentifier() for x in stages)
        and len(set(stages)) == len(stages), f'{where}: stages', stages,
        'must be a list of distinct names (letters, digits, _)')
    return TaskSpec(
        id=str(data.get('id', directory.name)), name=str(data.get('name', directory.name)),
        directory=directory, workspace_low=low, workspace_high=high,
        goal_pose=_num_tuple(data.get('goal_pose', []), f'{where}: goal_pose'),
        observation=obs, action=action, views=views, safety=safety,
        success_threshold=threshold, success_fusion=fusion,
        max_steps=int(ep.get('max_steps', 300)), max_time_s=float(ep.get('max_time_s', 60.0)),
        tuning_seeds=(tuning[0], tuning[1]), evaluation_seeds=(evaluation[0], evaluation[1]),
        raw=data, stages=tuple(stages))


def tasks_dirs() -> list[Path]:
    """Where tasks are looked up, first match wins.

    ``$ENPIRE_TASKS_DIR``, the workspace's ``config/tasks`` (``$ENPIRE_ROOT``), then the
    installed ``share/enpire_bringup/config/tasks``.
    """
    out: list[Path] = []
    if os.environ.get('ENPIRE_TASKS_DIR'):
        out.append(Path(os.environ['ENPIRE_TASKS_DIR']))
    if os.environ.get('ENPIRE_ROOT'):
        out.append(Path(os.environ['ENPIRE_ROOT']) / 'config' / 'tasks')
    out.append(Path(__file__).resolve().parents[3] / 'config' / 'tasks')
    try:
        from ament_index_python.packages import get_package_share_directory

        out.append(Path(get_package_share_directory('enpire_bringup')) / 'config' / 'tasks')
    except Exception:  # noqa: BLE001 - no ament index (plain checkout): skip that location
        pass
    return [p for p in dict.fromkeys(out) if p.is_dir()]


def available_tasks() -> dict[str, Path]:
    """Registry of task name -> directory (every directory holding a task.yaml)."""
    found: dict[str, Path] = {}
    for base in tasks_dirs():
        for d in sorted(base.iterdir()):
            if (d / TASK_FILE).is_file():
                found.setdefault(d.name, d)
    return found


#: The task that CLI verbs and node parameters use when none is named: the one task with a
#: simulated cell since the start. Generic packages name no other task (they ask the
#: enpire_tasks registry with the name from the contract).
DEFAULT_TASK = 'push_t'


def load_task(name: str) -> TaskSpec:
    """Load task ``name`` from the registry; UnknownNameError lists the known ones."""
    tasks = available_tasks()
    if name not in tasks:
        raise UnknownNameError('task', name, tasks)
    return parse_task(tasks[name])


def _module_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ConfigError(f"contract code module '{module}' cannot be found")
    origin = Path(spec.origin).resolve()
    if spec.submodule_search_locations:  # a package: every .py below it
        return sorted(p.resolve() for p in origin.parent.rglob('*.py'))
    return [origin]


def contract_hash(task: TaskSpec) -> str:
    """sha256 over the contract files and the source of the contract's code modules."""
    c = task.section('contract')
    files = c.get('files') or [TASK_FILE, SAFETY_FILE]
    h = hashlib.sha256()
    for rel in sorted(files):
        p = task.directory / rel
        if not p.is_file():
            raise ConfigError(f'{task.directory}: contract file {rel} is missing')
        h.update(f'file:{rel}\n'.encode())
        h.update(p.read_bytes())
    for module in sorted(c.get('code_modules') or []):
        for p in _module_files(module):
            if '__pycache__' in p.parts:
                continue
            h.update(f'code:{module}:{p.name}\n'.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def lock_path(home: Path, task: str) -> Path:
    return home / 'contracts' / f'{task}.lock.json'


def _read_lock(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f'{path} is unreadable ({exc}); re-lock the task with `enpire task '
                          f'lock`') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{path} is not a task lock (not a JSON object)')
    return data


def _write_lock(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A per-writer temp name: several cells locking a fresh home at once must not rename
    # each other's temp file away (FileNotFoundError in the slower one).
    tmp = path.with_name(f'{path.name}.{os.getpid()}.{threading.get_ident()}.tmp')
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def lock_contract(task: TaskSpec, home: Path) -> str:
    """Record the task's current contract hash under ``home``; returns it.

    The verifier artifacts recorded in the lock (:func:`record_verifier`) stay when they
    were made under this same contract and are dropped when it changed: a verifier trained
    and calibrated on another contract is not this one's."""
    digest = contract_hash(task)
    path = lock_path(home, task.name)
    old = _read_lock(path) if path.exists() else {}
    kept = {k: v for k, v in (old.get('verifiers') or {}).items()
            if isinstance(v, dict) and v.get('contract_sha256') == digest}
    data = {'task': task.name, 'id': task.id, 'sha256': digest}
    if kept:
        data['verifiers'] = kept
    _write_lock(path, data)
    return digest


def record_verifier(task: TaskSpec, home: Path, backend: str, entry: dict) -> None:
    """Record a verifier artifact of ``backend`` (its version, weights hash, calibration...)
    in the task's lock under ``home``, made under the current contract (locked first if the
    task has no lock yet).

    Raises:
        ContractMismatchError: the contract changed since it was locked.
    """
    digest = verify_contract(task, home)
    path = lock_path(home, task.name)
    data = _read_lock(path)
    data.setdefault('verifiers', {})[backend] = {**entry, 'contract_sha256': digest}
    _write_lock(path, data)


def locked_verifier(task: TaskSpec, home: Path, backend: str) -> dict | None:
    """The artifact of ``backend`` that the task's lock under ``home`` records (None: none)."""
    entry = (_read_lock(lock_path(home, task.name)).get('verifiers') or {}).get(backend)
    return entry if isinstance(entry, dict) else None


def verify_contract(task: TaskSpec, home: Path, *, lock_if_missing: bool = True) -> str:
    """Raise ContractMismatchError when the contract differs from the locked one."""
    path = lock_path(home, task.name)
    if not path.exists():
        if lock_if_missing:
            return lock_contract(task, home)
        raise ContractMismatchError(
            f"task '{task.name}' has no locked contract under {path.parent}; "
            f'run `enpire task lock {task.name}`')
    locked = json.loads(path.read_text())['sha256']
    digest = contract_hash(task)
    if digest != locked:
        raise ContractMismatchError(
            f"task '{task.name}' contract changed since it was locked "
            f'(locked {locked[:12]}, now {digest[:12]}): the environment, reset, verifier or '
            f'config/tasks/{task.name} files were edited. Revert the edit, or re-lock '
            f'deliberately with `enpire task lock {task.name}` (invalidates comparisons).')
    return digest
