"""Reusable test helpers (shipped code, not test-only hacks): an in-process ROS harness.

``RosHarness`` owns a private rclpy Context and an executor spinning in a background thread,
so node tests never touch the global context and never sleep to synchronise.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node


class RosHarness:
    """A private Context + background executor. Use as a context manager."""

    def __init__(self, num_threads: int = 4) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=num_threads, context=self.context)
        self._nodes: list[Node] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # Shutdown races end the spin thread quietly.
        with contextlib.suppress(Exception):
            self.executor.spin()

    def add(self, node: Node) -> Node:
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, name: str, **kwargs: Any) -> Node:
        """Create and spin a plain helper node in this harness's context."""
        return self.add(Node(name, context=self.context, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        for node in self._nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)

    def __enter__(self) -> RosHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
               poll_s: float = 0.01) -> None:
    """Poll ``predicate`` until true; raise AssertionError naming ``what`` on timeout."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f'timed out after {timeout_s:.1f} s waiting for {what}')
