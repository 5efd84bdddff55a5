"""The sandboxed side of a policy host: ``python -m enpire_agent_bridge.core.host_worker``.

Started by :class:`enpire_agent_bridge.core.host.PolicyHost` as a fresh interpreter (not a fork
of the ROS process: no inherited threads, DDS sockets or locks) already running as the
unprivileged sandbox user, in its own session and work directory, with a scrubbed environment.
It reads an ``init`` frame, applies the resource limits, confines itself (Landlock: read
only Python, system libraries and its revision, write only its scratch directory; see
:mod:`.confinement`), installs the seccomp filter (no processes, no sockets), then (and only
then) imports the policy code and serves ``reset`` / ``act`` / ``close`` requests until the
pipe closes. It dies with the process that started it (PR_SET_PDEATHSIG=SIGKILL), which the
policy cannot undo.

Replies carry the operations the sandbox refused since the previous reply
(``denials: [count, [first few]]``), so the host can put them in the trial record.

Only numpy and the standard library are imported here, before the limits apply.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_agent_bridge.core import ipc
from enpire_agent_bridge.core.confinement import Denials, confine_worker
from enpire_agent_bridge.core.contract import PolicySpec
from enpire_agent_bridge.core.policy_tools import ToolClient
from enpire_agent_bridge.core.seccomp import block_process_creation
from enpire_common.process import die_with_parent

_LIMITS = {
    'memory_bytes': resource.RLIMIT_AS,
    'cpu_s': resource.RLIMIT_CPU,
    'nofile': resource.RLIMIT_NOFILE,
    'nproc': resource.RLIMIT_NPROC,
    'fsize_bytes': resource.RLIMIT_FSIZE,
    'core_bytes': resource.RLIMIT_CORE,
}


def apply_limits(limits: Mapping[str, int]) -> None:
    """Set soft and hard limits (hard too, so policy code cannot raise them back)."""
    for key, value in limits.items():
        if value is None or value < 0:
            continue
        resource.setrlimit(_LIMITS[key], (int(value), int(value)))


def _error(where: str, exc: BaseException, denials: Denials | None = None) -> list[Any]:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return _reply('error', {'where': where, 'type': type(exc).__name__,
                            'message': str(exc)[:2000], 'traceback': ''.join(tb)[-4000:]},
                  denials=denials)


def _reply(kind: str, meta: dict[str, Any] | None = None,
           arrays: Mapping[str, np.ndarray] | None = None,
           denials: Denials | None = None) -> list[Any]:
    meta = dict(meta or {})
    if denials is not None and denials.count:
        n, named = denials.take()
        if n:
            meta['denials'] = [n, named]
    return ipc.encode(kind, meta, arrays)


def _obs_from_frame(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    # Scalars (shape ()) are handed over as Python numbers: obs['step'] is an int.
    return {k: (v.item() if v.shape == () else v) for k, v in arrays.items()}


def _load_policy(policy_dir: str, spec: PolicySpec) -> Any:
    sys.path.insert(0, policy_dir)
    path = os.path.join(policy_dir, 'policy.py')
    mod_spec = importlib.util.spec_from_file_location('enpire_user_policy', path)
    if mod_spec is None or mod_spec.loader is None:
        raise ImportError(f'cannot load {path}')
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules['enpire_user_policy'] = module
    mod_spec.loader.exec_module(module)
    return module


def serve(req_fd: int, resp_fd: int, policy_dir: str) -> int:
    """Run the request loop; returns the process exit code."""
    try:
        kind, meta, _ = ipc.read_blocking(req_fd)
    except ipc.FrameError:
        return 3
    if kind != 'init':
        return 3
    spec = PolicySpec.from_dict(meta['spec'])
    # The task tools: a call goes up the response pipe and its answer comes down the request
    # pipe, inside the act round trip (the host answers nothing else meanwhile).
    spec = dataclasses.replace(spec, tools=ToolClient(
        [str(t) for t in (spec.task_info.get('tools') or [])],
        lambda bufs: ipc.write_blocking(resp_fd, bufs), lambda: ipc.read_blocking(req_fd)))
    denials: Denials | None = None
    try:
        apply_limits(meta.get('limits') or {})
        confinement = str(meta.get('confinement') or 'none')
        denials = confine_worker(confinement, policy_dir, str(meta.get('scratch') or os.getcwd()))
        if meta.get('block_process_creation', True):
            block_process_creation(block_network=bool(meta.get('block_network', True)))
    except (OSError, ValueError) as exc:
        ipc.write_blocking(resp_fd, _error('limits', exc))
        return 4
    try:
        module = _load_policy(policy_dir, spec)
    except BaseException as exc:  # noqa: BLE001 - policy import may raise anything, report it
        ipc.write_blocking(resp_fd, _error('import', exc, denials))
        return 1
    make = getattr(module, 'make_policy', None)
    if not callable(make):
        ipc.write_blocking(resp_fd, _error('import', AttributeError(
            'policy.py does not define make_policy(spec)')))
        return 1
    try:
        policy = make(spec)
        for method in ('reset', 'act'):
            if not callable(getattr(policy, method, None)):
                raise TypeError(f'make_policy returned {type(policy).__name__}, which has no '
                                f'{method}() method')
    except BaseException as exc:  # noqa: BLE001 - policy code may raise anything
        ipc.write_blocking(resp_fd, _error('make_policy', exc, denials))
        return 1
    ipc.write_blocking(resp_fd, _reply('ready', {'pid': os.getpid()}, denials=denials))

    while True:
        try:
            kind, meta, arrays = ipc.read_blocking(req_fd)
        except ipc.FrameError:
            return 0  # the host went away: exit quietly
        if kind == 'close':
            return 0
        try:
            if kind == 'reset':
                policy.reset(meta.get('seed'))
                ipc.write_blocking(resp_fd, _reply('ok', denials=denials))
            elif kind == 'act':
                t0, c0 = time.perf_counter(), time.thread_time()
                spec.tools.active = True
                try:
                    action = policy.act(_obs_from_frame(arrays))
                finally:
                    spec.tools.active = False
                dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
                try:
                    arr = np.asarray(action)
                except Exception as exc:  # noqa: BLE001 - arbitrary return values
                    raise TypeError(f'act returned {type(action).__name__}, not an '
                                    f'array-like') from exc
                if arr.dtype.kind not in 'biuf':
                    raise TypeError(f'act returned an array of dtype {arr.dtype}; return '
                                    f'numbers (float64)')
                ipc.write_blocking(resp_fd, _reply('action', {'act_s': dt, 'act_cpu_s': cpu},
                                                   {'action': arr}, denials))
            else:
                raise ValueError(f'unknown request {kind!r}')
        except BaseException as exc:  # noqa: BLE001 - report any policy failure to the host
            try:
                ipc.write_blocking(resp_fd, _error(kind, exc, denials))
            except OSError:
                return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('policy_dir')
    parser.add_argument('--req-fd', type=int, required=True)
    parser.add_argument('--resp-fd', type=int, required=True)
    parser.add_argument('--parent-pid', type=int, default=0,
                        help='die (SIGKILL) when this process, the host, dies')
    args = parser.parse_args(argv)
    if args.parent_pid:
        die_with_parent(args.parent_pid, signal.SIGKILL)
    return serve(args.req_fd, args.resp_fd, args.policy_dir)


if __name__ == '__main__':
    sys.exit(main())
