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
from enpire_tasks.push_t.scene import T_BOXES
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


def _edge_over_marking(alpha: float, share: float) -> tuple[np.ndarray, np.ndarray]:
    """A block edge at column 20 (share ``alpha`` of that column) whose pixel the goal's
    edge also crosses (``share`` of it), the goal beyond it for two columns: composited as
    the area renderer does, ``a block + (1 - a) (table (1 - s) + goal s)``."""
    from enpire_tasks.push_t import scene

    o, w, g = (np.asarray(c, float) for c in (scene.BLOCK_BORDER, scene.TABLE, scene.GOAL))
    s = np.zeros(40)
    s[20], s[21:23] = share, 1.0
    a = np.zeros(40)
    a[:20], a[20] = 1.0, alpha
    col = a[:, None] * o + (1.0 - a[:, None]) * ((1.0 - s[:, None]) * w + s[:, None] * g)
    img = np.rint(np.broadcast_to(col, (40, 40, 3))).astype(np.uint8)
    return img, np.broadcast_to(s, (40, 40)).astype(np.float32)


def test_a_sliver_of_the_goal_in_an_edge_pixel_does_not_read_as_block():
    from enpire_tasks.estimation import Marking, unmix_alpha
    from enpire_tasks.push_t.mask_fit import GOAL_RATIO

    img, share = _edge_over_marking(alpha=0.3, share=0.6)
    mask = np.zeros((40, 40), np.uint8)
    mask[:, :20] = 1
    plain, _ = unmix_alpha(img, mask, 3)
    with_goal, weight = unmix_alpha(img, mask, 3, Marking(share, GOAL_RATIO))
    assert abs(float(with_goal[20, 20]) - 0.3) < 0.01
    assert float(weight[20, 20]) == 1.0
    assert float(plain[20, 20]) > 0.5        # the goal's green reads as block without it
    # the goal's own columns are background, not block
    assert float(np.abs(with_goal[20, 21:24]).max()) < 0.01


def test_goal_coverage_is_the_goal_ts_area_in_pixels(task):
    from enpire_tasks.push_t.mask_fit import goal_coverage

    view = task.views['top']
    share = goal_coverage(task, view)
    scale = view.workspace_to_pixel[0][0]
    area = sum(4.0 * hx * hy for _, _, hx, hy in T_BOXES)
    assert share.shape == (view.height_px, view.width_px)
    assert abs(float(share.sum()) - area * scale * scale) < 2.0
    assert float(share.min()) >= 0.0 and float(share.max()) <= 1.0
    # a camera turned on its mount (no area renderer): sampled 16 x 16 per pixel
    c, s = math.cos(0.3) * scale, math.sin(0.3) * scale
    turned = ViewSpec(name='top', width_px=480, height_px=480, encoding='rgb8',
                      workspace_to_pixel=((c, -s, 120.0), (s, c, -40.0)))
    share = goal_coverage(task, turned)
    assert abs(float(share.sum()) - area * scale * scale) < 0.01 * area * scale * scale


@pytest.mark.parametrize('pose', [(257.45816273, 254.32116563, 0.7759327),
                                  (256.62458318, 253.59910378, 0.76872094)])
def test_a_block_just_short_of_the_goal_is_not_read_as_a_success(sim, task, pose):
    # Crosscheck states (seed 7919) 0.0004 under the threshold that read 0.002 over it
    # while the goal's edge in the block's edge pixels was taken for block.
    img, gt = _render(sim, pose)
    assert not gt.success and gt.coverage > task.success_threshold - 0.001
    v = make_verifier('opencv-unmix-v1', task).verify({'top': img}).verdicts[0]
    assert math.hypot(v.object_pose[0] - pose[0], v.object_pose[1] - pose[1]) < 0.05, v.detail
    assert abs(v.score - gt.coverage) < 1e-3     # was 0.0024-0.0027
    assert not v.success
