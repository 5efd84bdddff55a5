"""Camera frames in trial bags (``RecorderConfig.bag_images``): written as image_transport's
``image_raw/compressed`` CompressedImage (jpeg, png) or as the raw Image, and read back alike
by every bag reader (episodes, labelling frames, replay); a frame that does not decode is a
clear error or a skip with a note, never a crash."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from enpire_common.clock import FakeClock
from enpire_common.errors import BadImageError, ConfigError
from enpire_common.images import rgb_from_compressed
from enpire_rollout.core.bag import bag_info, serialize, typestore
from enpire_rollout.core.config import RecorderConfig
from enpire_rollout.core.episodes import EpisodeError, read_episode
from enpire_rollout.core.frames import TrialFrames, last_bag_frames
from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta
from enpire_rollout.replay import decode_image, read_messages

H, W = 48, 64
N = 6
RAW = '/cell_0/camera/top/image_raw'
COMPRESSED = RAW + '/compressed'


def scene(i: int) -> np.ndarray:
    """A camera-like frame: a smooth gradient, a coloured block that moves, mild noise."""
    y, x = np.mgrid[0:H, 0:W]
    frame = np.stack([x * 255 // W, y * 255 // H, np.full_like(x, 60)], axis=-1)
    frame[10:30, 5 + 4 * i:25 + 4 * i] = (200, 40, 30)
    noise = np.random.default_rng(i).integers(-2, 3, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def _header(ns: int, frame_id: str = '') -> dict:
    return {'stamp': {'sec': ns // 1_000_000_000, 'nanosec': ns % 1_000_000_000},
            'frame_id': frame_id}


def record(trial_dir: Path, bag_images: str, n: int = N, corrupt: int | None = None) -> Path:
    """A trial whose frames go through ``write_image`` (the recorder node's path) with
    ``bag_images``; frame ``corrupt`` (if given) is a CompressedImage whose data is not a
    JPEG, written directly (what a damaged or hostile bag holds)."""
    clock = FakeClock(10.0)
    rec = EpisodeRecorder(RecorderConfig(bag_images=bag_images), clock=clock,
                          wall_clock=FakeClock(1.7e9))
    rec.open(trial_dir, TrialMeta('exp1', trial_dir.name, 'rev1', 'cell_0', 'push_t'))
    for i in range(n):
        ns = int(round(clock.now_s() * 1e9))
        frame = scene(i)
        if i == corrupt:
            rec.write(COMPRESSED, 'sensor_msgs/msg/CompressedImage', ns,
                      {'header': _header(ns, 'top'), 'format': 'rgb8; jpeg compressed bgr8',
                       'data': b'\xff\xd8\xff\xe0 not really a jpeg'})
            rec.write_frame('top', ns, frame)
        else:
            cdr = serialize('sensor_msgs/msg/Image', {
                'header': _header(ns, 'top'), 'height': H, 'width': W, 'encoding': 'rgb8',
                'step': W * 3, 'data': frame.tobytes()})
            rec.write_image(RAW, 'top', ns, cdr)
        rec.write('/cell_0/state', 'enpire_interfaces/msg/StateVector', ns,
                  {'header': _header(ns), 'tick': i, 'names': ['x'], 'values': [float(i)]})
        rec.write('/cell_0/command', 'enpire_interfaces/msg/Command', ns,
                  {'header': _header(ns), 'tick': i, 'action': [1.0, 2.0]})
        clock.advance(0.1)
    rec.close('success', success=True, score=1.0, steps=n)
    return trial_dir


def _close(got: np.ndarray, want: np.ndarray, bag_images: str) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    if bag_images == 'jpeg':
        assert np.abs(got.astype(int) - want).mean() < 4.0   # of 255: the noise, mostly
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('bag_images', ['jpeg', 'png'])
def test_frames_are_bagged_as_compressed_images_in_image_transports_topic_and_format(
        tmp_path, bag_images):
    trial_dir = record(tmp_path / 't1', bag_images)
    info = bag_info(trial_dir)
    assert info['consistent'], info['errors']
    assert {t: (e['type'], e['count']) for t, e in info['topics'].items()
            if 'camera' in t} == {COMPRESSED: ('sensor_msgs/msg/CompressedImage', N)}
    msgs = [m for m in read_messages(trial_dir) if m.topic == COMPRESSED]
    for i, m in enumerate(msgs):
        msg = typestore().deserialize_cdr(m.data, m.msgtype)
        # What ROS's compressed_image_transport writes for an rgb8 Image.
        assert msg.format == f'rgb8; {bag_images} compressed bgr8'
        assert msg.header.frame_id == 'top' and msg.header.stamp.sec == 10
        _close(rgb_from_compressed(msg.format, msg.data), scene(i), bag_images)
    import json

    record_ = json.loads((trial_dir / 'trial.json').read_text())
    stream = record_['streams']['camera/top/image_raw/compressed']
    assert (stream['msgtype'], stream['count'], stream['expected']) == \
        ('sensor_msgs/msg/CompressedImage', N, N)
    assert 'camera/top/image_raw' not in record_['streams']
    assert record_['videos']['top']['frames'] == N


def test_raw_keeps_the_image_itself_on_image_raw(tmp_path):
    trial_dir = record(tmp_path / 't1', 'raw')
    msgs = [m for m in read_messages(trial_dir) if 'camera' in m.topic]
    assert {(m.topic, m.msgtype) for m in msgs} == {(RAW, 'sensor_msgs/msg/Image')}
    for i, m in enumerate(msgs):
        msg = typestore().deserialize_cdr(m.data, m.msgtype)
        assert (msg.encoding, msg.height, msg.width) == ('rgb8', H, W)
        np.testing.assert_array_equal(msg.data.reshape(H, W, 3), scene(i))


def test_the_recorder_config_refuses_unknown_image_forms_and_qualities():
    assert (RecorderConfig().bag_images, RecorderConfig().jpeg_quality) == ('jpeg', 90)
    with pytest.raises(ConfigError, match="bag_images='gif' is invalid: must be one of "
                                          'jpeg, png, raw'):
        RecorderConfig(bag_images='gif')
    for bad in (0, 101):
        with pytest.raises(ConfigError, match=f'jpeg_quality={bad} is invalid'):
            RecorderConfig(jpeg_quality=bad)


@pytest.mark.parametrize('bag_images', ['raw', 'png', 'jpeg'])
def test_episodes_and_final_frames_read_raw_and_compressed_bags_alike(tmp_path, bag_images):
    trial_dir = record(tmp_path / 't1', bag_images)
    episode = read_episode(trial_dir)
    assert episode.views == {'top': (H, W)}
    frames = list(episode.frames('top'))
    assert len(frames) == N
    for i, frame in enumerate(frames):
        _close(frame, scene(i), bag_images)
    stamp_ns, last = last_bag_frames(trial_dir, ['top'])['top']
    assert stamp_ns == int(10.5e9)
    _close(last, scene(N - 1), bag_images)


@pytest.mark.parametrize('bag_images', ['png', 'jpeg'])
def test_replay_turns_a_compressed_frame_into_the_image_the_camera_published(tmp_path,
                                                                             bag_images):
    trial_dir = record(tmp_path / 't1', bag_images)
    msgs = [m for m in read_messages(trial_dir) if m.topic == COMPRESSED]
    image = decode_image(msgs[2])
    assert (image.topic, image.msgtype, image.stamp_ns) == \
        (RAW, 'sensor_msgs/msg/Image', msgs[2].stamp_ns)
    msg = typestore().deserialize_cdr(image.data, image.msgtype)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ('rgb8', H, W, W * 3)
    assert msg.header.frame_id == 'top'
    _close(msg.data.reshape(H, W, 3), scene(2), bag_images)


def test_a_corrupt_compressed_frame_is_a_clear_error_or_a_noted_skip(tmp_path):
    trial_dir = record(tmp_path / 'exp1' / 'trials' / 'bad', 'jpeg', corrupt=N - 1)
    msgs = [m for m in read_messages(trial_dir) if m.topic == COMPRESSED]
    corrupt = typestore().deserialize_cdr(msgs[-1].data, msgs[-1].msgtype)
    with pytest.raises(BadImageError, match=r"compressed image \('rgb8; jpeg compressed "
                                            r"bgr8', 22 bytes\) does not decode as jpeg"):
        rgb_from_compressed(corrupt.format, corrupt.data)
    # Episodes: the trial is refused with the frame named (dataset export skips it).
    episode = read_episode(trial_dir)
    with pytest.raises(EpisodeError, match=r"image of view 'top' at 10500000000 ns cannot be "
                                           'decoded: compressed image'):
        list(episode.frames('top'))
    # Replay: the frame is refused (replay_bag publishes it compressed only, with a warning).
    with pytest.raises(BadImageError, match='does not decode as jpeg'):
        decode_image(msgs[-1])
    # Labelling: the bag's last frame does not decode, so the MP4's is asked about instead.
    with pytest.raises(BadImageError, match='does not decode as jpeg'):
        last_bag_frames(trial_dir, ['top'])
    pytest.importorskip('av')
    frames = list(TrialFrames([tmp_path], 'push_t', ['top']))
    assert [(f.trial_id, f.source) for f in frames] == [('bad', 'mp4')]


def test_a_compressed_first_frame_that_does_not_decode_refuses_the_episode(tmp_path):
    trial_dir = record(tmp_path / 't1', 'jpeg', corrupt=0)
    with pytest.raises(EpisodeError, match=r"t1: image of view 'top' at 10000000000 ns cannot "
                                           'be decoded: compressed image'):
        read_episode(trial_dir)


@pytest.mark.ros
def test_replay_bag_publishes_the_decoded_image_on_image_raw(ros, tmp_path):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from enpire_common.image_msgs import image_to_rgb
    from enpire_common.testing import wait_until
    from enpire_rollout.replay import replay_bag

    trial_dir = record(tmp_path / 't1', 'png')
    got: dict[str, list] = {'image': [], 'compressed': []}
    node = ros.node('replay_listener')
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(Image, '/replay' + RAW, got['image'].append, latched)
    node.create_subscription(CompressedImage, '/replay' + COMPRESSED, got['compressed'].append,
                             latched)
    stats = replay_bag(trial_dir, rate=0, prefix='/replay', wait_subscribers_s=10.0,
                       topics=lambda t: t.endswith('camera/top/image_raw'),
                       stop=threading.Event())
    assert stats.topics == {COMPRESSED: N, RAW: N} and stats.warnings == []
    wait_until(lambda: got['image'] and got['compressed'], 10.0, 'the replayed frames')
    wait_until(lambda: got['image'][-1].header.stamp.nanosec == 500_000_000, 10.0,
               'the last replayed frame')
    np.testing.assert_array_equal(image_to_rgb(got['image'][-1]), scene(N - 1))
    assert got['compressed'][-1].format == 'rgb8; png compressed bgr8'
