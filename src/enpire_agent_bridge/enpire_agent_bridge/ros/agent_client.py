"""Thin ROS clients behind the agent verbs: switch_policy, cell status and cell commands.

Each call opens a private rclpy Context with one node in the cell's namespace, does one bounded
thing and closes it again, so a CLI process or the MCP server never keeps DDS state around.

Cell-side names (relative to ``/<cell>``):

* ``switch_policy`` (enpire_interfaces/srv/SwitchPolicy), served by the agent bridge node;
* ``pause_cell``, ``resume_cell``, ``home_cell``: services with an empty request whose response
  has ``success``/``ok`` and ``message``/``error_msg`` fields (std_srvs/Trigger-like); the type
  is taken from the graph, so the bridge node picks it;
* ``cell_state`` (enpire_interfaces/msg/CellState, latched) and ``policy/status``
  (std_msgs/String JSON, latched) for ``enpire cell status``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
import time
from typing import Any

from enpire_common.errors import CellUnavailableError, ConfigError, error_from_code

MODES = {0: 'idle', 1: 'resetting', 2: 'running', 3: 'holding', 4: 'fault'}
CELL_VERBS = ('pause', 'resume', 'home')
#: Servers ``cell status`` reports: name -> 'action' | 'service'.
SERVERS = {'run_trials': 'action', 'reset_cell': 'action', 'verify_success': 'service',
           'switch_policy': 'service'}


class _CellNode:
    """A node in ``/<cell>`` spinning in a private context on a background thread."""

    def __init__(self, cell: str) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        if not cell or '/' in cell.strip('/'):
            raise ConfigError(f"cell '{cell}' is invalid: give a namespace like cell_0")
        self.cell = cell.strip('/')
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node('enpire_agent_cli', namespace=f'/{self.cell}', context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # Shutdown races end the spin thread quietly.
        with contextlib.suppress(Exception):
            self._executor.spin()

    def services(self) -> dict[str, str]:
        """Fully qualified service name -> its first type."""
        return {name: types[0] for name, types in self.node.get_service_names_and_types()
                if types}

    def close(self) -> None:
        import rclpy

        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)

    def __enter__(self) -> _CellNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _absent(name: str, cell: str) -> CellUnavailableError:
    return CellUnavailableError(f'no {name} service on /{cell} (is the agent bridge running?)')


def _call(client: Any, request: Any, timeout_s: float, what: str) -> Any:
    from enpire_common.ros import wait_future

    return wait_future(client.call_async(request), timeout_s, what)


def switch_policy(cell: str, revision_id: str, revision_dir: str = '', *, strict: bool = True,
                  warmup_timeout_s: float = 10.0, wait_s: float = 3.0) -> dict[str, Any]:
    """Ask the cell's agent bridge to activate a revision (bounded waits).

    Raises:
        CellUnavailableError: no ``switch_policy`` service answered within ``wait_s``.
        SwitchFailedError (or the code the bridge returned): the switch failed.
    """
    from enpire_interfaces.srv import SwitchPolicy

    with _CellNode(cell) as cn:
        client = cn.node.create_client(SwitchPolicy, 'switch_policy')
        if not client.wait_for_service(timeout_sec=wait_s):
            raise _absent('switch_policy', cn.cell)
        req = SwitchPolicy.Request(
            revision_id=revision_id, revision_dir=revision_dir,
            strictness=SwitchPolicy.Request.STRICT if strict else SwitchPolicy.Request.BEST_EFFORT,
            timeout_s=float(warmup_timeout_s))
        res = _call(client, req, warmup_timeout_s + wait_s + 5.0, f'/{cn.cell}/switch_policy')
    if res.error_code or not res.ok:
        raise error_from_code(res.error_code or 404, res.error_msg or 'switch_policy failed')
    return {'ok': True, 'cell': cn.cell, 'active_revision': res.active_revision,
            'previous_revision': res.previous_revision,
            'switch_latency_s': round(float(res.switch_latency_s), 4)}


def cell_command(cell: str, verb: str, *, wait_s: float = 3.0,
                 timeout_s: float = 30.0) -> dict[str, Any]:
    """Call ``<verb>_cell`` (pause, resume, home) on the cell's bridge node.

    ``resume`` also calls the reset server's ``resume_resets``: a cell that paused itself
    after failed resets (an ``alerts`` reset_paused) resets again. Either server may be
    absent (a trial cell has no bridge); neither is an error.
    """
    if verb not in CELL_VERBS:
        raise ConfigError(f"cell verb '{verb}' is unknown (known: {', '.join(CELL_VERBS)})")
    names = [f'{verb}_cell'] + (['resume_resets'] if verb == 'resume' else [])
    messages = []
    with _CellNode(cell) as cn:
        end = time.monotonic() + wait_s
        found: dict[str, str] = {}
        while True:
            services = cn.services()
            found = {n: services[f'/{cn.cell}/{n}'] for n in names
                     if f'/{cn.cell}/{n}' in services}
            if len(found) == len(names) or time.monotonic() > end:
                break
            if found:   # one answers: give discovery of the other a moment, not all of wait_s
                end = min(end, time.monotonic() + 1.0)
            # Graph discovery is asynchronous; poll it briefly (bounded by wait_s).
            time.sleep(0.1)
        if not found:
            raise _absent(names[0], cn.cell)
        for name, srv_type in found.items():
            fq = f'/{cn.cell}/{name}'
            pkg, _, type_name = srv_type.split('/')
            srv = getattr(importlib.import_module(f'{pkg}.srv'), type_name)
            client = cn.node.create_client(srv, name)
            if not client.wait_for_service(timeout_sec=max(0.1, end - time.monotonic())):
                raise _absent(name, cn.cell)
            res = _call(client, srv.Request(), timeout_s, fq)
            ok = bool(getattr(res, 'success', getattr(res, 'ok', True)))
            msg = str(getattr(res, 'message', getattr(res, 'error_msg', '')))
            code = int(getattr(res, 'error_code', 0))
            if not ok or code:
                raise error_from_code(code or 200, msg or f'{fq} failed')
            messages.append(msg if len(found) == 1 else f'{name}: {msg}')
    return {'ok': True, 'cell': cn.cell, 'verb': verb, 'message': '; '.join(messages)}


def cell_status(cell: str, *, wait_s: float = 2.0) -> dict[str, Any]:
    """Mode, step, episode and active revision of a cell, and which servers answer.

    Waits up to ``wait_s`` for the latched ``cell_state`` and ``policy/status`` and for the
    graph to show the servers; whatever has not arrived by then is reported as absent.
    ``resets_paused`` / ``disk_low`` say why the cell waits for a person (from its last
    alerts: reset_paused until resumed, disk_low until disk_ok); '' when it does not.
    """
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from enpire_interfaces.msg import Alert, CellState

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    got: dict[str, Any] = {}
    alerts: list[dict[str, Any]] = []
    both = threading.Event()

    def on_alert(msg: Any) -> None:
        alerts.append({'kind': msg.kind, 'severity': int(msg.severity), 'source': msg.source,
                       'failures': int(msg.failures), 'detail': msg.detail,
                       'stamp_s': msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9})

    def on_state(msg: Any) -> None:
        got['state'] = msg
        if 'policy' in got:
            both.set()

    def on_policy(msg: Any) -> None:
        try:
            got['policy'] = json.loads(msg.data)
        except ValueError:
            got['policy'] = {'raw': msg.data}
        if 'state' in got:
            both.set()

    with _CellNode(cell) as cn:
        cn.node.create_subscription(CellState, 'cell_state', on_state, latched)
        cn.node.create_subscription(String, 'policy/status', on_policy, latched)
        cn.node.create_subscription(Alert, 'alerts', on_alert, QoSProfile(
            depth=20, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        both.wait(wait_s)
        servers = _servers(cn)
        if not all(servers.values()) and 'state' in got:
            # The cell is up; give discovery of the other servers a moment (bounded).
            end = time.monotonic() + min(1.0, wait_s)
            while not all(servers.values()) and time.monotonic() < end:
                time.sleep(0.1)
                servers = _servers(cn)
    st = got.get('state')
    recent = sorted(alerts, key=lambda a: a['stamp_s'])[-5:]
    # Resets are paused from a reset_paused alert until the next resumed one.
    last = next((a for a in reversed(recent) if a['kind'] in ('reset_paused', 'resumed')), None)
    paused = last['detail'] if last is not None and last['kind'] == 'reset_paused' else ''
    # The records disk is low from a disk_low alert until the next disk_ok one.
    disk = next((a for a in reversed(recent) if a['kind'] in ('disk_low', 'disk_ok')), None)
    disk_low = disk['detail'] if disk is not None and disk['kind'] == 'disk_low' else ''

    out: dict[str, Any] = {'ok': st is not None, 'cell': cn.cell, 'reachable': st is not None,
                           'servers': servers, 'policy': got.get('policy'),
                           'alerts': recent, 'resets_paused': paused, 'disk_low': disk_low}
    if st is not None:
        out.update({'task': st.task, 'mode': MODES.get(int(st.mode), str(st.mode)),
                    'simulated': bool(st.simulated), 'clock_mode': st.clock_mode,
                    'step': int(st.step), 'episode': int(st.episode), 'seed': int(st.seed),
                    'control_rate_hz': float(st.control_rate_hz),
                    'active_revision': st.active_revision, 'detail': st.detail})
    policy = got.get('policy') or {}
    if isinstance(policy, dict) and not out.get('active_revision'):
        out['active_revision'] = policy.get('revision_id', '')
    return out


def _servers(cn: _CellNode) -> dict[str, bool]:
    names = set(cn.services())
    out = {}
    for name, kind in SERVERS.items():
        fq = f'/{cn.cell}/{name}'
        out[name] = (f'{fq}/_action/send_goal' in names) if kind == 'action' else fq in names
    return out
