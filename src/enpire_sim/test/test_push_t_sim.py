from __future__ import annotations

import math

import numpy as np
import pytest

from enpire_common.errors import CommandRejectedError, ConfigError
from enpire_common.tasks import load_task
from enpire_sim.core import (
    CellContractError,
    InvalidCommandError,
    PushTCellConfig,
    PushTSim,
    check_cell,
)


@pytest.fixture(scope='module')
def task():
    return load_task('push_t')


@pytest.fixture
def sim(task):
    s = PushTSim(task)
    yield s
    s.close()


def test_same_seed_gives_identical_ground_truth_and_image_bytes(sim):
    sim.reset(seed=7)
    gt1, img1 = sim.ground_truth(), sim.render().tobytes()
    sim.reset(seed=3)
    sim.reset(seed=7)
    assert sim.ground_truth() == gt1
    assert sim.render().tobytes() == img1
    assert gt1.seed == 7 and gt1.step == 0


def test_different_seeds_give_different_starts(sim):
    sim.reset(seed=7)
    a = sim.ground_truth().object_pose
    sim.reset(seed=8)
    assert sim.ground_truth().object_pose != a


def test_same_actions_give_the_same_trajectory(task):
    def run():
        s = PushTSim(task, 96, 96)
        s.reset(seed=11)
        states = [s.step([100.0 + 20 * i, 300.0]).tolist() for i in range(8)]
        return states, s.ground_truth()

    assert run() == run()


def test_seeded_start_matches_bare_gym_pusht_reset(sim):
    sim.reset(seed=5)
    _, info = sim.env.reset(seed=5)
    sim.reset(seed=5)
    gt = sim.ground_truth()
    assert gt.agent_pos == tuple(info['pos_agent'])
    assert gt.object_pose[:2] == tuple(info['block_pose'][:2])


def test_explicit_poses_are_placed_exactly(sim):
    sim.reset(seed=1, object_pose=[300.0, 200.0, 1.0], agent_pos=[80.0, 90.0])
    gt = sim.ground_truth()
    assert gt.object_pose == pytest.approx((300.0, 200.0, 1.0), abs=1e-6)
    assert gt.agent_pos == pytest.approx((80.0, 90.0))


def test_goal_pose_placement_is_success_with_full_coverage(sim):
    sim.reset(seed=0, object_pose=[256.0, 256.0, math.pi / 4], agent_pos=[60.0, 60.0])
    gt = sim.ground_truth()
    assert gt.coverage == pytest.approx(1.0, abs=1e-6)
    assert gt.success is True


def test_render_is_rgb_uint8_of_the_configured_size_without_red_marker(task):
    s = PushTSim(task, 320, 240)
    s.reset(seed=2)
    s.step([200.0, 200.0])
    img = s.render()
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    red = (img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] < 60)
    assert not red.any()
    assert s.view.workspace_to_pixel[0][0] == pytest.approx(320 / 512)


@pytest.mark.parametrize('size', [(480, 480), (320, 240), (96, 96)])
def test_gym_pusht_renderer_is_bit_identical_to_gym_pushts_own_observation_render(task, size):
    s = PushTSim(task, *size, renderer='gym-pusht')
    for seed in (0, 3):
        s.reset(seed=seed)
        s.step([150.0 + 20 * seed, 300.0])
        expected = np.ascontiguousarray(s._env._render(visualize=False))
        assert np.array_equal(s.render(), expected)
    s.close()


@pytest.mark.parametrize('renderer', ['area', 'gym-pusht'])
def test_both_renderers_draw_the_same_scene_up_to_edge_pixels(task, renderer):
    s = PushTSim(task, renderer=renderer)
    other = PushTSim(task, renderer='gym-pusht' if renderer == 'area' else 'area')
    for sim in (s, other):
        sim.reset(seed=3, object_pose=[300.0, 220.0, 0.4], agent_pos=[120.0, 380.0])
    diff = np.abs(s.render().astype(int) - other.render().astype(int)).max(axis=2)
    # Same colours, same geometry: only pixels on the shapes' edges differ.
    assert (diff > 30).mean() < 0.01
    assert s.renderer == renderer


def test_unknown_renderer_is_refused_with_a_suggestion(task):
    with pytest.raises(ConfigError, match=r"unknown camera renderer 'aera'; did you mean "
                                          r"'area'\?"):
        PushTSim(task, renderer='aera')


def test_camera_config_rejects_an_unknown_renderer():
    from enpire_sim.core import CameraConfig

    with pytest.raises(ConfigError, match=r"camera.renderer='pygame' is invalid: must be one "
                                          r'of area, gym-pusht'):
        CameraConfig(renderer='pygame')
    assert CameraConfig().renderer == 'area'


def test_camera_affine_maps_the_pusher_to_its_blue_disc(sim):
    sim.reset(seed=0, object_pose=[400.0, 400.0, 0.0], agent_pos=[120.0, 150.0])
    img = sim.render()
    (a, b, c), (d, e, f) = sim.view.workspace_to_pixel
    u, v = a * 120 + b * 150 + c, d * 120 + e * 150 + f
    r, g, bl = img[int(round(v)), int(round(u))].tolist()
    assert bl > 150 and r < 120  # RoyalBlue pusher


@pytest.mark.parametrize(('action', 'kind'), [
    ([float('nan'), 100.0], 'NAN'),
    ([100.0, float('inf')], 'NAN'),
    ([100.0], 'SHAPE'),
    ([1.0, 2.0, 3.0], 'SHAPE'),
    ('left', 'SHAPE'),
    ([5.0, 100.0], 'BOUNDS'),
    ([100.0, 503.0], 'BOUNDS'),
])
def test_bad_actions_are_rejected_and_leave_the_scene_unchanged(sim, action, kind):
    sim.reset(seed=4)
    before = sim.ground_truth()
    with pytest.raises(CommandRejectedError) as info:
        sim.step(action)
    assert isinstance(info.value, InvalidCommandError) and info.value.kind == kind
    assert sim.ground_truth() == before


def test_out_of_bounds_message_names_the_value_and_bounds(sim):
    sim.reset(seed=4)
    with pytest.raises(CommandRejectedError, match=r'\[600.0, 10.0\] is outside the safety '
                                                  r'bounds low=\[10.0, 10.0\]'):
        sim.step([600.0, 10.0])


def test_hold_keeps_a_resting_pusher_in_place(sim):
    sim.reset(seed=4)
    start = sim.agent_state()
    state = sim.hold()
    assert state[:2] == pytest.approx(start[:2])
    assert sim.ground_truth().step == 1


def test_step_before_reset_is_refused(task):
    with pytest.raises(ConfigError, match='has not been reset'):
        PushTSim(task, 64, 64).step([100.0, 100.0])


def test_explicit_pose_outside_the_workspace_is_refused(sim):
    with pytest.raises(ConfigError, match=r'object_pose=.*must lie in the workspace'):
        sim.reset(seed=0, object_pose=[600.0, 10.0, 0.0])


@pytest.mark.parametrize('renderer', ['area', 'gym-pusht'])
def test_push_t_sim_passes_check_cell_with_either_renderer(task, renderer):
    check_cell(PushTSim(task, 96, 96, renderer=renderer), image_shape=(96, 96, 3))


class _NondeterministicCell:
    """A cell whose start ignores the seed: check_cell must catch it."""

    def __init__(self, task):
        self._sim = PushTSim(task, 32, 32)
        self.low, self.high = self._sim.low, self._sim.high
        self._n = 0

    def reset(self, seed=None, object_pose=None, agent_pos=None):
        self._n += 1
        return self._sim.reset(seed=self._n)

    def step(self, action):
        return self._sim.step(action)

    def render(self):
        return self._sim.render()

    def ground_truth(self):
        return self._sim.ground_truth()

    def agent_state(self):
        return self._sim.agent_state()


def test_check_cell_catches_a_cell_that_ignores_its_seed(task):
    with pytest.raises(CellContractError, match='same seed -> same start'):
        check_cell(_NondeterministicCell(task))


def test_check_cell_rejects_objects_that_are_not_cells():
    with pytest.raises(CellContractError, match='implements CellPort'):
        check_cell(object())


@pytest.mark.parametrize(('kwargs', 'match'), [
    ({'control_rate_hz': 0.0}, r'control_rate_hz=0.0 is invalid'),
    ({'publish_every_n': 0}, r'publish_every_n=0 is invalid'),
])
def test_invalid_cell_config_names_field_and_rule(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PushTCellConfig(**kwargs)


def test_the_scene_is_bare_gym_pushts_without_its_leaking_contact_counter(sim):
    """PushTSim's env builds gym-pusht's scene without the collision handler whose space
    pymunk never frees (push_t._make_env): the same physics, step for step."""
    import numpy as np
    from gym_pusht.envs import PushTEnv

    bare = PushTEnv(obs_type='state', render_mode='rgb_array')
    ours = sim.env
    assert type(ours) is not PushTEnv and isinstance(ours, PushTEnv)
    for seed in (3, 8):
        obs_bare, _ = bare.reset(seed=seed)
        obs_ours, _ = ours.reset(seed=seed)
        assert np.array_equal(obs_bare, obs_ours)
        assert len(bare.space._handlers) == 1 and len(ours.space._handlers) == 0
        assert len(bare.space.shapes) == len(ours.space.shapes)
        assert (bare.space.damping, bare.space.gravity) == (ours.space.damping,
                                                            ours.space.gravity)
        contacts = 0
        block = np.asarray(bare.block.position)
        for i in range(40):         # the pusher drives through the block: contacts alike
            action = block + (np.asarray(bare.agent.position) - block) * (1.0 - i / 20.0)
            a, _, _, _, info = bare.step(action)
            b = ours.step(action)[0]
            contacts += info['n_contacts']
            assert np.array_equal(a, b), (seed, i, a, b)
        assert contacts > 0, seed
    bare.close()
