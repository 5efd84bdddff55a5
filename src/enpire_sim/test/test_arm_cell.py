"""The arm cell of a task contract (no ROS): starts, commands, refusals, the envelope, and the
classic pin verifier against simulator truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from enpire_sim.core.arm.sim import gl_backend

gl_backend()  # MUJOCO_GL must be set before mujoco is first imported
pytest.importorskip('mujoco', reason='the arm cell needs mujoco (requirements.txt)')


@pytest.fixture(scope='module')
def task():
    from enpire_common.tasks import load_task

    return load_task('pin_insertion')


@pytest.fixture(scope='module')
def cell(task):
    from enpire_sim.core.arm.cell import ArmCell

    c = ArmCell(task)
    yield c
    c.close()


def _stand_pin(cell, xy, tip_z: float) -> None:
    """Teleport the pin upright with its tip at (x, y, tip_z) (test set-ups only)."""
    m, d = cell.model, cell.data
    adr = m.jnt_qposadr[m.joint('pin_joint').id]
    d.qpos[adr:adr + 3] = (xy[0], xy[1], tip_z + 0.02)
    d.qpos[adr + 3:adr + 7] = (1.0, 0.0, 0.0, 0.0)
    d.qvel[:] = 0.0
    cell.sim.mj.mj_forward(m, d)


def test_a_start_stands_the_pin_in_its_slot_with_the_arms_home(cell, task) -> None:
    from enpire_tasks import arm
    from enpire_tasks.pin_insertion.geometry import start_pose

    for seed in (0, 4):
        gt = cell.place(seed)
        assert np.allclose(gt.object_pose[:2], start_pose(seed)[:2], atol=1e-3)
        assert not gt.success and gt.coverage == 0.0
        assert np.allclose(cell.ee_action(), arm.home_action(task), atol=0.01)
        assert len(cell.agent_state()) == len(arm.STATE_NAMES)


def test_bad_commands_are_refused_and_nothing_moves(cell, task) -> None:
    from enpire_sim.core.ports import InvalidCommandError
    from enpire_tasks import arm

    cell.place(1)
    before = cell.data.qpos.copy()
    home = arm.home_action(task)
    far = home.copy()
    far[7:10] = (0.34, 0.94, 0.44)        # in bounds, beyond the right arm's reach
    for bad, kind in ((np.full(14, np.nan), 'NAN'), (np.zeros(3), 'SHAPE'),
                      (np.where(np.arange(14) == 2, 5.0, home), 'BOUNDS'), (far, 'IK')):
        with pytest.raises(InvalidCommandError) as err:
            cell.step(bad)
        assert err.value.kind == kind, err.value
    assert np.array_equal(cell.data.qpos, before)


def test_end_effector_targets_are_tracked(cell, task) -> None:
    from enpire_tasks import arm

    cell.place(2)
    a = arm.home_action(task)
    a[7:10] = (0.10, 0.55, 0.15)
    a[13] = 0.5
    for _ in range(60):
        state = cell.step(a)
        assert cell.violations == []
    got = cell.ee_action()
    assert np.array_equal(state[:14], got)     # step returns the state (CellPort)
    assert np.linalg.norm(got[7:10] - a[7:10]) < 0.005
    assert abs(got[13] - 0.5) < 0.05
    assert np.allclose(got[10:13], 0.0, atol=0.03)


def test_pressing_into_the_table_trips_the_envelope(cell, task) -> None:
    from enpire_tasks import arm

    cell.place(3)
    a = arm.home_action(task)
    a[7:9] = (0.05, 0.75)     # clear of the rack and fixture, within a level reach
    kinds = set()
    for z in np.linspace(0.2, -0.01, 70):
        a[9] = z
        try:
            cell.step(a)
            kinds |= {v.kind for v in cell.violations}
        except Exception:  # noqa: BLE001 - IK refusals near the table are fine here
            cell.hold()
        if kinds:
            break
    assert kinds & {'FORCE', 'COLLISION'}, kinds


def _judge(task, cell, goal: str = 'success', expected=None):
    from enpire_reward.core.registry import make_verifier

    verifier = make_verifier('', task)
    images = {v: cell.render(v) for v in task.views}
    return verifier.verify(images, goal, expected)


def test_the_classic_verifier_agrees_with_simulator_truth(cell, task) -> None:
    hole = task.goal_pose
    cell.place(0)
    seated = (hole[0], hole[1], hole[2])
    _stand_pin(cell, seated[:2], seated[2])
    for _ in range(10):
        cell.hold()
    gt = cell.ground_truth()
    res = _judge(task, cell)
    assert gt.success and res.success, [v.detail for v in res.verdicts]
    side = next(v for v in res.verdicts if v.view == 'side')
    assert math.isnan(side.object_pose[0]) and abs(side.object_pose[2] - gt.object_pose[2]) < 0.003
    top = next(v for v in res.verdicts if v.view == 'task_top')
    assert math.hypot(top.object_pose[0] - gt.object_pose[0],
                      top.object_pose[1] - gt.object_pose[1]) < 0.0015
    # resting on the fixture beside the hole, and standing in the rack: not inserted
    for xy, z in (((hole[0] + 0.008, hole[1]), 0.024), ((0.0, 0.46), 0.002)):
        _stand_pin(cell, xy, z)
        for _ in range(10):
            cell.hold()
        assert not cell.ground_truth().success
        assert not _judge(task, cell).success


def test_a_start_is_verified_from_the_top_camera(cell, task) -> None:
    from enpire_tasks.pin_insertion.geometry import start_pose

    gt = cell.place(5)
    res = _judge(task, cell, 'reset', start_pose(5))
    assert res.success, [v.detail for v in res.verdicts]
    assert [v.view for v in res.verdicts] == ['task_top', 'fused']
    wrong = _judge(task, cell, 'reset', start_pose(0))
    assert not wrong.success and 'POSE' in wrong.verdicts[0].detail
    assert gt.coverage == 0.0


def test_crosscheck_of_the_classic_verifier_on_sampled_states(task) -> None:
    """The pin crosscheck (drops near the hole, pins in slots, lying on the table and across
    the fixture) through the generic multi-view crosscheck: the fused verdict against the
    simulator's truth. The issue's targets (>= 99% over many states) are for
    ``enpire verify crosscheck --task pin_insertion --states 500``; a small sample here."""
    from enpire_reward.core.crosscheck import crosscheck
    from enpire_reward.core.registry import make_verifier

    rep = crosscheck(make_verifier('', task), task, 40, seed=3)
    assert rep.positives >= 5 and rep.states - rep.positives >= 5
    assert rep.label_agreement >= 0.95, rep
    assert rep.false_positives == 0, rep
    # (its p95 latency target, < 50 ms a view, is measured by `enpire verify crosscheck
    # --task pin_insertion --states 500`: a timed assert here failed on a loaded 2-core machine)
    assert rep.latency_p95_s > 0.0


def test_the_robot_takes_a_seated_pin_back_to_its_seed_slot(cell, task) -> None:
    from enpire_tasks.pin_insertion.geometry import start_pose

    cell.place(1)
    _stand_pin(cell, (0.0, 0.65), 0.004)            # seated in the hole
    for _ in range(10):
        cell.hold()
    assert cell.ground_truth().success
    gt, method = cell.robot_place(3, 'start')
    assert method == 'robot'
    assert np.hypot(gt.object_pose[0] - start_pose(3)[0],
                    gt.object_pose[1] - start_pose(3)[1]) < 0.003
    res = _judge(task, cell, 'reset', start_pose(3))
    assert res.success, [v.detail for v in res.verdicts]
    assert np.allclose(cell.ee_action()[7:10], arm_home(task)[7:10], atol=0.02)   # back home


def test_a_pin_let_go_wedged_high_in_its_slot_is_pressed_down(cell, task) -> None:
    """A trial's end (seed 65 of ``benchmarks/resets.py --task pin_insertion``, saved with
    ``--save-failed``) from which the reset let go of the pin with its tip wedged 12 mm up in
    its slot: it slid up in the grip where its tip met the lead-in off the axis. The
    verifier read it 12 mm off (parallax) three attempts running. After letting go the
    closed fingers press its head down: seated, and verified."""
    from enpire_tasks.pin_insertion.geometry import start_pose

    cell.set_sim_state(np.load(Path(__file__).parent / 'data' / 'pin_trial_end_seed65.npy'))
    gt, method = cell.robot_place(65, 'start')
    assert method == 'robot'
    assert gt.object_pose[2] < start_pose(65)[2] + 0.001           # its tip on the floor
    res = _judge(task, cell, 'reset', start_pose(65))
    assert res.success, [v.detail for v in res.verdicts]


def test_the_reset_skill_measures_a_pin_jammed_in_the_hole_from_the_side(cell, task) -> None:
    """A pin jammed part-way (tip 12 mm up) reads as standing in the hole (not lying down,
    though the top camera sees part of its shaft), at its real height."""
    from enpire_tasks.pin_insertion.reset_skill import PinResetSkill

    cell.place(2)
    _stand_pin(cell, (0.0008, 0.6503), 0.012)      # rendered at once: no time to slide
    skill = PinResetSkill(task, 2)
    z = skill._side_tip_z(cell.render('side'), 0.0008)
    assert z == pytest.approx(0.012, abs=0.0015)
    skill._side_image = cell.render('side')
    assert skill._upright_in_side_view()


def _lay_pin(cell, tip_xy, heading_deg: float) -> None:
    """Lay the pin on the table, its tip at ``tip_xy``, its head towards ``heading_deg``
    (from +x), and let it settle (test set-ups only)."""
    th = math.radians(heading_deg)
    # body z (tip -> head) along the heading: a turn about z, then z onto x
    rot = np.array([[math.cos(th), -math.sin(th), 0.0], [math.sin(th), math.cos(th), 0.0],
                    [0.0, 0.0, 1.0]]) @ np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0],
                                                  [-1.0, 0.0, 0.0]])
    quat = np.zeros(4)
    cell.sim.mj.mju_mat2Quat(quat, rot.reshape(-1))
    centre = np.array([*tip_xy, 0.006]) + 0.02 * rot[:, 2]     # the body origin: mid-shaft
    cell.set_object(centre, quat, settle_ticks=30)


def test_the_reset_skill_sees_where_a_tilted_pin_s_tip_is(cell, task) -> None:
    """A pin hanging tilted in the grasp over a slot shows its tip beyond its head from
    above: the skill aligns that tip, not the head (and finds nothing for an upright pin)."""
    from enpire_tasks.pin_insertion.reset_skill import PinResetSkill

    skill = PinResetSkill(task, 1)
    cell.place(1)
    for tilt_deg, expect_tip in ((15.0, True), (0.0, False)):
        t = math.radians(tilt_deg)
        head = np.array([0.002, 0.456, 0.077])            # held over slot 1, as at 'align'
        axis = np.array([-math.sin(t), 0.0, math.cos(t)])  # tip -> head, leaning towards -x
        tip = head - skill.head_c * axis
        quat = np.array([math.cos(t / 2), 0.0, -math.sin(t / 2), 0.0])
        cell.set_object(tip + 0.02 * axis, quat, settle_ticks=0)   # rendered before it falls
        seen = skill._tip_seen(cell.render('task_top'), head[:2],
                               head[2] + task.raw['parts']['pin']['head_height'] / 2, tip[2])
        if expect_tip:
            assert seen is not None and np.linalg.norm(seen - tip[:2]) < 0.003, (seen, tip)
        else:
            assert seen is None or np.linalg.norm(seen - head[:2]) < 0.002


def test_a_pin_lying_on_the_table_stays_where_it_lies(cell, task) -> None:
    """The table resists rolling: a pin lying down (a truncated cone of head and shaft)
    rolled in circles under MuJoCo's default contacts, away from the gripper reaching for
    it."""
    cell.place(4)
    _lay_pin(cell, (0.12, 0.47), 180.0)
    before = cell.data.site('pin_tip').xpos.copy()
    for _ in range(90):
        cell.hold()
    assert np.linalg.norm(cell.data.site('pin_tip').xpos - before) < 0.001


def test_the_robot_stands_up_a_pin_lying_down_and_puts_it_in_its_slot(cell, task) -> None:
    """Head towards +x: the left arm grips the head from above, turns the pin up about its
    tip on the table and stands it in the seed's slot (the right arm takes the others)."""
    from enpire_tasks.pin_insertion.geometry import start_pose

    cell.place(2)
    _lay_pin(cell, (-0.12, 0.50), 0.0)
    gt, method = cell.robot_place(2, 'start')
    assert method == 'robot'
    res = _judge(task, cell, 'reset', start_pose(2))
    assert res.success, [v.detail for v in res.verdicts]
    assert np.allclose(cell.ee_action()[0:3], arm_home(task)[0:3], atol=0.02)   # back home


def test_a_pin_lying_against_the_fixture_fails_the_robot_reset_with_its_cause(cell,
                                                                           task) -> None:
    from enpire_common.errors import ResetFailedError

    cell.place(4)
    _lay_pin(cell, (-0.02, 0.692), 0.0)        # along the fixture's far side
    with pytest.raises(ResetFailedError, match=r'fallen: the pin lies down \(.*\) against '
                                               'the fixture'):
        cell.robot_place(4, 'start')


def arm_home(task):
    from enpire_tasks import arm

    return arm.home_action(task)
