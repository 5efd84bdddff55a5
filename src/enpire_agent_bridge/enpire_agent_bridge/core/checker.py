"""check_policy: the contract checker every revision passes before it may run (cf. check_env).

It runs the policy in a throwaway :class:`PolicyHost` (never in the caller's process): import,
``make_policy``, ``reset``, then ``act`` on each recorded observation, checking shape, dtype,
finiteness, bounds and per-act latency against the spec's deadline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from enpire_agent_bridge.core.config import SandboxConfig
from enpire_agent_bridge.core.contract import (
    ContractError,
    PolicyManifest,
    PolicySpec,
    SizeLimits,
    check_policy_dir,
    load_policy_manifest,
)
from enpire_agent_bridge.core.host import PolicyHost
from enpire_common.errors import (
    PolicyDeadlineError,
    PolicyError,
    PolicyFaultError,
    PolicyRejectedError,
)


@dataclass(frozen=True)
class PolicyCheckReport:
    """What a passing check measured."""

    manifest: PolicyManifest
    n_acts: int
    act_latency_median_s: float
    act_latency_max_s: float
    deadline_s: float


def _check_observation(i: int, obs: Mapping[str, Any], spec: PolicySpec) -> None:
    # Recorded observations are ours, but a mismatch would make every verdict meaningless.
    for name, fld in spec.observation.items():
        if name not in obs:
            raise ContractError(f"recorded observation #{i} lacks '{name}' of the spec")
        shape = np.shape(obs[name])
        if tuple(shape) != tuple(fld.shape):
            raise ContractError(f"recorded observation #{i} '{name}' has shape {list(shape)}, "
                                f'the spec says {list(fld.shape)}')


#: As in the policy host node: an act is hung past this many deadlines (wall clock); within
#: that, its CPU time must fit the deadline, so a loaded machine cannot reject a fast policy.
HARD_DEADLINE_FACTOR = 4.0


def check_policy(policy_dir: str | Path, spec: PolicySpec,
                 observations: Sequence[Mapping[str, Any]], *,
                 config: SandboxConfig | None = None, log_dir: str | Path | None = None,
                 seed: int = 0, warmup_timeout_s: float = 5.0) -> PolicyCheckReport:
    """Validate a policy directory against ``spec`` in a sandbox process.

    Args:
        policy_dir: The candidate revision (``policy.py`` + ``policy.yaml``).
        spec: The task's policy spec (its ``params`` are replaced by the manifest's).
        observations: Recorded observations to act on (at least one).
        config: Sandbox limits (size limits of the directory included).
        log_dir: Where the sandbox's stdout/stderr go.
        seed: Passed to ``reset``.
        warmup_timeout_s: Deadline of the first, untimed act (lazy imports, caches).

    Returns:
        Latency figures of the passing run.

    Raises:
        PolicyRejectedError: the message names the stage, the offending value and the fix.
    """
    config = config or SandboxConfig()
    root = Path(policy_dir)
    if not observations:
        raise ValueError('check_policy needs at least one recorded observation')
    try:
        check_policy_dir(root, SizeLimits(config.max_policy_mb, config.max_policy_files))
        manifest = load_policy_manifest(root)
        if manifest.task != spec.task:
            raise ContractError(f"{root / 'policy.yaml'}: field 'task'={manifest.task!r} but "
                                f"this cell runs task {spec.task!r}")
        for i, obs in enumerate(observations):
            _check_observation(i, obs, spec)
    except ContractError as exc:
        raise PolicyRejectedError(f'policy {root} rejected: {exc}') from None

    run_spec = spec.with_params(manifest.params)
    latencies: list[float] = []
    stage = 'start'
    try:
        with PolicyHost(root, run_spec, config=config, log_dir=log_dir) as host:
            stage = 'reset'
            host.reset(seed)
            stage = 'warm-up act on observation #0'
            host.act(observations[0], deadline_s=warmup_timeout_s)
            for i, obs in enumerate(observations):
                stage = f'act on observation #{i}'
                host.act(obs, hard_deadline_s=spec.deadline_s * HARD_DEADLINE_FACTOR)
                latencies.append(host.last_round_trip_s)
    except PolicyDeadlineError as exc:
        raise PolicyRejectedError(
            f'policy {root} rejected at {stage}: {exc} (rate {spec.rate_hz:g} Hz leaves '
            f'{spec.deadline_s * 1000:.0f} ms per act)') from None
    except (PolicyFaultError, PolicyRejectedError) as exc:
        raise PolicyRejectedError(f'policy {root} rejected at {stage}: {exc}') from None
    except PolicyError as exc:  # any other policy error is a rejection too
        raise PolicyRejectedError(f'policy {root} rejected at {stage}: {exc}') from None
    lat = np.asarray(latencies)
    return PolicyCheckReport(manifest, len(latencies), float(np.median(lat)), float(lat.max()),
                             spec.deadline_s)
