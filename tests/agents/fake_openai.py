"""A local fake OpenAI-compatible Chat Completions server with scripted tool calls.

``python tests/agents/fake_openai.py --port N [--log FILE]`` (or :func:`serve` in a thread).
``POST /v1/chat/completions`` answers in the Chat Completions format (``choices[0].message``
with ``tool_calls``, ``finish_reason``, ``usage`` with ``prompt_tokens_details.cached_tokens``)
following a script keyed on how many assistant turns the conversation already has:
list_files, read_file policy.yaml, then three times write_file policy.yaml (a new version
and hypothesis), policy_submit and trial_run (2 trials) of the id it returned, then a final
answer. Every response's usage is appended to ``--log`` (one JSON line), so a test can check
the accounting against what the "model" reported. Not a model.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROUNDS = 3


def _last_tool_json(messages: list[dict[str, Any]]) -> dict[str, Any]:
    for m in reversed(messages):
        if m.get('role') == 'tool':
            try:
                return json.loads(m.get('content') or '{}')
            except json.JSONDecodeError:
                return {}
    return {}


def next_step(messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """(tool, arguments) of the next call, or None for the final answer."""
    n = sum(m.get('role') == 'assistant' for m in messages)
    if n == 0:
        return 'list_files', {'path': '.'}
    if n == 1:
        return 'read_file', {'path': 'policy.yaml'}
    k, phase = divmod(n - 2, 3)
    if k >= ROUNDS:
        return None
    if phase == 0:
        yaml = (f'name: scripted\ntask: push_t\nversion: {200 + k}\nregime: heuristic\n'
                f'hypothesis: fake-model change {k}\nparent: ""\n')
        original = ''
        for m in messages:
            if m.get('role') == 'tool' and 'params:' in (m.get('content') or ''):
                original = m['content']
        if 'params:' in original:
            yaml += original[original.index('params:'):]
        return 'write_file', {'path': 'policy.yaml', 'content': yaml}
    if phase == 1:
        return 'policy_submit', {'policy_dir': '.'}
    rid = _last_tool_json(messages).get('revision_id', '')
    return 'trial_run', {'revision': rid, 'count': 2}


class Handler(BaseHTTPRequestHandler):
    log_path: Path | None = None

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get('Content-Length', 0))))
        messages = body.get('messages', [])
        step = next_step(messages)
        usage = {'prompt_tokens': 200 + 10 * len(messages), 'completion_tokens': 25,
                 'prompt_tokens_details': {'cached_tokens': 100}}
        usage['total_tokens'] = usage['prompt_tokens'] + usage['completion_tokens']
        if step is None:
            message = {'role': 'assistant', 'content': 'Done: three revisions tried.'}
            finish = 'stop'
        else:
            name, args = step
            message = {'role': 'assistant', 'content': None, 'tool_calls': [{
                'id': f'call_{len(messages)}', 'type': 'function',
                'function': {'name': name, 'arguments': json.dumps(args)}}]}
            finish = 'tool_calls'
        out = {'id': f'chatcmpl-{len(messages)}', 'object': 'chat.completion',
               'created': int(time.time()), 'model': body.get('model', 'fake'),
               'choices': [{'index': 0, 'message': message, 'finish_reason': finish,
                            'logprobs': None}], 'usage': usage}
        if self.log_path is not None:
            with open(self.log_path, 'a') as f:
                f.write(json.dumps(usage) + '\n')
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(port: int = 0, log: Path | None = None) -> ThreadingHTTPServer:
    """Start the server in a daemon thread; ``server.server_address[1]`` is its port."""
    handler = type('H', (Handler,), {'log_path': log})
    server = ThreadingHTTPServer(('127.0.0.1', port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--port', type=int, default=8765)
    p.add_argument('--log', type=Path, default=None)
    a = p.parse_args()
    s = serve(a.port, a.log)
    print(f'fake OpenAI endpoint on http://127.0.0.1:{s.server_address[1]}/v1', flush=True)
    threading.Event().wait()
