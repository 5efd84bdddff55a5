"""``check_verifier``: the contract every verifier backend must pass (like check_env)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from enpire_common.errors import BadImageError, EnpireError
from enpire_reward.core.ports import FUSED_VIEW, GOAL_SUCCESS, Verifier, VerifyResult


class VerifierContractError(AssertionError):
    """A verifier broke its contract; the message says which rule and how."""


def _check_result(res: object, views: Sequence[str]) -> VerifyResult:
    if not isinstance(res, VerifyResult):
        raise VerifierContractError(f'verify() returned {type(res).__name__}, not VerifyResult')
    names = [v.view for v in res.verdicts]
    if names[-1:] != [FUSED_VIEW] or sorted(names[:-1]) != sorted(views):
        raise VerifierContractError(f'verdicts must be one per view then fused, got {names}')
    for v in res.verdicts:
        if not (0.0 <= v.score <= 1.0) or math.isnan(v.score):
            raise VerifierContractError(f'{v.view}: score {v.score} is outside [0, 1]')
        if not (0.0 <= v.confidence <= 1.0):
            raise VerifierContractError(f'{v.view}: confidence {v.confidence} outside [0, 1]')
        if not v.backend:
            raise VerifierContractError(f'{v.view}: backend id is empty')
        if not (0.0 < v.threshold <= 1.0):
            raise VerifierContractError(f'{v.view}: threshold {v.threshold} outside (0, 1]')
        if not (v.latency_s > 0.0 and math.isfinite(v.latency_s)):
            raise VerifierContractError(f'{v.view}: latency_s {v.latency_s} was not recorded')
        if not v.detail:
            raise VerifierContractError(f'{v.view}: detail is empty; say why')
        # NaN: a component this view cannot measure (an arm task's side camera has no x);
        # infinities are never a measurement.
        if v.object_pose and any(math.isinf(p) for p in v.object_pose):
            raise VerifierContractError(f'{v.view}: object_pose {v.object_pose} not finite')
        if v.object_pose and all(math.isnan(p) for p in v.object_pose):
            raise VerifierContractError(f'{v.view}: object_pose {v.object_pose} measures '
                                        'nothing (all NaN); report found=False instead')
    if res.success != res.fused.success or res.score != res.fused.score:
        raise VerifierContractError('result success/score differ from the fused verdict')
    return res


def _nan_none(pose: Sequence[float]) -> tuple[float | None, ...]:
    return tuple(None if math.isnan(p) else p for p in pose)


def check_verifier(verifier: Verifier, samples: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Run the verifier contract on ``samples`` (each: view -> RGB image of that view).

    Checks: valid verdict fields (score and confidence in [0, 1], latency recorded, detail
    set, one verdict per view then ``fused``); the same image gives the same result;
    bad images (wrong dtype, wrong size, empty, uniform) raise BadImageError.

    Raises:
        VerifierContractError: the first broken rule.
    """
    if not samples:
        raise VerifierContractError('check_verifier needs at least one sample')
    for i, images in enumerate(samples):
        views = [v for v in verifier.views if v in images]
        first = _check_result(verifier.verify(images, GOAL_SUCCESS), views)
        again = _check_result(verifier.verify({k: v.copy() for k, v in images.items()}),
                              views)
        for a, b in zip(first.verdicts, again.verdicts, strict=True):
            if (a.success, a.score, _nan_none(a.object_pose)) != (b.success, b.score,
                                                                  _nan_none(b.object_pose)):
                raise VerifierContractError(
                    f'sample {i} view {a.view}: same image, different verdicts '
                    f'({a.score} vs {b.score}); verify() must be deterministic')
    images = samples[0]
    view = next(v for v in verifier.views if v in images)
    good = images[view]
    h, w = good.shape[:2]
    bad_cases = {
        'float image': good.astype(np.float32),
        'grey (2-D) image': good[..., 0],
        'wrong size': np.ascontiguousarray(good[: h // 2, : w // 2]),
        'empty image': np.zeros((0, 0, 3), np.uint8),
        'all-white image': np.full_like(good, 255),
    }
    for name, bad in bad_cases.items():
        try:
            verifier.verify({**images, view: bad})
        except BadImageError:
            continue
        except EnpireError as exc:
            raise VerifierContractError(
                f'{name}: raised {type(exc).__name__} ({exc}), expected BadImageError') from exc
        raise VerifierContractError(f'{name}: accepted; expected BadImageError')
