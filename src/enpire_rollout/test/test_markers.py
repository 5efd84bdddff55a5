"""The markers a cell shows (enpire_rollout.core.markers): contract geometry and measured
streams in metres, never simulator state."""

from __future__ import annotations

import pytest

from enpire_common.tasks import load_task
from enpire_rollout.core.markers import NAMESPACES, TaskDrawing, groups_of
from enpire_tasks import registry


def drawing(task: str) -> TaskDrawing:
    spec = load_task(task)
    return TaskDrawing(spec, registry.get(spec.name))


def test_push_t_draws_every_namespace_in_metres_at_1_px_per_mm():
    d = drawing('push_t')
    verdicts = {'top': {'success': False, 'invalid': False, 'score': 0.4,
                        'object_pose': [200.0, 300.0, 0.3]},
                'fused': {'success': False, 'invalid': False, 'score': 0.4,
                          'object_pose': [200.0, 300.0, 0.3]}}
    specs = (d.goal() + d.envelope() + d.agent(['x', 'y', 'vx', 'vy'], [100, 50, 3, 4])
             + d.target([120.0, 60.0]) + d.estimate(verdicts) + d.verdict(verdicts)
             + d.reset_start([300.0, 200.0, 1.0]))
    assert {s.ns for s in specs} == set(NAMESPACES)
    (agent,) = [s for s in specs if s.ns == 'agent']     # x, y: a position; vx, vy: not
    assert agent.position == pytest.approx((0.1, 0.05, 0.0))
    assert agent.scale[0] == pytest.approx(0.030)           # the pusher's 15 px radius
    (target,) = [s for s in specs if s.ns == 'target']
    assert target.position == pytest.approx((0.12, 0.06, 0.0))
    goal = [s for s in specs if s.ns == 'goal']
    assert len(goal) == 2 and goal[0].points[0] == goal[0].points[-1]    # closed T bars
    assert all(0.1 < p[0] < 0.4 for g in goal for p in g.points)
    (envelope,) = [s for s in specs if s.ns == 'envelope']
    assert len(envelope.points) == 8 and max(p[0] for p in envelope.points) == 0.512
    texts = [s.text for s in specs if s.ns == 'verdict']
    assert texts == ['top: FAIL 0.40', 'fused: FAIL 0.40']   # fused last
    assert len([s for s in specs if s.ns == 'estimate']) == 2   # the top view's T, once


def test_an_arm_task_draws_both_grippers_their_targets_and_a_3d_envelope():
    d = drawing('pin_insertion')
    names = ['left_x', 'left_y', 'left_z', 'left_gripper', 'right_x', 'right_y', 'right_z']
    agents = d.agent(names, [-0.15, 0.5, 0.2, 1.0, 0.15, 0.5, 0.25])
    assert [a.position for a in agents] == [(-0.15, 0.5, 0.2), (0.15, 0.5, 0.25)]
    action = [0.1, 0.6, 0.1, 0, 0, 0, 1, -0.1, 0.7, 0.2, 0, 0, 0, 0]
    assert [t.position for t in d.target(action)] == [(0.1, 0.6, 0.1), (-0.1, 0.7, 0.2)]
    (envelope,) = d.envelope()
    assert len(envelope.points) == 24                       # 12 edges of a box
    (goal,) = d.goal()                                      # the pin head's circle
    assert goal.points[0][2] == pytest.approx(0.004)        # at the seated tip's height
    assert d.outline('estimate', [float('nan'), 0.6, 0.1], (0, 0, 0, 1)) == []


def test_position_groups_of_a_state_vector():
    assert groups_of(['x', 'y', 'vx', 'vy']) == [('', 2)]
    assert groups_of(['left_x', 'left_y', 'left_z', 'right_x', 'right_y']) == \
        [('left_', 3), ('right_', 2)]
    assert groups_of(['tick', 'joint_x']) == []
