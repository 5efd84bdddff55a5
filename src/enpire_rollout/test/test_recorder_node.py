from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from enpire_common.image_msgs import image_to_rgb, rgb_to_image
from enpire_common.testing import wait_until
from enpire_interfaces.msg import Command, StateVector
from enpire_rollout.core.bag import bag_info
from enpire_rollout.core.records import read_trial, verify_files

pytestmark = pytest.mark.ros
TIMEOUT_S = 10.0
N = 12


@dataclass
class Record:
    experiment_id: str = 'exp1'
    trial_id: str = 't1'
    revision_id: str = 'rev1'
    cell_id: str = 'cell_0'
    task: str = 'push_t'
    seed: int = 3
    outcome: str = 'success'
    reason: str = 'covered'
    success: bool = True
    score: float = 0.96
    steps: int = N
    reset_s: float = 0.5
    verdicts: list = field(default_factory=lambda: [{'view': 'fused', 'score': 0.96}])
    error_code: int = 0
    error_msg: str = ''
    controller: dict = field(default_factory=lambda: {'late_acts': 1, 'resent_commands': 0})
    sandbox: dict = field(default_factory=lambda: {
        'confinement': 'landlock', 'allow_unconfined': False})
    sandbox_denials: dict = field(default_factory=lambda: {
        'count': 3, 'first': ['read /etc/hostname', 'socket AF_INET']})


def test_recorder_node_records_a_trial_started_and_stopped_by_the_client(ros, tmp_path):
    from enpire_rollout.ros.recorder_node import RecorderClient, RecorderNode

    node = ros.add(RecorderNode(context=ros.context, namespace='cell_0'))
    helper = ros.node('rollout', namespace='cell_0')
    client = RecorderClient(helper, runs_root=tmp_path, timeout_s=TIMEOUT_S)
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    cam = helper.create_publisher(Image, 'camera/top/image_raw', qos)
    state = helper.create_publisher(StateVector, 'state', qos)
    cmd = helper.create_publisher(Command, 'command', qos)
    wait_until(lambda: all(p.get_subscription_count() for p in (cam, state, cmd)), TIMEOUT_S,
               'recorder subscriptions')

    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(dir=client.start(Record())))
    worker.start()
    worker.join(TIMEOUT_S)
    assert result['dir'] == str(tmp_path / 'exp1' / 'trials' / 't1')
    assert node.recorder.is_open

    stamp = helper.get_clock().now().to_msg()
    for i in range(N):
        frame = np.full((64, 64, 3), i * 10, dtype=np.uint8)
        cam.publish(rgb_to_image(frame, stamp, 'top'))
        state.publish(StateVector(tick=i, names=['x_px', 'y_px'], values=[1.0, 2.0]))
        cmd.publish(Command(tick=i, action=[3.0, 4.0]))
    # Frames are bagged as image_transport's compressed topic (bag_images: jpeg by default).
    wait_until(lambda: all(node.recorder.counts().get(k, 0) == N for k in (
        '/cell_0/camera/top/image_raw/compressed', '/cell_0/state', '/cell_0/command',
        'top.mp4')),
        TIMEOUT_S, f'{N} messages per topic to be recorded')

    worker = threading.Thread(target=lambda: result.update(record=client.finish(Record())))
    worker.start()
    worker.join(TIMEOUT_S)
    record = result['record']
    trial_dir = tmp_path / 'exp1' / 'trials' / 't1'
    assert record == read_trial(trial_dir)
    assert record['outcome'] == 'success' and record['ids']['cell_id'] == 'cell_0'
    assert record['controller'] == {'late_acts': 1, 'resent_commands': 0}
    assert record['sandbox'] == {'confinement': 'landlock', 'allow_unconfined': False}
    assert record['sandbox_denials'] == {'count': 3,
                                         'first': ['read /etc/hostname', 'socket AF_INET']}
    assert record['streams']['command']['count'] == N
    assert record['videos']['top']['frames'] == N
    assert verify_files(trial_dir, record) == {}
    info = bag_info(trial_dir)
    assert info['consistent']
    assert info['topics']['/cell_0/camera/top/image_raw/compressed'] == {
        'type': 'sensor_msgs/msg/CompressedImage', 'count': N, 'mcap_count': N}
    assert not node.recorder.is_open


def test_a_bad_request_is_answered_with_an_error_status(ros, tmp_path):
    from enpire_common.errors import ConfigError
    from enpire_rollout.ros.recorder_node import RecorderClient, RecorderNode

    ros.add(RecorderNode(context=ros.context))
    client = RecorderClient(ros.node('client'), runs_root=tmp_path, timeout_s=TIMEOUT_S)
    errors: list = []

    def call():
        try:
            client.request('stop', outcome='success')
        except ConfigError as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(TIMEOUT_S)
    assert errors and 'recorder stop failed' in errors[0] and 'no trial is open' in errors[0]


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'mono8'])
def test_images_convert_to_rgb_from_common_encodings(encoding):
    channels = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'mono8': 1}[encoding]
    raw = np.arange(2 * 3 * channels, dtype=np.uint8).reshape(2, 3, channels)
    msg = Image(height=2, width=3, encoding=encoding, step=3 * channels, data=raw.tobytes())
    rgb = image_to_rgb(msg)
    assert rgb.shape == (2, 3, 3)
    expected = {'rgb8': raw, 'bgr8': raw[:, :, ::-1], 'rgba8': raw[:, :, :3],
                'mono8': np.repeat(raw, 3, axis=2)}[encoding]
    np.testing.assert_array_equal(rgb, expected)



def test_a_resent_request_is_answered_as_before_and_never_acts_twice(ros, tmp_path):
    """The control protocol rides on topics, so the client resends a request whose answer
    did not come (same id). The recorder answers a known id as it did, and does nothing
    else: a resent start never reopens the trial, a resent stop never writes twice."""
    import json

    from std_msgs.msg import String

    from enpire_rollout.ros.recorder_node import (
        CONTROL_TOPIC,
        STATUS_TOPIC,
        RecorderNode,
        status_qos,
    )

    node = ros.add(RecorderNode(context=ros.context, namespace='cell_0'))
    helper = ros.node('rollout', namespace='cell_0')
    pub = helper.create_publisher(String, CONTROL_TOPIC, 10)
    answers: list[dict] = []
    helper.create_subscription(String, STATUS_TOPIC,
                               lambda m: answers.append(json.loads(m.data)), status_qos())
    wait_until(lambda: pub.get_subscription_count() > 0, TIMEOUT_S, 'recorder control')
    calls: list[str] = []
    real = node._handle
    node._handle = lambda request: (calls.append(request['op']), real(request))[1]
    trial_dir = tmp_path / 'exp1' / 'trials' / 't1'
    start = {'id': 'a1', 'op': 'start', 'trial_dir': str(trial_dir),
             'meta': {'experiment_id': 'exp1', 'trial_id': 't1', 'revision_id': 'rev1',
                      'cell_id': 'cell_0', 'task': 'push_t', 'seed': 3}}
    for _ in range(2):
        pub.publish(String(data=json.dumps(start)))
    wait_until(lambda: sum(a['id'] == 'a1' for a in answers) == 2, TIMEOUT_S, 'two answers')
    assert calls == ['start'] and node.recorder.is_open
    stop = {'id': 'b2', 'op': 'stop', 'outcome': 'failure', 'reason': 'step limit',
            'steps': 0}
    for _ in range(2):
        pub.publish(String(data=json.dumps(stop)))
    wait_until(lambda: sum(a['id'] == 'b2' for a in answers) == 2, TIMEOUT_S, 'two answers')
    first, second = [a for a in answers if a['id'] == 'b2']
    assert calls == ['start', 'stop'] and first == second and first['ok']
    assert read_trial(trial_dir)['outcome'] == 'failure'


def test_the_client_resends_a_request_whose_answer_was_lost(ros, tmp_path):
    """A recorder that hears the first send but whose answer is lost answers the resend."""
    import json
    import time

    from std_msgs.msg import String

    from enpire_rollout.ros import recorder_node
    from enpire_rollout.ros.recorder_node import RecorderClient

    fake = ros.node('recorder', namespace='cell_0')
    status = fake.create_publisher(String, recorder_node.STATUS_TOPIC,
                                   recorder_node.status_qos())
    heard: list[str] = []

    def on_control(msg: String) -> None:
        request = json.loads(msg.data)
        heard.append(request['id'])
        if heard.count(request['id']) >= 2:        # the first answer is "lost"
            status.publish(String(data=json.dumps({
                'id': request['id'], 'ok': True, 'error': '', 'state': 'idle',
                'trial_dir': '', 'counts': {}, 'record': None})))

    fake.create_subscription(String, recorder_node.CONTROL_TOPIC, on_control, 10)
    helper = ros.node('rollout', namespace='cell_0')
    client = RecorderClient(helper, runs_root=tmp_path, timeout_s=TIMEOUT_S)
    t0 = time.monotonic()
    assert client.request('status')['ok']
    assert len(heard) == 2 and heard[0] == heard[1]      # one request, sent twice
    assert time.monotonic() - t0 >= recorder_node.RESEND_S * 0.9
