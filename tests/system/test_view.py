"""``enpire view`` on a live cell: a Foxglove WebSocket client (the protocol the Foxglove app
speaks, foxglove.sdk.v1) subscribes the camera and state channels and receives them."""

from __future__ import annotations

import asyncio
import contextlib
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


def _trial(home: Path, seed: int, steps: int, experiment: str) -> None:
    """One scripted Push-T trial on the module's running cell, through the CLI."""
    env = {**os.environ, 'ENPIRE_HOME': str(home)}
    proc = subprocess.run(
        [sys.executable, '-m', 'enpire_bringup.cli', 'trial', 'run', '--task', 'push_t',
         '--policy', str(SCRIPTED), '--seeds', str(seed), '--max-episode-steps', str(steps),
         '--no-start', '--experiment', experiment, '--json'],
        env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]


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
        _trial(sim_cell.home, seed=3, steps=40, experiment='view')

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
        # The cell learns of this viewer by DDS discovery, which took ~3 s here under load:
        # longer than a 30-step lockstep trial (~2 s). The agent's markers and TF need the
        # trial's state, so the trial starts once the markers node draws for this viewer and
        # reads the cell's state for it. (The overlay needs no wait: the verifier draws the
        # last call's overlay for a late subscriber.)
        wait_until(lambda: namespaces, 30.0, 'the markers node to draw for this viewer')
        wait_until(lambda: any(i.node_name == 'markers' for i in
                               node.get_subscriptions_info_by_topic(f'/{CELL}/state')),
                   30.0, "the markers node's state subscription")
        _trial(sim_cell.home, seed=4, steps=30, experiment='markers')
        wait_until(lambda: set(NAMESPACES) <= namespaces, 20.0,
                   f'every marker namespace (have {sorted(namespaces)})')
        wait_until(lambda: {('world', f'{CELL}/world'), (f'{CELL}/world', f'{CELL}/agent_0')}
                   <= edges, 20.0, f'the TF tree (have {sorted(edges)})')
        wait_until(lambda: overlays, 20.0, 'the verifier overlay')
    assert (overlays[-1].width, overlays[-1].height, overlays[-1].encoding) == \
        (480, 480, 'bgr8')


class _Browser:
    """Headless Chromium driven over the DevTools protocol (no driver package needed)."""

    def __init__(self, url: str, profile: Path) -> None:
        import shutil
        import socket

        exe = next((shutil.which(c) for c in ('chromium', 'chromium-browser', 'google-chrome')
                    if shutil.which(c)), None)
        if exe is None:
            pytest.skip('no Chromium here (scripts/setup.sh installs Debian chromium as root)')
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [exe, '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
             '--disable-background-networking', '--disable-component-update',
             f'--remote-debugging-port={port}', f'--user-data-dir={profile}',
             '--window-size=1400,1300', url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import urllib.request

        end = time.monotonic() + 30.0
        while True:
            try:
                pages = json.loads(urllib.request.urlopen(
                    f'http://127.0.0.1:{port}/json/list', timeout=2).read())
                page = next(p for p in pages if p.get('type') == 'page')
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > end:
                    raise
                time.sleep(0.3)
        from websockets.sync.client import connect

        self.ws = connect(page['webSocketDebuggerUrl'], max_size=None)
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({'id': self._id, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get('id') == self._id:
                assert 'error' not in msg, msg
                return msg['result']

    def js(self, expr: str) -> Any:
        out = self.call('Runtime.evaluate', expression=expr, returnByValue=True)
        return out['result'].get('value')

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self.call('Page.captureScreenshot')['data']))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_the_dashboard_follows_a_live_improve_run_in_headless_chromium(sim_cell, tmp_path):
    """During ``enpire improve``: the page's camera frame changes and its success curve
    gains points (screenshots under <home>/dashboard-shots); a stalled WebSocket client
    gets updates dropped, never queued, and the page still updates; a missing or wrong
    control token is refused 401 and pauses nothing."""
    import socket
    import urllib.error
    import urllib.request

    from enpire_bringup.dashboard.server import Dashboard

    shots = sim_cell.home / 'dashboard-shots'
    shots.mkdir(exist_ok=True)
    env = {**os.environ, 'ENPIRE_HOME': str(sim_cell.home)}
    improve = subprocess.Popen(
        [sys.executable, '-m', 'enpire_bringup.cli', 'improve', '--task', 'push_t', '--agent',
         'builtin', '--budget-min', '1.5', '--experiment', 'dash', '--no-report', '--json'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    browser = None
    try:
        with Dashboard(sim_cell.home, port=0, control=True, token='right-token',
                       period_s=0.5) as dash:
            browser = _Browser(dash.url, tmp_path / 'chrome')
            # a client that opens the WebSocket and then never reads (a small window)
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            stalled.connect(('127.0.0.1', dash.port))
            stalled.sendall(b'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n'
                            b'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n'
                            b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
            assert stalled.recv(12) == b'HTTP/1.1 101'
            page = 'window.enpireDashboard'

            def seen() -> dict[str, Any]:
                said = browser.js(f'{page} ? JSON.stringify({{u: {page}.updates, '
                                  f'p: {page}.points, f: {page}.frames["{CELL}"] || ""}}) '
                                  ': null')
                return json.loads(said) if said else {'u': 0, 'p': 0, 'f': ''}

            end = time.monotonic() + 120
            first = seen()
            while not (first['f'] and first['p'] >= 1):
                assert time.monotonic() < end, f'no frame and no curve point yet: {first}'
                time.sleep(1.0)
                first = seen()
            browser.screenshot(shots / 'first.png')
            # Until the page has had 10 more updates, a new frame and a new curve point (the
            # next trial's end: about 20 s on a calm machine), and the dashboard 40 updates,
            # some of them dropped for the stalled client: polled, so a loaded machine only
            # takes longer.
            end = time.monotonic() + 180

            def moved(second: dict[str, Any]) -> bool:
                stats = dash.stats()
                return (second['u'] > first['u'] + 10 and second['f'] != first['f']
                        and second['p'] > first['p'] and max(stats['dropped']) > 0
                        and stats['updates'] >= 40)

            second = seen()
            while not moved(second) and time.monotonic() < end:
                time.sleep(1.0)
                second = seen()
            browser.screenshot(shots / 'second.png')
            assert second['u'] > first['u'] + 10, (first['u'], second['u'])
            assert second['f'] != first['f'], 'the camera frame did not change'
            assert second['p'] > first['p'], (first['p'], second['p'])
            stats = dash.stats()
            assert max(stats['dropped']) > 0, stats      # the stalled client's, dropped
            assert stats['updates'] >= 40, stats         # the producer never waited on it
            stalled.close()
            # control: no token, a wrong one -> 401 and the cell keeps running
            for headers in ({}, {'Authorization': 'Bearer wrong-token'}):
                req = urllib.request.Request(f'{dash.url}api/cells/{CELL}/pause',
                                             method='POST', headers=headers)
                with pytest.raises(urllib.error.HTTPError) as err:
                    urllib.request.urlopen(req, timeout=10)
                assert err.value.code == 401
            time.sleep(2.0)
            cells = json.loads(urllib.request.urlopen(f'{dash.url}api/snapshot',
                                                      timeout=10).read())['cells']
            assert [c['mode'] for c in cells if c['cell'] == CELL] != ['paused']
    finally:
        if browser is not None:
            browser.close()
        improve.terminate()
        improve.communicate(timeout=60)
    print(f'dashboard screenshots: {shots}')
