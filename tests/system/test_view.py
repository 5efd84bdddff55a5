"""``enpire view`` on a live cell: a Foxglove WebSocket client (the protocol the Foxglove app
speaks, foxglove.sdk.v1) subscribes the camera and state channels and receives them."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
CELL = 'cell_0'


async def _watch(url: str, topics: tuple[str, ...], run_trial: Any, want: dict[str, int],
                 timeout_s: float) -> tuple[dict[str, list[bytes]], dict[str, Any]]:
    import websockets

    got: dict[str, list[bytes]] = {t: [] for t in topics}
    async with websockets.connect(url, subprotocols=['foxglove.sdk.v1'],
                                  max_size=None) as ws:
        channels: dict[str, Any] = {}
        end = time.monotonic() + timeout_s
        while not all(t in channels for t in topics):     # advertised as they are discovered
            msg = json.loads(await asyncio.wait_for(ws.recv(), end - time.monotonic()))
            if msg['op'] == 'advertise':
                channels.update({c['topic']: c for c in msg['channels']})
        subs = {i: t for i, t in enumerate(topics)}
        await ws.send(json.dumps({'op': 'subscribe', 'subscriptions': [
            {'id': i, 'channelId': channels[t]['id']} for i, t in subs.items()]}))
        trial = asyncio.get_running_loop().run_in_executor(None, run_trial)
        while any(len(got[t]) < n for t, n in want.items()):
            frame = await asyncio.wait_for(ws.recv(), end - time.monotonic())
            if isinstance(frame, bytes) and frame[0] == 0x01:
                _op, sub_id, _t = struct.unpack_from('<BIQ', frame, 0)
                got[subs[sub_id]].append(frame[13:])
        await trial
    return got, channels


def test_a_foxglove_client_receives_the_camera_and_state_of_a_running_cell(sim_cell):
    from enpire_bringup.foxglove_view import FoxgloveView
    from enpire_rollout.core.bag import typestore

    state, image = f'/{CELL}/state', f'/{CELL}/camera/top/image_raw'

    def run_trial() -> None:
        env = {**os.environ, 'ENPIRE_HOME': str(sim_cell.home)}
        proc = subprocess.run(
            [sys.executable, '-m', 'enpire_bringup.cli', 'trial', 'run', '--task', 'push_t',
             '--policy', str(SCRIPTED), '--seeds', '3', '--max-episode-steps', '40',
             '--no-start', '--experiment', 'view', '--json'],
            env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]

    with FoxgloveView(CELL, port=0) as view:
        assert view.forwarded == {}          # nobody subscribed yet: nothing read from ROS
        got, channels = asyncio.run(_watch(view.url, (state, image), run_trial,
                                           {state: 20, image: 10}, timeout_s=240))
    assert channels[state]['schemaEncoding'] == 'ros2msg'
    assert channels[state]['encoding'] == 'cdr'
    assert channels[state]['schemaName'] == 'enpire_interfaces/msg/StateVector'
    store = typestore()
    ticks = [store.deserialize_cdr(b, 'enpire_interfaces/msg/StateVector').tick
             for b in got[state]]
    assert len(set(ticks)) >= 10, ticks     # live: the episode's ticks stream by
    frame = store.deserialize_cdr(got[image][-1], 'sensor_msgs/msg/Image')
    assert (frame.width, frame.height, frame.encoding) == (480, 480, 'rgb8')
    assert len(frame.data) == 480 * 480 * 3


def test_the_cell_shows_every_marker_namespace_its_tf_tree_and_the_verifier_overlay(sim_cell):
    """rviz's view of a cell: the markers node's namespaces, the TF tree, and the verifier's
    evidence overlay (drawn because this test subscribes it)."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import MarkerArray

    from enpire_common.testing import RosHarness, wait_until
    from enpire_rollout.core.markers import NAMESPACES

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    namespaces: set[str] = set()
    edges: set[tuple[str, str]] = set()
    overlays: list[Image] = []
    with RosHarness() as ros:
        node = ros.node('viewer', namespace=f'/{CELL}')
        node.create_subscription(MarkerArray, 'markers', lambda m: namespaces.update(
            x.ns for x in m.markers if x.ns), 5)
        def on_tf(m: TFMessage) -> None:
            edges.update((t.header.frame_id, t.child_frame_id) for t in m.transforms)

        node.create_subscription(TFMessage, 'tf', on_tf, 10)
        node.create_subscription(TFMessage, 'tf_static', on_tf, latched)
        node.create_subscription(Image, 'verifier/overlay/top', overlays.append, latched)
        env = {**os.environ, 'ENPIRE_HOME': str(sim_cell.home)}
        proc = subprocess.run(
            [sys.executable, '-m', 'enpire_bringup.cli', 'trial', 'run', '--task', 'push_t',
             '--policy', str(SCRIPTED), '--seeds', '4', '--max-episode-steps', '30',
             '--no-start', '--experiment', 'markers', '--json'],
            env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        wait_until(lambda: set(NAMESPACES) <= namespaces, 20.0,
                   f'every marker namespace (have {sorted(namespaces)})')
        wait_until(lambda: {('world', f'{CELL}/world'), (f'{CELL}/world', f'{CELL}/agent_0')}
                   <= edges, 20.0, f'the TF tree (have {sorted(edges)})')
        wait_until(lambda: overlays, 20.0, 'the verifier overlay')
    assert (overlays[-1].width, overlays[-1].height, overlays[-1].encoding) == \
        (480, 480, 'bgr8')
