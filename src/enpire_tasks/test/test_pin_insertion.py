"""The pin insertion plugin without a simulator: conventions, score, hidden state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from enpire_common.tasks import load_task
from enpire_tasks import arm, registry
from enpire_tasks.observation import SOURCE_STATE, camera_sources, check_observation
from enpire_tasks.pin_insertion import geometry


@pytest.fixture(scope='module')
def task():
    return load_task('pin_insertion')


def test_rpy_round_trips_and_neutral_is_level_pointing_across(task) -> None:
    rng = np.random.default_rng(0)
    for arm_name in arm.ARMS:
        for _ in range(20):
            rpy = rng.uniform([-3.0, -1.5, -1.5], [3.0, 1.5, 1.5])
            back = arm.matrix_to_rpy(arm_name, arm.rpy_to_matrix(arm_name, rpy))
            assert np.allclose(back, rpy, atol=1e-9)
    # rpy 0: the left gripper points +x, the right one -x; both close along y
    assert np.allclose(arm.rpy_to_matrix('left', [0, 0, 0])[:, 0], [1, 0, 0])
    assert np.allclose(arm.rpy_to_matrix('right', [0, 0, 0])[:, 0], [-1, 0, 0])
    a = arm.home_action(task)
    assert np.allclose(arm.join_action(arm.split_action(a)), a)


def test_score_is_the_depth_fraction_behind_a_lateral_gate(task) -> None:
    goal = task.goal_pose
    p = geometry.parts()
    seated = (goal[0], goal[1], goal[2])
    assert geometry.score(seated, goal) == pytest.approx(1.0)
    half = (goal[0], goal[1], p.hole_top_z - p.hole_depth / 2)
    assert geometry.score(half, goal) == pytest.approx(0.5)
    assert geometry.score((goal[0] + 0.003, goal[1], goal[2]), goal) == 0.0   # beside it
    # a view that measures only some components judges those
    assert geometry.score((goal[0], goal[1], math.nan), goal) == 1.0          # top view
    assert geometry.score((math.nan, goal[1], p.hole_top_z), goal) == 0.0     # side: not in
    assert geometry.score((math.nan, math.nan, math.nan), goal) == 0.0
    assert task.success_threshold < geometry.score(seated, goal) <= 1.0


def test_pose_error_uses_the_components_both_poses_have() -> None:
    assert arm.finite_pose_error((0, 0.4, 0.002), (0.003, 0.404, math.nan)) == (
        pytest.approx(0.005), 0.0)
    assert arm.finite_pose_error((0, 0, 0), (math.nan,) * 3)[0] == math.inf


def test_starts_cycle_through_the_rack_slots(task) -> None:
    slots = geometry.parts().slots
    starts = {geometry.start_pose(s)[:2] for s in range(2 * len(slots))}
    assert starts == set(slots)
    assert geometry.score(geometry.start_pose(0), task.goal_pose) == 0.0


def test_the_observation_hides_simulator_state(task) -> None:
    """The hidden-state test: every observation entry comes from a camera, the arm state
    vector or the rollout; the state vector the policy sees names only the arms (their
    measured end effectors and joints), never an object pose; the keys agree with the
    contract."""
    plugin = registry.get('pin_insertion')
    readings = plugin.sample_readings(task, 3, 0)
    for r in readings:
        obs = plugin.build_observation(task, r)
        check_observation(task, obs)
        assert set(obs) == set(task.observation)
    state_fields = {n for n, f in task.observation.items() if f.source == SOURCE_STATE}
    assert state_fields == set(arm.STATE_FIELDS)
    for names in arm.STATE_FIELDS.values():
        if isinstance(names, tuple):
            assert all(n.split('_')[0] in arm.ARMS for n in names), names
            assert not any('pin' in n or 'object' in n for n in names)
    assert set(camera_sources(task).values()) == {'camera/task_top/image_raw',
                                                  'camera/side/image_raw'}
    # the policy's task facts carry the parts and calibration, never a live pose
    from enpire_agent_bridge.core.contract import PolicySpec

    info = PolicySpec.from_task_contract(task.raw).task_info
    assert {'parts', 'views', 'home', 'goal_pose'} <= set(info)
    assert 'sim' not in info


def test_hold_keeps_the_measured_end_effectors(task) -> None:
    r = registry.get('pin_insertion').sample_readings(task, 1, 3)[0]
    hold = arm.hold_action(task, r.state)
    assert hold.shape == (14,)
    assert np.allclose(hold, np.clip([r.state[n] for n in arm.EE_NAMES], task.action.low,
                                     task.action.high))


def test_hue_blob_finds_a_shaded_part_and_ignores_grey_and_white() -> None:
    img = np.full((40, 60, 3), 90, dtype=np.uint8)
    img[:, 40:] = 250                       # a white rack
    img[10:20, 10:20] = (255, 120, 78)      # the lit top of a red part
    img[20:24, 10:20] = (164, 37, 18)       # its shaded side
    blob = arm.colour_blob(img, (230, 51, 26))
    assert blob is not None and blob.area == 140
    u, v = arm.lit_centroid(img, blob.mask)
    assert (u, v) == (pytest.approx(14.5), pytest.approx(14.5))


def test_a_pin_lying_by_the_fixture_is_slid_clear_along_its_axis(task) -> None:
    """The reset skill's plan for a pin lying along the fixture's far side, head towards -x
    (the right arm's to stand up, from +x): slide it head first towards +x, the closed
    fingertips on the head's top face, until the head is clear of the fixture on the right
    arm's half; never where the pads would have no room."""
    from enpire_tasks.pin_insertion.reset_down import LYING_CLEAR, PUSH_MAX
    from enpire_tasks.pin_insertion.reset_skill import PinResetSkill

    skill = PinResetSkill(task, 1)
    tip, head = np.array([0.056, 0.692]), np.array([0.010, 0.692])
    assert skill._blocked(tip, head) == 'the fixture'
    start, end = skill._push_plan(tip, head)
    assert skill.push_end == 'head'
    assert start[0] < head[0] - 0.006 and end[0] > start[0]            # from beyond the head
    assert abs(start[1] - 0.692) < 1e-9 and abs(end[1] - 0.692) < 1e-9  # along the axis
    shift = end[0] - start[0] - 0.005
    assert 0.0 < shift <= PUSH_MAX + 1e-9
    assert not skill._blocked(tip + [shift, 0.0], head + [shift, 0.0])
    assert skill._clearance(head + [shift, 0.0]) >= LYING_CLEAR
    # the same pin 30 mm further in: no slide of up to PUSH_MAX frees it
    assert skill._push_plan(tip - [0.03, 0.0], head - [0.03, 0.0]) is None
