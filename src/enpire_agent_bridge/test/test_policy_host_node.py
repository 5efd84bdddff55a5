"""The policy_host node in-process: commands come back per state tick; faults are reported."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import String

from enpire_agent_bridge.ros import conversions as conv
from enpire_agent_bridge.ros.policy_host_node import CONTROL_QOS, PolicyHostNode
from enpire_common.ros import LATEST_QOS
from enpire_common.testing import wait_until
from enpire_interfaces.msg import Command, StateVector

ROOT = Path(__file__).resolve().parents[3]
TASK_FILE = ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml'

pytestmark = pytest.mark.ros


def make_node(ros, policy: Path, revision_id: str, gated: bool = False,
              **extra) -> PolicyHostNode:
    params = [*(Parameter(k, value=v) for k, v in extra.items()),
              Parameter('revision_dir', value=str(policy)),
              Parameter('gated', value=gated),
              Parameter('revision_id', value=revision_id),
              Parameter('task_file', value=str(TASK_FILE)),
              # Generous: this test checks plumbing, not speed, on a loaded machine.
              Parameter('deadline_override_s', value=2.0),
              Parameter('log_dir', value='')]
    return ros.add(PolicyHostNode(context=ros.context, parameter_overrides=params))


class Cell:
    """A fake cell: publishes image + state ticks, records commands and statuses."""

    def __init__(self, ros) -> None:
        self.node = ros.node('fake_cell')
        self.image_pub = self.node.create_publisher(Image, 'camera/top/image_raw', LATEST_QOS)
        self.state_pub = self.node.create_publisher(StateVector, 'state', LATEST_QOS)
        self.commands: list[Command] = []
        self.statuses: list[dict] = []
        self._lock = threading.Lock()
        self.node.create_subscription(Command, 'policy/command', self._on_cmd, 10)
        self.node.create_subscription(String, 'policy/status', self._on_status, LATEST_QOS)

    def _on_cmd(self, msg: Command) -> None:
        with self._lock:
            self.commands.append(msg)

    def _on_status(self, msg: String) -> None:
        with self._lock:
            self.statuses.append(json.loads(msg.data))

    def tick(self, tick: int, pos: tuple[float, float]) -> None:
        stamp = conv.Time(sec=tick, nanosec=0)
        img = Image(height=480, width=480, encoding='rgb8', step=480 * 3)
        img.header.stamp = stamp
        img.data = bytes(480 * 480 * 3)
        self.image_pub.publish(img)
        state = StateVector(tick=tick, names=['x', 'y', 'vx', 'vy'],
                            values=[pos[0], pos[1], 0.0, 0.0])
        state.header.stamp = stamp
        self.state_pub.publish(state)


def gated_host(ros, cell: Cell, **extra) -> tuple[PolicyHostNode, Any]:
    """A gated host of the hold policy, matched with ``cell``, and its control publisher."""
    control = cell.node.create_publisher(String, 'policy/control', CONTROL_QOS)
    node = make_node(ros, ROOT / 'examples' / 'policies' / 'push_t' / 'hold', 'rev-hold',
                     gated=True, **extra)
    wait_until(lambda: cell.node.count_subscribers('state') >= 1
               and control.get_subscription_count() >= 1, 10.0, 'node subscriptions')
    return node, control


def test_each_state_tick_yields_a_command_from_the_hosted_policy(ros):
    cell = Cell(ros)
    node = make_node(ros, ROOT / 'examples' / 'policies' / 'push_t' / 'hold', 'rev-hold')
    assert node.state == 'ready'
    wait_until(lambda: cell.node.count_subscribers('state') >= 1, 10.0, 'node subscription')
    wait_until(lambda: any(s['state'] == 'ready' for s in cell.statuses), 10.0, 'ready status')
    cell.tick(1, (120.0, 340.0))
    wait_until(lambda: len(cell.commands) >= 1, 10.0, 'first command')
    cell.tick(2, (121.0, 341.0))
    wait_until(lambda: len(cell.commands) >= 2, 10.0, 'second command')
    first, second = cell.commands[:2]
    assert (first.tick, first.revision_id) == (1, 'rev-hold')
    np.testing.assert_array_equal(first.action, [120.0, 340.0])
    np.testing.assert_array_equal(second.action, [121.0, 341.0])


def test_a_faulting_policy_publishes_no_command_and_reports_the_reason(ros):
    cell = Cell(ros)
    node = make_node(ros, ROOT / 'tests' / 'data' / 'bad_policies' / 'raise_in_act', 'rev-bad')
    wait_until(lambda: any(s['state'] == 'fault' for s in cell.statuses), 10.0, 'fault status')
    fault = next(s for s in cell.statuses if s['state'] == 'fault')
    assert fault['revision_id'] == 'rev-bad'
    assert 'ValueError in act(obs): deliberate failure in act' in fault['reason']
    assert fault['error_code'] == 402
    assert node.state == 'fault' and not node.host.alive
    cell.tick(1, (10.0, 10.0))
    cell.tick(2, (10.0, 10.0))
    # A later command would have arrived with the status; a short settle on an event suffices.
    assert not threading.Event().wait(0.3)
    assert cell.commands == []


def test_a_gated_host_acts_only_inside_an_episode_opened_with_a_seed(ros):
    cell = Cell(ros)
    node, control = gated_host(ros, cell)
    cell.tick(0, (100.0, 200.0))
    assert not threading.Event().wait(0.3)
    assert cell.commands == [], 'a gated host must not act before an episode starts'

    def send(**req):
        control.publish(String(data=json.dumps({'revision_id': 'rev-hold', **req})))

    send(op='start', seed=7, episode='e1')
    wait_until(lambda: any(s['state'] == 'running' and s.get('episode') == 'e1'
                           for s in cell.statuses), 10.0, 'running status')
    # It acts at once on the newest state it holds (tick 0), then on each new tick.
    wait_until(lambda: len(cell.commands) >= 1, 10.0, 'command for tick 0')
    assert cell.commands[0].tick == 0
    cell.tick(1, (101.0, 200.0))
    wait_until(lambda: len(cell.commands) >= 2, 10.0, 'command for tick 1')
    send(op='stop', episode='e1')
    wait_until(lambda: any(s['state'] == 'stopped' for s in cell.statuses), 10.0, 'stopped')
    cell.tick(2, (102.0, 200.0))
    assert not threading.Event().wait(0.3)
    assert [c.tick for c in cell.commands] == [0, 1]
    assert node.state == 'ready'
    send(op='start', seed=8, episode='other', revision_id='someone-else')
    assert not threading.Event().wait(0.2)
    assert node.state == 'ready', 'control for another revision is ignored'


def test_a_host_waiting_for_a_tick_sends_its_command_again(ros):
    # A lockstep loop stops for good if one message is lost: the host sends its last command
    # again (the cell steps on it, or publishes its tick again), and acts on the next tick.
    cell = Cell(ros)
    node, control = gated_host(ros, cell, resend_after_s=0.2)
    cell.tick(0, (100.0, 200.0))
    control.publish(String(data=json.dumps({'op': 'start', 'seed': 1, 'episode': 'e1',
                                            'revision_id': 'rev-hold'})))
    wait_until(lambda: len(cell.commands) >= 2, 10.0, 'the command for tick 0, sent again')
    first, again = cell.commands[:2]
    assert (again.tick, list(again.action)) == (first.tick, list(first.action)) == (
        0, [100.0, 200.0])
    assert node.resent_commands >= 1
    cell.tick(1, (101.0, 200.0))
    wait_until(lambda: any(c.tick == 1 for c in cell.commands), 10.0, 'command for tick 1')
    control.publish(String(data=json.dumps({'op': 'stop', 'episode': 'e1',
                                            'revision_id': 'rev-hold'})))
    wait_until(lambda: node.state == 'ready', 10.0, 'the episode to stop')
    sent = node.resent_commands
    # a command sent just before the stop can still be on its way to the cell: let what was
    # sent arrive (no new one for 0.3 s), then nothing more may come
    count, quiet_since = len(cell.commands), time.monotonic()
    while time.monotonic() - quiet_since < 0.3:
        time.sleep(0.05)
        if len(cell.commands) != count:
            count, quiet_since = len(cell.commands), time.monotonic()
    assert not threading.Event().wait(0.5)
    assert len(cell.commands) == count, 'nothing is sent again outside an episode'
    assert node.resent_commands == sent


def test_a_checkpointed_episode_starts_on_its_first_tick_and_holds_until_resumed(ros):
    # A lockstep cell stands still on the tick the rollout verifies: the host does not act
    # on a checkpoint until the rollout resumes it, and the episode's first act is on the
    # reset's tick 0, never on a state left from the episode before.
    cell = Cell(ros)
    node, control = gated_host(ros, cell, resend_after_s=0.2)

    def send(**req):
        control.publish(String(data=json.dumps({'revision_id': 'rev-hold', 'episode': 'e1',
                                                **req})))

    def quiet() -> list[int]:
        """The ticks commanded so far (re-sends counted once), after 0.6 s: longer than the
        0.2 s re-send watchdog, so an act that was coming has come."""
        assert not threading.Event().wait(0.6)
        return sorted({c.tick for c in cell.commands})

    def acted(tick: int) -> None:
        wait_until(lambda: any(c.tick == tick for c in cell.commands), 10.0,
                   f'command for tick {tick}')

    cell.tick(7, (100.0, 200.0))    # the last state of the episode before the reset
    wait_until(lambda: node._latest_state is not None, 10.0, 'the old state')
    send(op='start', seed=3, first_tick=0, hold_from=0, hold_every=2, hold_at=5)
    wait_until(lambda: node.state == 'running', 10.0, 'running')
    assert quiet() == [], 'no act on a state from before the reset'
    cell.tick(0, (10.0, 20.0))
    acted(0)
    cell.tick(1, (11.0, 20.0))
    acted(1)
    cell.tick(2, (12.0, 20.0))      # a checkpoint: held
    assert quiet() == [0, 1]
    # meanwhile the command for tick 1 goes again (whoever lost tick 2's state gets it again)
    assert node.resent_commands >= 1
    send(op='resume', tick=2)
    acted(2)
    np.testing.assert_array_equal(
        next(c.action for c in cell.commands if c.tick == 2), [12.0, 20.0])
    send(op='resume', tick=2)       # a repeated resume changes nothing
    cell.tick(3, (13.0, 20.0))
    acted(3)
    cell.tick(4, (14.0, 20.0))
    assert quiet() == [0, 1, 2, 3]
    send(op='resume', tick=4)
    acted(4)
    cell.tick(5, (15.0, 20.0))      # hold_at: the step limit
    assert quiet() == [0, 1, 2, 3, 4]
    send(op='stop')
    wait_until(lambda: node.state == 'ready', 10.0, 'the episode to stop')
    assert quiet() == [0, 1, 2, 3, 4]
