"""A minimal node for launch tests and smoke checks.

HeartbeatNode publishes ``heartbeat`` (std_msgs/String) at ``rate_hz`` with its fully
qualified name and a counter.

Parameters:
    rate_hz (float, Hz): publish rate, > 0. Default 5.0.
    message (str): text prefix of each heartbeat. Default "alive".
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from std_msgs.msg import String

from enpire_common.ros import run_node


class HeartbeatNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('heartbeat', **kwargs)
        rate_hz = float(self.declare_parameter('rate_hz', 5.0).value)
        if rate_hz <= 0:
            raise ValueError(f'rate_hz={rate_hz} is invalid: must be > 0')
        self._prefix = str(self.declare_parameter('message', 'alive').value)
        self._pub = self.create_publisher(String, 'heartbeat', 10)
        self._count = 0
        self.create_timer(1.0 / rate_hz, self._tick)

    def _tick(self) -> None:
        self._count += 1
        self._pub.publish(String(data=f'{self._prefix} {self.get_fully_qualified_name()} '
                                      f'{self._count}'))


def main(argv: list[str] | None = None) -> int:
    return run_node('heartbeat', HeartbeatNode, argv, executor='default')


if __name__ == '__main__':
    sys.exit(main())
