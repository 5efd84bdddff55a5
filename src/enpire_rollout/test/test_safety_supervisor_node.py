from __future__ import annotations

import queue

import pytest
from rclpy.parameter import Parameter
from std_msgs.msg import Empty

from enpire_common.testing import wait_until
from enpire_interfaces.msg import Command, SafetyEvent
from enpire_rollout.core.safety import SafetyAction, SafetyKind

pytestmark = pytest.mark.ros

TIMEOUT_S = 10.0


class Probe:
    """Publishes policy commands and collects what the supervisor lets through."""

    def __init__(self, ros, supervisor) -> None:
        self.node = ros.node('probe')
        self.commands: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self.pub = self.node.create_publisher(Command, 'policy/command', 10)
        self.reset_pub = self.node.create_publisher(Empty, 'safety/reset', 10)
        self.node.create_subscription(Command, 'command', self.commands.put, 10)
        self.node.create_subscription(SafetyEvent, 'safety/events', self.events.put, 10)
        wait_until(lambda: (self.pub.get_subscription_count() > 0
                            and self.reset_pub.get_subscription_count() > 0
                            and self.node.count_publishers('safety/events') > 0
                            and supervisor.count_subscribers('command') > 0
                            and supervisor.count_subscribers('safety/events') > 0),
                   TIMEOUT_S, 'supervisor and probe to discover each other')
        self.tick = 0

    def send(self, action, stamp_s: float = 0.0) -> None:
        self.tick += 1
        msg = Command(tick=self.tick, revision_id='rev1', action=[float(v) for v in action])
        msg.header.stamp.sec = int(stamp_s)
        msg.header.stamp.nanosec = int(round((stamp_s - int(stamp_s)) * 1e9))
        self.pub.publish(msg)


def make_supervisor(ros, **params):
    from enpire_rollout.ros.safety_supervisor_node import SafetySupervisorNode

    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return ros.add(SafetySupervisorNode(context=ros.context, parameter_overrides=overrides))


def test_out_of_bounds_command_is_clamped_and_reported(ros):
    sup = make_supervisor(ros, cell_id='cell_7')
    probe = Probe(ros, sup)
    probe.send([600.0, -10.0])
    cmd = probe.commands.get(timeout=TIMEOUT_S)
    assert list(cmd.action) == [512.0, 0.0] and cmd.tick == 1 and cmd.revision_id == 'rev1'
    event = probe.events.get(timeout=TIMEOUT_S)
    assert (event.kind, event.action) == (SafetyKind.BOUNDS, SafetyAction.CLAMPED)
    assert list(event.requested) == [600.0, -10.0] and list(event.applied) == [512.0, 0.0]
    assert event.cell_id == 'cell_7' and event.revision_id == 'rev1'


def test_nan_command_is_dropped_with_an_event(ros):
    sup = make_supervisor(ros)
    probe = Probe(ros, sup)
    probe.send([float('nan'), 10.0])
    event = probe.events.get(timeout=TIMEOUT_S)
    assert (event.kind, event.action) == (SafetyKind.NAN, SafetyAction.REJECTED)
    assert list(event.applied) == []
    # The next valid command passes, and it is the first one that does.
    probe.send([10.0, 20.0])
    cmd = probe.commands.get(timeout=TIMEOUT_S)
    assert cmd.tick == 2 and list(cmd.action) == [10.0, 20.0]


def test_a_rejected_command_becomes_a_hold_so_a_lockstep_cell_keeps_ticking(ros):
    sup = make_supervisor(ros)
    probe = Probe(ros, sup)
    probe.send([100.0, 200.0])
    assert list(probe.commands.get(timeout=TIMEOUT_S).action) == [100.0, 200.0]
    probe.send([float('inf'), 5.0])
    hold = probe.commands.get(timeout=TIMEOUT_S)
    assert hold.tick == 2 and list(hold.action) == [100.0, 200.0]
    assert probe.events.get(timeout=TIMEOUT_S).action == SafetyAction.REJECTED


def test_rates_are_judged_on_command_stamps_not_arrival_time(ros):
    sup = make_supervisor(ros, **{'envelope.max_rate_hz': 60.0})
    probe = Probe(ros, sup)
    # Sent back to back, but stamped one 10 Hz tick apart: both pass.
    probe.send([10.0, 10.0], stamp_s=5.0)
    probe.send([11.0, 10.0], stamp_s=5.1)
    assert [probe.commands.get(timeout=TIMEOUT_S).tick for _ in range(2)] == [1, 2]
    assert probe.events.empty()
    # 10 ms after the last tick: a RATE violation, held at the previous target.
    probe.send([12.0, 10.0], stamp_s=5.11)
    assert probe.events.get(timeout=TIMEOUT_S).kind == SafetyKind.RATE
    assert list(probe.commands.get(timeout=TIMEOUT_S).action) == [11.0, 10.0]


def test_a_second_command_for_a_tick_replaces_the_first_judged_from_the_target_before(ros):
    sup = make_supervisor(ros, **{'envelope.max_rate_hz': 60.0,
                                  'envelope.max_step_px': 5.0})
    probe = Probe(ros, sup)
    probe.send([10.0, 10.0], stamp_s=5.0)
    probe.send([14.0, 10.0], stamp_s=5.1)
    # A hot swap replaces tick 5.1's command: no RATE violation; MAX_STEP is measured from
    # the target applied before the replaced one ([10, 10]), so 8 px is clamped to 5.
    probe.send([18.0, 10.0], stamp_s=5.1)
    got = [list(probe.commands.get(timeout=TIMEOUT_S).action) for _ in range(3)]
    assert got == [[10.0, 10.0], [14.0, 10.0], [15.0, 10.0]]
    event = probe.events.get(timeout=TIMEOUT_S)
    assert (event.kind, event.action) == (SafetyKind.MAX_STEP, SafetyAction.CLAMPED)
    assert probe.events.empty()


def test_abort_mode_rejects_everything_until_reset(ros):
    sup = make_supervisor(ros, **{'modes.bounds': 'abort'})
    probe = Probe(ros, sup)
    probe.send([1000.0, 1.0])
    event = probe.events.get(timeout=TIMEOUT_S)
    assert (event.kind, event.action) == (SafetyKind.BOUNDS, SafetyAction.ABORTED)
    probe.send([10.0, 10.0])
    event = probe.events.get(timeout=TIMEOUT_S)
    assert event.action == SafetyAction.REJECTED and 'until reset' in event.detail
    assert probe.commands.empty()
    probe.reset_pub.publish(Empty())
    wait_until(lambda: not sup.filter.aborted, TIMEOUT_S, 'the reset to arrive')
    probe.send([10.0, 10.0])
    cmd = probe.commands.get(timeout=TIMEOUT_S)
    assert cmd.tick == 3 and list(cmd.action) == [10.0, 10.0]


def test_event_kinds_and_actions_mirror_the_message_constants():
    for kind in SafetyKind:
        assert getattr(SafetyEvent, f'KIND_{kind.name}') == kind.value
    for action in SafetyAction:
        assert getattr(SafetyEvent, f'ACTION_{action.name}') == action.value


def test_invalid_envelope_parameters_exit_with_code_2():
    from enpire_rollout.ros import safety_supervisor_node as safety_supervisor

    code = safety_supervisor.main(['--ros-args', '-p', 'modes.bounds:=explode'])
    assert code == 2
