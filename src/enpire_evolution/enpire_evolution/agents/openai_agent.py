"""The ``openai`` agent: ENPIRE's own tool-calling loop over the Chat Completions API.

Any OpenAI-compatible endpoint serves (vLLM, Ollama, llama.cpp server, OpenAI itself). It runs
as the agent process, inside the agent's sandbox, with these tools: ``read_file``,
``write_file``, ``list_files`` (inside the policy dir only) and the enpire verbs, which it
calls through the supervisor's gateway (``ENPIRE_GATEWAY``), like ``enpire mcp`` does.

It prints one JSON object per line on stdout (the supervisor parses them):

``{"type": "start", "session_id", "model", "endpoint"}``
``{"type": "turn", "n", "usage": {"prompt_tokens", "completion_tokens", "cached_tokens"},
"finish_reason", "tool_calls": [{"id", "name", "arguments"}], "content"}``
``{"type": "tool_result", "id", "name", "ok", "content"}``
``{"type": "result", "is_error", "result", "turns"}``

Exit 0 when the model stops calling tools, 1 on an API error or at ``--max-turns``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SYSTEM = ('You are a robotics engineer improving a robot policy by experiment. Work only in '
          'your policy directory with read_file, write_file and list_files; run and judge '
          'trials with the enpire tools. Be concise.')
_MAX_READ = 200_000


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


class FileTools:
    """read/write/list inside one directory (paths relative to it)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    def _path(self, rel: str) -> Path:
        from enpire_evolution.agents.gateway import within

        p = within(self.root, rel)
        if p is None:
            raise PermissionError(f'{rel}: outside the policy directory {self.root}')
        return p

    def read_file(self, path: str) -> str:
        return self._path(path).read_text(encoding='utf-8', errors='replace')[:_MAX_READ]

    def write_file(self, path: str, content: str) -> str:
        p = self._path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content, encoding='utf-8')
        return f'wrote {len(content)} characters to {path}'

    def list_files(self, path: str = '.') -> str:
        p = self._path(path)
        return '\n'.join(sorted(str(c.relative_to(self.root)) + ('/' if c.is_dir() else '')
                                for c in p.iterdir() if c.name != '.git'))


FILE_TOOLS = [
    {'name': 'read_file', 'description': 'Read a text file of your policy directory.',
     'parameters': {'type': 'object', 'properties': {'path': {'type': 'string'}},
                    'required': ['path']}},
    {'name': 'write_file', 'description': 'Write (create or replace) a text file of your '
                                          'policy directory.',
     'parameters': {'type': 'object', 'properties': {'path': {'type': 'string'},
                                                     'content': {'type': 'string'}},
                    'required': ['path', 'content']}},
    {'name': 'list_files', 'description': 'List a directory of your policy directory.',
     'parameters': {'type': 'object', 'properties': {'path': {'type': 'string'}},
                    'required': []}},
]


def main(argv: Sequence[str] | None = None) -> int:
    from enpire_evolution.agents import gateway

    p = argparse.ArgumentParser(prog='python -m enpire_evolution.agents.openai_agent')
    p.add_argument('--endpoint', required=True)
    p.add_argument('--model', required=True)
    p.add_argument('--policy-dir', required=True)
    p.add_argument('--prompt-file', required=True)
    p.add_argument('--session-id', default='')
    p.add_argument('--max-turns', type=int, default=200)
    args = p.parse_args(argv)

    import openai

    address = os.environ.get(gateway.GATEWAY_ENV, '')
    verbs = gateway.request(address, {'op': 'tools'}).get('tools', []) if address else []
    files = FileTools(Path(args.policy_dir))
    tools = [{'type': 'function', 'function': t} for t in FILE_TOOLS + verbs]
    client = openai.OpenAI(base_url=args.endpoint,
                           api_key=os.environ.get('OPENAI_API_KEY') or 'none', max_retries=2)
    messages: list[dict[str, Any]] = [
        {'role': 'system', 'content': SYSTEM},
        {'role': 'user', 'content': Path(args.prompt_file).read_text(encoding='utf-8')}]
    emit({'type': 'start', 'session_id': args.session_id, 'model': args.model,
          'endpoint': args.endpoint})
    for n in range(1, args.max_turns + 1):
        try:
            resp = client.chat.completions.create(model=args.model, messages=messages,
                                                  tools=tools)
        except openai.OpenAIError as exc:
            emit({'type': 'result', 'is_error': True, 'result': f'API error: {exc}',
                  'turns': n - 1})
            return 1
        choice = resp.choices[0]
        msg = choice.message
        usage = resp.usage
        cached = 0
        if usage is not None and usage.prompt_tokens_details is not None:
            cached = int(usage.prompt_tokens_details.cached_tokens or 0)
        calls = list(msg.tool_calls or [])
        emit({'type': 'turn', 'n': n, 'finish_reason': choice.finish_reason,
              'content': msg.content or '',
              'usage': {'prompt_tokens': int(usage.prompt_tokens if usage else 0),
                        'completion_tokens': int(usage.completion_tokens if usage else 0),
                        'cached_tokens': cached},
              'tool_calls': [{'id': c.id, 'name': c.function.name,
                              'arguments': c.function.arguments} for c in calls]})
        messages.append(msg.model_dump(exclude_none=True))
        if not calls:
            emit({'type': 'result', 'is_error': False, 'result': msg.content or '',
                  'turns': n})
            return 0
        for c in calls:
            ok, content = run_tool(files, address, c.function.name, c.function.arguments)
            emit({'type': 'tool_result', 'id': c.id, 'name': c.function.name, 'ok': ok,
                  'content': content[:4000]})
            messages.append({'role': 'tool', 'tool_call_id': c.id, 'content': content})
    emit({'type': 'result', 'is_error': True, 'result': f'stopped at --max-turns '
          f'{args.max_turns}', 'turns': args.max_turns})
    return 1


def run_tool(files: FileTools, address: str, name: str, arguments: str) -> tuple[bool, str]:
    """Run one tool call; (ok, the text the model sees)."""
    from enpire_common.errors import EnpireError
    from enpire_evolution.agents import gateway

    try:
        args = json.loads(arguments or '{}')
        if not isinstance(args, dict):
            raise ValueError('arguments must be a JSON object')
        if name in ('read_file', 'write_file', 'list_files'):
            return True, getattr(files, name)(**args)
        return True, json.dumps(gateway.call(address, name, args))
    except EnpireError as err:
        return False, json.dumps(err.to_dict())
    except (OSError, ValueError, TypeError, gateway.GatewayError) as exc:
        return False, f'{type(exc).__name__}: {exc}'


if __name__ == '__main__':
    sys.exit(main())
