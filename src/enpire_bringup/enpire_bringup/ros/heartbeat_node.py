"""A minimal node for launch tests and smoke checks.

HeartbeatNode publishes ``heartbeat`` (std_msgs/String) at ``rate_hz`` with its fully
qualified name and a counter.

Parameters:
    rate_hz (float, Hz): publish rate, > 0. Default 5.0.
    message (str): text prefix of each heartbeat. Default "alive".
    ignore_signals (bool): for launch tests: ignore SIGINT and SIGTERM (process-wide), so
        that only SIGKILL ends the node. Default false.
    stray_child (bool): for launch tests: start a process in a session of its own that
        ignores SIGINT, SIGTERM and SIGHUP and sleeps forever (a leaked grandchild; ending it
        is the launcher's business). Default false.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from rclpy.node import Node
from std_msgs.msg import String

from enpire_common.ros import run_node

_STRAY = ('import signal, time\n'
          'for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n'
          '    signal.signal(s, signal.SIG_IGN)\n'
          'while True:\n'
          '    time.sleep(3600)\n')


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
        if bool(self.declare_parameter('ignore_signals', False).value):
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            self.get_logger().info('ignoring SIGINT and SIGTERM')
        self._stray: subprocess.Popen | None = None
        if bool(self.declare_parameter('stray_child', False).value):
            self._stray = subprocess.Popen(
                [sys.executable, '-I', '-S', '-c', _STRAY], stdin=subprocess.DEVNULL,
                start_new_session=True)
            self.get_logger().info(f'started a stray child pid={self._stray.pid}')

    def _tick(self) -> None:
        self._count += 1
        self._pub.publish(String(data=f'{self._prefix} {self.get_fully_qualified_name()} '
                                      f'{self._count}'))


def main(argv: list[str] | None = None) -> int:
    return run_node('heartbeat', HeartbeatNode, argv, executor='default')


if __name__ == '__main__':
    sys.exit(main())
