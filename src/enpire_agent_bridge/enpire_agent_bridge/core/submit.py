"""Submit a policy directory: validate it in a throwaway sandbox, then snapshot it.

``submit_policy`` is what ``enpire policy submit`` and the ``policy_submit`` MCP tool run:
the manifest is read, the task contract gives the :class:`PolicySpec`, and the revision store
stages a copy that :func:`check_policy` must pass (import, contract, per-act latency against
the task rate, bounds, NaN, size) before the revision becomes visible. A rejected policy leaves
nothing in the store and the error says what to fix, naming the agent's own directory (never
the staging copy).

Observations for the check: the task plugin's seeded validation scenes
(:func:`enpire_tasks.observation.validation_observations`: the contract's start ranges drawn
with the task's own camera model, no simulator), else, for a task without a plugin, synthetic
ones built from the spec (varied pusher positions, a table-like image with a block).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enpire_agent_bridge.core.checker import PolicyCheckReport, check_policy
from enpire_agent_bridge.core.config import SandboxConfig
from enpire_agent_bridge.core.contract import ContractError, PolicySpec, load_policy_manifest
from enpire_agent_bridge.core.revisions import Revision, RevisionStore
from enpire_common.config import require
from enpire_common.errors import PolicyRejectedError


@dataclass(frozen=True)
class SubmitConfig:
    """How a submission is validated.

    Attributes:
        n_observations: Observations the policy acts on in the check (>= 1).
        observation_seed: Seed of the first start the observations come from.
        warmup_timeout_s: Deadline of the first, untimed act (lazy imports, caches).
        deadline_s: Per-act deadline of the timed acts; 0 = the task contract's
            (``1 / rate_hz - deadline_margin_s``).
        sandbox: Limits of the throwaway host process.
    """

    n_observations: int = 4
    observation_seed: int = 0
    warmup_timeout_s: float = 5.0
    deadline_s: float = 0.0
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)

    def __post_init__(self) -> None:
        require(self.n_observations >= 1, 'n_observations', self.n_observations, 'must be >= 1')
        require(self.warmup_timeout_s > 0, 'warmup_timeout_s', self.warmup_timeout_s,
                'must be > 0 seconds')
        require(self.deadline_s >= 0, 'deadline_s', self.deadline_s,
                'must be >= 0 seconds (0 = the task contract deadline)')


@dataclass(frozen=True)
class SubmitResult:
    """A stored revision; ``report`` is None when identical content was stored before."""

    revision: Revision
    created: bool
    report: PolicyCheckReport | None

    def to_dict(self) -> dict[str, Any]:
        rev = self.revision
        out: dict[str, Any] = {
            'ok': True, 'revision_id': rev.id, 'short': rev.short, 'created': self.created,
            'name': rev.name, 'task': rev.task, 'version': rev.version, 'regime': rev.regime,
            'hypothesis': rev.hypothesis, 'parent': rev.parent, 'commit': rev.commit,
            'path': str(rev.path), 'files': sorted(rev.files)}
        if self.report is not None:
            r = self.report
            out['check'] = {'n_acts': r.n_acts,
                            'act_latency_median_ms': round(r.act_latency_median_s * 1e3, 3),
                            'act_latency_max_ms': round(r.act_latency_max_s * 1e3, 3),
                            'deadline_ms': round(r.deadline_s * 1e3, 3)}
        return out


def _fill(spec: PolicySpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """An observation of the spec with every known entry taken from ``values``."""
    obs = spec.example_observation()
    for name, fld in spec.observation.items():
        if name not in values:
            continue
        v = values[name]
        if fld.shape:
            arr = np.asarray(v, dtype=fld.dtype)
            if arr.shape == tuple(fld.shape):
                obs[name] = arr
        else:
            obs[name] = np.asarray(v, dtype=fld.dtype).item()
    return obs


def synthetic_observations(spec: PolicySpec, n: int = 4, seed: int = 0) -> list[dict[str, Any]]:
    """Spec-conforming observations with varied pusher positions and a table-like image."""
    rng = np.random.default_rng(seed)
    low, high = spec.low.reshape(-1), spec.high.reshape(-1)
    out = []
    for i in range(n):
        values: dict[str, Any] = {'step': i, 'retry_index': 0}
        if len(low) >= 2:
            values['agent_pos'] = rng.uniform(low[:2] + 0.1 * (high[:2] - low[:2]),
                                              high[:2] - 0.1 * (high[:2] - low[:2]))
            values['agent_vel'] = rng.normal(0.0, 20.0, size=2)
        for name, fld in spec.observation.items():
            if len(fld.shape) == 3 and np.dtype(fld.dtype) == np.uint8:
                h, w, c = fld.shape
                img = np.full((h, w, c), 235, dtype=np.uint8)
                y, x = (int(v) for v in rng.integers(0, [max(1, h - h // 4), max(1, w - w // 4)]))
                img[y:y + h // 4, x:x + w // 4] = (119, 136, 153)[:c] if c <= 3 else 119
                values[name] = img
        out.append(_fill(spec, values))
    return out


def validation_observations(task: Any, spec: PolicySpec, n: int = 4,
                            seed: int = 0) -> list[dict[str, Any]]:
    """The task plugin's seeded validation scenes, else (no plugin) synthetic ones."""
    from enpire_tasks import observation, registry

    if registry.find(task) is None:
        return synthetic_observations(spec, n, seed)
    return [_fill(spec, o) for o in observation.validation_observations(task, n, seed)]


def _rejected(exc: Exception, staged: Path | None, source: Path) -> PolicyRejectedError:
    msg = str(exc)
    if staged is not None:
        msg = msg.replace(str(staged), str(source))
    return PolicyRejectedError(msg)


def submit_policy(policy_dir: str | Path, store: RevisionStore, *, parent: str = '',
                  now_s: float = 0.0, config: SubmitConfig | None = None,
                  observations: Sequence[Mapping[str, Any]] | None = None,
                  log_dir: str | Path | None = None) -> SubmitResult:
    """Validate ``policy_dir`` in a sandbox and store it as a revision.

    Args:
        policy_dir: The agent's policy directory (``policy.py`` + ``policy.yaml``).
        store: Where revisions live (``$ENPIRE_HOME/revisions``).
        parent: Parent revision id (default: ``parent`` of ``policy.yaml``).
        now_s: Creation time recorded in the manifest.
        config: Check settings.
        observations: Observations to act on (default: :func:`validation_observations`).
        log_dir: Where the sandbox's stdout/stderr go.

    Returns:
        The revision; the same directory content always gives the same id.

    Raises:
        PolicyRejectedError: the policy failed a check; the message says what to fix and
            nothing was stored.
        UnknownNameError: ``policy.yaml`` names a task that is not registered.
    """
    from enpire_common.tasks import load_task

    config = config or SubmitConfig()
    src = Path(policy_dir).resolve()
    try:
        manifest = load_policy_manifest(src)
    except ContractError as exc:
        raise PolicyRejectedError(f'policy {src} rejected: {exc}') from None
    task = load_task(manifest.task)
    try:
        spec = PolicySpec.from_task_contract(task.raw)
    except ContractError as exc:
        raise PolicyRejectedError(f'task {task.name}: {exc}') from None
    if config.deadline_s:
        spec = spec.with_deadline(config.deadline_s)
    obs = list(observations) if observations is not None else validation_observations(
        task, spec, config.n_observations, config.observation_seed)
    reports: list[PolicyCheckReport] = []

    def validate(snapshot: Path) -> None:
        try:
            reports.append(check_policy(snapshot, spec, obs, config=config.sandbox,
                                        log_dir=log_dir, seed=config.observation_seed,
                                        warmup_timeout_s=config.warmup_timeout_s))
        except PolicyRejectedError as exc:
            raise _rejected(exc, snapshot, src) from None

    rev, created = store.submit(src, parent=parent, now_s=now_s, validate=validate)
    return SubmitResult(rev, created, reports[0] if reports else None)
