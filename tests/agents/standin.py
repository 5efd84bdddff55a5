"""Shared behaviour of the stand-in agent CLIs (``tests/agents/bin/claude|codex|kimi``).

The stand-ins reproduce each CLI's documented headless output format (see
docs/agent-formats.md) with scripted, deterministic behaviour instead of a model. They make
real edits to the policy directory (their cwd / worktree) and call the real verbs: ``claude``
and ``kimi`` through the MCP server named in their ``--mcp-config`` (the MCP protocol over
stdio), ``codex`` through the ``enpire`` CLI in a shell, as Codex runs commands. They never
stand in for a result about a real model.

``STANDIN_MODE`` picks the script:

``improve`` (default)
    3 revisions: each edits policy.yaml (version, hypothesis, parent) and one param in
    policy.py, submits it, runs ``STANDIN_TRIALS`` (default 2) trials, compares, commits.
``spin``
    a turn every 0.2 s forever (budgets must stop it).
``hang``
    one turn, then silence forever (hang detection).
``escape``
    tries to write the task contract, the source tree, the store, another agent's worktree
    and a path outside its worktree through the verbs; reports each result; exits.
``borrow``
    waits for a peer's revision, checks out the peer's policy from ``origin`` and submits it
    with the peer's revision as parent, runs a trial, then behaves like ``improve``.
``once``
    one revision and its trials, then exits 0 (a restart continues it).
``once_then_hang``
    one revision and its trials, then silence (a test kills it).

``STANDIN_MODES`` (``agent=mode,...``, by ``ENPIRE_AGENT``) gives agents of one run different
scripts.

Each "turn" reports usage ``STANDIN_USAGE`` (input,output,cache_read,cache_write; default
120,30,400,50); the totals the stand-in reports are exactly the sums of its turns.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODES = dict(kv.split('=', 1) for kv in os.environ.get('STANDIN_MODES', '').split(',') if kv)
MODE = MODES.get(os.environ.get('ENPIRE_AGENT', ''), os.environ.get('STANDIN_MODE', 'improve'))
TRIALS = int(os.environ.get('STANDIN_TRIALS', '2'))
USAGE = [int(x) for x in os.environ.get('STANDIN_USAGE', '120,30,400,50').split(',')]


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(',', ':')) + '\n')
    sys.stdout.flush()


# --- verbs -------------------------------------------------------------------------------------
class McpVerbs:
    """The enpire tools through the MCP server of a ``--mcp-config`` (real MCP client)."""

    def __init__(self, config: dict[str, Any]) -> None:
        server = config['mcpServers']['enpire']
        self.params = server

    def call(self, name: str, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        return asyncio.run(self._call(name, args))

    async def _call(self, name: str, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        from mcp import ClientSession, StdioServerParameters
        from mcp.client.stdio import stdio_client

        p = StdioServerParameters(command=self.params['command'], args=self.params['args'],
                                  env={**os.environ, **self.params.get('env', {})})
        async with stdio_client(p) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            res = await s.call_tool(name, args)
        text = ''.join(getattr(c, 'text', '') for c in res.content)
        try:
            out = json.loads(text)
        except json.JSONDecodeError:
            out = {'ok': False, 'message': text}
        return not res.is_error, out


class CliVerbs:
    """The enpire verbs through the ``enpire`` CLI (``--json``), as a shell command."""

    MAP = {
        'task_show': lambda a: ['task', 'show', a.get('task', 'push_t')],
        'policy_submit': lambda a: ['policy', 'submit', a['policy_dir']]
        + (['--parent', a['parent']] if a.get('parent') else []),
        'trial_run': lambda a: ['trial', 'run', '--revision', a['revision'], '--trials',
                                str(a.get('count', 1))],
        'exp_compare': lambda a: ['exp', 'compare', a['a'], a['b']],
        'trial_show': lambda a: ['trial', 'show', a['trial']],
    }

    def __init__(self) -> None:
        self.commands: list[tuple[str, int, str]] = []

    def call(self, name: str, args: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        argv = ['enpire', *self.MAP[name](args), '--json']
        out = subprocess.run(argv, capture_output=True, text=True)
        self.commands.append((' '.join(argv), out.returncode, out.stdout + out.stderr[-500:]))
        try:
            obj = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            obj = {'ok': False, 'message': out.stderr[-500:]}
        return out.returncode == 0, obj


# --- scripts -------------------------------------------------------------------------------------
class Script:
    """The scripted agent; ``turn(kind, detail)`` is the CLI's way to report one step."""

    def __init__(self, tree: Path, verbs: Any, turn: Callable[[str, dict[str, Any]], None],
                 tool_result: Callable[[str, bool, str], None]) -> None:
        self.tree, self.verbs, self.turn, self.tool_result = tree, verbs, turn, tool_result
        self.revisions: list[str] = []

    def tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.turn('tool', {'name': name, 'args': args})
        ok, out = self.verbs.call(name, args)
        self.tool_result(name, ok, json.dumps(out)[:2000])
        return out if ok else {}

    def edit(self, i: int, parent: str) -> None:
        import yaml

        y = self.tree / 'policy.yaml'
        meta = yaml.safe_load(y.read_text()) or {}
        meta.update(version=100 + i, hypothesis=f'stand-in change {i}', parent=parent)
        y.write_text(yaml.safe_dump(meta, sort_keys=False))
        p = self.tree / 'policy.py'
        p.write_text(p.read_text().rstrip('\n') + f'\n# stand-in edit {i}\n')
        self.turn('edit', {'file': 'policy.yaml', 'i': i})

    def revision_round(self, i: int) -> None:
        parent = self.revisions[-1] if self.revisions else ''
        self.edit(i, parent)
        sub = self.tool('policy_submit', {'policy_dir': str(self.tree)})
        rid = sub.get('revision_id', '')
        if not rid:
            return
        self.revisions.append(rid)
        self.tool('trial_run', {'revision': rid, 'count': TRIALS})
        if len(self.revisions) > 1:
            self.tool('exp_compare', {'a': self.revisions[-2], 'b': rid})
        subprocess.run(['git', 'commit', '-qam', f'stand-in revision {i}'], cwd=self.tree,
                       capture_output=True)

    def run(self) -> int:
        if MODE == 'spin':
            while True:
                self.turn('think', {})
                time.sleep(0.2)
        if MODE == 'hang':
            self.turn('think', {})
            time.sleep(3600)
        if MODE == 'escape':
            return self.escape()
        self.tool('task_show', {'task': 'push_t'})
        base = int(time.time() * 1000) % 100000
        if MODE == 'borrow':  # one revision of its own, then one of the peer's
            self.revision_round(base)
            self.borrow()
            return 0
        rounds = 1 if MODE in ('once', 'once_then_hang') else 3
        for i in range(rounds):
            self.revision_round(base + i)
        if MODE == 'once_then_hang':
            self.turn('think', {})
            time.sleep(3600)
        return 0

    def borrow(self) -> None:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            subprocess.run(['git', 'fetch', '-q', 'origin'], cwd=self.tree, capture_output=True)
            refs = subprocess.run(['git', 'for-each-ref', '--format=%(refname:short)',
                                   'refs/remotes/origin/agent/'], cwd=self.tree,
                                  capture_output=True, text=True).stdout.split()
            mine = subprocess.run(['git', 'branch', '--show-current'], cwd=self.tree,
                                  capture_output=True, text=True).stdout.strip()
            peers = [r for r in refs if r != f'origin/{mine}']
            for peer in peers:
                text = subprocess.run(['git', 'show', f'{peer}:policy.yaml'], cwd=self.tree,
                                      capture_output=True, text=True).stdout
                m = re.search(r'(?m)^version:\s*(\d+)', text)
                if m and int(m.group(1)) >= 100:  # the peer has submitted a revision
                    subprocess.run(['git', 'checkout', peer, '--', 'policy.py', 'policy.yaml'],
                                   cwd=self.tree, capture_output=True)
                    self.turn('borrow', {'from': peer})
                    # the peer's revision: the same content submitted gives its id
                    sub = self.tool('policy_submit', {'policy_dir': str(self.tree)})
                    peer_rev = sub.get('revision_id', '')
                    self.edit(99, peer_rev)
                    sub = self.tool('policy_submit', {'policy_dir': str(self.tree),
                                                      'parent': peer_rev})
                    if sub.get('revision_id'):
                        self.revisions.append(sub['revision_id'])
                        self.tool('trial_run', {'revision': sub['revision_id'], 'count': 1})
                    return
            time.sleep(1.0)

    def escape(self) -> int:
        home = Path(os.environ['ENPIRE_HOME'])
        root = Path(os.environ['STANDIN_REPO'])
        others = [p / 'worktree' for p in self.tree.parent.parent.iterdir()
                  if p.is_dir() and p / 'worktree' != self.tree and (p / 'worktree').exists()]
        targets = {'contract': root / 'config' / 'tasks' / 'push_t' / 'task.yaml',
                   'source': root / 'src' / 'enpire_tasks' / 'escape.py',
                   'store': home / 'enpire.db',
                   'revisions': home / 'revisions' / 'escape.txt',
                   'peer_worktree': (others[0] / 'policy.py') if others
                   else self.tree.parent.parent / 'x' / 'worktree' / 'policy.py'}
        for name, path in targets.items():
            self.turn('tool', {'name': 'Write', 'target': name})
            try:
                with open(path, 'a') as f:
                    f.write('# escaped\n')
                self.tool_result('Write', True, f'wrote {path}')
            except OSError as exc:
                self.tool_result('Write', False, f'{name}: {exc}')
        # through the verbs: a policy outside the worktree, another cell
        self.tool('policy_submit', {'policy_dir': str(root / 'examples' / 'policies' / 'push_t'
                                                      / 'scripted')})
        return 0


def emit_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a') as f:
        f.write(text)
