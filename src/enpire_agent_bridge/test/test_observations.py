"""The shared observation building of the hosting nodes (messages only, no node)."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from enpire_agent_bridge.ros import conversions as conv
from enpire_agent_bridge.ros.observations import CameraFrames, TaskObservations
from enpire_common.errors import BadImageError, CellError
from enpire_common.tasks import load_task
from enpire_interfaces.msg import StateVector


def image(sec: int, px: int = 4, encoding: str = 'rgb8') -> Image:
    msg = Image(height=px, width=px, encoding=encoding, step=px * 3)
    msg.header.stamp = conv.Time(sec=sec, nanosec=0)
    msg.data = bytes(range(px * px * 3))
    return msg


def state(tick: int, sec: int, names=('x', 'y', 'vx', 'vy')) -> StateVector:
    msg = StateVector(tick=tick, names=list(names), values=[1.0, 2.0, 3.0, 4.0])
    msg.header.stamp = conv.Time(sec=sec, nanosec=0)
    return msg


@pytest.mark.parametrize(('frame_s', 'state_s', 'max_age_s', 'served'), [
    (5, 5, 0.0, True),      # the frame of the same tick
    (4, 5, 0.0, False),     # an older frame: wait for the next
    (4, 5, 1.0, True),      # ...unless it is recent enough
    (6, 5, 0.0, True),      # a newer frame serves an older state
])
def test_a_state_is_served_with_a_frame_recent_enough(frame_s, state_s, max_age_s, served):
    frames = CameraFrames(max_age_s)
    assert frames.for_state(state(1, state_s)) is None
    frames.update(image(frame_s))
    assert (frames.for_state(state(1, state_s)) is not None) == served


def test_a_frame_of_an_unsupported_encoding_is_refused():
    with pytest.raises(BadImageError, match="encoding '16UC1' is not supported"):
        CameraFrames(0.0).update(image(1, encoding='16UC1'))


def test_the_observation_names_the_spec_fields():
    observations = TaskObservations(load_task('push_t'))
    assert observations.image_topic == 'camera/top/image_raw'
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    obs = observations.build(state(7, 1), frame, retry_index=2)
    assert set(obs) == {'image_top', 'agent_pos', 'agent_vel', 'step', 'retry_index'}
    assert obs['agent_pos'].tolist() == [1.0, 2.0] and obs['agent_vel'].tolist() == [3.0, 4.0]
    assert (obs['step'], obs['retry_index'], obs['image_top'] is frame) == (7, 2, True)
    with pytest.raises(CellError):
        observations.build(state(7, 1, names=('a', 'b', 'c', 'd')), frame)


def test_hold_commands_the_last_agent_position_within_the_bounds():
    observations = TaskObservations(load_task('push_t'))
    msg = StateVector(tick=1, names=['x', 'y', 'vx', 'vy'], values=[10.0, 600.0, 0.0, 0.0])
    obs = observations.build(msg, np.zeros((4, 4, 3), dtype=np.uint8))
    assert observations.hold(obs).tolist() == [10.0, 512.0]


def test_a_subscription_logs_a_bad_frame_and_keeps_the_last_good_one():
    logged: list[str] = []

    class Logger:
        def error(self, message: str, **_kw: object) -> None:
            logged.append(message)

    frames = CameraFrames(0.0)
    assert frames.receive(image(1), Logger())
    assert not frames.receive(image(2, encoding='16UC1'), Logger())
    assert len(logged) == 1 and 'not supported' in logged[0]
    assert frames.for_state(state(1, 1)) is not None
