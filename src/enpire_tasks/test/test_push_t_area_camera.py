"""The area-sampled camera model (``pusht-area-v1``) and the verifier's fit on its images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from enpire_common.errors import ConfigError
from enpire_common.tasks import ViewSpec
from enpire_reward.core import make_verifier
from enpire_tasks.camera_models import make_camera_model
from enpire_tasks.push_t import geometry
from enpire_tasks.push_t.camera_model import PushTAreaCamera
from enpire_tasks.push_t.opencv_backend import box_coverage
from enpire_tasks.registry import make_sim_cell


@pytest.fixture(scope='module')
def sim(task):
    s = make_sim_cell(task, renderer='area')
    yield s
    s.close()


@pytest.fixture(scope='module')
def camera(task):
    return make_camera_model('pusht-area-v1', task, task.views['top'])


@pytest.fixture(scope='module')
def verifier(task):
    return make_verifier('opencv-v1', task)


def _render(sim, pose, agent=(40.0, 470.0)):
    sim.reset(seed=0, object_pose=pose, agent_pos=agent)
    return sim.render(), sim.ground_truth()


def test_the_forward_model_reproduces_sim_renders_bit_exactly(sim, camera):
    rng = np.random.default_rng(7)
    for _ in range(6):
        pose = (256 + rng.normal(0, 40), 256 + rng.normal(0, 40), rng.uniform(-math.pi, math.pi))
        img, gt = _render(sim, pose, agent=(60.0, 450.0))
        np.testing.assert_array_equal(camera.render_full(gt.object_pose, gt.agent_pos), img)


def test_unmixing_recovers_each_pixels_block_share(camera):
    pose = (240.3, 250.7, 0.61)
    img = camera.render_full(pose)
    box, alpha, fill = camera.renderer.block_coverage(pose)
    got, weight = camera.unmix(img[box[1]:box[3], box[0]:box[2]], box)
    assert weight.min() == 1.0  # no pusher in view: every pixel is usable
    # Edge pixels (background - border blends): uint8 rounding, ~1/100 of the share at most.
    edge = fill == 0.0
    assert np.abs(got - alpha)[edge].max() < 0.012
    # Inside (border - fill blends, >= 3.75 px from the edge) the share is (nearly) 1.
    assert got[~edge].min() > 0.95


def test_pixels_the_pusher_tints_are_not_used(camera):
    pose, pusher = (240.0, 250.0, 0.0), (240.0, 300.0)  # pusher on the stem's side
    img = camera.render_full(pose, pusher)
    box, _, _ = camera.renderer.block_coverage(pose)
    _, weight = camera.unmix(img[box[1]:box[3], box[0]:box[2]], box)
    u, v = int(round(0.9375 * 240.0)) - box[0], int(round(0.9375 * 300.0)) - box[1]
    assert weight[v, u] == 0.0 and weight[v, u + 15] == 0.0  # centre and rim (r ~14 px)
    assert weight[0, 0] == 1.0


@pytest.mark.parametrize(('t', 'a', 'b', 'expected'), [
    (0.0, 1.0, 0.0, 0.5), (0.25, 1.0, 0.0, 0.75), (-0.6, 1.0, 0.0, 0.0),
    (0.0, 0.7071, 0.7071, 0.5), (0.7071, 0.7071, 0.7071, 1.0),
    (-0.35355, 0.7071, 0.7071, 0.125)])
def test_box_coverage_is_the_share_of_a_pixel_behind_an_edge(t, a, b, expected):
    m, _ = box_coverage(np.array([t]), np.array([a]), np.array([b]))
    assert m[0] == pytest.approx(expected, abs=1e-4)


def test_poses_are_recovered_to_a_hundredth_of_a_pixel(sim, verifier):
    rng = np.random.default_rng(21)
    g = verifier.goal_pose
    for i in range(12):
        if i % 2:
            pose = (g[0] + rng.normal(0, 3), g[1] + rng.normal(0, 3), g[2] + rng.normal(0, .05))
        else:
            pose = (rng.uniform(120, 390), rng.uniform(120, 390), rng.uniform(-3.1, 3.1))
        img, gt = _render(sim, pose)
        v = verifier.verify({'top': img}).verdicts[0]
        est = v.object_pose
        assert math.hypot(est[0] - pose[0], est[1] - pose[1]) < 0.02, v.detail
        assert abs(geometry.angle_diff(est[2], pose[2])) < 3e-4
        assert abs(v.score - gt.coverage) < 2e-4
        assert v.success == gt.success


def test_a_pusher_touching_the_block_does_not_throw_the_pose_off(sim, verifier):
    pose = (256.0, 256.0, math.pi / 4)
    # The stem's tip is at body (0, 120) -> R(pi/4) (0, 120) + p; put the pusher against it.
    tip = np.array([256.0 - 120 * math.sin(math.pi / 4), 256.0 + 120 * math.cos(math.pi / 4)])
    agent = tip + 17.5 * np.array([-math.sin(math.pi / 4), math.cos(math.pi / 4)])
    img, gt = _render(sim, pose, agent=tuple(agent))
    v = verifier.verify({'top': img}).verdicts[0]
    assert math.hypot(v.object_pose[0] - 256.0, v.object_pose[1] - 256.0) < 0.05, v.detail
    assert v.success and gt.success


def test_a_view_that_is_not_an_isotropic_scale_is_refused(task):
    skewed = ViewSpec('top', 480, 480, 'rgb8', ((0.9375, 0.0, 0.0), (0.0, 0.9, 0.0)))
    with pytest.raises(ConfigError, match='set its camera_model to none'):
        PushTAreaCamera(task.goal_pose, skewed)
