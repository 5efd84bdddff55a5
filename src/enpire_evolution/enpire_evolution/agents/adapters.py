"""Coding-agent adapters: how each agent is launched headless and how its output is read.

An adapter knows one agent: the executable and its credentials (:meth:`Adapter.check`), the
command line of one headless run (:meth:`Adapter.argv`), the state directory it keeps in the
agent's scratch instead of the user's home (:meth:`Adapter.prepare`), and a parser of its
JSONL output (:meth:`Adapter.parser`). The formats are the CLIs' documented ones
(docs/agent-formats.md lists the sources):

* ``claude-code``: ``claude -p --output-format stream-json --verbose``: ``system/init``
  (session_id), ``assistant`` messages (usage per API call, repeated per content block under
  one ``message.id``: counted once per id), ``user`` tool results, a final ``result`` whose
  ``usage`` and ``total_cost_usd`` are the run's totals.
* ``codex``: ``codex exec --json``: ``thread.started`` (thread_id), ``turn.started``,
  ``item.*`` (agent_message, command_execution, file_change, mcp_tool_call, ...),
  ``turn.completed`` with the thread's cumulative ``usage`` (input_tokens include
  cached_input_tokens), ``turn.failed``; top-level ``error`` events are also retries, not
  fatal. Codex reports usage only at the end of a turn (one per ``exec``) and no cost.
* ``kimi``: ``kimi --print --output-format stream-json``: OpenAI-style messages on stdout, no
  usage there; each step's ``token_usage`` is in the session's ``wire.jsonl``
  (``StatusUpdate``), which the parser reads from the agent's own share dir. No cost.
* ``openai``: the project's own Chat Completions loop
  (:mod:`enpire_evolution.agents.openai_agent`), whose JSONL is documented there.

Every parser keeps one :class:`Usage` in the same convention (uncached input, cache reads,
cache writes, output; their sum is ``tokens``) so budgets and reports compare agents.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError

#: Words in a tool result that mean the sandbox refused something (logged as a denial).
_DENIED = re.compile(r'permission denied|operation not permitted|read-only file system|'
                     r'eacces|eperm|agent_scope', re.I)


@dataclass
class Usage:
    """Token usage in one convention (see the module doc); ``cost_usd`` None = not reported."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost_usd: float | None = None

    @property
    def tokens(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def __add__(self, other: Usage) -> Usage:
        cost = None if self.cost_usd is None and other.cost_usd is None else \
            (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(self.input + other.input, self.output + other.output,
                     self.cache_read + other.cache_read, self.cache_write + other.cache_write,
                     cost)


@dataclass
class Parser:
    """Reads one run's JSONL: cumulative usage, turns, the CLI's session id, denials."""

    usage: Usage = field(default_factory=Usage)
    turns: int = 0
    session_id: str = ''
    final: bool = False
    is_error: bool = False
    result_text: str = ''
    tools: list[str] = field(default_factory=list)
    denials: list[str] = field(default_factory=list)

    def feed(self, obj: dict[str, Any]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def poll(self) -> None:
        """Read side channels (kimi's wire log); called between lines."""

    def _denial(self, text: str, what: str) -> None:
        if text and _DENIED.search(text):
            self.denials.append(f'{what}: {text.strip()[:300]}')


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return '\n'.join(str(c.get('text', '')) if isinstance(c, dict) else str(c)
                         for c in content)
    return ''


class ClaudeParser(Parser):
    """``claude -p --output-format stream-json`` (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_id: dict[str, Usage] = {}

    def feed(self, obj: dict[str, Any]) -> None:
        kind = obj.get('type')
        if kind == 'system' and obj.get('subtype') == 'init':
            self.session_id = str(obj.get('session_id', ''))
        elif kind == 'assistant':
            msg = obj.get('message') or {}
            u = msg.get('usage') or {}
            mid = str(msg.get('id') or len(self._by_id))
            new = Usage(int(u.get('input_tokens', 0)), int(u.get('output_tokens', 0)),
                        int(u.get('cache_read_input_tokens', 0)),
                        int(u.get('cache_creation_input_tokens', 0)))
            old = self._by_id.get(mid)
            if old is None:
                self.turns += 1
            if old is None or new.output > old.output:  # same id: same call, keep the max
                self._by_id[mid] = new
            total = Usage()
            for v in self._by_id.values():
                total = total + v
            total.cost_usd = self.usage.cost_usd
            self.usage = total
            for block in msg.get('content') or []:
                if isinstance(block, dict) and block.get('type') == 'tool_use':
                    self.tools.append(str(block.get('name', '')))
        elif kind == 'user':
            for block in (obj.get('message') or {}).get('content') or []:
                if isinstance(block, dict) and block.get('type') == 'tool_result':
                    self._denial(_text_of(block.get('content')), 'tool_result')
        elif kind == 'result':
            u = obj.get('usage') or {}
            cost = obj.get('total_cost_usd')
            self.usage = Usage(int(u.get('input_tokens', 0)), int(u.get('output_tokens', 0)),
                               int(u.get('cache_read_input_tokens', 0)),
                               int(u.get('cache_creation_input_tokens', 0)),
                               None if cost is None else float(cost))
            self.turns = max(self.turns, int(obj.get('num_turns', 0) or 0))
            self.session_id = str(obj.get('session_id', self.session_id))
            self.final, self.is_error = True, bool(obj.get('is_error'))
            self.result_text = str(obj.get('result', '') or '; '.join(obj.get('errors') or []))


class CodexParser(Parser):
    """``codex exec --json`` (see the module doc). ``turn.completed`` carries the thread's
    cumulative usage (input_tokens include cached_input_tokens; reasoning_output_tokens are
    part of output_tokens), so the last one is the run's total."""

    def feed(self, obj: dict[str, Any]) -> None:
        kind = obj.get('type')
        if kind == 'thread.started':
            self.session_id = str(obj.get('thread_id', ''))
        elif kind == 'turn.completed':
            u = obj.get('usage') or {}
            cached = int(u.get('cached_input_tokens', 0) or 0)
            write = int(u.get('cache_write_input_tokens', 0) or 0)
            self.usage = Usage(max(0, int(u.get('input_tokens', 0) or 0) - cached - write),
                               int(u.get('output_tokens', 0) or 0), cached, write)
            self.turns += 1
        elif kind == 'turn.failed':
            self.is_error = True
            err = obj.get('error') or {}
            self.result_text = str(err.get('message', '') if isinstance(err, dict) else err)
        elif kind == 'item.completed':
            item = obj.get('item') or {}
            t = item.get('type')
            if t == 'command_execution':
                self.tools.append('shell')
                if item.get('exit_code') not in (0, None):
                    self._denial(str(item.get('aggregated_output', '')),
                                 f"command {item.get('command', '')!r}")
            elif t == 'mcp_tool_call':
                self.tools.append(f"{item.get('server', '')}.{item.get('tool', '')}")
                self._denial(json.dumps(item.get('error') or item.get('result') or ''),
                             f"mcp {item.get('tool', '')}")
            elif t == 'file_change':
                self.tools.append('file_change')
                if item.get('status') == 'failed':
                    self.denials.append(f"file_change failed: {item.get('changes')}")
            elif t == 'agent_message':
                self.result_text = str(item.get('text', ''))


class KimiParser(Parser):
    """``kimi --print --output-format stream-json``: messages on stdout, usage in the
    session's wire log (``<share>/sessions/<md5(work_dir)>/<session>/wire.jsonl``)."""

    def __init__(self, wire: Path | None = None) -> None:
        super().__init__()
        self.wire = wire
        self._offset = 0
        self._buf = b''

    def feed(self, obj: dict[str, Any]) -> None:
        role = obj.get('role')
        if role == 'assistant':
            self.turns += 1
            for call in obj.get('tool_calls') or []:
                self.tools.append(str((call.get('function') or {}).get('name', '')))
            text = _text_of(obj.get('content'))
            if text:
                self.result_text = text
        elif role == 'tool':
            text = _text_of(obj.get('content'))
            if '<system>ERROR' in text:
                self._denial(text, 'tool')
        self.poll()

    def poll(self) -> None:
        if self.wire is None or not self.wire.exists():
            return
        with open(self.wire, 'rb') as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        self._buf += data
        *lines, self._buf = self._buf.split(b'\n')
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            msg = rec.get('message') if isinstance(rec, dict) else None
            if not isinstance(msg, dict) or msg.get('type') != 'StatusUpdate':
                continue
            tu = (msg.get('payload') or {}).get('token_usage') or {}
            self.usage = self.usage + Usage(int(tu.get('input_other', 0) or 0),
                                            int(tu.get('output', 0) or 0),
                                            int(tu.get('input_cache_read', 0) or 0),
                                            int(tu.get('input_cache_creation', 0) or 0))


class OpenAIParser(Parser):
    """The JSONL of :mod:`enpire_evolution.agents.openai_agent`."""

    def __init__(self, price: tuple[float, float, float] | None = None) -> None:
        super().__init__()
        self.price = price

    def feed(self, obj: dict[str, Any]) -> None:
        kind = obj.get('type')
        if kind == 'start':
            self.session_id = str(obj.get('session_id', ''))
        elif kind == 'turn':
            u = obj.get('usage') or {}
            cached = int(u.get('cached_tokens', 0))
            self.usage = self.usage + Usage(max(0, int(u.get('prompt_tokens', 0)) - cached),
                                            int(u.get('completion_tokens', 0)), cached, 0)
            if self.price:
                pin, pout, pcache = self.price
                self.usage.cost_usd = (self.usage.input * pin + self.usage.output * pout
                                       + self.usage.cache_read * pcache) / 1e6
            self.turns += 1
            self.tools += [str(c.get('name', '')) for c in obj.get('tool_calls') or []]
        elif kind == 'tool_result':
            if not obj.get('ok', True):
                self._denial(str(obj.get('content', '')), f"tool {obj.get('name', '')}")
        elif kind == 'result':
            self.final, self.is_error = True, bool(obj.get('is_error'))
            self.result_text = str(obj.get('result', ''))


# --- adapters ---------------------------------------------------------------------------------
@dataclass
class RunSpec:
    """What one headless run needs: the prompt, where it works, how it reaches the verbs."""

    prompt: str
    worktree: Path
    scratch: Path
    mcp_server: dict[str, Any]
    model: str = ''
    endpoint: str = ''
    session_id: str = ''
    price: tuple[float, float, float] | None = None
    #: USD left of the agent's budget (None: no USD budget); an agent that can stop itself
    #: at a cost (Claude Code's --max-budget-usd) gets it.
    usd_left: float | None = None


class Adapter:
    """Base of the agent adapters (see the module doc)."""

    name = ''
    executable = ''
    #: Environment variable naming another executable (a wrapper, a stand-in).
    bin_env = ''
    reports_cost = False
    #: The CLI's own state directory: the variable that moves it, its default under the
    #: user's home, and the files of it a run needs (credentials, config). A run gets a copy
    #: of those files in ``<scratch>/<executable>``, the only state dir it may write.
    state_env = ''
    state_default = ''
    state_files: tuple[str, ...] = ()
    #: Credentials: every variable of any one group set, or ``credential_file`` in the state
    #: dir; ``credential_hint`` says how to get them.
    credential_envs: tuple[tuple[str, ...], ...] = ()
    credential_file = ''
    credential_hint = ''

    def binary(self) -> str | None:
        exe = os.environ.get(self.bin_env) if self.bin_env else None
        return shutil.which(exe or self.executable)

    def check(self, endpoint: str = '') -> str:
        """The executable's path; ConfigError (exit 2) when absent or without credentials."""
        exe = self.binary()
        if not exe:
            raise ConfigError(f'{self.name}: the `{self.executable}` executable is not on PATH '
                              f'({self.install_hint()}); nothing was started')
        missing = self.missing_credentials(endpoint)
        if missing:
            raise ConfigError(f'{self.name}: no credentials ({missing}); nothing was started')
        return exe

    def install_hint(self) -> str:
        return ''

    def state_dir(self) -> Path:
        return Path(os.environ.get(self.state_env) or Path.home() / self.state_default)

    def missing_credentials(self, endpoint: str = '') -> str:
        """What is missing ('' when the credentials are there)."""
        if not self.credential_envs and not self.credential_file:
            return ''
        if any(all(os.environ.get(k) for k in group) for group in self.credential_envs):
            return ''
        path = self.state_dir() / self.credential_file
        if self.credential_file and path.is_file():
            return ''
        return f'{self.credential_hint} ({path})'

    def version(self) -> str:
        import subprocess

        exe = self.binary()
        if not exe:
            return ''
        try:
            out = subprocess.run([exe, '--version'], capture_output=True, text=True,
                                 timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ''
        return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 \
            and (out.stdout or out.stderr).strip() else ''

    def prepare(self, scratch: Path) -> dict[str, str]:
        """Create the agent's own state dir under ``scratch``; the environment naming it."""
        if not self.state_env:
            return {}
        own = scratch / self.executable
        own.mkdir(parents=True, exist_ok=True)
        for name in self.state_files:
            _copy_if(self.state_dir() / name, own / name)
        return {self.state_env: str(own)}

    def argv(self, exe: str, spec: RunSpec) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def parser(self, spec: RunSpec) -> Parser:  # pragma: no cover - overridden
        raise NotImplementedError


def _copy_if(src: Path, dst: Path) -> None:
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        os.chmod(dst, 0o600)
    elif src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)


def _mcp_config(spec: RunSpec) -> str:
    return json.dumps({'mcpServers': {'enpire': spec.mcp_server}})


class ClaudeCode(Adapter):
    name, executable, bin_env, reports_cost = 'claude-code', 'claude', 'ENPIRE_CLAUDE_BIN', True
    #: What Claude Code may use without asking: its file tools inside the worktree, git and
    #: python and the enpire CLI in the shell, and the enpire MCP tools.
    ALLOWED = ('Read', 'Edit', 'Write', 'MultiEdit', 'Glob', 'Grep', 'LS', 'TodoWrite',
               'Bash(git:*)', 'Bash(python:*)', 'Bash(python3:*)', 'Bash(enpire:*)',
               'Bash(ls:*)', 'Bash(cat:*)', 'Bash(diff:*)', 'mcp__enpire')
    DISALLOWED = ('WebFetch', 'WebSearch')
    state_env, state_default, state_files = 'CLAUDE_CONFIG_DIR', '.claude', ('.credentials.json',)
    credential_envs = (('ANTHROPIC_API_KEY',), ('ANTHROPIC_AUTH_TOKEN',),
                       ('CLAUDE_CODE_OAUTH_TOKEN',))
    credential_file = '.credentials.json'
    credential_hint = ('set ANTHROPIC_API_KEY, or CLAUDE_CODE_OAUTH_TOKEN from `claude '
                       'setup-token`, or log in with `claude`')

    def install_hint(self) -> str:
        return 'npm install -g @anthropic-ai/claude-code, then `claude` once to log in'

    def argv(self, exe: str, spec: RunSpec) -> list[str]:
        argv = [exe, '-p', spec.prompt, '--output-format', 'stream-json', '--verbose',
                '--mcp-config', _mcp_config(spec), '--strict-mcp-config',
                '--allowedTools', ','.join(self.ALLOWED),
                '--disallowedTools', ','.join(self.DISALLOWED),
                '--permission-mode', 'acceptEdits']
        if spec.usd_left is not None:
            argv += ['--max-budget-usd', f'{spec.usd_left:.6f}']
        if spec.model:
            argv += ['--model', spec.model]
        return argv

    def parser(self, spec: RunSpec) -> Parser:
        return ClaudeParser()


class Codex(Adapter):
    name, executable, bin_env = 'codex', 'codex', 'ENPIRE_CODEX_BIN'
    state_env, state_default, state_files = 'CODEX_HOME', '.codex', ('auth.json', 'config.toml')
    credential_envs = (('CODEX_API_KEY',), ('OPENAI_API_KEY',))
    credential_file = 'auth.json'
    credential_hint = 'set CODEX_API_KEY (or OPENAI_API_KEY), or log in with `codex login`'

    def install_hint(self) -> str:
        return 'npm install -g @openai/codex, then `codex login`'

    def prepare(self, scratch: Path) -> dict[str, str]:
        env = super().prepare(scratch)
        # `codex exec` reads CODEX_API_KEY; OPENAI_API_KEY alone is not used by it.
        if not os.environ.get('CODEX_API_KEY') and os.environ.get('OPENAI_API_KEY'):
            env['CODEX_API_KEY'] = os.environ['OPENAI_API_KEY']
        return env

    def argv(self, exe: str, spec: RunSpec) -> list[str]:
        server = spec.mcp_server
        argv = [exe, 'exec', '--json', '--cd', str(spec.worktree),
                '--sandbox', 'workspace-write',
                '-c', 'approval_policy="never"',
                '-c', 'sandbox_workspace_write.network_access=true',
                '-c', f"mcp_servers.enpire.command={json.dumps(server['command'])}",
                '-c', f"mcp_servers.enpire.args={json.dumps(server['args'])}",
                '-c', 'mcp_servers.enpire.default_tools_approval_mode="approve"']
        for k, v in server.get('env', {}).items():
            argv += ['-c', f'mcp_servers.enpire.env.{k}={json.dumps(v)}']
        if spec.model:
            argv += ['--model', spec.model]
        return [*argv, spec.prompt]

    def parser(self, spec: RunSpec) -> Parser:
        return CodexParser()


class Kimi(Adapter):
    name, executable, bin_env = 'kimi', 'kimi', 'ENPIRE_KIMI_BIN'
    state_env, state_default, state_files = 'KIMI_SHARE_DIR', '.kimi', ('config.toml',
                                                                       'credentials')
    credential_envs = (('KIMI_BASE_URL', 'KIMI_API_KEY', 'KIMI_MODEL_NAME'),)
    credential_file = 'config.toml'
    credential_hint = ('set KIMI_BASE_URL, KIMI_API_KEY and KIMI_MODEL_NAME, or configure '
                       'kimi (`kimi`, then /setup)')

    def install_hint(self) -> str:
        return 'uv tool install kimi-cli (or pip install kimi-cli), then `kimi` and /setup'

    def argv(self, exe: str, spec: RunSpec) -> list[str]:
        argv = [exe, '--print', '--output-format', 'stream-json', '-w', str(spec.worktree),
                '--session', spec.session_id, '--mcp-config', _mcp_config(spec),
                '-p', spec.prompt]
        if spec.model:
            argv += ['-m', spec.model]
        return argv

    def parser(self, spec: RunSpec) -> Parser:
        work = hashlib.md5(str(spec.worktree).encode()).hexdigest()  # noqa: S324 - kimi's key
        return KimiParser(spec.scratch / self.executable / 'sessions' / work / spec.session_id
                          / 'wire.jsonl')


class OpenAICompatible(Adapter):
    name, executable = 'openai', sys.executable
    DEFAULT_ENDPOINT = 'https://api.openai.com/v1'

    def binary(self) -> str | None:
        return sys.executable

    def check(self, endpoint: str = '') -> str:
        try:
            import openai  # noqa: F401
        except ImportError:
            raise ConfigError('openai: the `openai` Python package is not installed '
                              '(pip install openai); nothing was started') from None
        return super().check(endpoint)

    def missing_credentials(self, endpoint: str = '') -> str:
        if os.environ.get('OPENAI_API_KEY'):
            return ''
        if (endpoint or self.DEFAULT_ENDPOINT).rstrip('/') == self.DEFAULT_ENDPOINT:
            return 'set OPENAI_API_KEY for api.openai.com (a local --endpoint needs none)'
        return ''

    def version(self) -> str:
        try:
            import openai
        except ImportError:
            return ''
        return f'openai {openai.__version__} (built-in tool-calling loop)'

    def argv(self, exe: str, spec: RunSpec) -> list[str]:
        prompt = spec.scratch / 'prompt.md'
        prompt.write_text(spec.prompt, encoding='utf-8')
        argv = [exe, '-m', 'enpire_evolution.agents.openai_agent',
                '--endpoint', spec.endpoint or self.DEFAULT_ENDPOINT,
                '--model', spec.model or 'gpt-4.1', '--policy-dir', str(spec.worktree),
                '--prompt-file', str(prompt), '--session-id', spec.session_id]
        return argv

    def parser(self, spec: RunSpec) -> Parser:
        return OpenAIParser(spec.price)


ADAPTERS: dict[str, type[Adapter]] = {
    'claude-code': ClaudeCode, 'codex': Codex, 'kimi': Kimi, 'openai': OpenAICompatible}
