"""PolicyHost: runs one policy revision in a separate, resource-limited OS process.

Over 500 lines on purpose: the host side of one sandboxed process (start under the chosen
confinement, the framed protocol with its deadlines, validation of every reply, and each
way it can die) is one lifecycle, and every fault path must reach the same kill-and-explain.

Why a fresh ``python -m enpire_agent_bridge.core.host_worker`` (subprocess + exec) rather than
``multiprocessing`` fork or spawn: the caller is usually a ROS node with executor threads, DDS
sockets and locks, which must not leak into the sandbox (fork), and ``subprocess`` gives us in
one call what the sandbox needs before any policy code runs: a new session (process group to
kill), dropped privileges (``user``/``group``/``extra_groups``), a scrubbed environment, a
private working directory and only the two pipe fds inherited. The worker then sets rlimits
itself before importing the policy.

IPC is a pair of pipes with a compact binary framing (:mod:`enpire_agent_bridge.core.ipc`):
the image is written straight from the numpy buffer with ``writev``; the measured round trip
for a 480x480x3 observation is well under the 2 ms target (see benchmarks/policy_host_ipc.py).

Timeouts here are OS-level waits on a real pipe, so they use ``time.monotonic`` directly rather
than an injected Clock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from enpire_agent_bridge.core import ipc, policy_tools
from enpire_agent_bridge.core.config import HostingConfig, SandboxConfig
from enpire_agent_bridge.core.confinement import (
    MAX_NAMED,
    Confinement,
    bwrap_command,
    bwrap_path,
)
from enpire_agent_bridge.core.contract import (
    ContractError,
    PolicySpec,
    SizeLimits,
    check_policy_dir,
    spec_for_revision,
)
from enpire_common.confinement import require_confinement
from enpire_common.errors import PolicyDeadlineError, PolicyFaultError, PolicyRejectedError
from enpire_common.process import owned_tempdir

_ENV_KEEP = ('PATH', 'PYTHONPATH', 'LD_LIBRARY_PATH')
_RESPONSE_MAX_BYTES = 1 << 20


def _package_root() -> str:
    # The directory that holds the enpire_agent_bridge package, so the worker imports the same
    # code as this process whatever the caller's sys.path tricks (pytest importlib mode).
    import enpire_agent_bridge

    return str(Path(enpire_agent_bridge.__file__).resolve().parents[1])


def _copy_worker_packages(dest: str) -> None:
    # What the worker imports before it is confined: under bwrap it gets a private copy of our
    # packages, so no workspace path is bound in.
    import enpire_agent_bridge
    import enpire_common

    for pkg in (enpire_agent_bridge, enpire_common):
        src = Path(pkg.__file__).resolve().parent
        shutil.copytree(src, os.path.join(dest, src.name),
                        ignore=shutil.ignore_patterns('__pycache__', 'test'))


def _other_can_traverse(path: str) -> bool:
    p = Path(path).resolve()
    for parent in [p, *p.parents]:
        with contextlib.suppress(OSError):
            if not parent.stat().st_mode & 0o001:
                return False
    return True


def sandbox_user_can_run_python() -> bool:
    """Whether an unprivileged user can reach this interpreter, its stdlib and our package.

    Not the case in dev containers whose Python lives under /root (mode 700); then the host
    cannot switch users and relies on the seccomp filter to block fork.
    """
    import sysconfig

    paths = [sys.executable, sysconfig.get_paths()['stdlib'], sysconfig.get_paths()['purelib'],
             sysconfig.get_paths()['platlib'], _package_root()]
    return all(_other_can_traverse(p) for p in paths)


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return 'still running'
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f'signal {-returncode}'
        hint = {'SIGXCPU': ' (CPU time limit reached)',
                'SIGXFSZ': ' (file size limit reached)',
                'SIGKILL': ' (killed, possibly out of memory)',
                'SIGSEGV': ' (segmentation fault, possibly out of memory in native code)'}
        return f'killed by {name}{hint.get(name, "")}'
    return f'exited with code {returncode}'


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The worker leads its own session, so its pid is its process group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def _finalize(proc: subprocess.Popen[bytes] | None, fds: list[int], workdir: str | None) -> None:
    if proc is not None and proc.poll() is None:
        _kill_group(proc)
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


#: Work directories are ``enpire-policy-<pid of the host's owner>-<random>`` (owned_tempdir).
WORKDIR_PREFIX = 'enpire-policy-'


def hard_deadline_s(deadline_s: float, factor: float, min_s: float) -> float:
    """Wall-clock limit of one act before its host is killed as hung.

    ``max(factor x deadline_s, min_s)``: within it only the act's CPU time must fit
    ``deadline_s`` (a busy machine, not the policy, decides one act's wall time).
    """
    return max(deadline_s * factor, min_s)


class PolicyHost:
    """One sandboxed policy process serving ``reset`` and ``act`` requests.

    Any fault (crash, exception, hang past the deadline, NaN, wrong shape, out-of-bounds
    action) kills the process group and raises; the host is then dead (``alive`` is False,
    ``fault_reason`` says why) and a new host must be started. Use as a context manager or call
    :meth:`close`.

    Args:
        policy_dir: Directory with ``policy.py`` (and ``policy.yaml``, weights...). It is
            copied into a private work directory, so later edits do not affect the host.
        spec: The spec handed to ``make_policy`` (params included); its ``deadline_s`` is the
            default per-act deadline and its bounds are enforced on every action.
        config: Resource limits and identity of the process.
        log_dir: Where ``stdout.log`` / ``stderr.log`` of the host go (appended). Default: the
            work directory (removed on close).
        hard_deadline_s: Default wall-clock limit of :meth:`act`'s round trip (see there);
            None = the per-act deadline itself. :func:`hard_deadline_s` gives the nodes' rule.
        tools: Runs the task tools the policy calls during ``act`` (see
            :mod:`enpire_agent_bridge.core.policy_tools`); None: a call fails with a ToolError.
    """

    def __init__(self, policy_dir: str | Path, spec: PolicySpec,
                 config: SandboxConfig | None = None, log_dir: str | Path | None = None,
                 hard_deadline_s: float | None = None,
                 tools: policy_tools.ToolRunner | None = None) -> None:
        self.policy_dir = Path(policy_dir)
        self.tools = tools
        #: Tool calls since the last take (per tool: calls, time).
        self.tool_stats = policy_tools.ToolStats()
        self.spec = spec
        self.hard_deadline_s = hard_deadline_s
        self.config = config or SandboxConfig()
        self.log_dir = Path(log_dir) if log_dir else None
        self.fault_reason: str | None = None
        self.last_round_trip_s: float = float('nan')
        self.last_act_s: float = float('nan')
        self.last_late = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._req_w = -1
        self._reader: ipc.FrameReader | None = None
        self._workdir: str | None = None
        self._stderr_path: Path | None = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None
        self._low = spec.low
        self.privileges_dropped = False
        self._high = spec.high
        #: What confines the worker (set by start()).
        self.confinement: Confinement | None = None
        #: Operations the sandbox refused since the last take_denials(): count, first few.
        self.denial_count = 0
        self.denied: list[str] = []

    # --- lifecycle --------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """True while the process runs and has not faulted."""
        return (self._proc is not None and self._proc.poll() is None
                and self.fault_reason is None)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def stderr_path(self) -> Path | None:
        return self._stderr_path

    def _drop(self) -> bool:
        return (self.config.drop_privileges and os.geteuid() == 0
                and sandbox_user_can_run_python())

    def _prepare_workdir(self) -> str:
        cfg = self.config
        try:
            check_policy_dir(self.policy_dir, SizeLimits(cfg.max_policy_mb, cfg.max_policy_files))
        except ContractError as exc:
            raise PolicyRejectedError(str(exc)) from None
        # Named by this process; those of owners that died (SIGKILLed nodes) are swept.
        workdir = owned_tempdir(WORKDIR_PREFIX, cfg.work_root or None)
        shutil.copytree(self.policy_dir, os.path.join(workdir, 'policy'),
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        # The only place the confined worker may write (HOME, TMPDIR and its cwd).
        os.mkdir(os.path.join(workdir, 'scratch'), 0o700)
        if self._drop():
            # The sandbox user owns its private copy and nothing else.
            for root, dirs, files in os.walk(workdir):
                for name in [*dirs, *files]:
                    os.chown(os.path.join(root, name), cfg.sandbox_uid, cfg.sandbox_gid)
            os.chown(workdir, cfg.sandbox_uid, cfg.sandbox_gid)
        os.chmod(workdir, 0o700)
        return workdir

    def _env(self, workdir: str) -> dict[str, str]:
        env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
        env['PYTHONPATH'] = os.pathsep.join(
            p for p in (_package_root(), env.get('PYTHONPATH', '')) if p)
        scratch = os.path.join(workdir, 'scratch')
        env.update({'HOME': scratch, 'TMPDIR': scratch, 'OMP_NUM_THREADS': '1',
                    'MKL_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1',
                    'NUMEXPR_NUM_THREADS': '1', 'PYTHONDONTWRITEBYTECODE': '1',
                    'PYTHONNOUSERSITE': '1',
                    # The ROS wheels' .pth would re-exec the interpreter; LD_LIBRARY_PATH is
                    # already set by our own (bootstrapped) process.
                    '_ROS_WHEELS_BOOTSTRAP_COMPLETE': '1',
                    # Every act receives a fresh ~0.7 MB observation and a vision policy
                    # allocates a few MB of temporaries: glibc would hand them back to the
                    # kernel and fault them in again on the next act (~1.2 ms of system time
                    # per 480x480 act of the scripted policy; with these, ~10% less CPU per
                    # act). RLIMIT_AS still bounds the heap.
                    'MALLOC_MMAP_THRESHOLD_': str(32 << 20),
                    'MALLOC_TRIM_THRESHOLD_': str(128 << 20)})
        return env

    def _limits(self) -> dict[str, int]:
        cfg = self.config
        return {'memory_bytes': cfg.memory_limit_mb << 20,
                'cpu_s': cfg.cpu_limit_s if cfg.cpu_limit_s > 0 else -1,
                'nofile': cfg.max_open_files, 'nproc': cfg.max_processes,
                'fsize_bytes': cfg.max_file_size_mb << 20, 'core_bytes': 0}

    def start(self, timeout_s: float | None = None) -> None:
        """Start the process, import the policy and call ``make_policy(spec)``.

        Raises:
            PolicyRejectedError: the directory breaks the size/contract limits.
            PolicyFaultError: import or make_policy failed (the reason names which and why).
            PolicyDeadlineError: they took longer than ``timeout_s`` (default
                ``config.startup_timeout_s``).
        """
        if self._proc is not None:
            raise RuntimeError('PolicyHost.start called twice; create a new host instead')
        cfg = self.config
        self.confinement = require_confinement(cfg.confinement, cfg.allow_unconfined)
        workdir = self._prepare_workdir()
        self._workdir = workdir
        scratch = os.path.join(workdir, 'scratch')
        log_dir = self.log_dir or Path(workdir) / 'logs'
        log_dir.mkdir(parents=True, exist_ok=True)
        self._stderr_path = log_dir / 'stderr.log'
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        for fd in (req_r, resp_r):
            ipc.enlarge_pipe(fd)
        drop = self._drop()
        self.privileges_dropped = drop
        cmd = [sys.executable, '-u', '-B', '-m', 'enpire_agent_bridge.core.host_worker',
               os.path.join(workdir, 'policy'), '--req-fd', str(req_r), '--resp-fd', str(resp_w)]
        env = self._env(workdir)
        if self.confinement.mode == 'bwrap':
            # bwrap's --die-with-parent ties it to us; the worker's parent is then bwrap.
            runtime = os.path.join(workdir, 'runtime')
            _copy_worker_packages(runtime)
            env['PYTHONPATH'] = runtime
            cmd = bwrap_command(bwrap_path() or 'bwrap', os.path.join(workdir, 'policy'), scratch,
                                [runtime]) + cmd
        else:
            # Dies with this process, even when stuck in policy code (PR_SET_PDEATHSIG).
            cmd += ['--parent-pid', str(os.getpid())]
        try:
            with open(log_dir / 'stdout.log', 'ab') as out, \
                    open(self._stderr_path, 'ab') as err:
                self._proc = subprocess.Popen(
                    cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, pass_fds=(req_r, resp_w), close_fds=True,
                    start_new_session=True,
                    user=cfg.sandbox_uid if drop else None,
                    group=cfg.sandbox_gid if drop else None,
                    extra_groups=[] if drop else None)
        finally:
            os.close(req_r)
            os.close(resp_w)
        os.set_blocking(req_w, False)
        os.set_blocking(resp_r, False)
        self._req_w = req_w
        self._reader = ipc.FrameReader(resp_r, max_body=_RESPONSE_MAX_BYTES)
        # Kill and clean up even if the owner forgets close() (no orphans, no zombies).
        self._finalizer = weakref.finalize(self, _finalize, self._proc, [req_w, resp_r], workdir)

        timeout_s = cfg.startup_timeout_s if timeout_s is None else timeout_s
        end = time.monotonic() + timeout_s
        reply = self._exchange(
            ipc.encode('init', {'spec': self.spec.to_dict(), 'limits': self._limits(),
                                'block_process_creation': cfg.block_process_creation,
                                'block_network': cfg.block_network,
                                'confinement': self.confinement.mode,
                                'scratch': scratch}), end,
            what='import + make_policy', deadline_s=timeout_s)
        kind, meta, _ = reply
        if kind != 'ready':
            self._fault(PolicyFaultError, f'unexpected {kind!r} reply to init')

    def close(self) -> None:
        """Ask the process to exit, kill its process group if it does not, remove the workdir."""
        proc = self._proc
        if proc is not None and proc.poll() is None and self.fault_reason is None:
            with contextlib.suppress(ipc.FrameError, ipc.FrameTimeoutError, OSError):
                ipc.write_deadline(self._req_w, ipc.encode('close'), time.monotonic() + 0.2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.config.close_timeout_s)
        if self.fault_reason is None:
            self.fault_reason = 'closed'
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> PolicyHost:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None, timeout_s: float | None = None) -> None:
        """Call the policy's ``reset(seed)``; faults as in :meth:`act`."""
        timeout_s = self.config.reset_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._require_alive()
            kind, _, _ = self._exchange(
                ipc.encode('reset', {'seed': None if seed is None else int(seed)}),
                time.monotonic() + timeout_s, what='reset', deadline_s=timeout_s)
            if kind != 'ok':
                self._fault(PolicyFaultError, f'unexpected {kind!r} reply to reset')

    def act(self, obs: Mapping[str, Any], deadline_s: float | None = None,
            hard_deadline_s: float | None = None) -> np.ndarray:
        """Send ``obs``, return the validated action (float64, the spec's shape).

        Two limits: the policy's own compute (CPU time of ``act`` in the host) must fit
        ``deadline_s``; the wall-clock round trip may stretch to ``hard_deadline_s`` (default:
        ``deadline_s``) before the host is killed. On a loaded machine the scheduler, not the
        policy, decides the wall time of one act, so a policy is judged too slow by the CPU
        time it used, and killed as hung (sleep, endless loop, blocking I/O) by the wall
        clock. ``last_late`` tells whether the round trip missed ``deadline_s``.

        Args:
            obs: Observation dict (arrays or numbers) named as the spec's observation.
            deadline_s: Per-act budget; default ``spec.deadline_s``.
            hard_deadline_s: Wall-clock limit of the round trip (>= deadline_s); default
                the host's ``hard_deadline_s``.

        Raises:
            PolicyDeadlineError: no action within the hard deadline (the process was killed),
                or act used more CPU time than the deadline.
            PolicyFaultError: the policy raised, crashed or returned an invalid action (the
                process was killed); the message says which and what to fix.
        """
        deadline_s = self.spec.deadline_s if deadline_s is None else deadline_s
        hard_s = max(deadline_s, hard_deadline_s or self.hard_deadline_s or deadline_s)
        arrays = {k: np.asarray(v) for k, v in obs.items()}
        with self._lock:
            self._require_alive()
            t0 = time.monotonic()
            kind, meta, out = self._exchange(ipc.encode('act', None, arrays), t0 + hard_s,
                                             what='act', deadline_s=hard_s)
            self.last_round_trip_s = time.monotonic() - t0
            self.last_late = self.last_round_trip_s > deadline_s
            if kind != 'action' or 'action' not in out:
                self._fault(PolicyFaultError, f'unexpected {kind!r} reply to act')
            self.last_act_s = float(meta.get('act_s', float('nan')))
            cpu_s = float(meta.get('act_cpu_s', 0.0))
            if cpu_s > deadline_s:
                self._fault(PolicyDeadlineError,
                            f'act used {cpu_s * 1000:.0f} ms of CPU time, over the '
                            f'{deadline_s * 1000:.0f} ms deadline; the host was killed. Make '
                            f'act faster (precompute in make_policy/reset)')
            return self._validate(out['action'])

    def _require_alive(self) -> None:
        if self._proc is None:
            raise PolicyFaultError('policy host was not started; call start() first')
        if not self.alive:
            reason = self.fault_reason or _describe_exit(self._proc.returncode)
            raise PolicyFaultError(f'policy host is not running ({reason}); start a new host')

    def _validate(self, action: np.ndarray) -> np.ndarray:
        spec = self.spec
        if action.shape != tuple(spec.action_shape):
            self._fault(PolicyFaultError,
                        f'act returned an action of shape {list(action.shape)}, expected '
                        f'{list(spec.action_shape)}; return np.array of that shape')
        act = action.astype(np.float64)
        if not np.all(np.isfinite(act)):
            self._fault(PolicyFaultError,
                        f'act returned a non-finite action {act.tolist()}; guard against '
                        f'NaN/inf (e.g. divisions by zero) before returning')
        if np.any(act < self._low) or np.any(act > self._high):
            self._fault(PolicyFaultError,
                        f'act returned {act.tolist()}, outside the action bounds low='
                        f'{self._low.tolist()} high={self._high.tolist()}; clip it '
                        f'(np.clip(a, spec.low, spec.high))')
        return act

    def _exchange(self, frame: list[Any], end_s: float, what: str, deadline_s: float
                  ) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
        assert self._reader is not None
        try:
            ipc.write_deadline(self._req_w, frame, end_s)
            kind, meta, arrays = self._reader.read(end_s)
            self._count_denials(meta.get('denials'))
            # Tool calls of act are answered inside the same round trip and deadline.
            while kind == 'tool' and what == 'act':
                answer = policy_tools.run_tool(self.tools, self.tool_stats, meta.get('name'),
                                               meta.get('args'), arrays)
                # The tool ran here, on the act's clock. Past the deadline the act is late
                # whatever follows: the reader below checks the clock only when it must wait,
                # so a worker quick to answer (a loaded machine that ran it before this
                # thread came back) would have had a late action accepted.
                if time.monotonic() >= end_s:
                    raise ipc.FrameTimeoutError('a tool call ran past the deadline')
                ipc.write_deadline(self._req_w, ipc.encode(*answer), end_s)
                kind, meta, arrays = self._reader.read(end_s)
                self._count_denials(meta.get('denials'))
        except ipc.FrameTimeoutError:
            self._fault(PolicyDeadlineError,
                        f'{what} did not return within {deadline_s * 1000:.0f} ms (deadline); '
                        f'the host was killed. Make {what} faster (precompute in '
                        f'make_policy/reset) or check for endless loops')
        except ipc.FrameError as exc:
            self._died(what, str(exc))
        if kind == 'error':
            self._fault(PolicyFaultError, self._explain(meta))
        return kind, meta, arrays

    def _count_denials(self, reported: Any) -> None:
        # [count, [named...]] from the worker; untrusted, so checked before use.
        if not (isinstance(reported, list) and len(reported) == 2
                and isinstance(reported[0], int) and isinstance(reported[1], list)):
            return
        self.denial_count += max(0, reported[0])
        for name in reported[1]:
            if len(self.denied) >= MAX_NAMED:
                break
            if isinstance(name, str) and name not in self.denied:
                self.denied.append(name[:300])

    def take_denials(self) -> dict[str, Any]:
        """The refused operations since the last call (``count``, ``first``), then forget them."""
        out = {'count': self.denial_count, 'first': list(self.denied)}
        self.denial_count, self.denied = 0, []
        return out

    def _explain(self, meta: Mapping[str, Any]) -> str:
        where, etype, msg = meta.get('where', '?'), meta.get('type', '?'), meta.get('message', '')
        stage = {'import': 'importing policy.py', 'make_policy': 'make_policy(spec)',
                 'reset': 'reset(seed)', 'act': 'act(obs)',
                 'limits': 'applying sandbox limits'}.get(where, where)
        hint = ''
        if etype == 'MemoryError':
            hint = (f'; the policy exceeded the sandbox memory limit of '
                    f'{self.config.memory_limit_mb} MiB: allocate less')
        elif etype in ('BlockingIOError', 'PermissionError', 'RuntimeError') and (
                'temporarily unavailable' in msg or "can't start new thread" in msg
                or f'[Errno {errno.EAGAIN}]' in msg):
            hint = ('; policies may not start processes or threads (fork, subprocess, '
                    'multiprocessing, threading are blocked in the sandbox)')
        tb = str(meta.get('traceback', '')).strip().splitlines()
        where_line = next((ln.strip() for ln in reversed(tb)
                           if ln.strip().startswith('File ')), '')
        loc = f' at {where_line}' if where_line else ''
        return f'policy raised {etype} in {stage}: {msg}{hint}{loc}'

    def _died(self, what: str, detail: str) -> NoReturn:
        proc = self._proc
        assert proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        status = _describe_exit(proc.returncode)
        tail = self._stderr_tail()
        self._fault(PolicyFaultError,
                    f'policy host died during {what} ({status}; {detail})'
                    + (f'; stderr: {tail}' if tail else ''))

    def _stderr_tail(self, n: int = 600) -> str:
        path = self._stderr_path
        if path is None or not path.exists():
            return ''
        with open(path, 'rb') as f:
            f.seek(max(0, path.stat().st_size - n))
            return f.read().decode('utf-8', 'replace').strip().replace('\n', ' | ')

    def _fault(self, cls: type[Exception], reason: str) -> NoReturn:
        self.fault_reason = reason
        if self._proc is not None and self._proc.poll() is None:
            _kill_group(self._proc)
        elif self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1.0)
        raise cls(reason)


def sandbox_host(task: Mapping[str, Any], directory: Path, config: HostingConfig,
                 log_dir: Path, tools: policy_tools.ToolRunner | None = None) -> PolicyHost:
    """A sandboxed :class:`PolicyHost` (not started) for a revision directory under ``task``.

    The revision's spec is the contract plus its manifest's ``params``, with the node's
    deadline settings; the hard deadline follows :func:`hard_deadline_s`. Raises
    ContractError when the manifest does not fit the contract.
    """
    spec = spec_for_revision(task, directory, deadline_margin_s=config.deadline_margin_s,
                             deadline_override_s=config.deadline_override_s)
    return PolicyHost(directory, spec, config=config.sandbox, log_dir=log_dir,
                      hard_deadline_s=hard_deadline_s(spec.deadline_s,
                                                      config.hard_deadline_factor,
                                                      config.hard_deadline_min_s),
                      tools=tools)
