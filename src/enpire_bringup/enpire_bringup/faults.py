"""Fault injection into a running cell launch, and the integrity check of its records.

Shipped (like :mod:`enpire_bringup.testing`): the fault-injection suite (``tests/faults``)
and the soak benchmark (``benchmarks/soak.py``) both use it.

- :func:`node_process` finds a node's live process under an ``enpire up`` launch;
- :func:`inject` SIGKILLs it, or SIGSTOPs it and SIGCONTs it after ``stop_s``;
- :func:`wait_respawned` waits for the launch to start a killed node again;
- :func:`check_experiment` holds every trial of an experiment to the record contract.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

#: Each node of a sim cell launch: its executable's path suffix (the arm cell's sim node is
#: ``arm_cell``).
NODES = {
    'push_t_cell': 'enpire_sim/push_t_cell',
    'arm_cell': 'enpire_sim/arm_cell',
    'verifier': 'enpire_reward/verifier',
    'reset_server': 'enpire_reset/reset_server',
    'safety_supervisor': 'enpire_rollout/safety_supervisor',
    'recorder': 'enpire_rollout/recorder',
    'rollout': 'enpire_rollout/rollout',
    'markers': 'enpire_rollout/markers',
    'policy_host': 'enpire_agent_bridge/policy_host',
}
FAULTS = ('kill', 'stop')


def node_process(launch_pid: int, node: str, cell: str = '') -> Any:
    """The live (not zombie) process of ``node`` (a key of NODES) under the launch whose
    pid is ``launch_pid``, of cell ``cell`` when given (the process or a parent of it, as a
    policy host under its rollout, runs in namespace ``/<cell>``); None when there is none."""
    import psutil

    suffix = NODES[node]
    try:
        children = psutil.Process(launch_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for proc in children:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and \
                    any(arg.endswith(suffix) for arg in proc.cmdline()) and \
                    (not cell or _in_cell(proc, cell, launch_pid)):
                return proc
        except psutil.NoSuchProcess:
            continue
    return None


def _in_cell(proc: Any, cell: str, launch_pid: int) -> bool:
    ns = f'__ns:=/{cell}'
    while proc is not None and proc.pid != launch_pid:
        if ns in proc.cmdline():
            return True
        proc = proc.parent()
    return False


def inject(launch_pid: int, node: str, fault: str, stop_s: float = 3.0, cell: str = '') -> int:
    """Inject ``fault`` into ``node``: 'kill' (SIGKILL) or 'stop' (SIGSTOP, then SIGCONT
    after ``stop_s`` on a timer thread). Returns the pid hit.

    Raises:
        LookupError: no such node process runs under the launch.
        ValueError: an unknown fault.
    """
    if fault not in FAULTS:
        raise ValueError(f"fault '{fault}' is unknown (faults: {', '.join(FAULTS)})")
    proc = node_process(launch_pid, node, cell)
    if proc is None:
        where = f' of {cell}' if cell else ''
        raise LookupError(f'no {node} process{where} runs under the launch (pid {launch_pid})')
    if fault == 'kill':
        os.kill(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGSTOP)
        timer = threading.Timer(stop_s, _cont, (proc.pid,))
        timer.daemon = True
        timer.start()
    return proc.pid


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def wait_respawned(launch_pid: int, node: str, old_pid: int, timeout_s: float = 30.0,
                   cell: str = '') -> int:
    """The pid of ``node``'s new process once the launch has started it again.

    Raises:
        TimeoutError: not started again within ``timeout_s``.
    """
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        proc = node_process(launch_pid, node, cell)
        if proc is not None and proc.pid != old_pid:
            return proc.pid
        time.sleep(0.2)
    raise TimeoutError(f'{node} was not started again within {timeout_s:.0f} s')


def bag_counts(trial_dir: str | Path) -> dict[str, int]:
    """Messages per topic of a trial's bag, read by rosbags and by the mcap readers (every
    message decoded from the bag's embedded ros2msg schemas, CDR-encoded).

    Raises:
        AssertionError: the two readers disagree, or a message is not ros2msg/CDR or does
            not decode.
        Exception: whatever a reader raises on a damaged bag.
    """
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.rosbag2 import Reader

    bag = Path(trial_dir) / 'episode'
    by_rosbags: dict[str, int] = {}
    with Reader(bag) as reader:
        for conn, _t, _raw in reader.messages():
            by_rosbags[conn.topic] = by_rosbags.get(conn.topic, 0) + 1
    by_mcap: dict[str, int] = {}
    for path in sorted(bag.glob('*.mcap')):
        with path.open('rb') as stream:
            for schema, channel, _m, decoded in make_reader(
                    stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
                if schema.encoding != 'ros2msg' or channel.message_encoding != 'cdr':
                    raise AssertionError(f'{path}: {channel.topic} is {schema.encoding}/'
                                         f'{channel.message_encoding}, not ros2msg/cdr')
                if decoded is None:
                    raise AssertionError(f'{path}: a {channel.topic} message did not decode')
                by_mcap[channel.topic] = by_mcap.get(channel.topic, 0) + 1
    if by_mcap != by_rosbags:
        raise AssertionError(f'{bag}: rosbags read {by_rosbags}, mcap read {by_mcap}')
    return by_rosbags


def check_experiment(run_dir: str | Path) -> dict[str, Any]:
    """Every trial of an experiment directory against the record contract.

    A trial is intact when its trial.json reads, it is not left open (``running``), every
    file's hash is as recorded, and its bag (if it has one) reads with both readers.

    Returns:
        ``{'trials': n, 'records': [...oldest first], 'problems': {trial_id: what}}``.
    """
    from enpire_common.errors import EnpireError
    from enpire_rollout.core.records import read_trial, trials_dir, verify_files

    base = trials_dir(run_dir)
    records: list[dict[str, Any]] = []
    problems: dict[str, str] = {}
    children = [c for c in sorted(base.iterdir()) if c.is_dir()] if base.is_dir() else []
    for child in children:
        try:
            record = read_trial(child)
        except EnpireError as exc:      # missing, cut short, not JSON, not a trial record
            problems[child.name] = f'trial.json: {exc}'
            continue
        record['dir'] = str(child)
        records.append(record)
        if record.get('outcome') == 'running':
            problems[child.name] = 'left open (outcome running)'
            continue
        bad = verify_files(child, record)
        if bad:
            problems[child.name] = f'files {bad}'
            continue
        if (child / 'episode').is_dir():
            try:
                if not bag_counts(child):
                    problems[child.name] = 'the bag holds no messages'
            except Exception as exc:  # noqa: BLE001 - any reader failure is the finding
                problems[child.name] = f'bag: {type(exc).__name__}: {exc}'
    records.sort(key=lambda r: ((r.get('timings') or {}).get('started_unix_s') or 0,
                                (r.get('ids') or {}).get('trial_id', '')))
    return {'trials': len(children), 'records': records, 'problems': problems}


__all__ = ['FAULTS', 'NODES', 'bag_counts', 'check_experiment', 'inject', 'node_process',
           'wait_respawned']
