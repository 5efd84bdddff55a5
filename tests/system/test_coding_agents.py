"""System tests of ``enpire improve --agent <coding agent>`` on one sim cell, with stand-ins.

The stand-ins (tests/agents/bin/claude|codex|kimi and the fake OpenAI endpoint
tests/agents/fake_openai.py) reproduce each CLI's documented output format; they make real
edits and call the real verbs. They prove the adapters, budgets, restarts, accounting and
containment end to end. They say nothing about a real model.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / 'tests' / 'agents' / 'bin'
CREDS = {'ANTHROPIC_API_KEY': 'sk-ant-standin-0123456789abcdef',
         'CODEX_API_KEY': 'sk-standin-codex-0123456789abcdef',
         'KIMI_BASE_URL': 'http://127.0.0.1:9/v1', 'KIMI_API_KEY': 'sk-standin-kimi-012345678',
         'KIMI_MODEL_NAME': 'kimi-standin'}


@pytest.fixture(scope='module')
def cell(sim_cell) -> Any:
    return sim_cell


@pytest.fixture(scope='module')
def fake_openai(tmp_path_factory: pytest.TempPathFactory) -> Any:
    sys.path.insert(0, str(ROOT / 'tests' / 'agents'))
    import fake_openai

    log = tmp_path_factory.mktemp('openai') / 'usage.jsonl'
    server = fake_openai.serve(0, log)
    server.usage_log = log
    yield server
    server.shutdown()


def improve(cell: Any, agent: str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 400) -> tuple[dict[str, Any], str]:
    e = {**os.environ, **CREDS, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}",
         'ENPIRE_HOME': str(cell.home), 'STANDIN_TRIALS': '1', 'STANDIN_REPO': str(ROOT),
         **(env or {})}
    out = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'improve', '--task',
                          'push_t', '--agent', agent, '--json', *args], capture_output=True,
                         text=True, env=e, timeout=timeout, cwd=ROOT)
    assert out.stdout.strip(), out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def store(cell: Any) -> Any:
    from enpire_evolution.core.store import ExperimentStore

    return ExperimentStore.open(cell.home)


def reported_tokens(agent: str, transcripts: list[Path], scratch: Path, usage_log: Path | None
                    ) -> int:
    """Tokens as the stand-in reported them, read independently of the adapters' parsers."""
    total = 0
    for path in transcripts:
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        if agent == 'claude-code':
            res = [x for x in lines if x.get('type') == 'result']
            u = res[-1]['usage']
            total += (u['input_tokens'] + u['output_tokens'] + u['cache_read_input_tokens']
                      + u['cache_creation_input_tokens'])
        elif agent == 'codex':
            u = [x for x in lines if x.get('type') == 'turn.completed'][-1]['usage']
            total += u['input_tokens'] + u['output_tokens'] + u['cache_write_input_tokens']
    if agent == 'kimi':
        for wire in scratch.glob('kimi/sessions/*/*/wire.jsonl'):
            for line in wire.read_text().splitlines()[1:]:
                tu = json.loads(line)['message']['payload']['token_usage']
                total += sum(tu.values())
    if agent == 'openai':
        for line in usage_log.read_text().splitlines():
            u = json.loads(line)
            total += u['prompt_tokens'] + u['completion_tokens']
    return total


@pytest.mark.parametrize('agent', ['claude-code', 'codex', 'kimi', 'openai'])
def test_adapter_improves_end_to_end(cell: Any, agent: str, fake_openai: Any) -> None:
    exp = f'e2e-{agent}'
    args = ['--budget-min', '4', '--max-restarts', '0', '--experiment', exp]
    if agent == 'openai':
        args += ['--endpoint', f'http://127.0.0.1:{fake_openai.server_address[1]}/v1',
                 '--model', 'fake']
        fake_openai.usage_log.write_text('')
    out, err = improve(cell, agent, *args)
    assert out['ok'], err[-2000:]
    a = out['agents'][0]
    assert a['stop_reason'] == 'max_restarts' and a['sessions'] == 1, err[-2000:]
    with store(cell) as s:
        revs = [r for r in s.revisions(exp) if r.branch == f'agent/{agent}-0']
        tried = {t.revision for t in s.trials_for(exp)}
        sessions = s.agent_sessions(exp)
    assert len(revs) >= 3 and len([r for r in revs if r.id in tried]) >= 3
    transcripts = [Path(x.transcript) for x in sessions]
    expected = reported_tokens(agent, transcripts, Path(a['worktree']).parent / 'scratch',
                               fake_openai.usage_log)
    assert a['usage']['tokens'] == expected > 0
    assert out['accounting']['totals']['tokens'] == expected
    html = Path(out['report']).read_text()
    assert 'success vs tokens' in html and 'Coding agents' in html
    # the transcript has no credential in it
    assert all(CREDS['ANTHROPIC_API_KEY'] not in p.read_text() for p in transcripts)


def test_wall_budget_stops_a_running_trial_within_5_s(cell: Any) -> None:
    exp = 'budget-wall'
    out, err = improve(cell, 'claude-code', '--budget-min', '0.75', '--experiment', exp,
                       env={'STANDIN_TRIALS': '40'})
    a = out['agents'][0]
    assert a['stop_reason'] == 'budget_wall', err[-2000:]
    with store(cell) as s:
        (sess,) = s.agent_sessions(exp)
        stopped = [e for e in s.events(exp, 'agent_session')]
    assert sess.ended_at - sess.started_at <= 45 + 5
    assert stopped[-1].data['outcome'] == 'budget_wall'
    # the trial run in flight was cancelled: within 5 s of the stop the cell takes a new run
    from enpire_common.errors import CellUnavailableError

    rev = s_revision(cell, exp)
    while True:
        try:
            result = cell.client.run_trials(count=1, revision_id=rev,
                                            experiment_id=f'{exp}-after')
            break
        except CellUnavailableError:
            assert time.time() < sess.ended_at + 5.0, 'the cell was still busy 5 s after'
            time.sleep(0.25)
    assert len(result.trials) == 1
    log = subprocess.run(['git', 'log', '--format=%s', '-3'], cwd=a['worktree'],
                         capture_output=True, text=True).stdout
    assert 'WIP' in log or 'stand-in revision' in log


def s_revision(cell: Any, exp: str) -> str:
    with store(cell) as s:
        return s.revisions(exp)[0].id


def test_token_budget_stops_one_turn_past(cell: Any) -> None:
    out, err = improve(cell, 'claude-code', '--budget-min', '3', '--budget-tokens', '3000',
                       '--experiment', 'budget-tokens', env={'STANDIN_MODE': 'spin'})
    a = out['agents'][0]
    assert a['stop_reason'] == 'budget_tokens', err[-2000:]
    assert 3000 <= a['usage']['tokens'] <= 3000 + 600  # each stand-in turn is 600 tokens


def test_usd_budget_stops_the_agent(cell: Any, fake_openai: Any) -> None:
    out, err = improve(cell, 'claude-code', '--budget-min', '3', '--budget-usd', '0.005',
                       '--experiment', 'budget-usd', env={'STANDIN_MODE': 'spin'})
    a = out['agents'][0]
    assert a['stop_reason'] == 'budget_usd', err[-2000:]
    assert 0.005 <= a['usage']['cost_usd'] <= 0.005 + 0.0011  # at most one turn past


def test_killed_agent_restarts_with_the_best_revision(cell: Any) -> None:
    exp = 'restart'
    e = {**os.environ, **CREDS, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}",
         'ENPIRE_HOME': str(cell.home), 'STANDIN_TRIALS': '1',
         'STANDIN_MODE': 'once_then_hang'}
    proc = subprocess.Popen([sys.executable, '-m', 'enpire_bringup.cli', 'improve', '--task',
                             'push_t', '--agent', 'claude-code', '--budget-min', '1.0',
                             '--max-restarts', '1', '--experiment', exp, '--json',
                             '--no-report'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=e, cwd=ROOT)
    try:
        from enpire_evolution.core.store import ExperimentStore

        end = time.monotonic() + 150
        trials = {}
        while time.monotonic() < end and not trials:
            time.sleep(1.0)
            with ExperimentStore.open(cell.home) as s:
                try:
                    trials = s.agent_trial_ids(exp)
                except Exception:  # noqa: BLE001 - not created yet
                    trials = {}
        assert trials, 'the stand-in ran no trial'
        time.sleep(1.0)
        pids = subprocess.run(['pgrep', '-f', f'{BIN}/claude'], capture_output=True,
                              text=True).stdout.split()
        assert pids
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=200)
    finally:
        proc.kill()
    out = json.loads(stdout.strip().splitlines()[-1])
    a = out['agents'][0]
    assert a['sessions'] == 2 and a['restarts'] == 1, stderr[-2000:]
    with store(cell) as s:
        sessions = s.agent_sessions(exp)
        best = s.revision_stats(exp, is_eval=False)
    assert sessions[0].stop_reason == 'crashed'
    prompt = Path(sessions[1].transcript).with_name(f'{sessions[1].id}.prompt.md').read_text()
    assert 'crashed' in prompt and any(b.revision in prompt for b in best)


def test_hung_agent_is_restarted(cell: Any) -> None:
    out, err = improve(cell, 'claude-code', '--budget-min', '0.5', '--hang-s', '4',
                       '--max-restarts', '1', '--experiment', 'hang',
                       env={'STANDIN_MODE': 'hang'})
    a = out['agents'][0]
    assert a['sessions'] == 2 and a['restarts'] == 1, err[-2000:]
    with store(cell) as s:
        sessions = s.agent_sessions('hang')
    assert [x.stop_reason for x in sessions] == ['hang', 'hang']
    prompt = Path(sessions[1].transcript).with_name(f'{sessions[1].id}.prompt.md').read_text()
    assert 'no output for 4 s' in prompt


def test_containment_refuses_every_escape(cell: Any) -> None:
    exp = 'escape'
    home = Path(cell.home)
    store(cell).close()  # the store exists before the agent tries to write it
    (home / 'revisions').mkdir(exist_ok=True)
    peer = home / 'agents' / exp / 'claude-code-9' / 'worktree'
    peer.mkdir(parents=True)
    (peer / 'policy.py').write_text('# peer\n')
    protected = [ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml', home / 'enpire.db',
                 peer / 'policy.py']
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in protected}
    out, err = improve(cell, 'claude-code', '--budget-min', '2', '--max-restarts', '0',
                       '--experiment', exp, env={'STANDIN_MODE': 'escape'})
    a = out['agents'][0]
    for p in protected[:1] + protected[2:]:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == before[p], p
    assert b'# escaped' not in (home / 'enpire.db').read_bytes()
    assert not (ROOT / 'src' / 'enpire_tasks' / 'escape.py').exists()
    assert not (home / 'revisions' / 'escape.txt').exists()
    with store(cell) as s:
        denials = s.events(exp, 'sandbox_denial')
        refused = s.events(exp, 'agent_refused')
    named = ' '.join(d.data['what'] for d in denials)
    for target in ('contract', 'source', 'store', 'revisions', 'peer_worktree'):
        assert target in named, named
    assert refused and 'outside your worktree' in refused[0].data['message']
    assert a['denials'] >= 5 and a['refusals'] >= 1
    verify = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'task', 'verify',
                             'push_t', '--json', '--home', str(home)], capture_output=True,
                            text=True, cwd=ROOT)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_missing_agent_exits_2_and_starts_nothing(cell: Any, tmp_path: Path) -> None:
    e = {**os.environ, 'PATH': f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
         'ENPIRE_HOME': str(tmp_path / 'home')}
    e.pop('ANTHROPIC_API_KEY', None)
    out = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'improve', '--agent',
                          'kimi', '--budget-min', '1', '--json'], capture_output=True,
                         text=True, env=e, cwd=ROOT)
    assert out.returncode == 2 and 'not on PATH' in out.stdout
    e['PATH'] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    e['HOME'] = str(tmp_path)
    out = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'improve', '--agent',
                          'claude-code', '--budget-min', '1', '--json'], capture_output=True,
                         text=True, env=e, cwd=ROOT)
    assert out.returncode == 2 and 'no credentials' in out.stdout
    assert not (tmp_path / 'home' / 'agents').exists()


@pytest.mark.timeout(600)     # two agents, a minute each, then their evaluation trials
def test_bench_agents_writes_a_report_checked_in_chromium(cell: Any, tmp_path: Path) -> None:
    # A minute per agent: a stand-in's first trial (300 Push-T steps, ~22 s on 2 calm cores)
    # must finish inside its budget. 30 s left 8 s to spare, and a busier machine ran out
    # (the trial was cancelled; 'tried' was 0).
    # The bench branches only on the built-in agent vs a coding agent (cli_bench._bench):
    # one of each covers it; every adapter runs end to end in test_adapter_improves_end_to_end.
    e = {**os.environ, **CREDS, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}",
         'ENPIRE_HOME': str(cell.home), 'STANDIN_TRIALS': '1'}
    out = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'bench', 'agents',
                          '--task', 'push_t', '--agents', 'builtin,claude-code',
                          '--budget-min', '1', '--repeats', '1', '--eval-trials', '1',
                          '--max-restarts', '0', '--id', 'sys', '--json'],
                         capture_output=True, text=True, env=e, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout)
    assert [a['agent'] for a in res['agents']] == ['builtin', 'claude-code']
    for a in res['agents'][1:]:
        assert a['stages']['submitted'] == 1 and a['stages']['tried'] == 1
    chromium = next((c for c in ('chromium', 'chromium-browser', 'google-chrome')
                     if subprocess.run(['which', c], capture_output=True).returncode == 0),
                    None)
    if chromium is None:
        pytest.skip('no Chromium here (scripts/setup.sh installs Debian chromium as root)')
    dom = subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu',
                          '--disable-background-networking', '--disable-component-update',
                          '--no-first-run', f'--user-data-dir={tmp_path / "chrome"}',
                          '--dump-dom', Path(res['report']).as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert 'data-rendered="3"' in dom.stdout  # header + 2 agents: the page's script ran
    assert 'success vs tokens' in dom.stdout and 'bench-agents' in dom.stdout
