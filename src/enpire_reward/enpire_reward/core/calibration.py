"""The calibration gate: a verifier backend judges trials only after it passed on held-out,
labelled images.

``enpire verify calibrate --task T --backend B`` scores the backend on states it has not seen
(the crosscheck sampler from a seed far from the datasets' and the crosschecks' defaults),
rendered by the task's sim cell with no forward camera model and every camera perturbation of
:mod:`enpire_tasks.sensor`, against the simulator's ground truth. It records, per
perturbation kind and over all of them: label agreement, false-positive and false-negative
rates, and the p95 latency per view; and whether they pass:

- agreement >= 95% (AutoEval's deployment gate),
- FPR <= 0.5% (a false success is kept as an improvement: the project's own target),
- p95 latency per view < 50 ms on this machine (the verifier's budget).

With a human-labelled set (``--labels DIR``, written by ``enpire verify label`` from the
final frames of recorded trials, real cells' included), the set is one more kind, ``human``
(:func:`enpire_reward.core.labelled_set.score_labelled`: a backend success on a frame the
person called ``invalid`` counts as a false success), under the same gate; the record names
the set (its path and the sha256 of its ``labels.jsonl``).

The record goes into the task lock (``verifiers.<backend>.calibration``), next to the artifact
it measured (its weights' sha256): retraining invalidates it, and so does a contract change
(the lock drops verifiers made under another contract).

:func:`require_calibrated` is the gate: a backend that needs calibration (the learned ones,
:data:`NEEDS_CALIBRATION`) without a passing record for its current artifact raises
:class:`CalibrationError` (exit 2) with the numbers; the verifier node and ``enpire trial
run --verifier-backend`` call it before anything starts. (The built-in classic backends are
code under the contract hash, measured by ``enpire verify crosscheck``; they may be
calibrated the same way, and a failed record of one refuses it too.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, EnpireError, VerifierUncalibratedError
from enpire_common.tasks import TaskSpec
from enpire_reward.core.labelled_set import FAILURE, SUCCESS, LabelledSet, score_labelled

#: Backends that judge nothing until a passing calibration of their artifact is recorded.
NEEDS_CALIBRATION = frozenset({'yolo', 'sam2'})
#: Where the held-out states start (the crosscheck's and the datasets' default seed is 0).
DEFAULT_SEED = 7919


@dataclass(frozen=True)
class Gate:
    """What a calibration must reach to pass."""

    min_agreement: float = 0.95
    max_fpr: float = 0.005
    max_latency_p95_s: float = 0.050

    def failures(self, rep: dict[str, Any]) -> list[str]:
        out = []
        if rep['label_agreement'] < self.min_agreement:
            out.append(f"agreement {rep['label_agreement']:.2%} < {self.min_agreement:.0%}")
        if rep['false_positive_rate'] > self.max_fpr:
            out.append(f"FPR {rep['false_positive_rate']:.2%} > {self.max_fpr:.1%}")
        if rep['latency_p95_s'] >= self.max_latency_p95_s:
            out.append(f"p95 latency {rep['latency_p95_s'] * 1e3:.1f} ms >= "
                       f'{self.max_latency_p95_s * 1e3:.0f} ms')
        return out


#: (exit 2, error code 106 VERIFIER_UNCALIBRATED)
CalibrationError = VerifierUncalibratedError


def _artifact_sha(task: TaskSpec, home: Path, backend: str) -> str | None:
    from enpire_common.tasks import locked_verifier

    entry = locked_verifier(task, home, backend) or {}
    return entry.get('weights_sha256')


def calibrate(task: TaskSpec, backend: str, *, states: int = 300, seed: int = DEFAULT_SEED,
              home: Path | None = None, gate: Gate | None = None, record: bool = True,
              progress: Callable[[int, int], None] | None = None,
              labelled: LabelledSet | None = None) -> dict[str, Any]:
    """Score ``backend`` on held-out states (see the module doc), and on the human-labelled
    set ``labelled`` when given (kind ``human``); record the result in the task lock
    (``record``) and return it.

    A backend that cannot be built for the task (no artifact, a model of another task's
    classes) fails with its reason recorded.

    Raises:
        ConfigError: ``labelled`` holds labels of another task, or none it can score.
    """
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import record_verifier
    from enpire_reward.core import make_verifier
    from enpire_reward.core.crosscheck import crosscheck_matrix
    from enpire_tasks.camera_models import without_camera_models
    from enpire_tasks.sensor import PERTURBATIONS

    if states < 20:
        raise ConfigError(f'--states={states} is too few to calibrate on (>= 20)')
    if labelled is not None:
        other = sorted({lab.task for lab in labelled.labels} - {task.name})
        if other:
            raise ConfigError(f"{labelled.labels_path}: labels of task(s) {', '.join(other)}; "
                              f"calibrating task '{task.name}' needs a set of its own")
        counts = labelled.counts()
        if not counts[SUCCESS] + counts[FAILURE]:
            raise ConfigError(f'{labelled.labels_path}: no success or failure label to score '
                              f'({counts}); label some with `enpire verify label`')
    home = home or enpire_home()
    gate = gate or Gate()
    real = without_camera_models(task)
    t0 = time.monotonic()
    result: dict[str, Any] = {
        'backend': backend, 'states': states, 'seed': seed, 'camera': 'real',
        'perturbations': list(PERTURBATIONS), 'gate': gate.__dict__,
        'weights_sha256': _artifact_sha(task, home, backend),
        'date': time.strftime('%Y-%m-%dT%H:%M:%S')}
    if labelled is not None:
        result['labels'] = labelled.summary()
    try:
        verifier = make_verifier(backend, real)
    except (ConfigError, EnpireError) as exc:
        result.update(passed=False, failures=[f'the backend cannot be built: {exc}'],
                      per_kind={}, seconds=round(time.monotonic() - t0, 1))
    else:
        matrix = crosscheck_matrix([verifier], real, states, seed=seed,
                                   perturbations=tuple(PERTURBATIONS), progress=progress)
        per_kind = {k: {f: getattr(r, f) for f in (
            'label_agreement', 'false_positive_rate', 'false_negative_rate',
            'false_positives', 'false_negatives', 'positives', 'latency_p95_s')}
            for k, r in matrix[verifier.backend_id].items()}
        if labelled is not None:
            per_kind['human'] = score_labelled(verifier, labelled)
        failures = [f'{kind}: {why}' for kind, rep in per_kind.items()
                    for why in gate.failures(rep)]
        worst = {'label_agreement': min(r['label_agreement'] for r in per_kind.values()),
                 'false_positive_rate': max(r['false_positive_rate']
                                            for r in per_kind.values()),
                 'latency_p95_s': max(r['latency_p95_s'] for r in per_kind.values())}
        result.update(passed=not failures, failures=failures, per_kind=per_kind,
                      worst=worst, seconds=round(time.monotonic() - t0, 1))
    if record:
        from enpire_common.tasks import locked_verifier

        entry = dict(locked_verifier(task, home, backend) or {})
        entry['calibration'] = result
        record_verifier(task, home, backend, entry)
    return result


def require_calibrated(task: TaskSpec, backend: str, home: Path | None = None) -> None:
    """The gate (see the module doc).

    Raises:
        CalibrationError: ``backend`` needs calibration and has no passing record for its
            current artifact, or it has a failed record.
    """
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import locked_verifier

    home = home or enpire_home()
    entry = locked_verifier(task, home, backend) or {}
    cal = entry.get('calibration')
    how = f'enpire verify calibrate --task {task.name} --backend {backend}'
    if not cal:
        if backend in NEEDS_CALIBRATION:
            raise CalibrationError(f"verifier backend '{backend}' has no calibration for task "
                                   f"'{task.name}': it judges no trial until it passes ({how})")
        return
    if cal.get('weights_sha256') != entry.get('weights_sha256'):
        raise CalibrationError(f"the calibration of '{backend}' for '{task.name}' measured "
                               f'other weights than the recorded ones; calibrate again ({how})')
    if not cal.get('passed'):
        worst = cal.get('worst') or {}
        numbers = ', '.join(f'{k} {v:.4g}' for k, v in worst.items()
                            if isinstance(v, float) and math.isfinite(v))
        raise CalibrationError(
            f"verifier backend '{backend}' failed its calibration for '{task.name}' "
            f"({'; '.join(cal.get('failures') or [])}{'; worst: ' + numbers if numbers else ''})"
            f'; it judges no trial until it passes ({how})')


__all__ = ['DEFAULT_SEED', 'NEEDS_CALIBRATION', 'CalibrationError', 'Gate', 'calibrate',
           'require_calibrated']
