"""GPU insertion on the generic arm cell (no ROS): starts verified from the cameras, the card
fits the slot only when aligned, the latch holds it until pressed, the classic verifier
against simulator truth, and the robot reset from a seated card."""

from __future__ import annotations

import numpy as np
import pytest

from enpire_sim.core.arm.sim import gl_backend

gl_backend()  # MUJOCO_GL must be set before mujoco is first imported
pytest.importorskip('mujoco', reason='the arm cell needs mujoco (requirements.txt)')


@pytest.fixture(scope='module')
def task():
    from enpire_common.tasks import load_task

    return load_task('gpu_insertion')


@pytest.fixture(scope='module')
def cell(task):
    from enpire_sim.core.arm.cell import ArmCell

    c = ArmCell(task)
    yield c
    c.close()


def _judge(task, cell, goal: str = 'success', expected=None):
    from enpire_reward.core.registry import make_verifier

    verifier = make_verifier('', task)
    return verifier.verify({v: cell.render(v) for v in task.views}, goal, expected)


def _push(cell, xy, z0: float, z1: float, ticks: int = 20, press: float = 0.0) -> None:
    """Move the card's edge from z0 to z1 over (x, y) under a stiff servo (a stand-in for a
    grasp), pressing the latch's pad down with ``press`` N; test set-ups only.

    The servo acts at the card's centre of mass, 36 mm above the edge, and holds its turn
    with 0.75 N m/rad: a grasp of the cooler between two pads. (At 0.2 N m/rad, the 1 N that
    a lead-in chamfer needs to slide the edge 0.33 mm sideways against the 3000 N/m servo
    rolled the card 10 degrees, and a 1.57 mm card rolled that far jams in a 1.9 mm slot
    after 2 mm: no slot, however built, could pass the 0.5 mm case.) Stiffer than this the
    explicit torque is unstable at the 2 ms step."""
    m, d, mj = cell.model, cell.data, cell.sim.mj
    adr = m.jnt_qposadr[m.joint('card_joint').id]
    dof = m.jnt_dofadr[m.joint('card_joint').id]
    body, latch = m.body('card').id, m.body('latch').id
    kp = np.array([3000.0, 3000.0, 300.0])
    for t in range(ticks * 17):
        z = z0 + (z1 - z0) * min(1.0, t / (ticks * 17 * 0.8))
        e = d.site('card_edge').xpos
        f = kp * (np.array([xy[0], xy[1], z]) - e) - 2 * np.sqrt(kp * 0.07) * d.qvel[dof:dof + 3]
        f[2] += 0.07 * 9.81
        q = d.qpos[adr + 3:adr + 7] * (1 if d.qpos[adr + 3] >= 0 else -1)
        d.xfrc_applied[body, :3] = np.clip(f, -15, 15)
        d.xfrc_applied[body, 3:] = -1.5 * q[1:] - 0.004 * d.qvel[dof + 3:dof + 6]
        d.qfrc_applied[:] = 0.0
        if press:
            mj.mj_applyFT(m, d, np.array([0.0, 0.0, -press]), np.zeros(3),
                          d.site('latch_press').xpos.copy(), latch, d.qfrc_applied)
        mj.mj_step(m, d)
    d.xfrc_applied[:] = 0.0
    d.qfrc_applied[:] = 0.0


def test_a_start_is_verified_from_the_top_camera(cell, task) -> None:
    from enpire_tasks.gpu_insertion.geometry import start_pose

    for seed in (0, 3):
        gt = cell.place(seed)
        assert np.allclose(gt.object_pose, start_pose(seed), atol=0.001)
        res = _judge(task, cell, 'reset', start_pose(seed))
        assert res.success, [v.detail for v in res.verdicts]
        assert not _judge(task, cell, 'reset', start_pose(seed + 1)).success
        assert gt.coverage == 0.0


@pytest.mark.parametrize(('offset', 'seats'), [((0.0, 0.0), True), ((0.0, 0.0005), True),
                                                ((0.0, 0.003), False), ((0.004, 0.0), False)])
def test_the_card_fits_the_slot_only_when_aligned(cell, task, offset, seats) -> None:
    goal = np.asarray(task.goal_pose)
    cell.place(0)
    xy = goal[:2] + offset
    cell.set_object((xy[0], xy[1], goal[2] + 0.012), settle_ticks=0)
    _push(cell, xy, goal[2] + 0.012, goal[2] - 0.0015)
    for _ in range(5):
        cell.hold()
    gt = cell.ground_truth()
    assert gt.success == seats, gt.object_pose
    if seats:   # the latch snapped back into the notch
        assert float(cell.data.joint('latch_hinge').qpos[0]) > -0.05


def test_the_latch_holds_a_seated_card_until_pressed(cell, task) -> None:
    goal = np.asarray(task.goal_pose)
    cell.place(0)
    cell.set_object((goal[0], goal[1], goal[2] + 0.0002))
    _push(cell, goal[:2], goal[2], goal[2] + 0.02, ticks=15)
    held = cell.ground_truth().object_pose[2] - goal[2]
    cell.set_object((goal[0], goal[1], goal[2] + 0.0002))
    _push(cell, goal[:2], goal[2], goal[2], ticks=5, press=3.0)
    _push(cell, goal[:2], goal[2], goal[2] + 0.02, ticks=15, press=3.0)
    out = cell.ground_truth().object_pose[2] - goal[2]
    assert held < 0.008 < out, (held, out)


def test_the_classic_verifier_agrees_with_simulator_truth(cell, task) -> None:
    goal = task.goal_pose
    cell.place(1)
    gt = cell.set_object((goal[0], goal[1], goal[2] + 0.0002))
    res = _judge(task, cell)
    assert gt.success and res.success, [v.detail for v in res.verdicts]
    side = next(v for v in res.verdicts if v.view == 'side')
    assert abs(side.object_pose[2] - gt.object_pose[2]) < 0.0015
    top = next(v for v in res.verdicts if v.view == 'task_top')
    assert np.hypot(top.object_pose[0] - gt.object_pose[0],
                    top.object_pose[1] - gt.object_pose[1]) < 0.003
    # in the caddy, and resting on the latch over the slot: not inserted
    gt = cell.place(2)
    assert not gt.success and not _judge(task, cell).success
    cell.set_object((goal[0], goal[1], goal[2] + 0.012), settle_ticks=20)
    assert not cell.ground_truth().success and not _judge(task, cell).success


def test_crosscheck_of_the_classic_verifier_on_sampled_states(task) -> None:
    """A small sample; the issue's targets are for ``enpire verify crosscheck``."""
    from enpire_reward.core.crosscheck import crosscheck
    from enpire_reward.core.registry import make_verifier

    rep = crosscheck(make_verifier('', task), task, 30, seed=3)
    assert rep.positives >= 3 and rep.states - rep.positives >= 5
    assert rep.label_agreement >= 0.9, rep
    assert rep.false_positives == 0, rep
    # (its p95 latency target, < 50 ms a view, is measured by `enpire verify crosscheck
    # --task gpu_insertion --states 500`: a timed assert here failed on a loaded 2-core machine)
    assert rep.latency_p95_s > 0.0


def test_the_reset_skill_unplugs_a_seated_card(cell, task) -> None:
    """Press the latch, unplug, place, home: from a seated card to seed 3's caddy slot."""
    from enpire_common.errors import ResetFailedError
    from enpire_tasks.gpu_insertion.geometry import start_pose

    goal = task.goal_pose
    cell.place(0)
    cell.set_object((goal[0], goal[1], goal[2] + 0.0002))
    try:
        gt, how = cell.robot_place(3, 'start')
    except ResetFailedError as exc:
        pytest.fail(f'robot reset failed: {exc}')
    assert how == 'robot' and not gt.success
    res = _judge(task, cell, 'reset', start_pose(3))
    assert res.success, [v.detail for v in res.verdicts]


def _ramp(cell, action, arm_slice, target, ticks: int) -> None:
    """Step the cell with ``action``'s ``arm_slice`` (a fingertip position) moved in a
    straight line to ``target`` over ``ticks`` (test set-ups: where a trial left the arm)."""
    start = np.asarray(cell.tcp_poses()['right'][0], dtype=float)
    for t in range(1, ticks + 1):
        action[arm_slice] = start + (np.asarray(target) - start) * t / ticks
        cell.step(action)


def test_the_reset_skill_unplugs_a_seated_card_gripped_high(cell, task) -> None:
    """A trial that ends with the right gripper closed on a seated card's cooler 11 mm over
    the grasp's height (commanded 14 mm: the arm sags 3): the side camera sees none of its
    gold fingers over the housing (seated), so the reset lets go and takes it as a card
    standing in the slot, the latch pressed (read by the gripper's height as out of the
    slot, it was lifted by that grip with the latch shut and pulled out of the fingers)."""
    from enpire_tasks.arm import home_action
    from enpire_tasks.gpu_insertion.geometry import parts

    p = parts()
    goal = task.goal_pose
    cell.place(0)
    cell.set_object((goal[0], goal[1], goal[2] + 0.0002))
    action = np.asarray(home_action(task), dtype=float)
    grasp = np.array([goal[0] + 0.006, goal[1], p.holder_floor_z + p.cooler_center[2] + 0.014])
    _ramp(cell, action, slice(7, 10), grasp + [0.0, 0.0, 0.05], 60)
    _ramp(cell, action, slice(7, 10), grasp, 40)
    action[13] = 0.0
    for _ in range(20):
        cell.step(action)
    assert 0.15 < cell.ee_action()[13] < 0.4          # closed on the cooler
    assert cell.ee_action()[9] > grasp[2] - 0.004       # that high
    assert abs(cell.object_pose()[2] - goal[2]) < 0.001
    _reset_to(cell, task, 1)


def _quat(axis, angle: float) -> tuple[float, float, float, float]:
    a = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    return (float(np.cos(angle / 2)), *(float(v) for v in np.sin(angle / 2) * a))


def _qmul(a, b) -> tuple[float, float, float, float]:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return (w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2)


def _reset_to(cell, task, seed: int) -> None:
    from enpire_common.errors import ResetFailedError
    from enpire_tasks.gpu_insertion.geometry import start_pose

    try:
        _, how = cell.robot_place(seed, 'start')
    except ResetFailedError as exc:
        pytest.fail(f'robot reset failed: {exc}')
    assert how == 'robot'
    res = _judge(task, cell, 'reset', start_pose(seed))
    assert res.success, [v.detail for v in res.verdicts]


@pytest.mark.parametrize(('xy', 'yaw', 'face_up', 'floor'), [
    ((0.06, 0.57), 1.9, True, 0.0),       # cooler towards +y (-x): the right arm's
    ((0.03, 0.58), -0.3, False, 0.0),     # cooler on the +x side: the left arm's
    ((-0.09, 0.43), 1.6, True, 0.053),    # on the caddy's top, over the holders
    # behind the connector, knocked off the slot backwards, its cooler towards the riser:
    # in the top view only since it moved back and widened (the old one ended at y 0.71);
    # turned down and stood up over open table, in the arm's plane, short of pointing -y
    ((0.0, 0.745), -np.pi / 2, True, 0.0),
])
def test_the_reset_skill_stands_up_a_card_lying_flat(cell, task, xy, yaw, face_up,
                                                     floor) -> None:
    """A card lying flat on the table or the caddy (fallen): gripped across the cooler's
    ends, stood up in the air, put in a holder at the caddy's end, then moved to its seed's
    holder."""
    cell.place(0)
    # lying: the card's z axis (edge -> cooler) along ``yaw`` in the table's plane, one face
    # or the other up (which decides the arm's way round and the holder it uses first)
    lie = _quat((1.0, 0.0, 0.0), -np.pi / 2 if face_up else np.pi / 2)
    turn = _quat((0.0, 0.0, 1.0), yaw - np.pi / 2 if face_up else yaw + np.pi / 2)
    gt = cell.set_object((xy[0], xy[1], floor + 0.01), _qmul(turn, lie), settle_ticks=30)
    assert gt.object_pose[2] < floor + 0.003           # fallen: its edge on what it lies on
    _reset_to(cell, task, 2)


def test_the_reset_skill_takes_a_card_standing_on_the_table(cell, task) -> None:
    """A card standing on its edge on the table beside the connector's riser (the top view
    says how high its cooler is: it is gripped lower, the gripper barely open past the
    housing), shown to the side camera for where its edge is in the grasp, and placed."""
    cell.place(0)
    # beside the riser (its face at y 0.665), where a card knocked off the slot stands
    gt = cell.set_object((0.012, 0.668, 0.0005), settle_ticks=30)
    assert gt.object_pose[2] < 0.003 and 0.662 < gt.object_pose[1] < 0.670
    _reset_to(cell, task, 1)


def test_the_reset_skill_tips_over_a_card_upside_down(cell, task) -> None:
    """A card standing on its cooler, edge up: pushed over near its top (it falls flat),
    then stood up the right way and placed."""
    cell.place(0)
    gt = cell.set_object((0.06, 0.60, 0.0525), _quat((1.0, 0.0, 0.0), np.pi), settle_ticks=30)
    assert gt.object_pose[2] > 0.05                    # its edge up, on its cooler
    _reset_to(cell, task, 3)


def test_a_reset_first_takes_a_flipped_wrist_home_in_joint_space(cell, task) -> None:
    """An arm left in the flipped wrist branch (forearm roll and wrist rotate half a turn
    round, wrist angle negated: the same fingertip pose) goes home along a collision-free
    joint path before the skill runs, and the reset then places the card."""
    from enpire_sim.core.arm.sim import ARM_JOINTS

    cell.place(0)
    m, d = cell.model, cell.data
    q = {j: d.joint(f'vx300s_right/{j}').qpos[0] for j in ARM_JOINTS}
    tcp_before = cell.tcp_poses()['right'][0].copy()
    flipped = dict(q, forearm_roll=q['forearm_roll'] - np.pi + 0.02,
                   wrist_angle=-q['wrist_angle'], wrist_rotate=q['wrist_rotate'] + np.pi - 0.02)
    for j, v in flipped.items():
        d.joint(f'vx300s_right/{j}').qpos[0] = v
        act = next(i for i in range(m.nu) if m.actuator(i).trnid[0] == m.joint(
            f'vx300s_right/{j}').id)
        d.ctrl[act] = v
    cell.sim.mj.mj_forward(m, d)
    cell._targets = d.ctrl.copy()         # the arm holds the flipped posture
    # the same fingertip pose, near enough: only the branch differs
    assert np.linalg.norm(cell.tcp_poses()['right'][0] - tcp_before) < 0.01
    _reset_to(cell, task, 2)
    assert abs(d.joint('vx300s_right/forearm_roll').qpos[0]) < 1.0


def test_a_part_wedged_before_the_reset_does_not_trip_it_and_a_new_wedge_does(
        cell, task, monkeypatch) -> None:
    """A card the trial jammed askew into the slot presses on it with the jam's force
    (thousands of newtons of penetration in simulation) until it is worked loose. No robot
    sensor feels that and the reset did not cause it: it does not trip the reset's envelope.
    The same force appearing while the reset runs is its doing, and trips it."""
    from enpire_common.errors import ResetFailedError
    from enpire_sim.core.arm.sim import Contact

    jam = Contact(('slot_wall_yn', 'card_pcb'), ('card', 'connector'), 2500.0)
    real = type(cell.sim).contacts
    calls = {'n': 0, 'from': 0}

    def contacts(self=cell.sim):
        calls['n'] += 1
        return real(self) + ([jam] if calls['n'] > calls['from'] else [])

    monkeypatch.setattr(cell.sim, 'contacts', contacts)
    cell.place(0)
    _reset_to(cell, task, 1)                 # jammed from the start: not the reset's doing
    cell.place(0)
    calls.update(n=0, **{'from': 40})        # jammed under way
    with pytest.raises(ResetFailedError, match='FORCE: 2500.0 N between card and connector'):
        cell.robot_place(1, 'start')


def test_segmentation_labels_the_parts_where_the_camera_shows_them(cell, task) -> None:
    """MuJoCo's segmentation render (training labels, issue 11): the cooler (a geom of the
    card) is its own class and holds the red pixels the classic verifier finds; the latch
    (a body on the connector) is its own; nothing is labelled twice."""
    from enpire_tasks import registry
    from enpire_tasks.arm import hue_mask
    from enpire_tasks.gpu_insertion.geometry import parts

    cell.place(2)
    labels = registry.get(task).labels
    assert labels.classes == ('cooler', 'card', 'connector', 'latch', 'caddy')
    masks = labels.instance_masks(task, cell, 'task_top', cell.ground_truth())
    red = hue_mask(cell.render('task_top'), parts().colour_rgb)
    assert red.sum() > 50
    assert (red & masks['cooler']).sum() >= 0.98 * red.sum()
    assert (masks['cooler'] & ~red).sum() <= 0.1 * masks['cooler'].sum()
    assert all(m.sum() > 50 for m in masks.values())     # every part in view from the top
    total = sum(m.astype(int) for m in masks.values())
    assert total.max() == 1
    from enpire_common.errors import ConfigError

    with pytest.raises(ConfigError, match="no geom or body 'nope'"):
        cell.instance_masks('task_top', {'x': 'nope'})


def test_a_labelled_dataset_of_the_arm_task(task, tmp_path) -> None:
    """``enpire verify dataset --task gpu_insertion``: both verifier views, every part."""
    from enpire_reward.core.dataset import write_dataset

    rep = write_dataset(task, tmp_path / 'ds', 6, seed=1)
    assert rep.images == 6 and rep.instances['connector'] == 6
    names = sorted(p.stem for p in (tmp_path / 'ds' / 'images').rglob('*.png'))
    assert names[:2] == ['000000_side', '000000_task_top']
    for p in (tmp_path / 'ds' / 'labels').rglob('*.txt'):
        for line in p.read_text().splitlines():
            v = line.split()
            assert 0 <= int(v[0]) < 5 and len(v) >= 7 and len(v) % 2 == 1
