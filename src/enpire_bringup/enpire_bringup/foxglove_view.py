"""``enpire view``: a cell's live topics over the Foxglove WebSocket protocol (foxglove-sdk).

The Foxglove app (Open connection -> Foxglove WebSocket -> ``ws://HOST:PORT``) sees every
topic of ``/<cell>`` (cameras, state, commands, verdicts, safety events, alerts, and an arm
cell's joint states, TF and robot description) with its ``ros2msg`` schema, and the layout
``config/foxglove/<task>.json`` arranges them.

Cost to the cell: a ROS topic is subscribed only while some Foxglove client subscribes its
channel, so an open viewer nobody looks at costs nothing; messages are forwarded as the CDR
bytes they arrived in (raw subscriptions, never deserialized); sensor streams (images,
state, commands) are read best-effort with depth 1, so a slow or stalled viewer drops
frames instead of back-pressuring the camera's writer. Topics that appear later (a cell
started after the viewer) are advertised as they show up.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from enpire_common.errors import ConfigError

#: Streams read best-effort, depth 1 (see the module docstring); ``image_raw/compressed``:
#: a replayed trial bag's camera frames (``RecorderConfig.bag_images``).
SENSOR_SUFFIXES = ('image_raw', 'image_raw/compressed', 'state', 'command', 'joint_states',
                   'ee_pose', '/tf')
#: How often the ROS graph is read for new topics, seconds.
DISCOVERY_PERIOD_S = 2.0


def ros2msg_schema(type_name: str) -> str | None:
    """The ``ros2msg`` schema text (dependencies appended, as MCAP and Foxglove expect) of
    ``pkg/msg/Type``; None for a type the typestore does not know."""
    from enpire_rollout.core.bag import typestore

    try:
        text, _ = typestore().generate_msgdef(type_name, ros_version=2)
    except Exception:  # noqa: BLE001 - rosbags raises its own errors for unknown types
        return None
    return text


class _Listener:
    """foxglove-sdk server listener: counts each channel's subscribed clients."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self.clients: dict[int, set[int]] = {}
        self._changed = changed

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.clients.setdefault(int(channel.id), set()).add(int(client.id))
        self._changed()

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.clients.get(int(channel.id), set()).discard(int(client.id))
        self._changed()

    def wanted(self) -> set[int]:
        with self._lock:
            return {cid for cid, clients in self.clients.items() if clients}


class FoxgloveView:
    """Serves ``/<cell>``'s topics on a Foxglove WebSocket server until :meth:`stop`.

    Args:
        cell: the cell namespace (``cell_0``).
        host, port: where the server listens (port 0: any free port, see :attr:`port`).
        include: extra absolute topics served besides ``/<cell>/...`` (``/clock``).
    """

    def __init__(self, cell: str = 'cell_0', host: str = '127.0.0.1', port: int = 8765,
                 include: tuple[str, ...] = ('/clock',)) -> None:
        try:
            import foxglove
        except ImportError:
            raise ConfigError('foxglove-sdk is not installed: run scripts/setup.sh (it is in '
                              'requirements.txt)') from None
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.cell = cell.strip('/')
        if not self.cell or '/' in self.cell:
            raise ConfigError(f"cell '{cell}' is invalid: give its namespace, e.g. cell_0")
        self.include = tuple(include)
        self._foxglove = foxglove
        self._lock = threading.Lock()
        self._channels: dict[str, Any] = {}          # topic -> foxglove Channel
        self._types: dict[str, str] = {}             # topic -> pkg/msg/Type
        self._subs: dict[str, Any] = {}              # topic -> rclpy subscription
        self.forwarded: dict[str, int] = {}          # topic -> messages sent on
        self._dirty = threading.Event()
        self._listener = _Listener(self._dirty.set)
        try:
            self._server = foxglove.start_server(name=f'enpire {self.cell}', host=host,
                                                 port=int(port),
                                                 server_listener=self._listener)
        except RuntimeError as exc:
            raise ConfigError(f'cannot serve on {host}:{port}: {exc} (another viewer? pick '
                              'another --port)') from None
        self.host = host
        self._context = Context()
        rclpy.init(context=self._context)
        self._node = Node('enpire_view', namespace=f'/{self.cell}', context=self._context,
                          start_parameter_services=False)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._stop = threading.Event()
        self._last_discovery = 0.0
        self._node.create_timer(0.1, self._tick)
        self._thread = threading.Thread(target=self._spin, name='enpire-view', daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.port)

    @property
    def url(self) -> str:
        return f'ws://{self.host}:{self.port}'

    def topics(self) -> dict[str, str]:
        """The topics advertised so far: name -> type."""
        with self._lock:
            return dict(self._types)

    # -- the ROS side (executor thread) ------------------------------------------------------
    def _spin(self) -> None:
        while not self._stop.is_set() and self._context.ok():
            with contextlib.suppress(Exception):
                self._executor.spin_once(timeout_sec=0.1)

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_discovery >= DISCOVERY_PERIOD_S:
            self._last_discovery = now
            self._discover()
        if self._dirty.is_set():
            self._dirty.clear()
            self._apply_subscriptions()

    def _served(self, topic: str) -> bool:
        return topic.startswith(f'/{self.cell}/') or topic in self.include

    def _discover(self) -> None:
        from foxglove import Channel, Schema

        for topic, types in self._node.get_topic_names_and_types():
            if not self._served(topic) or topic in self._channels or len(types) != 1 \
                    or '/_action/' in topic or topic.endswith(('/rosout', 'parameter_events')):
                continue
            schema = ros2msg_schema(types[0])
            if schema is None:
                continue
            channel = Channel(topic, message_encoding='cdr', schema=Schema(
                name=types[0], encoding='ros2msg', data=schema.encode()))
            with self._lock:
                self._channels[topic], self._types[topic] = channel, types[0]

    def _qos(self, topic: str) -> Any:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        pubs = self._node.get_publishers_info_by_topic(topic)
        if pubs and all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                        for p in pubs) and not topic.endswith(SENSOR_SUFFIXES):
            return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
        if topic.endswith(SENSOR_SUFFIXES):
            return QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    def _apply_subscriptions(self) -> None:
        from enpire_bringup.introspect import import_message

        wanted = self._listener.wanted()
        with self._lock:
            channels = dict(self._channels)
        for topic, channel in channels.items():
            want = int(channel.id()) in wanted
            if want and topic not in self._subs:
                try:
                    cls = import_message(self._types[topic])
                except ConfigError:
                    continue
                self._subs[topic] = self._node.create_subscription(
                    cls, topic, lambda data, c=channel, t=topic: self._forward(c, t, data),
                    self._qos(topic), raw=True)
            elif not want and topic in self._subs:
                self._node.destroy_subscription(self._subs.pop(topic))

    def _forward(self, channel: Any, topic: str, data: bytes) -> None:
        channel.log(bytes(data), log_time=time.time_ns())
        self.forwarded[topic] = self.forwarded.get(topic, 0) + 1

    # -- lifetime ----------------------------------------------------------------------------
    def stop(self) -> None:
        import rclpy

        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        with contextlib.suppress(Exception):
            self._server.stop()
        with contextlib.suppress(Exception):
            self._executor.shutdown(timeout_sec=1.0)
            self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)

    def __enter__(self) -> FoxgloveView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(cell: str, host: str, port: int, duration_s: float | None = None,
          on_ready: Callable[[FoxgloveView], None] | None = None) -> dict[str, Any]:
    """Serve until Ctrl-C (or ``duration_s``); returns what was served."""
    with FoxgloveView(cell, host, port) as view:
        if on_ready is not None:
            on_ready(view)
        end = None if duration_s is None else time.monotonic() + duration_s
        with contextlib.suppress(KeyboardInterrupt):
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        return {'ok': True, 'cell': view.cell, 'url': view.url, 'topics': view.topics(),
                'forwarded': dict(view.forwarded)}
