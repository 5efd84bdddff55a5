"""The GPU insertion plugin without a simulator: score, starts, hidden state, checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from enpire_common.tasks import load_task
from enpire_tasks import arm, registry
from enpire_tasks.gpu_insertion import geometry
from enpire_tasks.observation import SOURCE_STATE, camera_sources, check_observation


@pytest.fixture(scope='module')
def task():
    return load_task('gpu_insertion')


def test_the_plugin_passes_check_task(task) -> None:
    from enpire_tasks.check_task import check_task

    check_task(registry.get('gpu_insertion'), task)


def test_score_is_the_depth_fraction_behind_a_lateral_gate(task) -> None:
    goal = task.goal_pose
    p = geometry.parts()
    assert geometry.score(tuple(goal), goal) == pytest.approx(1.0)
    half = (goal[0], goal[1], p.slot_top_z - p.slot_depth / 2)
    assert geometry.score(half, goal) == pytest.approx(0.5)
    assert geometry.score((goal[0] + 0.003, goal[1], goal[2]), goal) == 0.0   # beside it
    assert geometry.score((goal[0], goal[1], math.nan), goal) == 1.0          # top view
    assert geometry.score((goal[0] + 0.003, goal[1], math.nan), goal) == 1.0  # a lean
    assert geometry.score((math.nan, goal[1], p.slot_top_z), goal) == 0.0     # side: not in
    assert geometry.score((math.nan,) * 3, goal) == 0.0
    # resting on the latch's hook (about 8 mm up) is no success
    assert geometry.score((goal[0], goal[1], goal[2] + 0.008), goal) < task.success_threshold


def test_starts_cycle_through_the_caddy_slots(task) -> None:
    holders = geometry.parts().holders
    assert {geometry.start_pose(s)[:2] for s in range(2 * len(holders))} == set(holders)
    assert geometry.score(geometry.start_pose(0), task.goal_pose) == 0.0
    pre = geometry.start_pose(0, 'pre_insertion')
    assert pre[:2] == geometry.parts().slot_xy and geometry.score(pre, task.goal_pose) == 0.0


def test_the_parts_fit_the_gripper_and_the_slot(task) -> None:
    p = geometry.parts()
    card = task.raw['parts']['card']
    assert p.slot_width - card['pcb_thickness'] == pytest.approx(0.00033)   # 0.165 mm a side
    assert p.slot_length > p.connector_length
    # the cooler (the grasp feature) fits between the vx300s pads (<= 68 mm open)
    assert p.cooler_size[1] < 0.068
    assert geometry.outline(task.goal_pose)[0].shape == (4, 2)


def test_the_observation_hides_simulator_state(task) -> None:
    plugin = registry.get('gpu_insertion')
    for r in plugin.sample_readings(task, 3, 0):
        obs = plugin.build_observation(task, r)
        check_observation(task, obs)
        assert set(obs) == set(task.observation)
    state_fields = {n for n, f in task.observation.items() if f.source == SOURCE_STATE}
    assert state_fields == set(arm.STATE_FIELDS)
    for names in arm.STATE_FIELDS.values():
        if isinstance(names, tuple):
            assert all(n.split('_')[0] in arm.ARMS for n in names), names
            assert not any('card' in n or 'object' in n or 'latch' in n for n in names)
    assert set(camera_sources(task).values()) == {'camera/task_top/image_raw',
                                                  'camera/side/image_raw'}
    from enpire_agent_bridge.core.contract import PolicySpec

    info = PolicySpec.from_task_contract(task.raw).task_info
    assert {'parts', 'views', 'home', 'goal_pose'} <= set(info)
    assert 'sim' not in info


def test_the_calibration_matches_the_scene_cameras(task) -> None:
    """fx = (h / 2) / tan(fovy / 2) of each fixed scene camera, and its pose."""
    import re

    xml = (task.directory / 'scene.xml').read_text()
    for name in ('task_top', 'side'):
        m = re.search(rf'<camera name="{name}" pos="([^"]+)" xyaxes="([^"]+)" fovy="([^"]+)"',
                      xml)
        assert m, name
        cam = task.views[name].camera
        fovy = math.radians(float(m.group(3)))
        assert cam['fy'] == pytest.approx(120.0 / math.tan(fovy / 2), abs=1e-3)
        assert np.allclose(cam['position'], [float(v) for v in m.group(1).split()])
        ax = np.array([float(v) for v in m.group(2).split()]).reshape(2, 3)
        rot = np.asarray(cam['rotation'])
        assert np.allclose(rot[:, 0], ax[0]) and np.allclose(rot[:, 1], -ax[1])


def test_the_plugin_names_only_its_own_task() -> None:
    import inspect

    import enpire_tasks.gpu_insertion as pkg
    from enpire_tasks.gpu_insertion import classic, crosscheck, reset_skill
    from enpire_tasks.gpu_insertion import geometry as geo

    for mod in (pkg, classic, crosscheck, geo, reset_skill):
        src = inspect.getsource(mod)
        for banned in ('pin_insertion', 'rclpy', 'enpire_sim'):
            assert f'import {banned}' not in src and f'from {banned}' not in src, banned


def test_the_gold_fingers_mask_takes_washed_gold_not_a_red_green_border() -> None:
    """The side camera's fill light washes the gold of a card faced square to it to
    (255, 255, 166); the red cooler's border with the green PCB blends to a gold hue at low
    saturation, (165, 160, 120), and must not read as gold (it put the strip 33 mm high)."""
    from enpire_tasks.gpu_insertion.classic import gold_pixels

    img = np.zeros((40, 60, 3), dtype=np.uint8)
    img[5:10, 10:50] = (212, 176, 56)          # gold, as lit
    img[15:20, 10:50] = (255, 255, 166)        # gold, washed out
    img[25:27, 10:50] = (165, 160, 120)        # the cooler / PCB border
    rows, _ = gold_pixels(img)
    assert set(np.unique(rows).tolist()) == set(range(5, 10)) | set(range(15, 20))


def test_the_lit_face_survives_a_gain_that_clips_the_walls_too() -> None:
    # a red cooler seen from above: its top face (clipped red already) in the middle, two
    # darker walls beside it, and table grey round it all (what a learned mask takes in)
    img = np.full((20, 30, 3), 90, np.uint8)
    img[5:15, 10:20] = (255, 95, 95)            # the lit top face
    img[5:15, 4:10] = (205, 80, 80)             # walls, 80% as bright
    img[5:15, 20:22] = (215, 84, 84)
    mask = np.zeros((20, 30), bool)
    mask[3:17, 2:24] = True
    for gain in (1.0, 1.15):
        shot = np.clip(img * gain, 0, 255).astype(np.uint8)
        red = mask & arm.hue_mask(shot, geometry.parts().colour_rgb)
        rows, cols = arm.lit_face_pixels(shot, red)
        assert set(cols.tolist()) == set(range(10, 20)), gain
        assert set(rows.tolist()) == set(range(5, 15))
    # under gain the walls clip like the face: "within 92% of the brightest" takes them in
    shot = np.clip(img * 1.15, 0, 255).astype(np.uint8)
    rows, cols = arm.lit_pixels(shot, mask & arm.hue_mask(shot, geometry.parts().colour_rgb))
    assert cols.min() < 10


def test_one_evenly_lit_face_is_all_lit() -> None:
    img = np.full((10, 10, 3), (250, 90, 90), np.uint8)
    img[::2, ::2] = (246, 88, 88)
    rows, _ = arm.lit_face_pixels(img, np.ones((10, 10), bool))
    assert rows.size == 100


def test_the_cooler_s_top_edge_is_read_to_a_fraction_of_a_pixel_under_blur() -> None:
    import cv2

    from enpire_tasks.gpu_insertion.classic import top_edge

    red = geometry.parts().colour_rgb
    # a cooler under the PCB's green whose top edge is at row 9.2 (pixel centres at integer
    # rows: row 9 is 30% cooler, rows 10.. all of it); sharp and blurred by sigma 1 px
    fine = np.zeros((200, 8, 3), np.float32)
    fine[:] = (13, 89, 31)
    fine[97:] = red                                  # 10 sub-rows a pixel
    img = cv2.resize(fine, (8, 20), interpolation=cv2.INTER_AREA)
    for shot in (img, cv2.GaussianBlur(img, (0, 0), 1.0)):
        shot = np.clip(np.rint(shot), 0, 255).astype(np.uint8)
        mask = arm.hue_mask(shot, red)
        top = int(np.nonzero(mask[:, 4])[0].min())
        edge = top_edge(shot, 4, top, red)
        assert edge is not None and abs(edge - 9.2) < 0.15, (top, edge)
    # a column with no contrast to read gives no edge
    assert top_edge(np.full((20, 8, 3), 120, np.uint8), 4, 10, red) is None
