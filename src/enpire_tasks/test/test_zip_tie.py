"""The zip tie plugin without the arm cell: the one-way pawl of the scene's head (MuJoCo
alone), the threading geometry, the contract's cameras, and the plugin's import rules."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from enpire_common.tasks import load_task
from enpire_tasks import registry
from enpire_tasks.zip_tie import geometry, shapes


@pytest.fixture(scope='module')
def task():
    return load_task('zip_tie')


def _gen_scene():
    path = load_task('zip_tie').directory / 'gen_scene.py'
    spec = importlib.util.spec_from_file_location('zip_tie_gen_scene', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_plugin_passes_check_task(task) -> None:
    from enpire_tasks.check_task import check_task

    check_task(registry.get('zip_tie'), task)


def test_the_scene_file_is_what_its_generator_writes() -> None:
    gen = _gen_scene()
    assert (load_task('zip_tie').directory / 'scene.xml').read_text() == gen.scene()


def test_the_pawl_lets_the_tail_in_and_holds_it_against_a_pull() -> None:
    """A strap piece welded to a mocap hand is pushed up through the head's passage, then
    the hand is pulled 20 mm back: in, the pawl yields to about 1.4 N; back, it drags on the
    tail with about 10 N (a real tie's ratchet holds more: see gen_scene.py)."""
    mujoco = pytest.importorskip('mujoco')
    gen = _gen_scene()
    m = mujoco.MjModel.from_xml_string(gen.pawl_test_model())
    d = mujoco.MjData(m)
    top = m.body('seg7').id
    exit_z = 0.1 + gen.HEAD_Z2

    def weld_force() -> float:
        rows = [j for j in range(d.nefc) if d.efc_type[j] == mujoco.mjtConstraint.mjCNSTR_EQUALITY]
        return float(np.linalg.norm(d.efc_force[rows[:3]])) if rows else 0.0

    def move(dz: float, seconds: float) -> tuple[float, float]:
        z0, n, peak = float(d.mocap_pos[0, 2]), int(seconds / m.opt.timestep), 0.0
        for i in range(n):
            d.mocap_pos[0, 2] = z0 + dz * min(1.0, (i + 1) / (0.8 * n))
            mujoco.mj_step(m, d)
            peak = max(peak, weld_force())
        return float(d.xpos[top][2] + gen.SEG_L), peak

    for _ in range(100):
        mujoco.mj_step(m, d)
    assert d.xpos[top][2] + gen.SEG_L < exit_z - 0.005          # starts below the head
    tip, push = move(0.03, 2.0)
    assert tip > exit_z + 0.015 and push < 2.0, (tip, push)       # in: through, easily
    tip, pull = move(-0.02, 2.0)
    assert tip > exit_z and pull > 6.0 and pull > 4 * push, (tip, pull, push)     # back


@pytest.mark.parametrize(('protrusion', 'crossing', 'through'),
                         [(0.012, True, True), (0.03, True, True), (0.002, True, False),
                          (-0.02, False, False)])
def test_a_loop_is_through_when_its_tail_crosses_the_passage_and_stands_out(
        protrusion, crossing, through) -> None:
    pts = shapes.chain(shapes.loop(protrusion))
    t = geometry.threading_of(np.zeros(3), np.eye(3), pts)
    assert (t.crossing, t.through) == (crossing, through)
    assert t.protrusion_m == pytest.approx(protrusion, abs=1e-4)
    # the same loop beside the passage (out past the head's -x wall) is not through
    beside = shapes.chain(shapes.loop(protrusion, lane_x=-0.009))
    assert not geometry.threading_of(np.zeros(3), np.eye(3), beside).crossing
    # a flat strap is not, wherever the head is and however it is turned
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    flat = shapes.chain(np.zeros(shapes.SEGMENTS)) @ rot.T + [0.1, 0.5, 0.003]
    assert not geometry.threading_of(np.array([0.1, 0.5, 0.003]), rot, flat).crossing


def test_score_start_and_pose_error(task) -> None:
    assert geometry.score(tuple(task.goal_pose), task.goal_pose) == 1.0
    assert geometry.score((0.0, 0.5, 0.0), task.goal_pose) == 0.0
    assert geometry.score((math.nan, math.nan, math.nan), task.goal_pose) == 0.0
    starts = {geometry.start_pose(s)[:2] for s in range(6)}
    assert len(starts) == 6 and all(geometry.start_pose(s)[2] == 0.0 for s in range(6))
    assert geometry.pose_error((0.0, 0.5, 0.0), (0.003, 0.504, 1.0)) == (
        pytest.approx(0.005), 0.0)
    assert geometry.pose_error((0.0, 0.5, 0.0), (math.nan, 0.503, 0.0))[0] == \
        pytest.approx(0.003)
    assert geometry.outline((0.0, 0.5, 0.0)) and not geometry.outline((math.nan, 0.5, 0.0))


def test_the_contract_cameras_match_the_scene(task) -> None:
    """The calibration in task.yaml is the scene's camera (OpenCV axes of MuJoCo's)."""
    gen = _gen_scene()
    xml = gen.scene()
    for view in ('task_top', 'side'):
        cam = task.views[view].camera
        line = next(ln for ln in xml.splitlines() if f'<camera name="{view}"' in ln)
        pos = [float(v) for v in line.split('pos="')[1].split('"')[0].split()]
        ax = np.array([float(v) for v in line.split('xyaxes="')[1].split('"')[0].split()])
        ax = ax.reshape(2, 3) / np.linalg.norm(ax.reshape(2, 3), axis=1, keepdims=True)
        fovy = math.radians(float(line.split('fovy="')[1].split('"')[0]))
        assert np.allclose(cam['position'], pos)
        assert cam['fy'] == pytest.approx(120.0 / math.tan(fovy / 2), rel=1e-4)
        rot = np.asarray(cam['rotation'])
        assert np.allclose(rot[:, 0], ax[0]) and np.allclose(rot[:, 1], -ax[1])


def test_the_plugin_names_only_its_own_task() -> None:
    import inspect

    import enpire_tasks.zip_tie as pkg
    from enpire_tasks.zip_tie import classic, crosscheck
    from enpire_tasks.zip_tie import geometry as geo
    from enpire_tasks.zip_tie import shapes as sh

    for mod in (pkg, classic, crosscheck, geo, sh):
        src = inspect.getsource(mod)
        for banned in ('pin_insertion', 'gpu_insertion', 'rclpy', 'enpire_sim'):
            assert f'import {banned}' not in src and f'from {banned}' not in src, banned


def test_the_stage_rule_judges_the_contracts_stages_and_nothing_without_views(task) -> None:
    """The plugin's stages are the contract's, in its order; views that found nothing
    show no stage (a hidden tie is no progress)."""
    from enpire_tasks.estimation import Estimate
    from enpire_tasks.zip_tie import stages

    assert task.stages == stages.STAGES
    nothing = {v: Estimate(found=False, detail='no head') for v in ('task_top', 'side')}
    assert stages.stage_rule(task, nothing) == dict.fromkeys(stages.STAGES, False)
    assert stages.stage_rule(task, {}) == dict.fromkeys(stages.STAGES, False)
