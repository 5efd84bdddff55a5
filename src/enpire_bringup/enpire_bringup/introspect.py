"""Introspection behind ``enpire graph``, ``enpire topic echo`` and ``enpire doctor``.

These work with the rclpy wheels alone (no ros2cli). Actions are derived from the hidden
``<name>/_action/...`` topics and services every action server/client creates.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from enpire_common.errors import ConfigError, EnpireTimeoutError

_ACTION_MARK = '/_action/'


@contextlib.contextmanager
def _graph_node(name: str) -> Iterator[Any]:
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    context = Context()
    rclpy.init(context=context)
    node = Node(f'{name}_{os.getpid()}', context=context,
                start_parameter_services=False, enable_rosout=False)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def derive_actions(topics: dict[str, list[str]], services: dict[str, list[str]]
                   ) -> dict[str, str]:
    """Action name -> type from hidden ``/_action/`` names (pure).

    ``/cell_0/reset_cell/_action/feedback`` with type
    ``enpire_interfaces/action/ResetCell_FeedbackMessage`` gives
    ``{'/cell_0/reset_cell': 'enpire_interfaces/action/ResetCell'}``.
    """
    actions: dict[str, str] = {}
    for name, types in [*topics.items(), *services.items()]:
        if _ACTION_MARK not in name:
            continue
        base = name.split(_ACTION_MARK)[0]
        for t in types:
            for suffix in ('_FeedbackMessage', '_SendGoal', '_GetResult'):
                if t.endswith(suffix):
                    actions.setdefault(base, t[:-len(suffix)])
        if not types or base not in actions:
            actions.setdefault(base, '')
    return actions


def _hidden(name: str) -> bool:
    return any(part.startswith('_') for part in name.split('/')) or name.endswith(
        ('/describe_parameters', '/get_parameters', '/get_parameter_types', '/list_parameters',
         '/set_parameters', '/set_parameters_atomically', '/get_type_description'))


def read_graph(wait_s: float = 2.0, include_hidden: bool = False) -> dict[str, Any]:
    """Discover the ROS graph for ``wait_s`` seconds and return it as plain data.

    Returns:
        ``{'nodes': [{'name', 'namespace', 'fqn', 'publishers', 'subscribers', 'services'}],
        'topics': [{'name', 'types'}], 'services': [...], 'actions': [{'name', 'type'}]}``.
    """
    with _graph_node('enpire_graph') as node:
        # Discovery is asynchronous (DDS announces take 1-3 s); read after wait_s.
        threading.Event().wait(max(0.0, wait_s))
        own = node.get_fully_qualified_name()
        topics = dict(node.get_topic_names_and_types())
        services = dict(node.get_service_names_and_types())
        nodes = []
        for name, ns in sorted(node.get_node_names_and_namespaces()):
            fqn = f"{ns.rstrip('/')}/{name}"
            if fqn == own:
                continue
            entry: dict[str, Any] = {'name': name, 'namespace': ns, 'fqn': fqn}
            with contextlib.suppress(Exception):  # a node can vanish between calls
                entry['publishers'] = _names(
                    node.get_publisher_names_and_types_by_node(name, ns), include_hidden)
                entry['subscribers'] = _names(
                    node.get_subscriber_names_and_types_by_node(name, ns), include_hidden)
                entry['services'] = _names(
                    node.get_service_names_and_types_by_node(name, ns), include_hidden)
            nodes.append(entry)
    actions = derive_actions(topics, services)
    return {
        'nodes': nodes,
        'topics': [{'name': n, 'types': t} for n, t in sorted(topics.items())
                   if include_hidden or not _hidden(n)],
        'services': [{'name': n, 'types': t} for n, t in sorted(services.items())
                     if include_hidden or not _hidden(n)],
        'actions': [{'name': n, 'type': t} for n, t in sorted(actions.items())],
    }


def _names(pairs: list[tuple[str, list[str]]], include_hidden: bool) -> list[str]:
    return sorted(n for n, _ in pairs if include_hidden or not _hidden(n))


def format_graph(graph: dict[str, Any]) -> str:
    """Plain-text rendering of :func:`read_graph`."""
    lines = [f"nodes ({len(graph['nodes'])}):"]
    lines += [f"  {n['fqn']}" for n in graph['nodes']]
    for key in ('topics', 'services'):
        lines.append(f'{key} ({len(graph[key])}):')
        lines += [f"  {t['name']} [{', '.join(t['types'])}]" for t in graph[key]]
    lines.append(f"actions ({len(graph['actions'])}):")
    lines += [f"  {a['name']} [{a['type']}]" for a in graph['actions']]
    return '\n'.join(lines)


def import_message(type_name: str) -> type:
    """``'std_msgs/msg/String'`` -> the message class.

    Raises:
        ConfigError: the type name is malformed or its package is not importable.
    """
    with contextlib.suppress(ImportError):
        from rosidl_runtime_py.utilities import get_message

        return get_message(type_name)
    parts = type_name.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3:
        raise ConfigError(f"message type '{type_name}' is malformed: use pkg/msg/Name")
    pkg, kind, cls = parts
    try:
        return getattr(importlib.import_module(f'{pkg}.{kind}'), cls)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import message type '{type_name}': {exc}; is its package "
                          'built and scripts/env.sh sourced?') from exc


def message_to_dict(msg: Any) -> Any:
    """A ROS message as JSON-able data (nested messages, arrays, bytes)."""
    if hasattr(msg, 'get_fields_and_field_types'):
        return {f: message_to_dict(getattr(msg, f)) for f in msg.get_fields_and_field_types()}
    if isinstance(msg, (bytes, bytearray)):
        return list(msg)
    if isinstance(msg, (list, tuple)):
        return [message_to_dict(x) for x in msg]
    if hasattr(msg, 'tolist'):  # numpy arrays and array.array
        return msg.tolist()
    return msg


def echo(topic: str, count: int | None = None, timeout_s: float | None = None,
         on_message: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Read messages on ``topic`` (its type comes from the graph) until ``count`` came,
    ``timeout_s`` passed or Ctrl-C; ``on_message`` sees each one as it arrives.

    Returns:
        ``{'topic', 'type', 'count', 'messages'}`` (messages as plain data).

    Raises:
        EnpireTimeoutError: the topic never appeared, or fewer than ``count`` messages came
            within ``timeout_s``.
    """
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    topic = topic if topic.startswith('/') else '/' + topic
    start = time.monotonic()
    deadline = None if timeout_s is None else start + timeout_s
    got: list[Any] = []
    with _graph_node('enpire_echo') as node:
        type_name = _wait_for_type(node, topic, deadline)
        msg_cls = import_message(type_name)
        pubs = node.get_publishers_info_by_topic(topic)
        qos = QoSProfile(depth=10)
        if pubs and all(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                        for p in pubs):
            qos.reliability = ReliabilityPolicy.BEST_EFFORT
        if pubs and all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                        for p in pubs):
            qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
        done = threading.Event()

        def on_msg(msg: Any) -> None:
            if done.is_set():
                return
            data = message_to_dict(msg)
            got.append(data)
            if on_message is not None:
                on_message(data)
            if count is not None and len(got) >= count:
                done.set()

        node.create_subscription(msg_cls, topic, on_msg, qos)
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        try:
            while not done.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                executor.spin_once(timeout_sec=0.2 if left is None else min(0.2, left))
        except KeyboardInterrupt:
            pass
        finally:
            executor.shutdown(timeout_sec=1.0)
    if count is not None and len(got) < count:
        raise EnpireTimeoutError(f'got {len(got)} of {count} message(s) on {topic} within '
                                 f'{timeout_s} s: is the publisher running?')
    return {'topic': topic, 'type': type_name, 'count': len(got), 'messages': got}


def _wait_for_type(node: Any, topic: str, deadline: float | None) -> str:
    pause = threading.Event()
    while True:
        types = dict(node.get_topic_names_and_types()).get(topic)
        if types:
            return types[0]
        if deadline is not None and time.monotonic() >= deadline:
            known = sorted(n for n, _ in node.get_topic_names_and_types() if not _hidden(n))
            raise EnpireTimeoutError(f"topic '{topic}' has no publisher or subscriber in the "
                                     f"graph (known: {', '.join(known) or 'none'})")
        pause.wait(0.1)


# --- doctor ----------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    # A bare directory (the workspace's launch/ folder) is a namespace package, not 'launch'.
    return spec is not None and spec.origin not in (None, 'namespace')


def doctor() -> dict[str, Any]:
    """A JSON-able report of what this machine has for ENPIRE (never raises)."""
    report: dict[str, Any] = {'python': sys.version.split()[0]}
    ros: dict[str, Any] = {'distro': os.environ.get('ROS_DISTRO'),
                           'domain_id': os.environ.get('ROS_DOMAIN_ID', '0'),
                           'discovery_range': os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE',
                                                             'SUBNET (default)'),
                           'rmw': os.environ.get('RMW_IMPLEMENTATION')}
    try:
        import rclpy

        path = os.path.realpath(rclpy.__file__)
        ros['rclpy_path'] = path
        ros['source'] = 'system' if path.startswith('/opt/ros/') else 'wheels'
        ros['rclpy_version'] = _version('rclpy')
        with contextlib.suppress(Exception):
            from rclpy.utilities import get_rmw_implementation_identifier

            ros['rmw'] = get_rmw_implementation_identifier()
    except ImportError as exc:
        ros['source'] = None
        ros['error'] = str(exc)
    for mod in ('rosbag2_py', 'launch', 'launch_ros', 'ros2cli', 'rosidl_runtime_py'):
        ros[f'{mod}_importable'] = _importable(mod)
    report['ros'] = ros

    libs: dict[str, Any] = {}
    for label, dist in (('opencv', 'opencv-python'), ('gym_pusht', 'gym-pusht'),
                        ('rosbags', 'rosbags'), ('mcap', 'mcap'), ('av', 'av'),
                        ('numpy', 'numpy'), ('mujoco', 'mujoco')):
        libs[label] = _version(dist) or (_version('opencv-python-headless')
                                         if label == 'opencv' else None)
    torch_info: dict[str, Any] = {'version': _version('torch')}
    if torch_info['version']:
        try:
            import torch

            torch_info['cuda_available'] = bool(torch.cuda.is_available())
            torch_info['cuda_version'] = torch.version.cuda
        except Exception as exc:  # noqa: BLE001 - a broken torch install is a finding, not a crash
            torch_info['error'] = f'{type(exc).__name__}: {exc}'
    libs['torch'] = torch_info
    report['libraries'] = libs
    report['ffmpeg'] = shutil.which('ffmpeg')
    report['gpu'] = _gpus()
    report['sandbox'] = _sandbox()
    report['agents'] = _agents()
    report['render'] = _render()
    return report


def _render() -> dict[str, Any]:
    """Which offscreen GL the arm cells render with here (EGL on a GPU or Mesa, OSMesa)."""
    from enpire_sim.core.arm.sim import gl_backend

    try:
        backend, why = gl_backend()
    except Exception as exc:  # noqa: BLE001 - a broken GL stack is a finding, not a crash
        backend, why = 'none', f'{type(exc).__name__}: {exc}'
    return {'mujoco_gl': backend, 'detail': why, 'mujoco': _version('mujoco')}


def _agents() -> dict[str, Any]:
    """Which coding agents are installed here, and what would confine them."""
    from enpire_evolution.agents.adapters import ADAPTERS
    from enpire_evolution.agents.jail import confinement_mode

    clis: dict[str, Any] = {}
    for name, cls in ADAPTERS.items():
        a = cls()
        exe = a.binary()
        clis[name] = {'executable': exe, 'version': a.version() if exe else None,
                      'credentials': (a.missing_credentials() or 'found') if exe else None}
    mode, detail = confinement_mode('auto')
    return {'clis': clis, 'confinement': mode, 'detail': detail,
            'network': 'TCP limited to the API ports (Landlock ABI >= 4)'
            if mode == 'landlock' else 'shared'}


def _sandbox() -> dict[str, Any]:
    """Which confinement policy code gets here (see enpire_agent_bridge.core.confinement)."""
    from enpire_agent_bridge.core.confinement import bwrap_path, detect
    from enpire_agent_bridge.core.seccomp import supported
    from enpire_common.landlock import abi_version

    found = detect('auto')
    return {'confinement': found.mode, 'detail': found.detail,
            'landlock_abi': abi_version(), 'bwrap': bwrap_path(),
            'seccomp': supported(),
            'allow_unconfined_env': os.environ.get('ENPIRE_ALLOW_UNCONFINED') == '1'}


def _gpus() -> dict[str, Any]:
    smi = shutil.which('nvidia-smi')
    if smi:
        try:
            res = subprocess.run([smi, '--query-gpu=name,memory.total,driver_version',
                                  '--format=csv,noheader'], capture_output=True, text=True,
                                 timeout=10, check=False)
            if res.returncode == 0:
                return {'source': 'nvidia-smi',
                        'devices': [line.strip() for line in res.stdout.splitlines()
                                    if line.strip()]}
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            n = pynvml.nvmlDeviceGetCount()
            names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                     for i in range(n)]
        finally:
            pynvml.nvmlShutdown()
        return {'source': 'nvml', 'devices': [str(x) for x in names]}
    except Exception:  # noqa: BLE001 - no NVML library / no driver means no GPU here
        return {'source': None, 'devices': []}


def format_doctor(report: dict[str, Any]) -> str:
    """Plain-text rendering of :func:`doctor`."""
    lines = [f"python {report['python']}"]
    for section in ('ros', 'libraries'):
        lines.append(f'{section}:')
        for k, v in report[section].items():
            lines.append(f'  {k}: {v if v is not None else "-"}')
    lines.append(f"ffmpeg: {report['ffmpeg'] or 'not on PATH'}")
    gpu = report['gpu']
    lines.append(f"gpu: {', '.join(gpu['devices']) if gpu['devices'] else 'none'}")
    box = report.get('sandbox') or {}
    if box:
        lines.append(f"sandbox: {box['confinement']} ({box['detail']}); seccomp "
                     f"{'on' if box['seccomp'] else 'unavailable'}"
                     + ('' if box['confinement'] != 'none' else
                        '; trials refuse to run without --allow-unconfined'))
    render = report.get('render') or {}
    if render:
        lines.append(f"arm cell rendering: MUJOCO_GL={render['mujoco_gl']} ({render['detail']}); "
                     f"mujoco {render['mujoco'] or 'not installed'}")
    agents = report.get('agents') or {}
    if agents:
        lines.append(f"coding agents: confined by {agents['confinement']} ({agents['detail']}); "
                     f"network {agents['network']}")
        for name, c in agents['clis'].items():
            lines.append(f"  {name}: " + (f"{c['executable']} ({c['version'] or '?'}); "
                                          f"credentials: {c['credentials']}"
                                          if c['executable'] else 'not installed'))
    return '\n'.join(lines)
