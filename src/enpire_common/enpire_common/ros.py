"""ROS helpers shared by every node: config dataclass parameters, bounded waits, ROS clocks.

This is the only module of enpire_common that imports rclpy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import rclpy
from rclpy.action import ActionClient as _RclpyActionClient
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from enpire_common.config import from_parameters, to_parameters
from enpire_common.errors import CellUnavailableError, EnpireTimeoutError, error_from_code

T = TypeVar('T')

#: Newest-only, reliable, latched: camera frames and states of a cell. A late subscriber gets
#: the current frame at once, and no frame is silently dropped between two lockstep ticks.
LATEST_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: A cell's ``alerts`` (enpire_interfaces/Alert, see :mod:`enpire_common.alerts`): reliable and
#: transient local, so a monitor that starts later (``enpire cell status``) sees the last ones.
ALERT_QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)


def tf_message_type() -> Any:
    """tf2_msgs/TFMessage: the ROS package, or the workspace's build of its definition
    (src/vendor/tf2_msgs) where the wheels lack it; None if neither is built."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage


def image_qos(name: str) -> QoSProfile:
    """Camera subscription QoS by name: ``latched``, ``reliable`` or ``sensor_data``."""
    if name == 'latched':
        return LATEST_QOS
    if name == 'reliable':
        return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    if name == 'sensor_data':
        from rclpy.qos import qos_profile_sensor_data

        return qos_profile_sensor_data
    raise ValueError(f'unknown image QoS {name!r} (latched, reliable, sensor_data)')


def make_fast_executor(context: Any = None) -> Any:
    """The events executor (fastest callbacks) where available, else single-threaded.

    Single-threaded too while message faults delay messages (:mod:`enpire_common.msg_faults`
    hands them back by guard condition, which the events executor does not wait on).
    """
    from enpire_common.msg_faults import delays_installed

    if delays_installed():
        return SingleThreadedExecutor(context=context)
    try:
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    except (ImportError, RuntimeError):
        return SingleThreadedExecutor(context=context)


def run_node(name: str, factory: Any, argv: list[str] | None = None, *,
             executor: str = 'default', num_threads: int = 4, nice: int = 0,
             unique: bool = True) -> int:
    """The ``main`` of a node executable: init, build, spin, shut down; returns the exit code.

    A node whose config is invalid (EnpireError, ValueError or a parameter error raised by
    ``factory``) prints one line and returns 2, as STYLE.md asks. ``executor``: ``default``
    (single-threaded), ``multi`` (``num_threads`` threads, for callbacks that wait on other
    callbacks) or ``fast`` (the events executor, for hot paths). ``nice`` > 0 lowers the
    process's CPU priority by that much: nodes off the control path (recording, verifier
    polls) then yield the CPU to the control loop (cell -> policy host -> supervisor) on a
    busy machine instead of delaying its ticks; their own work only gets later.

    ``unique``: the node claims its fully qualified name on this host and domain
    (:mod:`enpire_common.claims`) before it spins; a second node of that name prints why and
    returns 2 (its launch then ends if it is required) instead of answering the first one's
    requests too. Only a node that is meant to overlap its successor (a policy host during a
    hot swap) passes False.

    ``ENPIRE_MSG_FAULTS`` (testing only) drops and delays what the node's subscriptions
    receive: :mod:`enpire_common.msg_faults`.

    A running node answers ``kill -USR1`` with its threads' stacks and ``kill -USR2`` with a
    memory report, both in its log (:mod:`enpire_common.diagnostics`).
    """
    import os
    import sys

    if nice > 0:
        os.nice(nice)

    from rclpy.exceptions import ParameterException
    from rclpy.executors import MultiThreadedExecutor

    from enpire_common import diagnostics
    from enpire_common.errors import EnpireError

    diagnostics.install()
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        from enpire_common.msg_faults import install_from_env

        install_from_env()      # the fault suite's lossy network; nothing when unset
        node = factory()
    except (EnpireError, ValueError, ParameterException) as exc:
        print(f'{name}: invalid config: {exc}', file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    if unique:
        from enpire_common.claims import NameTakenError, claim_node_name

        try:
            claim = claim_node_name(node.get_fully_qualified_name())
        except NameTakenError as exc:
            print(f'{name}: {exc}', file=sys.stderr)
            node.destroy_node()
            rclpy.try_shutdown()
            return 2
    if executor == 'fast':
        ex = make_fast_executor()
    elif executor == 'multi':
        ex = MultiThreadedExecutor(num_threads=num_threads)
    else:
        ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        spin_until_shutdown(ex)
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        if unique and claim is not None:
            os.close(claim)
    return 0


def spin_until_shutdown(executor: Any, context: Any = None) -> None:
    """Spin until Ctrl-C / shutdown.

    ``EventsExecutor.spin()`` ignores the SIGINT shutdown and keeps a core busy here; a
    bounded ``spin_once`` loop does neither (and costs nothing while idle).
    """
    try:
        while rclpy.ok(context=context):
            executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def declare_config(node: Node, cls: type[T], prefix: str = '') -> T:
    """Declare every field of config dataclass ``cls`` as a node parameter and read it back.

    Defaults come from the dataclass; values from launch/YAML override them. Raises
    ConfigError (code 100) when a value violates the dataclass's validation.
    """
    defaults = to_parameters(cls())
    values: dict[str, Any] = {}
    for key, default in defaults.items():
        name = prefix + key
        if isinstance(default, list) and not default:
            # An empty list has no type to infer; declare it as a string array.
            descriptor_default = Parameter.Type.STRING_ARRAY
            param = node.declare_parameter(name, descriptor_default)
            value = param.value if param.value is not None else []
        else:
            value = node.declare_parameter(name, default).value
        values[key] = value
    return from_parameters(cls, values, strict=False)


def ros_time_s(node: Node) -> float:
    """The node's clock (sim time when use_sim_time is set) in seconds."""
    return node.get_clock().now().nanoseconds * 1e-9


class NodeClock:
    """A :class:`enpire_common.clock.Clock` backed by a node's ROS clock."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def now_s(self) -> float:
        return ros_time_s(self._node)

    def sleep_s(self, duration_s: float) -> None:
        if duration_s > 0:
            self._node.get_clock().sleep_for(rclpy.duration.Duration(seconds=duration_s))


class ActionClient(_RclpyActionClient):
    """``rclpy.action.ActionClient`` without its lost-response race (ros2/rclpy#1123).

    The Jazzy client sends a goal, cancel or result request first and registers its sequence
    number after. An executor spinning in another thread can take and handle the response in
    between: it logs "Ignoring unexpected goal response" and the caller's future never
    completes. On a loaded machine this lost reset goals. Here each request is sent and
    registered under one lock, and a response is handled only after the request in flight
    is registered (the executor passes the lock before looking the sequence number up). The
    lock is never held while user callbacks run. rclpy fixed this upstream in 2025 (#1308,
    backported in #1517/#1519); this class keeps the wheels pinned here correct.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._request_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def send_goal_async(self, goal: Any, feedback_callback: Any = None,
                        goal_uuid: Any = None) -> Any:
        with self._request_lock:
            return super().send_goal_async(goal, feedback_callback, goal_uuid)

    def _cancel_goal_async(self, goal_handle: Any) -> Any:
        with self._request_lock:
            return super()._cancel_goal_async(goal_handle)

    def _get_result_async(self, goal_handle: Any) -> Any:
        with self._request_lock:
            return super()._get_result_async(goal_handle)

    async def execute(self, taken_data: Any) -> None:
        with self._request_lock:    # a barrier: the request in flight is registered by now
            pass
        try:
            await super().execute(taken_data)
        except RuntimeError as exc:
            # Two servers of one action name both accepted a goal: rclpy raises here, which
            # ends the executor's spin thread, and every later response of this client is
            # lost (the caller waits forever). The first answer stands; the caller's own
            # check (servers_answering) says what is wrong.
            if 'accepted with the same ID' not in str(exc):
                raise
            self._node.get_logger().error(
                f'{self._action_name}: a second server accepted the same goal ({exc}); '
                'two nodes serve this action')

    def servers_answering(self) -> int:
        """How many action servers of this name the graph shows (1 when all is well)."""
        return self._node.count_services(f'{self._node.resolve_service_name(self._action_name)}'
                                         '/_action/send_goal')


def wait_for_service(client: Any, timeout_s: float, what: str) -> None:
    """Wait for a service or action server; raise CellUnavailableError after ``timeout_s``."""
    ready = (client.wait_for_server(timeout_sec=timeout_s) if hasattr(client, 'wait_for_server')
             else client.wait_for_service(timeout_sec=timeout_s))
    if not ready:
        raise CellUnavailableError(
            f'{what} did not appear within {timeout_s:.1f} s; is the cell launched '
            f'(enpire up ...) and on the same ROS_DOMAIN_ID?')


def wait_future(future: Any, timeout_s: float, what: str) -> Any:
    """Block until ``future`` is done (spun by another thread); raise on timeout."""
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout_s):
        future.cancel()
        raise EnpireTimeoutError(f'{what} did not answer within {timeout_s:.1f} s')
    return future.result()


def resend_until_answered(send: Callable[[], Any], *, per_try_s: float, total_s: float,
                          what: str, before_try: Callable[[float], None] | None = None,
                          on_resend: Callable[[], None] | None = None) -> Any:
    """The result of ``send()``'s future, sending again while a try goes unanswered.

    A server that died (SIGKILL) lingers in the graph until its DDS participant's lease ends
    and never answers; its respawned successor answers the same request sent again. Only for
    requests that are safe to repeat: a goal nobody accepted has not run, a verification
    only reads the cameras.

    Args:
        send: makes one request and returns its future (``send_goal_async``, ``call_async``).
        per_try_s: how long one try waits for its answer.
        total_s: no new try starts after this (the last try still gets its ``per_try_s``).
        what: the request, for the timeout error.
        before_try: called with the time left before each try (wait for the server there).
        on_resend: called before each try after the first (log it there).

    Raises:
        EnpireTimeoutError: the last try went unanswered too.
    """
    end = time.monotonic() + total_s
    first = True
    while True:
        if before_try is not None:
            before_try(max(1.0, end - time.monotonic()))
        if not first and on_resend is not None:
            on_resend()
        first = False
        try:
            return wait_future(send(), per_try_s, what)
        except EnpireTimeoutError:
            if time.monotonic() >= end:
                raise


def call_service(client: Any, request: Any, timeout_s: float, what: str) -> Any:
    """Call a service from a thread other than the executor's, with a bounded wait."""
    wait_for_service(client, timeout_s, what)
    return wait_future(client.call_async(request), timeout_s, what)


def raise_for_result(result: Any) -> Any:
    """Re-raise a result's ``error_code``/``error_msg`` as the matching EnpireError."""
    code = int(getattr(result, 'error_code', 0))
    if code:
        raise error_from_code(code, getattr(result, 'error_msg', '') or f'error {code}')
    return result

