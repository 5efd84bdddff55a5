from __future__ import annotations

import threading

import numpy as np
import pytest

from enpire_common.ros import LATEST_QOS, call_service
from enpire_common.testing import wait_until

pytestmark = pytest.mark.ros


def test_service_judges_a_published_frame_and_survives_a_bad_one(ros, frames):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from enpire_common.image_msgs import rgb_to_image
    from enpire_interfaces.msg import Verdict as VerdictMsg
    from enpire_interfaces.srv import VerifySuccess
    from enpire_reward.ros.verifier_node import VerifierNode

    node = ros.add(VerifierNode(context=ros.context))
    client_node = ros.node('verify_client')
    pub = client_node.create_publisher(Image, 'camera/top/image_raw', LATEST_QOS)
    got: list = []
    seen = threading.Event()
    client_node.create_subscription(VerdictMsg, 'verdicts',
                                    lambda m: (got.append(m), seen.set()), 10)
    client = client_node.create_client(VerifySuccess, 'verify_success')
    img, gt = frames[0]

    wait_until(lambda: pub.get_subscription_count() > 0, 10.0, 'verifier subscription')
    pub.publish(rgb_to_image(img))
    wait_until(lambda: 'top' in node._frames, 10.0, 'frame received')
    res = call_service(client, VerifySuccess.Request(goal='success'), 10.0, 'verify_success')
    assert res.error_code == 0, res.error_msg
    assert [v.view for v in res.verdicts] == ['top', 'fused']
    assert abs(res.score - gt.coverage) < 0.03
    assert seen.wait(5.0)

    bad = rgb_to_image(img)
    bad.encoding = 'mono8'
    pub.publish(bad)
    wait_until(lambda: deserialize_message(node._frames['top'][0], Image).encoding == 'mono8',
               10.0, 'bad frame received')
    res = call_service(client, VerifySuccess.Request(), 10.0, 'verify_success')
    assert res.error_code == 501
    assert 'mono8' in res.error_msg

    res = call_service(client, VerifySuccess.Request(views=['side']), 10.0, 'verify_success')
    assert res.error_code == 502
    _ = np  # keeps the import used for readers extending the test


def test_a_viewer_that_subscribes_after_a_call_gets_that_calls_overlay(ros, frames):
    """Discovery takes seconds: rviz opened after a verification still shows its evidence."""
    from sensor_msgs.msg import Image

    from enpire_common.image_msgs import rgb_to_image
    from enpire_interfaces.srv import VerifySuccess
    from enpire_reward.ros.verifier_node import VerifierNode

    node = ros.add(VerifierNode(context=ros.context))
    client_node = ros.node('verify_client')
    pub = client_node.create_publisher(Image, 'camera/top/image_raw', LATEST_QOS)
    client = client_node.create_client(VerifySuccess, 'verify_success')
    wait_until(lambda: pub.get_subscription_count() > 0, 10.0, 'verifier subscription')
    pub.publish(rgb_to_image(frames[0][0]))
    wait_until(lambda: 'top' in node._frames, 10.0, 'frame received')
    res = call_service(client, VerifySuccess.Request(goal='success'), 10.0, 'verify_success')
    assert res.error_code == 0, res.error_msg
    assert node.overlay_pubs['top'].get_subscription_count() == 0   # nobody looked: not drawn

    overlays: list = []
    viewer = ros.node('viewer')
    viewer.create_subscription(Image, 'verifier/overlay/top', overlays.append, LATEST_QOS)
    wait_until(lambda: overlays, 10.0, "the last call's overlay")
    assert (overlays[0].width, overlays[0].height, overlays[0].encoding) == (
        frames[0][0].shape[1], frames[0][0].shape[0], 'bgr8')
