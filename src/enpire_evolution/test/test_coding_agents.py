"""Unit tests of the coding-agent machinery without a cell: parsers on the CLIs' documented
lines, the gateway's scope, the jail, redaction, accounting, adapters' refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enpire_common.errors import ConfigError
from enpire_evolution.agents import adapters
from enpire_evolution.agents.gateway import Gateway, Scope, call, describe_tools, request
from enpire_evolution.agents.supervisor import Redactor

ROOT = Path(__file__).resolve().parents[3]

# Verbatim lines of the documented formats (docs/agent-formats.md).
CLAUDE = [
    '{"type":"system","subtype":"init","cwd":"/tmp/p","session_id":"922d9ba5","tools":["Bash"],'
    '"mcp_servers":[],"model":"claude-opus-5","permissionMode":"acceptEdits"}',
    '{"type":"assistant","message":{"model":"m","id":"msg_1","type":"message","role":"assistant",'
    '"content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":2,'
    '"cache_creation_input_tokens":52437,"cache_read_input_tokens":17207,"output_tokens":1}},'
    '"session_id":"922d9ba5"}',
    '{"type":"assistant","message":{"model":"m","id":"msg_1","type":"message","role":"assistant",'
    '"content":[{"type":"tool_use","id":"t1","name":"Write","input":{}}],"usage":{'
    '"input_tokens":2,"cache_creation_input_tokens":52437,"cache_read_input_tokens":17207,'
    '"output_tokens":1}},"session_id":"922d9ba5"}',
    '{"type":"user","message":{"role":"user","content":[{"tool_use_id":"t1","type":"tool_result",'
    '"content":"EACCES: permission denied, open \'/w/config/tasks/x\'","is_error":true}]}}',
    '{"is_error":false,"duration_api_ms":3324,"num_turns":1,"session_id":"922d9ba5",'
    '"total_cost_usd":0.5331585,"usage":{"input_tokens":2,"cache_creation_input_tokens":52437,'
    '"cache_read_input_tokens":17207,"output_tokens":7},"subtype":"success","result":"ok",'
    '"type":"result","duration_ms":4321}',
]
CODEX = [
    '{"type":"thread.started","thread_id":"01a2430d"}',
    '{"type":"turn.started"}',
    '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":'
    '"/bin/bash -lc \'echo x > /w/src/a\'","aggregated_output":"bash: /w/src/a: Permission '
    'denied\\n","exit_code":1,"status":"failed"}}',
    '{"type":"error","message":"Reconnecting... 1/5"}',
    '{"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":20,'
    '"cache_write_input_tokens":0,"output_tokens":10,"reasoning_output_tokens":4}}',
]
KIMI_OUT = [
    '{"role":"assistant","content":[],"tool_calls":[{"type":"function","id":"tc_1","function":'
    '{"name":"Shell","arguments":"{}"}}]}',
    '{"role":"tool","content":"<system>ERROR: Permission denied</system>","tool_call_id":"tc_1"}',
    '{"role":"assistant","content":"Hello!"}',
]
KIMI_WIRE = [
    '{"type": "metadata", "protocol_version": "1.10"}',
    '{"timestamp": 1.0, "message": {"type": "StatusUpdate", "payload": {"token_usage": '
    '{"input_other": 10, "output": 5, "input_cache_read": 100, "input_cache_creation": 7}}}}',
    '{"timestamp": 2.0, "message": {"type": "StatusUpdate", "payload": {"token_usage": '
    '{"input_other": 3, "output": 2, "input_cache_read": 110, "input_cache_creation": 0}}}}',
]


def _feed(parser: adapters.Parser, lines: list[str]) -> adapters.Parser:
    for line in lines:
        parser.feed(json.loads(line))
    return parser


def test_claude_parser_counts_a_message_id_once_and_takes_the_result_totals() -> None:
    p = adapters.ClaudeParser()
    _feed(p, CLAUDE[:3])
    assert p.turns == 1 and p.session_id == '922d9ba5'
    assert (p.usage.input, p.usage.output, p.usage.cache_read, p.usage.cache_write) == \
        (2, 1, 17207, 52437)  # two events of one message id: counted once
    _feed(p, CLAUDE[3:])
    assert p.final and not p.is_error
    assert (p.usage.input, p.usage.output) == (2, 7) and p.usage.cost_usd == pytest.approx(
        0.5331585)
    assert len(p.denials) == 1 and 'config/tasks' in p.denials[0]


def test_codex_parser_splits_cached_input_and_ignores_retry_errors() -> None:
    p = _feed(adapters.CodexParser(), CODEX)
    assert p.session_id == '01a2430d' and p.turns == 1 and not p.is_error
    assert (p.usage.input, p.usage.cache_read, p.usage.output) == (80, 20, 10)
    assert p.usage.tokens == 110 and p.usage.cost_usd is None
    assert len(p.denials) == 1


def test_kimi_parser_reads_usage_from_the_wire_log(tmp_path: Path) -> None:
    wire = tmp_path / 'wire.jsonl'
    wire.write_text('\n'.join(KIMI_WIRE[:2]) + '\n')
    p = adapters.KimiParser(wire)
    _feed(p, KIMI_OUT[:2])
    assert p.usage.tokens == 122
    with open(wire, 'a') as f:
        f.write(KIMI_WIRE[2] + '\n')
    _feed(p, KIMI_OUT[2:])
    assert (p.usage.input, p.usage.output, p.usage.cache_read, p.usage.cache_write) == \
        (13, 7, 210, 7)
    assert p.turns == 2 and len(p.denials) == 1


def test_openai_parser_prices_turns() -> None:
    p = adapters.OpenAIParser(price=(2.0, 8.0, 0.5))
    p.feed({'type': 'turn', 'usage': {'prompt_tokens': 1000, 'completion_tokens': 100,
                                      'cached_tokens': 400}, 'tool_calls': []})
    assert (p.usage.input, p.usage.cache_read, p.usage.output) == (600, 400, 100)
    assert p.usage.cost_usd == pytest.approx((600 * 2 + 100 * 8 + 400 * 0.5) / 1e6)


def test_missing_agent_or_credentials_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(ConfigError, match='not on PATH'):
        adapters.ClaudeCode().check()
    monkeypatch.setenv('PATH', str(ROOT / 'tests' / 'agents' / 'bin'))
    monkeypatch.setenv('HOME', str(tmp_path))
    for k in ('ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'CLAUDE_CODE_OAUTH_TOKEN',
              'CLAUDE_CONFIG_DIR', 'OPENAI_API_KEY'):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ConfigError, match='no credentials'):
        adapters.ClaudeCode().check()
    with pytest.raises(ConfigError, match='OPENAI_API_KEY'):
        adapters.OpenAICompatible().check()
    adapters.OpenAICompatible().check('http://127.0.0.1:8000/v1')  # a local endpoint: no key


def test_redactor_masks_secrets() -> None:
    r = Redactor({'ANTHROPIC_API_KEY': 'sk-ant-abcdefgh12345678', 'HOME': '/root'})
    text = r('key sk-ant-abcdefgh12345678 and Bearer abcdefghijklmnopqrstu in /root')
    assert 'abcdefgh1234' not in text and 'abcdefghijklmnop' not in text and '/root' in text


TOOL = '''
import json, sys
args = json.load(sys.stdin)
print("progress", file=sys.stderr)
if sys.argv[1] == "trial_run":
    out = {"ok": True, "n_trials": args["count"], "trials": [], "args": args}
else:
    out = {"ok": True, "args": args}
print(json.dumps(out))
'''


@pytest.fixture
def gateway(tmp_path: Path):
    tool = tmp_path / 'tool.py'
    tool.write_text(TOOL)
    tree = tmp_path / 'worktree'
    tree.mkdir()

    def trial_run(count: int = 10, policy_dir: str = '', revision: str = '') -> dict:
        """Run trials."""
        return {}

    def policy_submit(policy_dir: str, parent: str = '') -> dict:
        """Submit."""
        return {}

    scope = Scope('exp', 'push_t', 'cell_3', tree, max_trials=5)
    gw = Gateway(tmp_path / 'gw.sock', scope, [sys.executable, str(tool)],
                 tools=describe_tools([trial_run, policy_submit]),
                 log=tmp_path / 'tools.log').start()
    try:
        yield gw, tree
    finally:
        gw.close()


def test_gateway_pins_the_scope_and_clamps_the_trial_budget(gateway) -> None:
    gw, tree = gateway
    addr = str(gw.address)
    out = call(addr, 'trial_run', {'revision': 'abc', 'count': 3, 'cell': 'cell_0',
                                   'experiment': 'other'})
    assert out['args']['cell'] == 'cell_3' and out['args']['experiment'] == 'exp'
    assert out['args']['count'] == 3
    assert call(addr, 'trial_run', {'revision': 'abc', 'count': 9})['args']['count'] == 2
    with pytest.raises(ConfigError, match='trial budget'):
        call(addr, 'trial_run', {'revision': 'abc', 'count': 1})
    with pytest.raises(ConfigError, match='outside your worktree'):
        call(addr, 'policy_submit', {'policy_dir': str(tree.parent)})
    with pytest.raises(ConfigError, match='outside your worktree'):
        call(addr, 'policy_submit', {'policy_dir': '../'})
    assert call(addr, 'policy_submit', {'policy_dir': '.'})['args']['policy_dir'] == \
        str(tree.resolve())
    with pytest.raises(ConfigError, match='unknown tool'):
        call(addr, 'cell_pause', {})
    names = [t['name'] for t in request(addr, {'op': 'tools'})['tools']]
    assert names == ['trial_run', 'policy_submit']
    assert 'progress' in (gw.log.read_text())


def test_jail_refuses_writes_outside_its_directories(tmp_path: Path) -> None:
    from enpire_evolution.agents.jail import confinement_mode

    if confinement_mode()[0] == 'none':
        pytest.skip('no Landlock or bubblewrap on this machine')
    w = tmp_path / 'w'
    w.mkdir()
    outside = tmp_path / 'outside.txt'
    script = (f'open({str(w / "ok.txt")!r}, "w").write("x")\n'
              f'try:\n    open({str(outside)!r}, "w").write("x")\nexcept PermissionError:\n'
              f'    print("refused")\n')
    out = subprocess.run([sys.executable, '-m', 'enpire_evolution.agents.jail', '--write',
                          str(w), '--', sys.executable, '-c', script], capture_output=True,
                         text=True, timeout=60, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert 'refused' in out.stdout and (w / 'ok.txt').exists() and not outside.exists()


def test_accounting_tokens_to_success(tmp_path: Path) -> None:
    from enpire_evolution.core.agent_accounting import experiment_accounting
    from enpire_evolution.core.store import AgentSession, ExperimentStore, Trial, UsageSample

    store = ExperimentStore(f'sqlite:///{tmp_path}/s.db')
    t0 = time.time()
    store.create_experiment('e', 'push_t', t0)
    store.put_agent_session(AgentSession('e', 'a-00', 'a', 'codex', started_at=t0,
                                         ended_at=t0 + 60, input_tokens=100, output_tokens=50,
                                         stop_reason='exited'))
    for dt, tok in ((10, 30), (30, 90), (60, 150)):
        store.add_usage_sample(UsageSample('e', 'a-00', t0 + dt, tok, None, 1))
    for i, (dt, ok) in enumerate(((20, False), (40, True))):
        store.record_trial(Trial(f't{i}', 'e', 'r', 'b', 'cell_0', i, 'success' if ok else
                                 'timeout', ok, 1.0 if ok else 0.0, ended_at=t0 + dt))
    store.add_agent_trials('e', 'a-00', ['t0', 't1'])
    acct = experiment_accounting(store, 'e')
    assert acct['tokens_to_success'] == 90 and acct['time_to_success_s'] == pytest.approx(40)
    assert acct['totals']['tokens'] == 150 and acct['totals']['mtu'] == pytest.approx(150.0)
    assert [p['successes'] for p in acct['curve']] == [0, 1]


def test_jail_limits_tcp_to_the_api_ports(tmp_path: Path) -> None:
    import socket

    from enpire_common.landlock import abi_version

    if abi_version() < 4:
        pytest.skip('TCP rules need Landlock ABI >= 4')
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(4)
    port = server.getsockname()[1]
    script = ('import socket, sys\ns = socket.socket()\ntry:\n'
              f'    s.connect(("127.0.0.1", {port}))\n    print("connected")\n'
              'except PermissionError:\n    print("refused")\n')
    try:
        for allowed, expect in (('443', 'refused'), (str(port), 'connected')):
            out = subprocess.run([sys.executable, '-m', 'enpire_evolution.agents.jail',
                                  '--mode', 'landlock', '--write', str(tmp_path), '--port',
                                  allowed, '--', sys.executable, '-c', script],
                                 capture_output=True, text=True, timeout=60)
            assert out.stdout.strip() == expect, out.stderr
    finally:
        server.close()
