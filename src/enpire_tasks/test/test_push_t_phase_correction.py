from __future__ import annotations

import math

import numpy as np
import pytest

from enpire_reward.core import VisionVerifier
from enpire_tasks.estimation import Estimate
from enpire_tasks.push_t.geometry import coverage
from enpire_tasks.push_t.phase_correction import (
    corner_features,
    default_correction,
    fit_phase_correction,
)

GOAL = (256.0, 256.0, math.pi / 4)
SCALE = 480.0 / 512.0


def test_fit_recovers_a_known_phase_error_model():
    rng = np.random.default_rng(0)
    fits = np.column_stack([256 + rng.normal(0, 3, 400), 256 + rng.normal(0, 3, 400),
                            GOAL[2] + rng.normal(0, 0.03, 400)])
    n = len(corner_features(GOAL, (1.0,)))
    coeffs = rng.normal(0, 1.0, (n, 3)) * (0.01, 0.01, 1e-4)
    true = fits - np.stack([corner_features(p, (1.0,)) for p in fits]) @ coeffs
    corr = fit_phase_correction(fits, true, theta_rad=GOAL[2], scale=SCALE, ridge=1e-6,
                                harmonics=(1.0,))
    fixed = np.array([corr.correct(p, SCALE) for p in fits])
    assert np.abs(fixed - true)[:, :2].max() < 1e-6
    assert np.abs(fits - true)[:, :2].max() > 0.05


def test_correction_is_small_and_only_applies_near_the_calibrated_view_and_angle():
    corr = default_correction()
    near = (257.3, 254.8, GOAL[2] + 0.02)
    moved = corr.correct(near, SCALE)
    assert math.hypot(moved[0] - near[0], moved[1] - near[1]) < 0.6
    assert abs(moved[2] - near[2]) < 0.005
    assert moved != near
    far_angle = (200.0, 300.0, 0.0)
    assert corr.correct(far_angle, SCALE) == far_angle
    assert corr.correct(near, 1.0) == near  # a camera with another scale: untouched


class _FixedPose:
    backend_id = 'fixed'

    def __init__(self, pose, margin):
        self.pose, self.success_margin = pose, margin

    def estimate(self, image, view):
        return Estimate(True, self.pose, 1.0)


def test_success_needs_the_backend_margin_above_the_threshold(task):
    lo, hi = 0.0, 5.0  # shift along x until the coverage is just above 0.95
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if coverage((256 + mid, 256, GOAL[2]), GOAL) > 0.951 else (lo, mid)
    pose = (256 + lo, 256.0, GOAL[2])
    assert 0.9505 < coverage(pose, GOAL) < 0.952
    img = np.zeros((480, 480, 3), np.uint8)
    img[0, 0] = 1
    plain = VisionVerifier(task, _FixedPose(pose, 0.0)).verify({'top': img})
    strict = VisionVerifier(task, _FixedPose(pose, 0.002)).verify({'top': img})
    assert plain.success
    assert not strict.success
    assert 'margin 0.002' in strict.verdicts[0].detail
    assert strict.verdicts[0].threshold == pytest.approx(0.95)
