"""The dashboard server: cells from ROS, the experiment from the store, a page over HTTP and
live updates over a WebSocket (starlette + uvicorn; every asset is served from this package,
nothing from the internet).

Costs to the cells: one node that reads each cell's latched ``cell_state`` and, only while a
browser is connected, one camera per cell (best-effort, depth 1). Camera frames are encoded
(JPEG) at the update rate, never per frame.

Slow clients: each browser has one slot holding the latest update; a new update replaces
an unsent one (counted in ``dropped``), so a stalled or slow browser costs one update's
memory and never holds up the producer, the store or the cells.

Control: read-only unless started with ``control=True``; then ``POST
/api/cells/<cell>/<pause|resume|home>`` with ``Authorization: Bearer <token>`` calls the
cell's verb. A missing or wrong token is answered 401 and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, EnpireError

STATIC = Path(__file__).resolve().parent / 'static'
CELL_VERBS = ('pause', 'resume', 'home')
#: Kernel send buffer of each browser's connection (an update with one camera: ~30 KB).
SEND_BUFFER_BYTES = 128 * 1024
MODES = {0: 'idle', 1: 'resetting', 2: 'running', 3: 'holding', 4: 'fault'}


class CellWatcher:
    """The cells on this ROS domain (every ``/<cell>/cell_state``) and their cameras."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self._context = Context()
        rclpy.init(context=self._context)
        self.node = Node('enpire_dashboard', context=self._context,
                         start_parameter_services=False)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._lock = threading.Lock()
        self.cells: dict[str, dict[str, Any]] = {}
        self._frames: dict[str, tuple[bytes, float]] = {}
        self._state_subs: dict[str, Any] = {}
        self._camera_subs: dict[str, Any] = {}
        self._camera_topic: dict[str, str] = {}
        self.want_cameras = False
        self._stop = threading.Event()
        self._last_discovery = 0.0
        self.node.create_timer(0.2, self._tick)
        self._thread = threading.Thread(target=self._spin, name='dashboard-ros', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self._context.ok():
            with contextlib.suppress(Exception):
                self._executor.spin_once(timeout_sec=0.1)

    def _tick(self) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from enpire_interfaces.msg import CellState

        if time.monotonic() - self._last_discovery >= 2.0:
            self._last_discovery = time.monotonic()
            topics = dict(self.node.get_topic_names_and_types())
            for name in topics:
                if not name.endswith('/cell_state') or name.count('/') != 2:
                    continue
                cell = name.split('/')[1]
                if cell in self._state_subs:
                    continue
                latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
                self._state_subs[cell] = self.node.create_subscription(
                    CellState, name, lambda m, c=cell: self._on_state(c, m), latched)
                cams = sorted(t for t in topics if t.startswith(f'/{cell}/camera/')
                              and t.endswith('/image_raw'))
                if cams:
                    self._camera_topic[cell] = cams[0]
        for cell, topic in self._camera_topic.items():
            if self.want_cameras and cell not in self._camera_subs:
                self._camera_subs[cell] = self.node.create_subscription(
                    Image, topic, lambda data, c=cell: self._on_frame(c, data),
                    QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT), raw=True)
            elif not self.want_cameras and cell in self._camera_subs:
                self.node.destroy_subscription(self._camera_subs.pop(cell))

    def _on_state(self, cell: str, msg: Any) -> None:
        with self._lock:
            self.cells[cell] = {
                'cell': cell, 'task': msg.task, 'mode': MODES.get(int(msg.mode), str(msg.mode)),
                'simulated': bool(msg.simulated), 'clock_mode': msg.clock_mode,
                'step': int(msg.step), 'episode': int(msg.episode), 'seed': int(msg.seed),
                'active_revision': msg.active_revision[:12], 'detail': msg.detail,
                'camera': self._camera_topic.get(cell, '')}

    def _on_frame(self, cell: str, data: bytes) -> None:
        with self._lock:
            self._frames[cell] = (bytes(data), time.time())

    def snapshot(self) -> tuple[list[dict[str, Any]], dict[str, tuple[bytes, float]]]:
        with self._lock:
            return ([dict(v) for _k, v in sorted(self.cells.items())], dict(self._frames))

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=2.0)
        with contextlib.suppress(Exception):
            self._executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        rclpy.try_shutdown(context=self._context)


def jpeg_data_url(raw: bytes, width: int = 320) -> str | None:
    """A small JPEG data URL of a serialized sensor_msgs/Image (rgb8 / bgr8 / mono8)."""
    import cv2
    import numpy as np
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    try:
        msg = deserialize_message(raw, Image)
        channels = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}[msg.encoding]
        img = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, channels)
    except Exception:  # noqa: BLE001 - an odd frame shows as no frame, never an error page
        return None
    if msg.encoding == 'rgb8':
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    h = max(1, round(img.shape[0] * width / img.shape[1]))
    ok, buf = cv2.imencode('.jpg', cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    return 'data:image/jpeg;base64,' + base64.b64encode(buf.tobytes()).decode() if ok else None


class _Client:
    """One browser: a one-update slot (see the module docstring)."""

    def __init__(self) -> None:
        self.latest: str | None = None
        self.ready = asyncio.Event()
        self.sent = 0
        self.dropped = 0

    def offer(self, payload: str) -> None:
        if self.latest is not None:
            self.dropped += 1
        self.latest = payload
        self.ready.set()


class Dashboard:
    """Serves the dashboard on ``host:port`` (port 0: any free one) until :meth:`stop`.

    Args:
        home: ENPIRE_HOME of the experiment store.
        experiment: the experiment shown ('' = the latest created, re-read as runs start).
        control: allow pause / resume / home with ``token`` (a random one if '').
        period_s: how often an update goes out.
    """

    def __init__(self, home: str | Path | None = None, host: str = '127.0.0.1',
                 port: int = 8080, experiment: str = '', control: bool = False,
                 token: str = '', period_s: float = 1.0, ros: bool = True) -> None:
        try:
            import uvicorn  # noqa: F401
            from starlette.applications import Starlette  # noqa: F401
        except ImportError:
            raise ConfigError('starlette and uvicorn are not installed: run scripts/setup.sh '
                              '(requirements.txt)') from None
        from enpire_common.paths import enpire_home

        self.home = Path(home) if home else enpire_home()
        self.experiment = experiment
        self.control = bool(control)
        self.token = (token or secrets.token_urlsafe(18)) if control else ''
        self.period_s = float(period_s)
        self.cells = CellWatcher() if ros else None
        self.updates = 0
        self._clients: set[_Client] = set()
        self._clients_lock = threading.Lock()     # the loop adds and removes, others read
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._store: Any = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this: a few updates in flight per browser at most, so
        # a slow one's backlog is dropped here (see _Client), not buffered by the kernel.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        try:
            self._sock.bind((host, int(port)))
        except OSError as exc:
            self._sock.close()
            if self.cells is not None:
                self.cells.close()
            raise ConfigError(f'cannot serve on {host}:{port}: {exc} (pick another --port)'
                              ) from None
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self._server = self._make_server()
        self._http = threading.Thread(target=self._serve, name='dashboard-http', daemon=True)
        self._http.start()
        self._producer = threading.Thread(target=self._produce, name='dashboard-updates',
                                          daemon=True)
        self._producer.start()
        end = time.monotonic() + 10.0
        while not self._server.started and time.monotonic() < end and self._http.is_alive():
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f'http://{self.host}:{self.port}/'

    # -- data --------------------------------------------------------------------------------
    def _experiment(self) -> dict[str, Any] | None:
        from enpire_bringup.dashboard.data import experiment_view, latest_experiment
        from enpire_evolution.core.config import DB_FILENAME
        from enpire_evolution.core.store import ExperimentStore

        if self._store is None and not (self.home / DB_FILENAME).exists():
            return None     # no experiment has run in this home yet
        try:
            if self._store is None:
                self._store = ExperimentStore.open(self.home)
            name = self.experiment or latest_experiment(self._store)
            return experiment_view(self._store, name) if name else None
        except EnpireError as exc:
            return {'error': str(exc)}

    def snapshot(self, frames: bool = True) -> dict[str, Any]:
        cells, raw = self.cells.snapshot() if self.cells is not None else ([], {})
        out: dict[str, Any] = {'ts': time.time(), 'cells': cells, 'control': self.control,
                               'experiment': self._experiment(), 'update': self.updates}
        if frames:
            out['frames'] = {c: url for c, (data, _t) in raw.items()
                             if (url := jpeg_data_url(data)) is not None}
            out['frame_age_s'] = {c: round(time.time() - t, 2) for c, (_d, t) in raw.items()}
        return out

    def _produce(self) -> None:
        while not self._stop.wait(self.period_s):
            clients = self._client_list()
            if self.cells is not None:
                self.cells.want_cameras = bool(clients)
            if not clients or self._loop is None:
                continue
            try:
                payload = json.dumps(self.snapshot())
            except Exception as exc:  # noqa: BLE001 - one bad update must not end the stream
                payload = json.dumps({'ts': time.time(), 'error': repr(exc)})
            self.updates += 1
            self._loop.call_soon_threadsafe(self._offer, payload)

    def _client_list(self) -> list[_Client]:
        with self._clients_lock:
            return list(self._clients)

    def _offer(self, payload: str) -> None:
        for client in self._client_list():
            client.offer(payload)

    def stats(self) -> dict[str, Any]:
        clients = self._client_list()
        return {'clients': len(clients), 'updates': self.updates,
                'sent': [c.sent for c in clients], 'dropped': [c.dropped for c in clients]}

    # -- web ---------------------------------------------------------------------------------
    def _make_server(self) -> Any:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import FileResponse, JSONResponse, Response
        from starlette.routing import Route, WebSocketRoute
        from starlette.websockets import WebSocket, WebSocketDisconnect

        async def index(_request: Any) -> Response:
            return FileResponse(STATIC / 'index.html', media_type='text/html')

        async def static(request: Any) -> Response:
            name = request.path_params['name']
            path = (STATIC / name).resolve()
            if path.parent != STATIC or not path.is_file():    # no escape from static/
                return JSONResponse({'error': 'not found'}, status_code=404)
            return FileResponse(path)

        async def snapshot(_request: Any) -> Response:
            return JSONResponse(await asyncio.to_thread(self.snapshot, False))

        async def command(request: Any) -> Response:
            cell, verb = request.path_params['cell'], request.path_params['verb']
            if not self.control:
                return JSONResponse({'error': 'this dashboard is read-only (start it with '
                                              '--control)'}, status_code=403)
            given = request.headers.get('authorization', '')
            want = f'Bearer {self.token}'
            if not hmac.compare_digest(given.encode(), want.encode()):
                return JSONResponse({'error': 'missing or wrong token'}, status_code=401,
                                    headers={'WWW-Authenticate': 'Bearer'})
            if verb not in CELL_VERBS:
                return JSONResponse({'error': f'unknown verb {verb!r}'}, status_code=404)
            from enpire_agent_bridge.ros.agent_client import cell_command

            try:
                out = await asyncio.to_thread(cell_command, cell, verb)
            except EnpireError as exc:
                return JSONResponse({'error': str(exc), 'code': exc.code}, status_code=502)
            return JSONResponse(out)

        async def live(ws: WebSocket) -> None:
            await ws.accept()
            client = _Client()
            with self._clients_lock:
                self._clients.add(client)
            try:
                while True:
                    await client.ready.wait()
                    client.ready.clear()
                    payload, client.latest = client.latest, None
                    if payload is not None:
                        await ws.send_text(payload)
                        client.sent += 1
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass
            finally:
                with self._clients_lock:
                    self._clients.discard(client)

        app = Starlette(routes=[
            Route('/', index), Route('/static/{name}', static),
            Route('/api/snapshot', snapshot),
            Route('/api/cells/{cell}/{verb}', command, methods=['POST']),
            WebSocketRoute('/ws', live)])
        config = uvicorn.Config(app, log_level='warning', lifespan='off',
                                ws='websockets-sansio')
        return uvicorn.Server(config)

    def _serve(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[self._sock])

        asyncio.run(main())

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._server.should_exit = True
        self._http.join(timeout=5.0)
        self._producer.join(timeout=5.0)
        if self.cells is not None:
            self.cells.close()
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(home: str | None, host: str, port: int, experiment: str, control: bool,
          token: str, duration_s: float | None = None, on_ready: Any = None
          ) -> dict[str, Any]:
    """Serve until Ctrl-C (or ``duration_s``)."""
    with Dashboard(home, host, port, experiment, control, token) as dash:
        if on_ready is not None:
            on_ready(dash)
        end = None if duration_s is None else time.monotonic() + duration_s
        with contextlib.suppress(KeyboardInterrupt):
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        return {'ok': True, 'url': dash.url, **dash.stats()}
