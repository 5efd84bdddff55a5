"""Run a :class:`LaunchPlan`: one OS process per node, supervised.

Each child runs in its own process group (so a node's own subprocesses are signalled with
it). Shutdown (Ctrl-C, SIGTERM, a required node exiting): SIGINT to every group, then SIGTERM
after ``sigint_timeout_s``, then SIGKILL after ``sigterm_timeout_s`` (2.5 + 1.5 s: a launch
is down within ~4 s whatever its nodes do). ``respawn`` restarts a node that exits after
``respawn_delay``.

Every process of the launch dies with the launcher, however the launcher dies:

* each node gets ``PR_SET_PDEATHSIG`` = SIGTERM: a graceful first step;
* the launcher is a child subreaper: what a node leaves behind when it exits (a process in a
  session of its own) is adopted by the launcher, which reaps it and ends it at shutdown;
* a watchdog process (:mod:`.watchdog`) is told every node's process group and records the
  launcher's descendants; when the launcher is gone (a clean exit or SIGKILL alike) it
  SIGTERMs whatever is left, then SIGKILLs it a second later.

One status line per start / exit / respawn goes to the output stream, prefixed
``[enpire]``::

    [enpire] started cell_0/heartbeat pid=4242 (enpire_bringup/heartbeat)
    [enpire] exited cell_0/heartbeat pid=4242 code=-9; respawning in 1.0 s
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from enpire_bringup.launcher.parse import InlineParams, LaunchPlan, NodeSpec
from enpire_bringup.launcher.watchdog import WatchdogLink, signal_all, snapshot
from enpire_common.process import die_with_this_process, owned_tempdir, set_child_subreaper

#: How often the supervision loop reaps adopted orphans and checks the watchdog.
_HOUSEKEEPING_S = 2.0


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every node inherits: ours, DDS on loopback unless set, unbuffered."""
    env = dict(os.environ if base is None else base)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env['PYTHONUNBUFFERED'] = '1'
    return env


def _comm(pid: int) -> str:
    try:
        return Path(f'/proc/{pid}/comm').read_text().strip()
    except OSError:
        return '?'


@dataclass
class _Child:
    spec: NodeSpec
    proc: subprocess.Popen | None = None
    log_file: IO[str] | None = None
    respawn_at: float | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)
    exit_code: int | None = None


class Supervisor:
    """Start and supervise the nodes of a plan until they end or shutdown is requested.

    Args:
        plan: the validated plan.
        out: where status lines and ``screen`` output go.
        log_dir: per-node log files for ``output: log`` / ``both``.
        sigint_timeout_s: how long to wait after SIGINT before SIGTERM.
        sigterm_timeout_s: how long to wait after SIGTERM before SIGKILL.
        sigkill_timeout_s: how long to wait for the SIGKILLed to be reaped.
        watchdog: start the watchdog process (see the module doc).
    """

    def __init__(self, plan: LaunchPlan, out: IO[str] | None = None,
                 log_dir: str | os.PathLike | None = None, sigint_timeout_s: float = 2.5,
                 sigterm_timeout_s: float = 1.5, sigkill_timeout_s: float = 1.0,
                 watchdog: bool = True) -> None:
        self.plan = plan
        self.out = out or sys.stdout
        stamp = time.strftime('%Y%m%d-%H%M%S')
        self.log_dir = Path(log_dir or Path('log', 'enpire_up', f'{stamp}-{os.getpid()}'))
        self.sigint_timeout_s = sigint_timeout_s
        self.sigterm_timeout_s = sigterm_timeout_s
        self.sigkill_timeout_s = sigkill_timeout_s
        self._watchdog = WatchdogLink(output=self.out) if watchdog else None
        self._adopted: set[int] = set()  # orphans adopted as subreaper, not yet reaped
        self._children = [_Child(spec) for spec in plan.nodes]
        self._events: queue.Queue[tuple[_Child, subprocess.Popen]] = queue.Queue()
        self._lock = threading.Lock()
        self._stop_signal: int | None = None
        # Parameter files; a supervisor that was SIGKILLed leaves its own, swept by the next.
        self._tmp = owned_tempdir('enpire_up_')
        self._param_files: dict[InlineParams, str] = {}
        self._failed = False

    # -- output ---------------------------------------------------------------------------
    def status(self, text: str) -> None:
        with self._lock:
            self.out.write(f'[enpire] {text}\n')
            self.out.flush()

    def _pump(self, child: _Child, stream: IO[bytes], to_screen: bool) -> None:
        for raw in iter(stream.readline, b''):
            line = raw.decode(errors='replace').rstrip('\n')
            with self._lock:
                if to_screen:
                    self.out.write(f'[{child.spec.label}] {line}\n')
                    self.out.flush()
                if child.log_file is not None:
                    child.log_file.write(line + '\n')
                    child.log_file.flush()
        stream.close()

    def _watch(self, child: _Child, proc: subprocess.Popen) -> None:
        # Wait without reaping (WNOWAIT): the zombie keeps the pid and process group id
        # reserved until the main thread has killed the group's leftovers.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        self._events.put((child, proc))

    # -- processes ------------------------------------------------------------------------
    def _params_file(self, block: InlineParams) -> str:
        if block not in self._param_files:
            path = Path(self._tmp, f'params_{len(self._param_files)}.yaml')
            path.write_text(block.as_yaml())
            self._param_files[block] = str(path)
        return self._param_files[block]

    def _start(self, child: _Child) -> None:
        spec = child.spec
        cmd = spec.command(self._params_file)
        env = child_env()
        env.update(dict(spec.env))
        wants_log = spec.output in ('log', 'both')
        if wants_log and child.log_file is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            child.log_file = open(  # noqa: SIM115 - lives as long as the child's respawns
                self.log_dir / f"{spec.label.replace('/', '__')}.log", 'a')
        try:
            # Only ever called from the main thread (run() installs signal handlers, which
            # Python allows there only): PDEATHSIG fires when the forking *thread* exits.
            proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, process_group=0,
                preexec_fn=die_with_this_process())
        except OSError as exc:
            self._failed = True
            self.status(f'failed to start {spec.label}: {exc}')
            if spec.required:
                self._stop_signal = self._stop_signal or signal.SIGTERM
            return
        if self._watchdog is not None:
            self._watchdog.add(proc.pid)
        child.proc = proc
        child.starts += 1
        child.pids.append(proc.pid)
        child.exit_code = None
        threading.Thread(target=self._pump, args=(child, proc.stdout, spec.output != 'log'),
                         daemon=True, name=f'out-{spec.label}').start()
        threading.Thread(target=self._watch, args=(child, proc), daemon=True,
                         name=f'wait-{spec.label}').start()
        verb = 'respawned' if child.starts > 1 else 'started'
        where = f' log={self.log_dir / (spec.label.replace("/", "__") + ".log")}' \
            if wants_log else ''
        self.status(f'{verb} {spec.label} pid={proc.pid} ({spec.package}/{spec.executable})'
                    f'{where}')

    def _reap(self, child: _Child, proc: subprocess.Popen) -> int:
        # Kill whatever the node left in its group before reaping frees the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if self._watchdog is not None:
            self._watchdog.remove(proc.pid)
        code = proc.wait()
        if child.proc is proc:
            child.proc = None
        child.exit_code = code
        return code

    def _signal_all(self, sig: int, only_adopted: set[int] | None = None) -> None:
        groups = [] if only_adopted is not None else [
            c.proc.pid for c in self._children if c.proc is not None]
        signal_all(groups, self._adopted if only_adopted is None else only_adopted, sig)

    # -- adopted orphans ------------------------------------------------------------------
    def _reap_adopted(self) -> set[int]:
        """Reap the exited orphans we adopted, note new ones; returns the live ones.

        Our own unreaped children cannot have their pids reused: signalling them is safe.
        """
        me = os.getpid()
        known = {c.proc.pid for c in self._children if c.proc is not None}
        if self._watchdog is not None and self._watchdog.pid is not None:
            known.add(self._watchdog.pid)
        live = set()
        for p in snapshot().values():
            if p.ppid != me or p.pid in known:
                continue
            if p.live:
                live.add(p.pid)
                continue
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, os.WNOHANG)
        self._adopted = live
        return live

    def _handle_signal(self, signum: int, _frame: object) -> None:
        self._stop_signal = signum

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> int:
        """Start everything and block until the launch ends. Returns the exit code.

        0: shut down on request or every node exited 0. 1: a required node exited, or a
        node exited non-zero.
        """
        old = {s: signal.signal(s, self._handle_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        subreaper = set_child_subreaper(True)
        try:
            if self._watchdog is not None:
                try:
                    self._watchdog.start()
                except OSError as exc:
                    self._watchdog = None
                    self.status(f'could not start the watchdog ({exc}): a SIGKILLed launcher '
                                'leaves its nodes only a SIGTERM')
            for child in self._children:
                if self._stop_signal is not None:
                    break
                self._start(child)
            reason = self._supervise()
            self._shutdown(reason)
        finally:
            if self._watchdog is not None:
                # After every node is reaped: the watchdog finds nothing left and exits.
                self._watchdog.close()
            if subreaper:
                set_child_subreaper(False)
            for s, h in old.items():
                signal.signal(s, h)
            for child in self._children:
                if child.log_file is not None:
                    child.log_file.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
        return 1 if self._failed else 0

    def _alive(self) -> bool:
        return any(c.proc is not None or c.respawn_at is not None for c in self._children)

    def _supervise(self) -> str:
        next_housekeeping = time.monotonic() + _HOUSEKEEPING_S
        while self._alive():
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + _HOUSEKEEPING_S
                before = self._adopted
                for pid in sorted(self._reap_adopted() - before):
                    self.status(f'adopted pid={pid} ({_comm(pid)}), left running by a node that '
                                'exited; it is ended at shutdown')
                if self._watchdog is not None and self._watchdog.check():
                    self.status('the watchdog process had died: started it again')
            if self._stop_signal is not None:
                return f'received {signal.Signals(self._stop_signal).name}'
            now = time.monotonic()
            due = [c.respawn_at for c in self._children if c.respawn_at is not None]
            # A short bounded wait keeps signal handling responsive (handlers only set a flag).
            timeout = max(0.0, min([0.2, *(d - now for d in due)]))
            try:
                child, proc = self._events.get(timeout=timeout)
            except queue.Empty:
                for c in self._children:
                    if c.respawn_at is not None and time.monotonic() >= c.respawn_at:
                        c.respawn_at = None
                        self._start(c)
                continue
            code = self._reap(child, proc)
            spec = child.spec
            if spec.required:
                self._failed = True
                self.status(f'exited {spec.label} pid={proc.pid} code={code}; it is required '
                            '(on_exit: shutdown): shutting down')
                return f'required node {spec.label} exited'
            if spec.respawn:
                child.respawn_at = time.monotonic() + spec.respawn_delay_s
                self.status(f'exited {spec.label} pid={proc.pid} code={code}; respawning in '
                            f'{spec.respawn_delay_s:.1f} s')
                continue
            if code != 0:
                self._failed = True
            self.status(f'exited {spec.label} pid={proc.pid} code={code}')
        return 'all nodes exited'

    def _running(self) -> list[_Child]:
        return [c for c in self._children if c.proc is not None]

    def _shutdown(self, reason: str) -> None:
        for child in self._children:
            child.respawn_at = None
        running, adopted = self._running(), self._reap_adopted()
        if not running and not adopted:
            self.status(f'done ({reason})')
            return
        orphans = f' and {len(adopted)} orphaned process(es)' if adopted else ''
        self.status(f'shutting down ({reason}): stopping {len(running)} node(s){orphans}')
        for sig, wait_s in ((signal.SIGINT, self.sigint_timeout_s),
                            (signal.SIGTERM, self.sigterm_timeout_s),
                            (signal.SIGKILL, self.sigkill_timeout_s)):
            if not self._running() and not self._reap_adopted():
                break
            if sig != signal.SIGINT:
                left = [c.spec.label for c in self._running()]
                if self._adopted:
                    left.append(f'{len(self._adopted)} orphaned process(es)')
                self.status(f'escalating to {signal.Signals(sig).name} for: '
                            f'{", ".join(left)}')
            self._signal_all(sig)
            signalled = set(self._adopted)
            deadline = time.monotonic() + wait_s
            while (wait := deadline - time.monotonic()) > 0:
                with contextlib.suppress(queue.Empty):
                    child, proc = self._events.get(timeout=min(0.1, wait))
                    code = self._reap(child, proc)
                    self.status(f'exited {child.spec.label} pid={proc.pid} code={code}')
                # A node's stray processes are adopted as it dies: they get this step too.
                fresh = self._reap_adopted() - signalled
                self._signal_all(sig, only_adopted=fresh)
                signalled |= fresh
                if not self._running() and not self._adopted:
                    break
        self.status(f'done ({reason})')
