"""The safety supervisor node: every policy command passes the task's safety envelope.

Commands that violate a rule are clamped, rejected or abort the trial (per rule, see
:class:`enpire_rollout.core.config.SafetyConfig`); every decision is published as a
SafetyEvent. A rejected command is replaced by a hold (the last applied target, or the
pusher's position) for the same tick, so a lockstep cell keeps stepping and a real-time cell
holds. After an abort everything is rejected, with no hold, until ``safety/reset``.
"""

from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Empty

from enpire_common.ros import (
    declare_config,
    ros_time_s,
    run_node,
)
from enpire_interfaces.msg import Command, SafetyEvent, StateVector
from enpire_rollout.core.config import SafetyConfig
from enpire_rollout.core.safety import SafetyAction, SafetyFilter
from enpire_rollout.ros.conversions import (
    applied_command,
    command_values,
    safety_event,
    stamp_s,
)


class SafetySupervisorNode(Node):
    """Filters ``policy/command`` into ``command`` through the safety envelope.

    Subscribes:
        policy/command (enpire_interfaces/Command): the policy's raw command.
        state (enpire_interfaces/StateVector): the first ``ndim`` values (agent position) are
            the MAX_STEP reference for the first command after start or reset.
        safety/reset (std_msgs/Empty): clears the abort latch and the step/rate history
            (the rollout publishes it at each trial start).
    Publishes:
        command (enpire_interfaces/Command): the filtered command (same header/tick/revision).
        safety/events (enpire_interfaces/SafetyEvent): one per rule that fired.
    Parameters (see SafetyConfig):
        envelope.low / envelope.high (float[], task units), envelope.max_step_px (float, px,
        0 = off), envelope.max_rate_hz (float, Hz, 0 = off), envelope.stale_timeout_s
        (float, s, 0 = off), modes.bounds / modes.max_step ('clamp'|'reject'|'abort'),
        modes.rate ('reject'|'abort'), cell_id (str; default: the node namespace),
        task (str; when set, envelope and modes come from that task's contract instead).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('safety_supervisor', **kwargs)
        self.config = declare_config(self, SafetyConfig)
        if self.config.task:
            from enpire_common.tasks import load_task

            self.config = self.config.with_task_envelope(load_task(self.config.task).safety)
        self.filter = SafetyFilter(self.config)
        self._cell_id = self.config.cell_id or self.get_namespace().strip('/')
        self._prev: np.ndarray | None = None
        self._agent: np.ndarray | None = None
        self._revision = ''
        self._cmd_pub = self.create_publisher(Command, 'command', 10)
        self._event_pub = self.create_publisher(SafetyEvent, 'safety/events', 50)
        self.create_subscription(Command, 'policy/command', self._on_command, 10)
        self.create_subscription(StateVector, 'state', self._on_state, 10)
        self.create_subscription(Empty, 'safety/reset', self._on_reset, 10)
        stale_s = self.config.envelope.stale_timeout_s
        if stale_s > 0:
            self.create_timer(stale_s / 2.0, self._check_stale)

    def _on_state(self, msg: StateVector) -> None:
        if len(msg.values) >= self.config.ndim:
            self._agent = np.asarray(msg.values[:self.config.ndim], dtype=np.float64)

    def _on_reset(self, _msg: Empty) -> None:
        self.filter.reset()
        self._prev = None
        self.get_logger().info('safety envelope reset')

    def _on_command(self, msg: Command) -> None:
        self._revision = msg.revision_id
        # Rates are judged on the command's own stamp (the tick it answers, stamped by the
        # cell) when it has one: the node clock races /clock in lockstep, where two ticks can
        # arrive within the same sim-time instant of this node.
        cmd_s = stamp_s(msg.header.stamp)
        now_s = cmd_s if cmd_s > 0 else ros_time_s(self)
        # A second command for a tick (a hot swap replacing the old revision's) is judged by
        # the filter like the one it replaces (SafetyFilter.filter).
        prev = self._prev if self._prev is not None else self._agent
        applied, decisions = self.filter.filter(command_values(msg), prev, now_s)
        stamp = self.get_clock().now().to_msg()
        for decision in decisions:
            self._event_pub.publish(safety_event(decision, self._cell_id, msg.revision_id,
                                                 stamp))
            if decision.action == SafetyAction.ABORTED:
                self.get_logger().warning(f'safety abort: {decision.detail}')
        if applied is not None:
            self._prev = applied
            self._cmd_pub.publish(applied_command(msg, applied))
        elif not self.filter.aborted:
            # A rejected command must not stall a lockstep cell (it steps only on a command):
            # hold the last applied target (or the pusher's position) for this tick instead.
            hold = self._prev if self._prev is not None else self._agent
            if hold is not None:
                self._cmd_pub.publish(applied_command(msg, hold))

    def _check_stale(self) -> None:
        decision = self.filter.check_stale(ros_time_s(self))
        if decision is not None:
            self._event_pub.publish(safety_event(decision, self._cell_id, self._revision,
                                                 self.get_clock().now().to_msg()))


def main(argv: list[str] | None = None) -> int:
    # On every control tick's path (policy -> supervisor -> cell): the events executor cut
    # its per-message overhead (py-spy: the default wait loop was ~70% of its CPU).
    return run_node('safety_supervisor', SafetySupervisorNode, argv, executor='fast')


if __name__ == '__main__':
    sys.exit(main())
