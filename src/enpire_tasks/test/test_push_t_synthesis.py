"""The gym-pusht forward camera model and the near-threshold analysis by synthesis.

These are about a sim cell with ``camera.renderer: gym-pusht`` (bit-exact gym-pusht images),
judged with ``camera_model: gym-pusht-pygame``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from enpire_common.errors import ConfigError, UnknownNameError
from enpire_common.tasks import ViewSpec
from enpire_reward.core import make_verifier
from enpire_tasks.camera_models import (
    make_camera_model,
    view_camera_model_name,
    with_camera_model,
)
from enpire_tasks.push_t import geometry
from enpire_tasks.push_t.camera_model import PushTPygameCamera, round_half_even, t_corners
from enpire_tasks.registry import make_sim_cell

GOAL_THETA = math.pi / 4


@pytest.fixture(scope='module')
def sim(task):
    s = make_sim_cell(task, renderer='gym-pusht')
    yield s
    s.close()


@pytest.fixture(scope='module')
def camera(task):
    return PushTPygameCamera(task.goal_pose, task.views['top'])


def _render(sim, pose, agent=(40.0, 470.0)):
    sim.reset(seed=0, object_pose=pose, agent_pos=agent)
    return sim.render(), sim.ground_truth()


def test_the_forward_model_reproduces_sim_renders_bit_exactly(sim, camera):
    rng = np.random.default_rng(7)
    for _ in range(12):
        pose = (256 + rng.normal(0, 25), 256 + rng.normal(0, 25),
                GOAL_THETA + rng.normal(0, 0.6))
        img, gt = _render(sim, pose)
        corners = round_half_even(t_corners(np.asarray([gt.object_pose])))[0]
        crop = camera.crop_for(corners)
        assert crop is not None
        x0, y0, x1, y1 = crop.image
        np.testing.assert_array_equal(camera.render_crop(corners, crop), img[y0:y1, x0:x1])
        full = camera.render_full(corners)
        full[415:465, 10:65] = img[415:465, 10:65]  # the pusher, which the model does not draw
        np.testing.assert_array_equal(full, img)


def test_crops_are_aligned_to_the_resize_period(camera):
    corners = round_half_even(t_corners(np.asarray([(250.3, 260.7, 0.8)])))[0]
    crop = camera.crop_for(corners)
    assert all(v % 16 == 0 for v in crop.render)
    assert crop.image == tuple(v // 16 * 15 for v in crop.render)
    edge = round_half_even(t_corners(np.asarray([(20.0, 20.0, 0.0)])))[0]
    assert camera.crop_for(edge) is None  # clipped strokes would not be reproduced


@pytest.fixture(scope='module')
def pygame_task(task):
    return with_camera_model(task, 'top', 'gym-pusht-pygame')


def test_the_task_contract_names_the_sim_camera_model(task, contract_task, pygame_task):
    # the contract: no forward model (the sim camera wears a sensor model by default)
    assert view_camera_model_name(contract_task, 'top') == 'none'
    assert view_camera_model_name(task, 'top') == 'pusht-area-v1'
    assert view_camera_model_name(pygame_task, 'top') == 'gym-pusht-pygame'
    assert make_camera_model('none', task, task.views['top']) is None
    with pytest.raises(UnknownNameError, match="did you mean 'gym-pusht-pygame'"):
        make_camera_model('gym-pusht-pygam', task, task.views['top'])


def test_a_view_that_is_not_a_resized_render_is_refused(task):
    skewed = ViewSpec('top', 480, 480, 'rgb8', ((0.9375, 0.0, 3.0), (0.0, 0.9375, 0.0)))
    with pytest.raises(ConfigError, match='set its camera_model to none'):
        PushTPygameCamera(task.goal_pose, skewed)


def _cell_fraction_above(pose, goal, threshold):
    rng = np.random.default_rng(3)
    p = np.asarray(pose)
    corners = round_half_even(t_corners(p[None]))[0]
    cand = p + rng.uniform(-1, 1, (60000, 3)) * (0.6, 0.6, 0.012)
    same = (round_half_even(t_corners(cand)) == corners).all(axis=(1, 2, 3))
    cell = cand[same][:300]
    return float(np.mean([geometry.coverage(q, goal) > threshold for q in cell]))


def _near_threshold_poses(goal, n, seed):
    """Poses whose coverage is within 0.006 of 0.95 (a translation off the goal)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        d = rng.normal(0, 1.0, 2)
        pose = (goal[0] + d[0], goal[1] + d[1], goal[2] + rng.normal(0, 0.004))
        if abs(geometry.coverage(pose, goal) - 0.95) < 0.006:
            out.append(pose)
    return out


def test_near_threshold_states_match_the_image_exactly_and_are_judged_by_their_cell(
        task, pygame_task, sim):
    verifier = make_verifier('opencv-v1', pygame_task)
    est = verifier.estimator
    refiner = est._refiners['top']
    results = []
    orig = refiner.refine

    def spy(*a, **k):
        results.append(orig(*a, **k))
        return results[-1]

    refiner.refine = spy
    errors, wrong = [], 0
    for pose in _near_threshold_poses(task.goal_pose, 12, seed=5):
        img, gt = _render(sim, pose)
        n = len(results)
        v = verifier.verify({'top': img}).verdicts[0]
        assert len(results) == n + 1, 'a near-threshold state must be refined'
        res = results[-1]
        assert res.exact, v.detail
        assert res.rendered <= 1 + refiner.max_passes * 10
        errors.append(abs(v.score - gt.coverage))
        # The Bayes call: do most poses that render this very image (round to the same
        # corners) cover more than the threshold? Brute force over the true pose's cell.
        frac = _cell_fraction_above(gt.object_pose, task.goal_pose, 0.95)
        if abs(frac - 0.5) > 0.15:
            assert v.success == (frac > 0.5), (frac, v.score, v.detail)
        wrong += v.success != gt.success
    assert np.mean(errors) < 0.0025  # ~0.0015: the cells themselves span ~0.005
    assert wrong <= 3  # the cells that straddle the threshold cannot be told apart


def test_states_far_from_the_threshold_skip_the_synthesis(task, pygame_task, sim):
    verifier = make_verifier('opencv-v1', pygame_task)
    calls = []
    refiner = verifier.estimator._refiners['top']
    orig = refiner.refine
    refiner.refine = lambda *a, **k: calls.append(1) or orig(*a, **k)
    for pose in [task.goal_pose, (250.0, 262.0, 0.70), (200.0, 300.0, 0.0)]:
        img, gt = _render(sim, pose)
        v = verifier.verify({'top': img}).verdicts[0]
        assert v.success == gt.success
    assert calls == []


def test_camera_model_none_or_zero_band_keeps_the_analytic_fit(task, sim):
    from enpire_tasks.push_t.opencv_backend import OpenCvConfig, OpenCvTEstimator

    pose = _near_threshold_poses(task.goal_pose, 1, seed=9)[0]
    img, _ = _render(sim, pose)
    view = task.views['top']
    plain = OpenCvTEstimator(goal_pose=task.goal_pose, threshold=0.95,
                             camera_models={'top': None}).estimate(img, view)
    off = OpenCvTEstimator(dataclasses.replace(OpenCvConfig(), synthesis_band=0.0),
                           goal_pose=task.goal_pose, threshold=0.95,
                           camera_models={'top': PushTPygameCamera(task.goal_pose, view)}
                           ).estimate(img, view)
    assert plain.pose == off.pose
    assert plain.success_margin is None and 'synthesis' not in plain.detail
    with pytest.raises(ConfigError, match='synthesis_band'):
        OpenCvConfig(synthesis_band=-0.1)


def test_the_ideal_verdict_is_the_majority_of_the_pixel_cell(task):
    from enpire_tasks.push_t.crosscheck import pose_ideal_verdict as ideal_verdict

    goal = task.goal_pose
    assert ideal_verdict(goal, goal, 0.95)
    assert not ideal_verdict((goal[0] + 6.0, goal[1], goal[2]), goal, 0.95)
    for pose in _near_threshold_poses(goal, 4, seed=2):
        frac = _cell_fraction_above(pose, goal, 0.95)  # brute force, another estimate
        if abs(frac - 0.5) > 0.15:
            assert ideal_verdict(pose, goal, 0.95) == (frac > 0.5)
