"""The agent_bridge node in-process: hot swaps at a tick boundary, strict failures, fallback.

A fake real-time cell ticks image + state on a background thread; the tests call the bridge's
services like the CLI does and check every command it published (tick + revision_id). A
real-time cell applies the latest command it holds when it steps, so the tick a switch lands
on may carry two commands: the old revision's, then the new one's that replaces it
(:func:`effective_commands`).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import String

from enpire_agent_bridge.core.swap import HOLD
from enpire_agent_bridge.ros import conversions as conv
from enpire_agent_bridge.ros.agent_bridge_node import AgentBridgeNode, TriggerSrv
from enpire_common.errors import SwitchFailedError
from enpire_common.ros import LATEST_QOS, wait_future
from enpire_common.testing import wait_until
from enpire_interfaces.msg import Command, StateVector
from enpire_interfaces.srv import SwitchPolicy

ROOT = Path(__file__).resolve().parents[3]
TASK_FILE = ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml'
BAD = ROOT / 'tests' / 'data' / 'bad_policies'
IMAGE_PX = 96        # the bridge forwards whatever the cell sends; keep the fake cell cheap
TICK_HZ = 20.0
WAIT_S = 30.0        # generous: a loaded 2-core machine starts sandboxes slowly

OFFSET_POLICY = '''
import numpy as np


class Offset:
    def __init__(self, spec):
        self.low, self.high = spec.low, spec.high
        self.offset = np.asarray(spec.params.get('offset_px', [0.0, 0.0]), dtype=np.float64)
        self.fault_above_x_px = float(spec.params.get('fault_above_x_px', 1e9))

    def reset(self, seed):
        pass

    def act(self, obs):
        pos = np.asarray(obs['agent_pos'], dtype=np.float64)
        if pos[0] > self.fault_above_x_px:
            return np.array([np.nan, np.nan])   # a fault the host must catch
        return np.clip(pos + self.offset, self.low, self.high)


def make_policy(spec):
    return Offset(spec)
'''


def offset_policy(root: Path, name: str, offset: float, **params: float) -> Path:
    d = root / name
    d.mkdir()
    (d / 'policy.py').write_text(OFFSET_POLICY)
    all_params = {'offset_px': [offset, offset], **params}
    (d / 'policy.yaml').write_text(
        f'name: {name}\ntask: push_t\nversion: 1\nregime: heuristic\n'
        f"hypothesis: test\nparent: ''\nparams: {json.dumps(all_params)}\n")
    return d


class FakeCell:
    """Ticks image + state at TICK_HZ; records the bridge's commands and status."""

    def __init__(self, ros) -> None:
        self.node = ros.node('fake_cell')
        self.image_pub = self.node.create_publisher(Image, 'camera/top/image_raw', LATEST_QOS)
        self.state_pub = self.node.create_publisher(StateVector, 'state', LATEST_QOS)
        self.switch = self.node.create_client(SwitchPolicy, 'switch_policy')
        self.commands: list[Command] = []
        self.statuses: list[dict] = []
        self.pos = [120.0, 340.0]
        self.tick = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.node.create_subscription(Command, 'policy/command', self._on_cmd, 100)
        self.node.create_subscription(String, 'bridge/status', self._on_status, LATEST_QOS)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_cmd(self, msg: Command) -> None:
        with self._lock:
            self.commands.append(msg)

    def _on_status(self, msg: String) -> None:
        with self._lock:
            self.statuses.append(json.loads(msg.data))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        # A real-time cell: one tick per period, whatever the bridge does.
        while not self._stop.wait(1.0 / TICK_HZ):
            self.tick += 1
            stamp = conv.Time(sec=self.tick, nanosec=0)
            img = Image(height=IMAGE_PX, width=IMAGE_PX, encoding='rgb8', step=IMAGE_PX * 3)
            img.header.stamp = stamp
            img.data = bytes(IMAGE_PX * IMAGE_PX * 3)
            self.image_pub.publish(img)
            state = StateVector(tick=self.tick, names=['x', 'y', 'vx', 'vy'],
                                values=[self.pos[0], self.pos[1], 0.0, 0.0])
            state.header.stamp = stamp
            self.state_pub.publish(state)

    def call(self, revision_id: str = '', revision_dir: Path | str = '', strict: bool = True,
             timeout_s: float = WAIT_S) -> SwitchPolicy.Response:
        req = SwitchPolicy.Request(
            revision_id=revision_id, revision_dir=str(revision_dir),
            strictness=SwitchPolicy.Request.STRICT if strict
            else SwitchPolicy.Request.BEST_EFFORT, timeout_s=timeout_s)
        return wait_future(self.switch.call_async(req), timeout_s + 10.0, 'switch_policy')

    def trigger(self, verb: str) -> object:
        client = self.node.create_client(TriggerSrv, f'{verb}_cell')
        assert client.wait_for_service(timeout_sec=10.0)
        return wait_future(client.call_async(TriggerSrv.Request()), 10.0, f'{verb}_cell')

    def snapshot(self) -> list[tuple[int, str, list[float]]]:
        with self._lock:
            return [(int(c.tick), c.revision_id, list(c.action)) for c in self.commands]

    def trailing(self, revision: str) -> int:
        """How many commands of ``revision`` came since the last one of another revision."""
        n = 0
        for _, r, _ in reversed(self.snapshot()):
            if r != revision:
                break
            n += 1
        return n

    def wait_commands(self, revision: str, n: int) -> None:
        """Wait until the newest ``n`` commands the cell received are all of ``revision``.

        Counting from the end, not in total: a switch call returns once its first command
        is published, which may be before this subscriber has it. A total count of an old
        revision seen earlier would let a snapshot miss that command.
        """
        wait_until(lambda: self.trailing(revision) >= n, WAIT_S,
                   f'{n} commands of {revision} in a row')


@pytest.fixture(params=[True], ids=['within_tick'])
def cell(ros, request):
    cell = FakeCell(ros)
    params = [Parameter('task_file', value=str(TASK_FILE)),
              Parameter('switch_within_tick', value=request.param),
              # Generous: this test checks the switch logic, not speed, on a loaded machine.
              Parameter('deadline_override_s', value=2.0),
              Parameter('revisions_dir', value=''),
              Parameter('log_dir', value='')]
    cell.bridge = ros.add(AgentBridgeNode(context=ros.context, parameter_overrides=params))
    ros.add(cell.bridge.control)   # its services' node
    assert cell.switch.wait_for_service(timeout_sec=10.0)
    wait_until(lambda: cell.node.count_subscribers('state') >= 1, 10.0, 'bridge subscription')
    cell.start()
    yield cell
    cell.stop()


def effective_commands(commands: list[tuple[int, str, list[float]]],
                       replaced: int | None = None) -> list[tuple[int, str, list[float]]]:
    """The command the cell steps with per tick (the last one), checking the stream's shape.

    Ticks come in order; a tick has one command, or two when a switch replaced the old
    revision's command by the new one's (then the revisions differ). ``replaced`` pins how
    many ticks got such a replacement.
    """
    ticks = [t for t, _, _ in commands]
    assert ticks == sorted(ticks), 'commands came out of tick order'
    last: dict[int, tuple[int, str, list[float]]] = {}
    doubles = 0
    for c in commands:
        if c[0] in last:
            doubles += 1
            assert last[c[0]][1] != c[1], f'tick {c[0]} got two commands of {c[1]}'
        last[c[0]] = c
    assert len(commands) - len(last) == doubles
    assert all(n <= 2 for n in Counter(ticks).values()), 'a tick got more than two commands'
    if replaced is not None:
        assert doubles == replaced, f'{doubles} ticks got a replacement command, not {replaced}'
    return [last[t] for t in sorted(last)]


@pytest.mark.ros
@pytest.mark.parametrize('cell', [True, False], ids=['within_tick', 'next_tick'],
                         indirect=True)
def test_a_switch_lands_on_a_tick_boundary_and_no_old_command_follows_it(cell, tmp_path):
    a = offset_policy(tmp_path, 'a', 0.0)
    b = offset_policy(tmp_path, 'b', 3.0)
    first = cell.call('rev-a', a)
    assert (first.ok, first.error_msg, first.active_revision) == (True, '', 'rev-a')
    cell.wait_commands('rev-a', 3)

    res = cell.call('rev-b', b)
    assert res.ok, res.error_msg
    assert (res.active_revision, res.previous_revision) == ('rev-b', 'rev-a')
    assert 0.0 < res.switch_latency_s < WAIT_S
    cell.wait_commands('rev-b', 3)
    back = cell.call('rev-a')       # parked warm: no directory needed, no process start
    assert back.ok, back.error_msg
    cell.wait_commands('rev-a', 3)

    raw = cell.snapshot()
    within = cell.bridge.config.switch_within_tick
    cmds = effective_commands(raw, replaced=2 if within else 0)
    switch_b = min(t for t, r, _ in cmds if r == 'rev-b')
    switch_a = min(t for t, r, _ in cmds if r == 'rev-a' and t > switch_b)
    revs = [r for _, r, _ in cmds]
    assert set(revs) == {'rev-a', 'rev-b'}
    assert all(r == 'rev-b' for t, r, _ in cmds if switch_b <= t < switch_a), \
        'a command of the old revision passed after the switch tick'
    assert all(r == 'rev-a' for t, r, _ in cmds if t >= switch_a)
    # Nothing of the old revision is published after the new one's first command.
    first_b = next(i for i, c in enumerate(raw) if c[1] == 'rev-b')
    first_a_again = next(i for i, c in enumerate(raw) if c[1] == 'rev-a' and i > first_b
                         and c[0] >= switch_a)
    assert all(r == 'rev-b' for _, r, _ in raw[first_b:first_a_again])
    assert all(r == 'rev-a' for _, r, _ in raw[first_a_again:])
    b_actions = [act for _, r, act in cmds if r == 'rev-b']
    np.testing.assert_allclose(b_actions[0], [123.0, 343.0])
    status = cell.bridge.status()
    assert status['active'] == 'rev-a' and status['last_good'] == 'rev-b'
    assert status['standby'] == ['rev-b'] and status['switches'] == 2


@pytest.mark.ros
def test_a_strict_switch_to_a_policy_failing_on_import_keeps_the_old_revision(cell, tmp_path):
    a = offset_policy(tmp_path, 'a', 0.0)
    assert cell.call('rev-a', a).ok
    cell.wait_commands('rev-a', 2)
    res = cell.call('rev-bad', BAD / 'raise_on_import')
    assert not res.ok
    assert res.error_code == 404
    assert 'switch to rev-bad failed, rev-a stays active' in res.error_msg
    assert 'RuntimeError in importing policy.py: deliberate import failure' in res.error_msg
    assert res.active_revision == 'rev-a'
    n = len(cell.snapshot())
    wait_until(lambda: len(cell.snapshot()) >= n + 3, WAIT_S, 'commands after the failure')
    assert {r for _, r, _ in cell.snapshot()} == {'rev-a'}
    assert cell.bridge.status()['phase'] == 'active'


@pytest.mark.ros
def test_a_best_effort_switch_that_fails_falls_back_to_hold(cell, tmp_path):
    a = offset_policy(tmp_path, 'a', 0.0)
    assert cell.call('rev-a', a).ok
    res = cell.call('rev-nan', BAD / 'returns_nan', strict=False)
    assert not res.ok and 'fell back to hold' in res.error_msg
    assert res.active_revision == HOLD
    cell.wait_commands(HOLD, 2)
    assert cell.bridge.status()['last_good'] == 'rev-a'


@pytest.mark.ros
def test_a_fault_after_activation_holds_and_restore_brings_back_the_last_good(cell, tmp_path):
    a = offset_policy(tmp_path, 'a', 0.0)
    f = offset_policy(tmp_path, 'f', 1.0, fault_above_x_px=400.0)
    assert cell.call('rev-a', a).ok
    res = cell.call('rev-f', f)
    assert res.ok, res.error_msg
    cell.wait_commands('rev-f', 2)

    cell.pos = [450.0, 300.0]     # the policy emits NaN from here on
    cell.wait_commands(HOLD, 2)
    cmds = effective_commands(cell.snapshot(), replaced=1)   # the switch to rev-f
    fault_tick = min(t for t, r, _ in cmds if r == HOLD)
    assert all(r == HOLD for t, r, _ in cmds if t >= fault_tick)
    hold_action = next(act for t, r, act in cmds if r == HOLD)
    assert hold_action == [450.0, 300.0], 'hold commands the current agent position'
    status = cell.bridge.status()
    assert status['active'] == HOLD and status['last_good'] == 'rev-a'
    assert 'non-finite action' in status['faults'][-1]

    restored = cell.call('last_good')
    assert restored.ok, restored.error_msg
    assert (restored.active_revision, restored.previous_revision) == ('rev-a', HOLD)
    cell.wait_commands('rev-a', 2)
    after = [r for t, r, _ in cell.snapshot() if t > fault_tick]
    assert after[-1] == 'rev-a' and 'rev-f' not in after


@pytest.mark.ros
def test_pause_stops_commands_home_holds_a_target_and_resume_returns(cell, tmp_path):
    a = offset_policy(tmp_path, 'a', 2.0)
    assert cell.call('rev-a', a).ok
    cell.wait_commands('rev-a', 2)
    assert cell.trigger('pause').success
    refused = cell.call('rev-a2', offset_policy(tmp_path, 'a2', 1.0))
    assert not refused.ok and refused.error_code == 205 and 'paused' in refused.error_msg
    n = len(cell.snapshot())
    # Ticks keep coming; wait for several of them, then no command may have been published.
    start = cell.tick
    wait_until(lambda: cell.tick >= start + 4, WAIT_S, 'ticks while paused')
    assert len(cell.snapshot()) <= n + 1   # one command may have been in flight
    assert cell.trigger('home').success
    cell.wait_commands('home', 2)
    assert all(act == [120.0, 340.0] for _, r, act in cell.snapshot() if r == 'home')
    assert cell.trigger('resume').success
    cell.wait_commands('rev-a', 2)
    assert cell.bridge.status()['mode'] == 'running'


@pytest.mark.ros
def test_the_cli_client_drives_pause_home_resume_and_gets_coded_switch_errors(ros):
    from enpire_agent_bridge.ros import agent_client

    cell_name = f'cell_bridge_{threading.get_ident() % 100000}'
    params = [Parameter('task_file', value=str(TASK_FILE))]
    bridge = ros.add(AgentBridgeNode(context=ros.context, namespace=f'/{cell_name}',
                                     parameter_overrides=params))
    ros.add(bridge.control)
    for verb, mode in (('pause', 'paused'), ('home', 'homing'), ('resume', 'running')):
        res = agent_client.cell_command(cell_name, verb, wait_s=10.0)
        assert res['ok'] and res['verb'] == verb
        assert bridge.status()['mode'] == mode
    with pytest.raises(SwitchFailedError, match='no earlier good revision to restore'):
        agent_client.switch_policy(cell_name, 'last_good', wait_s=10.0)


def test_cell_status_shows_paused_resets_and_cell_resume_lifts_them(ros):
    """A cell that paused itself after failed resets: ``enpire cell status`` says so with
    the reasons, ``enpire cell resume`` (no bridge on a trial cell) resumes its resets."""
    from enpire_agent_bridge.ros import agent_client
    from enpire_common.ros import ActionClient, wait_for_service
    from enpire_interfaces.action import ResetCell
    from enpire_reset.ros.fake_verifier_node import FakeVerifierNode
    from enpire_reset.ros.reset_server_node import ResetServerNode
    from enpire_sim.ros.push_t_cell_node import PushTCellNode

    cell_name = f'cell_paused_{threading.get_ident() % 100000}'
    ns = f'/{cell_name}'
    ros.add(PushTCellNode(context=ros.context, namespace=ns, parameter_overrides=[
        Parameter('camera.width_px', value=32), Parameter('camera.height_px', value=32)]))
    server = ros.add(ResetServerNode(context=ros.context, namespace=ns, parameter_overrides=[
        Parameter('settle_s', value=0.0), Parameter('retry_backoff_s', value=0.0),
        Parameter('pause_after_failures', value=1)]))
    ros.add(FakeVerifierNode(context=ros.context, namespace=ns, parameter_overrides=[
        Parameter('mode', value='always_solved')]))
    client = ActionClient(ros.node('driver', namespace=ns), ResetCell, 'reset_cell')
    wait_for_service(client, 20.0, 'reset_cell')
    handle = wait_future(client.send_goal_async(ResetCell.Goal(seed=1, max_attempts=1)),
                         20.0, 'goal')
    wait_future(handle.get_result_async(), 20.0, 'result')
    assert server.pause.paused

    status = agent_client.cell_status(cell_name, wait_s=3.0)
    assert 'already solved' in status['resets_paused']
    assert status['alerts'][-1]['kind'] == 'reset_paused'
    res = agent_client.cell_command(cell_name, 'resume', wait_s=10.0)
    assert res['ok'] and res['message'] == 'resets resumed' and not server.pause.paused
    status = agent_client.cell_status(cell_name, wait_s=3.0)
    assert status['resets_paused'] == '' and status['alerts'][-1]['kind'] == 'resumed'
