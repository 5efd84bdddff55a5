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


def test_failed_resets_pause_the_cell_with_an_alert_until_resumed(ros):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from enpire_common.ros import call_service
    from enpire_common.testing import wait_until
    from enpire_interfaces.msg import Alert
    from enpire_interfaces.srv import Trigger

    ros.add(PushTCellNode(context=ros.context, namespace=NS, parameter_overrides=params(
        **{'camera.width_px': 64, 'camera.height_px': 64})))
    ros.add(ResetServerNode(context=ros.context, namespace=NS, parameter_overrides=params(
        settle_s=0.0, retry_backoff_s=0.0, pause_after_failures=3)))
    verifier = ros.add(FakeVerifierNode(context=ros.context, namespace=NS,
                                        parameter_overrides=params(mode='always_solved')))
    driver = ros.node('driver', namespace=NS)
    alerts: list[Alert] = []
    driver.create_subscription(Alert, 'alerts', alerts.append, QoSProfile(
        depth=20, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    client = ActionClient(driver, ResetCell, 'reset_cell')
    wait_for_service(client, TIMEOUT_S, 'reset_cell')

    first, _ = reset(client, 3, max_attempts=2)     # 2 failures: not yet
    assert first.error_code == ErrorCode.RESET_FAILED and alerts == []
    second, _ = reset(client, 4, max_attempts=2)    # 4 >= 3: paused, one ERROR alert
    assert second.error_code == ErrorCode.RESET_FAILED
    wait_until(lambda: alerts, TIMEOUT_S, 'the reset_paused alert')
    (alert,) = alerts
    assert alert.kind == Alert.KIND_RESET_PAUSED and alert.severity == Alert.SEVERITY_ERROR
    assert alert.cell_id == NS.strip('/') and alert.failures == 4
    assert 'already solved' in alert.detail

    calls = verifier.calls
    refused, feedback = reset(client, 5)            # refused at once, nothing moved
    assert refused.error_code == ErrorCode.CELL_PAUSED and not refused.success
    assert 'enpire cell resume' in refused.error_msg and feedback == []
    assert verifier.calls == calls

    resume = driver.create_client(Trigger, 'resume_resets')
    res = call_service(resume, Trigger.Request(), TIMEOUT_S, 'resume_resets')
    assert res.success and res.message == 'resets resumed'
    wait_until(lambda: len(alerts) == 2, TIMEOUT_S, 'the resumed alert')
    assert alerts[-1].kind == Alert.KIND_RESUMED
    again, _ = reset(client, 6, max_attempts=1)      # runs again (and fails again: 1 < 3)
    assert again.error_code == ErrorCode.RESET_FAILED and verifier.calls > calls
