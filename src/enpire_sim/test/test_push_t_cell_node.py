from __future__ import annotations

import math
import queue
import threading

import pytest
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image

from enpire_common.errors import ConfigError
from enpire_common.image_msgs import image_to_rgb as image_to_array
from enpire_common.ros import LATEST_QOS, call_service
from enpire_common.testing import wait_until
from enpire_interfaces.msg import CellState, Command, SafetyEvent, StateVector
from enpire_interfaces.srv import GetGroundTruth, PlaceStart
from enpire_sim.ros.push_t_cell_node import PushTCellNode

pytestmark = pytest.mark.ros
NS = '/cell_t'
TIMEOUT_S = 10.0


class Probe:
    """Collects the cell's outputs into queues (the test thread waits on them)."""

    def __init__(self, ros):
        self.node = ros.node('probe', namespace=NS)
        self.images: queue.Queue = queue.Queue()
        self.states: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self.clocks: list = []
        self.cell: list = []
        self.infos: list = []
        n = self.node
        n.create_subscription(Image, 'camera/top/image_raw', self.images.put, LATEST_QOS)
        n.create_subscription(StateVector, 'state', self.states.put, LATEST_QOS)
        n.create_subscription(SafetyEvent, 'safety/events', self.events.put, 10)
        n.create_subscription(ClockMsg, '/clock', self.clocks.append, LATEST_QOS)
        n.create_subscription(CellState, 'cell_state', self.cell.append, LATEST_QOS)
        n.create_subscription(CameraInfo, 'camera/top/camera_info', self.infos.append,
                              LATEST_QOS)
        self.cmd = n.create_publisher(Command, 'command', 10)
        self.gt = n.create_client(GetGroundTruth, 'sim/ground_truth')
        self.reset = n.create_client(PlaceStart, 'place')

    def send(self, action, tick=0):
        msg = Command(tick=tick, revision_id='test', action=[float(a) for a in action])
        self.cmd.publish(msg)

    def drain(self):
        for q in (self.images, self.states, self.events):
            while not q.empty():
                q.get_nowait()

    def wait_connected(self):
        wait_until(lambda: self.cmd.get_subscription_count() > 0, TIMEOUT_S,
                   'the cell to subscribe to command')
        self.images.get(timeout=TIMEOUT_S)   # the latched start frame
        self.states.get(timeout=TIMEOUT_S)


def make_cell(ros, **params):
    overrides = [Parameter(k, value=v) for k, v in
                 {'camera.width_px': 96, 'camera.height_px': 96, **params}.items()]
    return ros.add(PushTCellNode(context=ros.context, namespace=NS,
                                 parameter_overrides=overrides))


def test_lockstep_command_publishes_the_next_tick_image_and_state(ros):
    make_cell(ros)
    probe = Probe(ros)
    probe.wait_connected()
    for tick in (0, 1, 2):   # a command answers the state of its tick
        probe.send([200.0, 200.0], tick)
        state = probe.states.get(timeout=TIMEOUT_S)
        image = probe.images.get(timeout=TIMEOUT_S)
        assert state.tick == tick + 1
        assert list(state.names) == ['x', 'y', 'vx', 'vy']
        assert image.header.stamp == state.header.stamp
        assert image.encoding == 'rgb8' and image.header.frame_id == 'top_camera'
        assert image_to_array(image).shape == (96, 96, 3)
    wait_until(lambda: probe.clocks and probe.clocks[-1].clock == state.header.stamp,
               TIMEOUT_S, '/clock at the last tick')
    wait_until(lambda: probe.infos, TIMEOUT_S, 'camera_info')
    assert probe.infos[-1].k[0] == pytest.approx(96 / 512)


def test_ground_truth_service_reports_the_sim_state(ros):
    make_cell(ros, initial_seed=7)
    probe = Probe(ros)
    resp = call_service(probe.gt, GetGroundTruth.Request(), TIMEOUT_S, 'sim/ground_truth')
    assert resp.seed == 7 and resp.step == 0 and resp.error_code == 0
    assert len(resp.object_pose) == 3 and len(resp.agent_pos) == 2
    assert 0.0 <= resp.coverage <= 1.0 and resp.success is False
    assert list(resp.goal_pose) == pytest.approx([256.0, 256.0, math.pi / 4])


def test_sim_reset_places_the_seed_start_and_publishes_a_fresh_frame(ros):
    make_cell(ros)
    probe = Probe(ros)
    probe.wait_connected()
    probe.send([150.0, 150.0])
    probe.states.get(timeout=TIMEOUT_S)
    first = call_service(probe.reset, PlaceStart.Request(seed=7), TIMEOUT_S, 'place')
    state = probe.states.get(timeout=TIMEOUT_S)
    assert state.tick == 0
    assert list(state.values[:2]) == pytest.approx(list(first.agent_pos))
    second = call_service(probe.reset, PlaceStart.Request(seed=7), TIMEOUT_S, 'place')
    assert list(second.object_pose) == list(first.object_pose)
    gt = call_service(probe.gt, GetGroundTruth.Request(), TIMEOUT_S, 'sim/ground_truth')
    assert list(gt.object_pose) == list(first.object_pose) and gt.seed == 7


def test_sim_reset_with_explicit_poses_returns_them(ros):
    make_cell(ros)
    probe = Probe(ros)
    req = PlaceStart.Request(seed=1, object_pose=[300.0, 220.0, 0.5], agent_pos=[60.0, 70.0])
    resp = call_service(probe.reset, req, TIMEOUT_S, 'place')
    assert resp.error_code == 0
    assert list(resp.object_pose) == pytest.approx([300.0, 220.0, 0.5], abs=1e-6)
    assert list(resp.agent_pos) == pytest.approx([60.0, 70.0])


def test_sim_reset_with_a_bad_pose_answers_config_invalid(ros):
    make_cell(ros)
    probe = Probe(ros)
    req = PlaceStart.Request(seed=1, object_pose=[1.0, 2.0])
    resp = call_service(probe.reset, req, TIMEOUT_S, 'place')
    assert resp.error_code == 100
    assert 'object_pose' in resp.error_msg


@pytest.mark.parametrize(('action', 'kind'), [
    ([float('nan'), 100.0], SafetyEvent.KIND_NAN),
    ([600.0, 100.0], SafetyEvent.KIND_BOUNDS),
    ([100.0, 100.0, 100.0], SafetyEvent.KIND_SHAPE),
])
def test_bad_command_is_refused_with_a_safety_event_and_the_cell_keeps_running(
        ros, action, kind):
    make_cell(ros)
    probe = Probe(ros)
    probe.wait_connected()
    probe.send(action)
    event = probe.events.get(timeout=TIMEOUT_S)
    assert event.kind == kind and event.action == SafetyEvent.ACTION_REJECTED
    assert event.revision_id == 'test' and event.cell_id == 'cell_t'
    assert len(event.applied) == 0
    held = probe.states.get(timeout=TIMEOUT_S)   # the refused command still takes a tick
    assert held.tick == 1
    probe.send([200.0, 200.0], tick=1)
    assert probe.states.get(timeout=TIMEOUT_S).tick == 2


def test_lockstep_re_sent_command_republishes_the_tick_instead_of_stepping_again(ros):
    cell = make_cell(ros)
    probe = Probe(ros)
    probe.wait_connected()
    probe.send([200.0, 200.0], tick=0)
    first = probe.states.get(timeout=TIMEOUT_S)
    first_image = probe.images.get(timeout=TIMEOUT_S)
    assert first.tick == 1
    probe.send([200.0, 200.0], tick=0)   # the controller never saw tick 1: send again
    again = probe.states.get(timeout=TIMEOUT_S)
    again_image = probe.images.get(timeout=TIMEOUT_S)
    assert again.tick == 1 and again.header.stamp == first.header.stamp
    assert again_image.header.stamp == first_image.header.stamp
    assert bytes(again_image.data) == bytes(first_image.data)
    gt = call_service(probe.gt, GetGroundTruth.Request(), TIMEOUT_S, 'sim/ground_truth')
    assert gt.step == 1 and cell.republished == 1


def test_lockstep_ignores_a_command_for_another_tick(ros):
    cell = make_cell(ros)
    probe = Probe(ros)
    probe.wait_connected()
    probe.send([200.0, 200.0], tick=5)   # stale (an older episode's) or from the future
    wait_until(lambda: cell.ignored_commands == 1, TIMEOUT_S, 'the command to be ignored')
    gt = call_service(probe.gt, GetGroundTruth.Request(), TIMEOUT_S, 'sim/ground_truth')
    assert gt.step == 0 and probe.states.empty()
    probe.send([200.0, 200.0], tick=0)
    assert probe.states.get(timeout=TIMEOUT_S).tick == 1


def test_realtime_mode_steps_on_its_own_and_holds_without_commands(ros):
    make_cell(ros, **{'clock.mode': 'realtime'})
    probe = Probe(ros)
    ticks = threading.Event()
    seen: list[int] = []

    def on_state(msg):
        seen.append(msg.tick)
        if len(seen) >= 3:
            ticks.set()

    probe.node.create_subscription(StateVector, 'state', on_state, LATEST_QOS)
    assert ticks.wait(TIMEOUT_S), 'the realtime cell did not tick'
    assert seen[-1] > seen[0]


def test_invalid_config_is_refused_at_start(ros):
    with pytest.raises(ConfigError, match=r"clock.mode='fast' is invalid"):
        PushTCellNode(context=ros.context, namespace='/bad',
                      parameter_overrides=[Parameter('clock.mode', value='fast')])
    with pytest.raises(ConfigError, match='fixes the control rate at 10.0 Hz'):
        PushTCellNode(context=ros.context, namespace='/bad2',
                      parameter_overrides=[Parameter('control_rate_hz', value=20.0)])


@pytest.mark.parametrize(('renderer', 'sensor'), [('area', 'none'), ('gym-pusht', 'none'),
                                                  ('area', 'default')])
def test_the_cell_publishes_the_configured_cameras_frame(ros, renderer, sensor):
    import numpy as np

    from enpire_common.tasks import load_task
    from enpire_sim.core.push_t import PushTSim
    from enpire_tasks.sensor import DEFAULT_SENSOR, SensorStream

    make_cell(ros, initial_seed=3, **{'camera.renderer': renderer, 'camera.sensor': sensor})
    probe = Probe(ros)
    probe.wait_connected()   # takes the latched start frame off the queue ...
    probe.reset.wait_for_service(timeout_sec=TIMEOUT_S)
    call_service(probe.reset, PlaceStart.Request(seed=3), TIMEOUT_S, 'place')
    published = image_to_array(probe.images.get(timeout=TIMEOUT_S))   # ... so this is new
    expected = {}
    for name in ('area', 'gym-pusht'):
        sim = PushTSim(load_task('push_t'), 96, 96, renderer=name)
        sim.reset(seed=3)
        expected[name] = sim.render()
        sim.close()
    assert not np.array_equal(expected['area'], expected['gym-pusht'])
    if sensor == 'none':        # the renderer's exact image
        np.testing.assert_array_equal(published, expected[renderer])
    else:       # the render through the cell's camera: seed 3's first frame
        camera = SensorStream(DEFAULT_SENSOR, seed=3, view='top')
        np.testing.assert_array_equal(published, camera.apply(expected[renderer], 0, 3))
        assert not np.array_equal(published, expected[renderer])
