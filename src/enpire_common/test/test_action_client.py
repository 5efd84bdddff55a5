"""enpire_common.ros.ActionClient: a response that beats its request's bookkeeping is kept.

Stock Jazzy rclpy sends a goal (or result) request and registers its sequence number after;
a response handled in between is dropped and the caller waits forever (ros2/rclpy#1123).
The race is made certain here: the client's handle sleeps right after sending, while the
harness's executor thread takes the server's response.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from rclpy.action import ActionClient as RclpyActionClient
from rclpy.action import ActionServer

from enpire_common.errors import EnpireTimeoutError
from enpire_common.ros import ActionClient, wait_for_service, wait_future
from enpire_interfaces.action import ResetCell

SEND_DELAY_S = 0.5


class _SlowAfterSend:
    """Proxies an rclpy action client handle; each request send returns only after a pause."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._handle, name)
        if not name.startswith('send_'):
            return attr

        def send(*args: Any) -> Any:
            seq = attr(*args)
            time.sleep(SEND_DELAY_S)    # the response arrives and is handled meanwhile
            return seq
        return send


def _serve(ros) -> None:
    def execute(handle: Any) -> ResetCell.Result:
        handle.succeed()
        return ResetCell.Result(success=True, attempts=1)

    node = ros.node('reset_server')
    node._enpire_server = ActionServer(node, ResetCell, 'reset_cell', execute)


def _round_trip(ros, cls: type, timeout_s: float) -> ResetCell.Result:
    node = ros.node(f'client_{cls.__module__.replace(".", "_")}')
    client = cls(node, ResetCell, 'reset_cell')
    wait_for_service(client, 10.0, 'reset_cell')
    client._client_handle = _SlowAfterSend(client._client_handle)
    handle = wait_future(client.send_goal_async(ResetCell.Goal(seed=3)), timeout_s, 'goal')
    assert handle.accepted
    return wait_future(handle.get_result_async(), timeout_s, 'result').result


@pytest.mark.ros
def test_goal_and_result_responses_that_arrive_before_registration_complete(ros) -> None:
    _serve(ros)
    result = _round_trip(ros, ActionClient, timeout_s=10.0)
    assert result.success and result.attempts == 1


@pytest.mark.ros
def test_the_injected_delay_really_loses_stock_rclpy_responses(ros) -> None:
    """Shows the test above exercises the race: stock rclpy (as pinned) never answers.

    When an rclpy with the upstream fix (#1308) is pinned, this test fails; then drop the
    subclass and this test together.
    """
    _serve(ros)
    with pytest.raises(EnpireTimeoutError):
        _round_trip(ros, RclpyActionClient, timeout_s=3.0)
