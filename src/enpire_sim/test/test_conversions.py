from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from enpire_common.image_msgs import image_to_rgb, rgb_to_image
from enpire_sim.ros import conversions as conv


@pytest.mark.parametrize(('shape', 'frame_id', 't_s'), [
    ((480, 480, 3), 'top_camera', 12.3),
    ((5, 7, 3), '', 0.0),
    ((2, 3, 3), 'abc', 1e9 + 0.5),
    ((3, 5, 3), 'ab', 7.7),
])
def test_image_cdr_deserializes_to_the_message_rgb_to_image_builds(shape, frame_id, t_s):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    stamp = conv.time_msg(t_s)
    expected = rgb_to_image(img, stamp, frame_id)
    data = conv.image_cdr(img, stamp, frame_id)
    assert isinstance(data, bytes)
    assert len(data) == len(serialize_message(expected))
    msg = deserialize_message(data, Image)
    assert msg == expected
    assert np.array_equal(image_to_rgb(msg), img)
