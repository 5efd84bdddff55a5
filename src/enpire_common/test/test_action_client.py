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


def _serve_twice(ros, ns: str) -> list[int]:
    """Two servers of one action name (two cells named alike); returns the goals each ran."""
    runs: list[int] = []

    def execute(handle: Any) -> ResetCell.Result:
        runs.append(handle.request.seed)
        handle.succeed()
        return ResetCell.Result(success=True, attempts=1)

    for i in range(2):
        node = ros.node(f'reset_server_{i}', namespace=ns)
        node._enpire_server = ActionServer(node, ResetCell, 'reset_cell', execute)
    return runs


@pytest.mark.ros
def test_a_second_server_accepting_the_same_goal_does_not_stop_the_client(ros) -> None:
    """Both servers accept each goal; stock rclpy then raises in the executor ("Two goals
    were accepted with the same ID"), its spin thread ends, and every later response of the
    client is lost. Ours logs it and keeps answering; servers_answering() shows the cause."""
    runs = _serve_twice(ros, '/twins')
    node = ros.node('twin_client', namespace='/twins')
    client = ActionClient(node, ResetCell, 'reset_cell')
    wait_for_service(client, 10.0, 'reset_cell')
    deadline = time.monotonic() + 10.0
    while client.servers_answering() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.servers_answering() == 2
    for seed in range(3):
        handle = wait_future(client.send_goal_async(ResetCell.Goal(seed=seed)), 10.0, 'goal')
        assert handle.accepted
        assert wait_future(handle.get_result_async(), 10.0, 'result').result.success
    deadline = time.monotonic() + 5.0
    while len(runs) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(runs) == [0, 0, 1, 1, 2, 2]    # the harm a second cell of one name does


def _run(coro: Any) -> None:
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError('execute awaited something unexpected')


@pytest.mark.ros
@pytest.mark.parametrize('cls', [ActionClient, RclpyActionClient])
def test_two_accepts_for_one_request_before_bookkeeping(ros, cls: type) -> None:
    """The loaded-host order seen in CI: both servers' responses to one goal request are
    handled before the first one's done-callback removes the request. Stock rclpy raises
    (and, in an executor, ends its spin thread); ours keeps the first answer."""
    from rclpy.task import Future
    from unique_identifier_msgs.msg import UUID

    node = ros.node(f'dup_{cls.__module__.replace(".", "_")}')
    client = cls(node, ResetCell, 'reset_cell_nobody_serves')
    future = Future()
    client._pending_goal_requests[41] = future
    client._goal_sequence_number_to_goal_id[41] = UUID(uuid=list(range(16)))
    response = ResetCell.Impl.SendGoalService.Response(accepted=True)
    _run(client.execute({'goal': (41, response)}))
    assert future.done() and future.result().accepted
    if cls is ActionClient:
        _run(client.execute({'goal': (41, response)}))
    else:
        with pytest.raises(RuntimeError, match='accepted with the same ID'):
            _run(client.execute({'goal': (41, response)}))
