"""The ``reset_server`` node: the ``reset_cell`` action (place, settle, verify, retry)."""

from __future__ import annotations

import dataclasses
import sys
import threading
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray

from enpire_common.clock import SystemClock
from enpire_common.errors import (
    OK,
    CellBusyError,
    CellPausedError,
    EnpireError,
    EnpireTimeoutError,
)
from enpire_common.ros import (
    ALERT_QOS,
    LATEST_QOS,
    call_service,
    declare_config,
    raise_for_result,
    run_node,
)
from enpire_common.tasks import load_task
from enpire_interfaces.action import ResetCell
from enpire_interfaces.msg import Alert as AlertMsg
from enpire_interfaces.srv import PlaceStart, Trigger, VerifySuccess
from enpire_reset.core.config import ResetConfig, ResetServerConfig
from enpire_reset.core.pause import Alert, ResetPauseGuard
from enpire_reset.core.ports import Placement, ResetVerdict
from enpire_reset.core.procedure import ResetNotVerifiedError, ResetProcedure
from enpire_reset.core.strategies import make_strategy, resolve_strategy_id
from enpire_reset.ros import conversions as conv
from enpire_tasks import registry


class RosPlacePort:
    """PlacePort over the cell's ``place`` service."""

    def __init__(self, client, server_wait_s: float) -> None:
        self._client = client
        self._wait_s = server_wait_s

    def place(self, seed: int, timeout_s: float, method: str = '', stage: str = ''
              ) -> Placement:
        req = PlaceStart.Request(seed=int(seed), method=method, stage=stage)
        resp = call_service(self._client, req, max(timeout_s, self._wait_s), 'place')
        raise_for_result(resp)
        return Placement(tuple(resp.object_pose), tuple(resp.agent_pos), int(seed),
                         resp.method or method)


class RosVerifierPort:
    """VerifierPort over the cell's ``verify_success`` service (goal ``reset``)."""

    def __init__(self, client, server_wait_s: float) -> None:
        self._client = client
        self._wait_s = server_wait_s

    def verify_reset(self, expected_pose: tuple[float, ...], timeout_s: float,
                     views: tuple[str, ...] = ()) -> ResetVerdict:
        req = VerifySuccess.Request(goal=VerifySuccess.Request.GOAL_RESET,
                                    expected_pose=[float(v) for v in expected_pose],
                                    views=list(views))
        resp = call_service(self._client, req, max(timeout_s, self._wait_s), 'verify_success')
        return conv.verdict_from_response(resp)


def stage_views(task: Any) -> dict[str, tuple[str, ...]]:
    """task.yaml ``reset.views``: a list (every stage) or a mapping stage -> views."""
    views = task.section('reset').get('views')
    if isinstance(views, dict):
        return {str(k): tuple(str(v) for v in vs) for k, vs in views.items()}
    return {}


class ResetServerNode(Node):
    """Resets a cell to a verified start state.

    Actions:
        ``reset_cell`` (enpire_interfaces/ResetCell): goal seed, strategy ('' = task
        default), max_attempts (0 = default), timeout_s (0 = default); feedback phase
        (placing / settling / verifying / retrying), attempt, progress; result success,
        start_pose, observed_pose, attempts, duration_s, verdict, error_code, error_msg
        (RESET_FAILED, UNKNOWN_NAME, TIMEOUT, CANCELLED, CELL_UNAVAILABLE, CELL_BUSY,
        CELL_PAUSED). One goal at a time; a second concurrent goal is answered CELL_BUSY.

    Pause with an alert (:mod:`enpire_reset.core.pause`): after ``pause_after_failures``
    consecutive failed attempts the server pauses, publishes an ERROR ``alerts`` message and
    answers every goal CELL_PAUSED without moving, until ``resume_resets`` (Trigger, what
    ``enpire cell resume`` calls). A start that the fallback placed is a WARNING alert.

    Publishes: ``alerts`` (enpire_interfaces/Alert, reliable, transient local),
    ``reset/start_pose`` (std_msgs/Float64MultiArray, latched: the start the last reset
    placed, task units; the cell's markers draw it).

    Calls (in its namespace): ``place`` (PlaceStart) to place, ``verify_success``
    (VerifySuccess, goal ``reset``, expected_pose = placed pose) to verify, each bounded
    by ``call_timeout_s``.

    Parameters (ResetServerConfig): ``task`` (str), ``strategy`` (str), ``max_attempts``
    (int), ``timeout_s`` (float, s), ``settle_s`` (float, s), ``call_timeout_s`` (float, s),
    ``server_wait_s`` (float, s), ``pause_after_failures`` (int). Empty / 0 (-1 for the
    last) take the task's ``reset`` section.

    The reset budget is wall time (SystemClock): in lockstep mode sim time does not advance
    while the cell is being reset.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('reset_server', **kwargs)
        self.config: ResetServerConfig = declare_config(self, ResetServerConfig)
        self.task = load_task(self.config.task)
        self.defaults = self._reset_config(self.config.strategy, self.config.max_attempts,
                                           self.config.timeout_s)
        # Fail at start on an unknown default; the strategies are the task plugin's.
        resolve_strategy_id(self.defaults.strategy, self.task.name)
        self._group = ReentrantCallbackGroup()
        self._cell = RosPlacePort(self.create_client(PlaceStart, 'place',
                                                  callback_group=self._group),
                               self.config.server_wait_s)
        self._verifier = RosVerifierPort(
            self.create_client(VerifySuccess, 'verify_success', callback_group=self._group),
            self.config.server_wait_s)
        self._busy = threading.Lock()
        pause_after = (self.defaults.pause_after_failures if self.config.pause_after_failures < 0
                       else self.config.pause_after_failures)
        self.pause = ResetPauseGuard(pause_after)
        self._alerts = self.create_publisher(AlertMsg, 'alerts', ALERT_QOS)
        # The start the last reset placed (task units), for the cell's markers.
        self._start_pub = self.create_publisher(Float64MultiArray, 'reset/start_pose',
                                                LATEST_QOS)
        self.create_service(Trigger, 'resume_resets', self._on_resume,
                            callback_group=self._group)
        self._server = ActionServer(
            self, ResetCell, 'reset_cell', execute_callback=self._execute,
            cancel_callback=lambda _g: CancelResponse.ACCEPT,
            goal_callback=lambda _g: GoalResponse.ACCEPT, callback_group=self._group)
        self.get_logger().info(
            f'reset_server ready: task {self.task.id}, strategy {self.defaults.strategy}, '
            f'{self.defaults.max_attempts} attempts, {self.defaults.timeout_s} s, pauses after '
            f'{pause_after or "never"} consecutive failures')

    def _raise(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            msg = AlertMsg(cell_id=self.get_namespace().strip('/'), source=self.get_name(),
                           kind=alert.kind, severity=alert.severity, failures=alert.failures,
                           detail=alert.detail)
            msg.header.stamp = self.get_clock().now().to_msg()
            self._alerts.publish(msg)
            log, text = self.get_logger(), f'ALERT {alert.kind}: {alert.detail}'
            if alert.severity >= AlertMsg.SEVERITY_ERROR:
                log.error(text)
            elif alert.severity == AlertMsg.SEVERITY_WARNING:
                log.warning(text)
            else:
                log.info(text)

    def _on_resume(self, _req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        message, alerts = self.pause.resume()
        self._raise(alerts)
        resp.success, resp.message, resp.error_code = True, message, OK
        return resp

    def _reset_config(self, strategy: str, max_attempts: int, timeout_s: float) -> ResetConfig:
        cfg = ResetConfig.from_task(self.task, strategy=strategy, max_attempts=max_attempts,
                                    timeout_s=timeout_s)
        return dataclasses.replace(cfg, settle_s=self.config.settle_s,
                                   call_timeout_s=self.config.call_timeout_s,
                                   retry_backoff_s=self.config.retry_backoff_s)

    def _execute(self, goal_handle) -> ResetCell.Result:
        goal = goal_handle.request
        result = ResetCell.Result()
        if not self._busy.acquire(blocking=False):
            err = CellBusyError('a reset is already running on this cell; wait for its result')
            result.error_code, result.error_msg = err.code, str(err)
            goal_handle.abort()
            return result
        try:
            self.pause.check()
        except CellPausedError as err:
            self._busy.release()
            result.error_code, result.error_msg = err.code, str(err)
            goal_handle.abort()
            return result
        try:
            return self._run(goal_handle, goal, result)
        finally:
            self._busy.release()

    def _run(self, goal_handle, goal, result: ResetCell.Result) -> ResetCell.Result:
        def feedback(phase: str, attempt: int, progress: float) -> None:
            goal_handle.publish_feedback(
                ResetCell.Feedback(phase=phase, attempt=attempt, progress=float(progress)))

        try:
            cfg = self._reset_config(goal.strategy or self.config.strategy,
                                     int(goal.max_attempts), float(goal.timeout_s))
            strategy = make_strategy(cfg.strategy, self._cell, self.task.name)
            plugin = registry.get(self.task.name)
            fallback = (make_strategy(cfg.fallback, self._cell, self.task.name)
                        if cfg.fallback else None)
            procedure = ResetProcedure(strategy, self._verifier, cfg, SystemClock(),
                                       pose_error=plugin.pose_error,
                                       position_unit=plugin.position_unit, fallback=fallback,
                                       stage_views=stage_views(self.task))
            outcome = procedure.run(int(goal.seed), on_feedback=feedback,
                                    cancelled=lambda: goal_handle.is_cancel_requested,
                                    stage=str(goal.stage))
        except ResetNotVerifiedError as exc:
            conv.result_from_outcome(exc.outcome, result)
            result.error_code, result.error_msg = exc.code, str(exc)
            self._raise(self.pause.failed(exc.outcome.attempts, exc.outcome.reasons))
        except EnpireTimeoutError as exc:
            result.error_code, result.error_msg = exc.code, str(exc)
            if not goal_handle.is_cancel_requested:
                self._raise(self.pause.failed(1, (str(exc),)))
        # Action boundary: every failure becomes error_code/error_msg; the server lives on.
        except EnpireError as exc:
            result.error_code, result.error_msg = exc.code, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the executor thread
            self.get_logger().error(f'reset failed unexpectedly: {exc!r}')
            result.error_code, result.error_msg = 1, f'unexpected error: {exc!r}'
        else:
            conv.result_from_outcome(outcome, result)
            result.error_code = OK
            self._raise(self.pause.succeeded(outcome.method, outcome.reasons))
            for reason in outcome.reasons:
                self.get_logger().warning(f'reset of seed {goal.seed}: retried after {reason}')
        if len(result.start_pose):
            self._start_pub.publish(Float64MultiArray(
                data=[float(v) for v in result.start_pose]))
        if result.error_code == OK:
            goal_handle.succeed()
        elif goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return result


def main(argv: list[str] | None = None) -> int:
    # Several threads: the action callback blocks on service futures others complete.
    return run_node('reset_server', ResetServerNode, argv, executor='multi')


if __name__ == '__main__':
    sys.exit(main())
