from __future__ import annotations

import pytest
from rclpy.parameter import Parameter

from enpire_common.ros import ActionClient, wait_for_service, wait_future
from enpire_interfaces.action import ResetCell
from enpire_interfaces.msg import ErrorCode
from enpire_reset.ros.fake_verifier_node import FakeVerifierNode
from enpire_reset.ros.reset_server_node import ResetServerNode
from enpire_sim.ros.push_t_cell_node import PushTCellNode

pytestmark = pytest.mark.ros
NS = '/cell_r'
TIMEOUT_S = 20.0


def params(**values):
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.fixture
def cell(ros):
    ros.add(PushTCellNode(context=ros.context, namespace=NS, parameter_overrides=params(
        **{'camera.width_px': 64, 'camera.height_px': 64})))
    ros.add(ResetServerNode(context=ros.context, namespace=NS,
                            parameter_overrides=params(settle_s=0.0,
                                                                 retry_backoff_s=0.0)))
    client = ActionClient(ros.node('driver', namespace=NS), ResetCell, 'reset_cell')
    wait_for_service(client, TIMEOUT_S, 'reset_cell')
    return client


def reset(client, seed, strategy='', max_attempts=0):
    feedback = []
    goal = ResetCell.Goal(seed=seed, strategy=strategy, max_attempts=max_attempts)
    handle = wait_future(client.send_goal_async(
        goal, feedback_callback=lambda m: feedback.append(m.feedback)), TIMEOUT_S, 'goal')
    assert handle.accepted
    result = wait_future(handle.get_result_async(), TIMEOUT_S, 'result').result
    return result, feedback


def test_seed_7_twice_gives_the_same_verified_start(ros, cell):
    verifier = ros.add(FakeVerifierNode(context=ros.context, namespace=NS))
    first, feedback = reset(cell, 7)
    second, _ = reset(cell, 7)
    assert first.success and first.error_code == ErrorCode.OK, first.error_msg
    assert first.attempts == 1
    assert list(first.start_pose) == list(second.start_pose)
    assert list(first.observed_pose) == pytest.approx(list(first.start_pose))
    assert first.verdict.backend == 'fake-ground-truth'
    assert {'placing', 'settling', 'verifying'} <= {f.phase for f in feedback}
    assert verifier.calls == 2


def test_unknown_strategy_answers_unknown_name_with_a_suggestion(ros, cell):
    ros.add(FakeVerifierNode(context=ros.context, namespace=NS))
    result, _ = reset(cell, 1, strategy='sim_plase')
    assert not result.success
    assert result.error_code == ErrorCode.UNKNOWN_NAME
    assert "did you mean 'sim_place'" in result.error_msg


def test_a_verifier_that_always_says_solved_ends_in_reset_failed(ros, cell):
    ros.add(FakeVerifierNode(context=ros.context, namespace=NS,
                             parameter_overrides=params(mode='always_solved')))
    result, feedback = reset(cell, 3, max_attempts=2)
    assert not result.success
    assert result.error_code == ErrorCode.RESET_FAILED
    assert result.attempts == 2 and 'already solved' in result.error_msg
    assert 'retrying' in {f.phase for f in feedback}


def test_a_missing_verifier_fails_with_a_bounded_wait(ros):
    ros.add(PushTCellNode(context=ros.context, namespace=NS, parameter_overrides=params(
        **{'camera.width_px': 32, 'camera.height_px': 32})))
    ros.add(ResetServerNode(context=ros.context, namespace=NS, parameter_overrides=params(
        settle_s=0.0, retry_backoff_s=0.0, call_timeout_s=0.3, server_wait_s=0.3, timeout_s=2.0)))
    client = ActionClient(ros.node('driver', namespace=NS), ResetCell, 'reset_cell')
    wait_for_service(client, TIMEOUT_S, 'reset_cell')
    result, _ = reset(client, 1, max_attempts=1)
    assert not result.success
    assert result.error_code in (ErrorCode.RESET_FAILED, ErrorCode.CELL_UNAVAILABLE)
    assert 'verify_success' in result.error_msg
