from __future__ import annotations

import threading

import pytest
from std_msgs.msg import String

from enpire_bringup.ros.heartbeat_node import HeartbeatNode


@pytest.mark.ros
def test_heartbeat_publishes_its_fully_qualified_name(ros):
    ros.add(HeartbeatNode(context=ros.context, namespace='cell_3',
                          parameter_overrides=[]))
    got: list[str] = []
    done = threading.Event()
    listener = ros.node('listener')

    def on_msg(msg: String) -> None:
        got.append(msg.data)
        done.set()

    listener.create_subscription(String, '/cell_3/heartbeat', on_msg, 10)
    assert done.wait(10.0), 'no heartbeat within 10 s'
    assert got[0].startswith('alive /cell_3/heartbeat ')
