"""The verb gateway: the one door from a confined coding agent to the cell and the store.

A coding agent runs confined (:mod:`enpire_evolution.agents.jail`): it cannot write the store,
the revisions or the records. Inside its sandbox ``ENPIRE_GATEWAY`` names a Unix socket, and
``enpire mcp`` / ``enpire <verb> --json`` forward each tool call there instead of running it.
The supervisor's :class:`Gateway` answers, outside the sandbox, under the agent's scope:

* the cell, the experiment and the task are the agent's own, whatever the call says;
* a policy directory must lie inside the agent's worktree;
* ``trial_run`` counts against the agent's trial budget (clamped, then refused);
* each call runs as its own process (``tool_argv + [name]``, arguments as JSON on stdin,
  one JSON object on stdout), so a crashing verb never takes the supervisor down and a stop
  ends the calls in flight.

Protocol: one JSON object per line each way. ``{"tool": NAME, "arguments": {...}}`` answers
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": {error object}}``;
``{"op": "tools"}`` answers ``{"ok": true, "tools": [{name, description, parameters}]}``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import socket
import subprocess
import threading
import time
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.errors import AgentScopeError, EnpireError
from enpire_common.process import end_groups

GATEWAY_ENV = 'ENPIRE_GATEWAY'
_MAX_LINE = 8 * 1024 * 1024


class GatewayError(Exception):
    """The gateway did not answer (not running, closed the connection, bad reply)."""


def scope_error(message: str) -> dict[str, Any]:
    """The error object of a call outside the agent's scope (AGENT_SCOPE, exit 2)."""
    return AgentScopeError(message).to_dict()


def within(root: Path, path: str | Path) -> Path | None:
    """``path`` (relative to ``root`` unless absolute), resolved, if it lies inside ``root``
    (symbolic links followed); None otherwise."""
    p = Path(path)
    real = Path(os.path.realpath(p if p.is_absolute() else Path(root) / p))
    top = Path(os.path.realpath(root))
    return real if real == top or top in real.parents else None


def _read_line(s: socket.socket, limit: int | None = _MAX_LINE) -> bytes:
    """Bytes up to and including the first newline (or what came before the peer closed, or
    the first ``limit`` bytes)."""
    buf = b''
    while not buf.endswith(b'\n') and (limit is None or len(buf) < limit):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


# --- client -----------------------------------------------------------------------------------
def request(address: str, payload: dict[str, Any], timeout_s: float | None = None
            ) -> dict[str, Any]:
    """Send one request to the gateway at ``address``; its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(address)
        except OSError as exc:
            raise GatewayError(f'the enpire gateway at {address} does not answer ({exc}); '
                               'the agent supervisor has stopped') from None
        s.sendall(json.dumps(payload).encode() + b'\n')
        buf = _read_line(s, limit=None)  # a reply may be long
    try:
        reply = json.loads(buf)
    except json.JSONDecodeError:
        raise GatewayError('the enpire gateway closed the call without an answer '
                           '(the agent was stopped)') from None
    if not isinstance(reply, dict):
        raise GatewayError('the enpire gateway answered with something other than an object')
    return reply


def call(address: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run ``tool`` through the gateway: its result, or the EnpireError of its error object
    (same code and message as if it had run here)."""
    from enpire_common.errors import error_from_code

    reply = request(address, {'tool': tool, 'arguments': arguments})
    if reply.get('ok'):
        return dict(reply.get('result') or {})
    err = reply.get('error') or {}
    raise error_from_code(int(err.get('error_code', 1)), str(err.get('message', reply)))


# --- tool descriptions ------------------------------------------------------------------------
def _json_type(annotation: Any) -> dict[str, Any]:
    if isinstance(annotation, str):
        annotation = {'str': str, 'int': int, 'float': float, 'bool': bool}.get(
            annotation.split('|')[0].strip(), str)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _json_type(args[0]) if args else {'type': 'string'}
    return {int: {'type': 'integer'}, float: {'type': 'number'}, bool: {'type': 'boolean'},
            }.get(annotation, {'type': 'string'})


def describe_tools(tools: Sequence[Callable[..., Any]]) -> list[dict[str, Any]]:
    """JSON-schema descriptions of tool functions (name, description, parameters)."""
    out = []
    for fn in tools:
        sig = inspect.signature(fn)
        props, required = {}, []
        for name, p in sig.parameters.items():
            props[name] = _json_type(p.annotation)
            if p.default is inspect.Parameter.empty:
                required.append(name)
        out.append({'name': fn.__name__, 'description': inspect.getdoc(fn) or '',
                    'parameters': {'type': 'object', 'properties': props,
                                   'required': required}})
    return out


# --- server -----------------------------------------------------------------------------------
@dataclass
class Scope:
    """What one agent may do through its gateway."""

    experiment: str
    task: str
    cell: str
    worktree: Path
    max_trials: int | None = None
    trials_used: int = 0
    #: Called with (tool, arguments, result) after each successful call.
    on_result: Callable[[str, dict[str, Any], dict[str, Any]], None] | None = None
    #: Called with (tool, arguments, error object) after each failed or refused call.
    on_error: Callable[[str, dict[str, Any], dict[str, Any]], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inside(self, path: str) -> Path | None:
        return within(self.worktree, path)


class Gateway:
    """Serves one agent's tool calls on the Unix socket ``address`` (see the module doc).

    Args:
        address: socket path (outside the agent's writable directories).
        scope: the agent's scope.
        tool_argv: command that runs one tool: ``tool_argv + [name]``, JSON arguments on
            stdin, one JSON reply on stdout (``python -m enpire_bringup.agent_tools``).
        env: environment of the tool processes (ENPIRE_HOME, ROS_DOMAIN_ID, ...).
        tools: tool descriptions for ``{"op": "tools"}``.
        log: where the tools' progress (stderr) is appended.
    """

    def __init__(self, address: Path, scope: Scope, tool_argv: Sequence[str], *,
                 env: dict[str, str] | None = None,
                 tools: Sequence[dict[str, Any]] = (), log: Path | None = None) -> None:
        self.address = Path(address)
        self.scope = scope
        self.tool_argv = list(tool_argv)
        self.env = dict(env or os.environ)
        self.tools = list(tools)
        self._names = {t['name'] for t in self.tools}
        self.log = log
        self._procs: set[subprocess.Popen] = set()
        self._plock = threading.Lock()
        self._closing = False
        self._inflight = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Gateway:
        self.address.parent.mkdir(parents=True, exist_ok=True)
        if self.address.exists() or self.address.is_symlink():
            self.address.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.address))
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name='enpire-gateway', daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                req = json.loads(_read_line(conn) or b'null')
            except (OSError, json.JSONDecodeError):
                return
            reply = self.answer(req)
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b'\n')

    def answer(self, req: Any) -> dict[str, Any]:
        """The reply to one request (see the module doc)."""
        if not isinstance(req, dict):
            return {'ok': False, 'error': scope_error('a request is one JSON object')}
        if req.get('op') == 'tools':
            return {'ok': True, 'tools': self.tools}
        tool, args = str(req.get('tool', '')), req.get('arguments') or {}
        if not isinstance(args, dict):
            return {'ok': False, 'error': scope_error('arguments must be an object')}
        if self._closing:
            return {'ok': False, 'error': scope_error('the agent session has stopped')}
        with self._plock:
            self._inflight += 1
        try:
            ok, out = self._call(tool, dict(args))
        finally:
            with self._plock:
                self._inflight -= 1
        self._notify(tool, args, ok, out)
        return {'ok': True, 'result': out} if ok else {'ok': False, 'error': out}

    def _notify(self, tool: str, args: dict[str, Any], ok: bool, out: dict[str, Any]) -> None:
        """The scope's hook for a finished call; its failure never breaks the call."""
        cb = self.scope.on_result if ok else self.scope.on_error
        if cb is not None:
            try:
                cb(tool, args, out)
            except Exception as exc:  # noqa: BLE001 - accounting must not break the call
                self._note(f'gateway: recording {tool} failed: {exc!r}')

    @property
    def busy(self) -> bool:
        """Whether a call is in flight (an agent waiting on its trials is not hung)."""
        return self._inflight > 0

    def _call(self, tool: str, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        s = self.scope
        if self._names and tool not in self._names:
            return False, scope_error(f"unknown tool '{tool}'; tools: {sorted(self._names)}")
        if tool in ('policy_activate', 'cell_status', 'trial_run'):
            args['cell'] = s.cell
        if tool in ('task_show', 'trial_run'):
            args['task'] = s.task
        if tool == 'trial_run':
            args['experiment'] = s.experiment
        if tool in ('trial_list', 'exp_compare') and not args.get('experiment'):
            args['experiment'] = s.experiment
        for key in ('policy_dir',):
            if args.get(key):
                real = s.inside(str(args[key]))
                if real is None:
                    return False, scope_error(
                        f"{key} '{args[key]}' is outside your worktree {s.worktree}: submit "
                        'and run only policies there')
                args[key] = str(real)
        if tool == 'trial_run':
            if args.get('policy_dir'):  # submit first: the revision goes on the agent's branch
                ok, sub = self._run_tool('policy_submit', {'policy_dir': args.pop('policy_dir')})
                if not ok:
                    return ok, sub
                self._notify('policy_submit', {}, True, sub)
                args['revision'] = sub.get('revision_id', '')
            with s.lock:
                count = int(args.get('count', 10) or 10)
                if s.max_trials is not None:
                    left = s.max_trials - s.trials_used
                    if left <= 0:
                        return False, scope_error(
                            f'the trial budget ({s.max_trials} trials) is spent')
                    count = min(count, left)
                args['count'] = count
                s.trials_used += count
            ok, out = self._run_tool(tool, args)
            if ok:  # give back what was reserved but not run
                with s.lock:
                    s.trials_used -= count - int(out.get('n_trials', count))
            return ok, out
        return self._run_tool(tool, args)

    def _run_tool(self, tool: str, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        log = open(self.log, 'a') if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            if self.log:
                log.write(f'--- {time.strftime("%H:%M:%S")} {tool} {json.dumps(args)}\n')
                log.flush()
            proc = subprocess.Popen([*self.tool_argv, tool], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, env=self.env,
                                    start_new_session=True)
            with self._plock:
                if self._closing:
                    proc.kill()
                self._procs.add(proc)
            try:
                stdout, _ = proc.communicate(json.dumps(args).encode())
            finally:
                with self._plock:
                    self._procs.discard(proc)
        finally:
            if self.log:
                log.close()
        try:
            reply = json.loads(stdout.decode().strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError, UnicodeDecodeError):
            return False, EnpireError(f'{tool} ended without a result (exit '
                                      f'{proc.returncode})').to_dict()
        if reply.get('ok') is False:
            return False, reply
        return True, reply

    def _note(self, line: str) -> None:
        if self.log:
            with open(self.log, 'a') as f:
                f.write(line + '\n')

    def close(self, grace_s: float = 3.0) -> None:
        """Refuse new calls, interrupt the calls in flight (SIGINT, then SIGKILL)."""
        self._closing = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with self._plock:
            procs = list(self._procs)
        for proc in procs:
            self._note(f'--- {time.strftime("%H:%M:%S")} stopping the call in flight '
                       f'(pid {proc.pid}: SIGINT, {grace_s:.0f} s, then SIGKILL)'
                       f'{_signal_state(proc.pid)}')
        end_groups(procs, signal.SIGINT, grace_s, last_words=signal.SIGUSR1)
        self.address.unlink(missing_ok=True)


def _signal_state(pid: int) -> str:
    """The process's blocked and ignored signal masks (Linux), for the log."""
    try:
        status = Path(f'/proc/{pid}/status').read_text().splitlines()
    except OSError:
        return ''
    masks = [line.replace('\t', ' ') for line in status
             if line.startswith(('SigBlk', 'SigIgn', 'State'))]
    return '; ' + ', '.join(masks) if masks else ''
