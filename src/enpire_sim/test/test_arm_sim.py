"""The arm cell's simulation core (issue 10, first slice): scene, targets, IK, cameras."""

from __future__ import annotations

import numpy as np
import pytest

from enpire_common.errors import ConfigError
from enpire_sim.core.arm.sim import gl_backend

gl_backend()  # MUJOCO_GL must be set before mujoco is first imported
pytest.importorskip('mujoco', reason='the arm cell needs mujoco (requirements.txt)')
pytest.importorskip('mink', reason='the arm cell needs mink (requirements.txt)')


@pytest.fixture(scope='module')
def sim():
    from enpire_sim.core.arm.sim import ArmSim

    s = ArmSim()
    yield s
    s.close()


def test_scene_has_two_arms_the_views_and_a_500_hz_physics(sim) -> None:
    assert sim.model.nu == 16 and sim.model.opt.timestep == pytest.approx(0.002)
    assert sim.substeps == 17  # one 30 Hz tick
    frames = sim.render_all()
    assert set(frames) == {'task_top', 'side', 'right_wrist'}
    assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames.values())


def test_bad_targets_are_refused_and_nothing_moves(sim) -> None:
    sim.reset()
    before = sim.data.qpos.copy()
    t = sim.targets()
    for bad, match in ((np.full(16, np.nan), 'NaN'), (np.zeros(3), 'shape'),
                       (np.where(np.arange(16) == 1, 5.0, t), 'outside its limits')):
        with pytest.raises(ConfigError, match=match):
            sim.step(bad)
    assert np.array_equal(sim.data.qpos, before)


def test_ik_reaches_a_target_and_refuses_an_unreachable_one(sim) -> None:
    sim.reset()
    ee, _ = sim.ee_pose('right')
    goal = ee + np.array([0.0, 0.0, -0.05])
    targets = sim.ik('right', goal)
    for _ in range(40):
        sim.step(targets)
    assert np.linalg.norm(sim.ee_pose('right')[0] - goal) < 0.01
    with pytest.raises(ConfigError, match='out of reach'):
        sim.ik('right', np.array([2.0, 2.0, 2.0]))
    with pytest.raises(ConfigError, match='finite'):
        sim.ik('left', np.array([np.nan, 0.0, 0.0]))


def test_missing_scene_or_camera_is_a_config_error() -> None:
    from enpire_sim.core.arm.sim import ArmSim, ArmSimConfig

    with pytest.raises(ConfigError, match='not found'):
        ArmSim(ArmSimConfig(scene='no_such_scene'))
    with pytest.raises(ConfigError, match='not in scene'):
        ArmSim(ArmSimConfig(views=('task_top', 'no_such_camera')))


@pytest.mark.parametrize('offset_m, seats', [(0.0, True), (0.008, False)])
def test_the_pin_fits_the_hole_and_only_the_hole(sim, offset_m: float, seats: bool) -> None:
    """Scene geometry check: a pin released upright over the hole seats at the bottom; one
    released 8 mm off the hole does not go in (ground truth only; the reset will place it
    with the arm, not like this)."""
    m, d = sim.model, sim.data
    sim.reset()
    adr = m.jnt_qposadr[m.joint('pin_joint').id]
    top = d.site('hole_top').xpos.copy()
    d.qpos[adr:adr + 3] = top + np.array([offset_m, 0.0, 0.03])
    d.qpos[adr + 3:adr + 7] = [1.0, 0.0, 0.0, 0.0]
    d.qvel[:] = 0.0
    sim.mj.mj_forward(m, d)
    for _ in range(60):
        sim.step(sim.targets())
    depth = top[2] - d.site('pin_tip').xpos[2]
    assert (depth > 0.015) == seats, depth


def test_the_safety_envelope_flags_fast_joints_and_pushing_into_the_table(sim) -> None:
    from enpire_sim.core.arm.safety import ArmEnvelope, check

    env = ArmEnvelope()
    sim.reset()
    assert check(sim, env) == []
    # The servos ramp their setpoints at 1.5 rad/s, so a commanded jump cannot trip the
    # speed limit; a joint knocked fast (a collision, a dropped load) does.
    t = sim.targets()
    t[0] = 1.5
    kinds = set()
    for _ in range(5):
        sim.step(t)
        kinds |= {v.kind for v in check(sim, env)}
    assert 'JOINT_VELOCITY' not in kinds
    sim.data.qvel[sim.model.jnt_dofadr[sim.model.joint('vx300s_left/waist').id]] = 4.0
    assert 'JOINT_VELOCITY' in {v.kind for v in check(sim, env)}
    sim.reset()
    ee, _ = sim.ee_pose('right')
    t = sim.ik('right', np.array([ee[0], ee[1], 0.005]))
    kinds = set()
    for _ in range(40):
        sim.step(t)
        kinds |= {v.kind for v in check(sim, env)}
    assert kinds & {'FORCE', 'COLLISION', 'BOUNDS'}


def test_the_planning_port_plans_collision_free_and_refuses_bad_goals(sim) -> None:
    """The contract of the planning port, on whichever planner is present (MoveIt on a real
    cell, OMPL against MuJoCo here)."""
    from enpire_sim.core.arm.planning import make_planner
    from enpire_sim.core.arm.sim import ARM_JOINTS

    sim.reset()
    planner = make_planner(sim)
    m = sim.model
    adr = [m.jnt_qposadr[m.joint(f'vx300s_right/{j}').id] for j in ARM_JOINTS]
    start = sim.data.qpos[adr].copy()
    goal = start + np.array([0.6, 0.3, -0.3, 0.0, 0.3, 0.0])
    path = planner.plan('right', start, goal, timeout_s=5.0)
    assert path.shape[1] == 6 and len(path) >= 2
    assert np.allclose(path[0], start) and np.allclose(path[-1], goal)
    if planner.name == 'ompl':
        assert all(planner.valid('right', q) for q in path)
    into_table = start.copy()
    into_table[1], into_table[2] = 1.2, 1.5
    with pytest.raises(ConfigError, match='collision'):
        planner.plan('right', start, into_table, timeout_s=0.5)
    with pytest.raises(ConfigError, match='joint limits'):
        planner.plan('right', start, start + 10.0, timeout_s=0.5)
    with pytest.raises(ConfigError, match='finite'):
        planner.plan('right', start, np.full(6, np.nan), timeout_s=0.5)


def test_the_planner_keeps_the_fingertips_in_the_workspace_and_carries_a_held_part(sim) -> None:
    """A configuration is invalid when the fingertips leave the envelope's workspace box,
    and a part held in the gripper moves with it and may touch nothing but the arm: the arm
    alone clear of the table, a part hanging 20 cm under its gripper is not."""
    from enpire_sim.core.arm.planning import OmplPlanner
    from enpire_sim.core.arm.sim import ARM_JOINTS

    sim.reset()
    m, d = sim.model, sim.data
    adr = [m.jnt_qposadr[m.joint(f'vx300s_right/{j}').id] for j in ARM_JOINTS]
    home = d.qpos[adr].copy()
    grip = d.body('vx300s_right/gripper_link').xpos.copy()
    pin = m.jnt_qposadr[m.body('pin').jntadr[0]]
    d.qpos[pin:pin + 3] = grip - [0.0, 0.0, 0.2]         # in the air, under the gripper
    sim.mj.mj_forward(m, d)
    ctrl = sim.ik('right', grip - [0.0, 0.0, 0.1], iterations=200)
    acts = [next(i for i in range(m.nu) if m.actuator(i).trnid[0] == m.joint(
        f'vx300s_right/{j}').id) for j in ARM_JOINTS]
    low = ctrl[acts]
    planner = OmplPlanner(sim)
    assert planner.valid('right', home, ('pin',))
    assert planner.valid('right', low)                   # the arm alone: clear
    assert not planner.valid('right', low, ('pin',))     # the part it carries: in the table
    boxed = OmplPlanner(sim, workspace=(0.0, np.array([-1.0, -1.0, grip[2] - 0.05]),
                                        np.array([1.0, 2.0, 1.0])))
    assert boxed.valid('right', home) and not boxed.valid('right', low)
    sim.reset()
