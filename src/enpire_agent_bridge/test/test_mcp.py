"""The MCP tools: same operations and JSON as the CLI verbs; errors carry code and message.

The tool table is assembled in enpire_bringup (the top layer) from the verbs each package
exports; enpire_agent_bridge.mcp_server serves whatever table it is given."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from enpire_agent_bridge import tools
from enpire_bringup.agent_tools import TOOL_NAMES, build_server, build_tools

ROOT = Path(__file__).resolve().parents[3]
HOLD = ROOT / 'examples' / 'policies' / 'push_t' / 'hold'
BAD = ROOT / 'tests' / 'data' / 'bad_policies'


def error_of(result) -> dict:
    assert result.is_error
    text = result.content[0].text
    return json.loads(text[text.index('{'):])


def call_all(server, calls):
    from mcp import Client

    async def go():
        out = []
        async with Client(server) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            for name, arguments in calls:
                out.append(await client.call_tool(name, arguments))
        return names, out

    return anyio.run(go)


def test_the_server_lists_every_tool_and_submits_like_the_cli(tmp_path):
    names, (sub, again, listing, shown, bad, unknown) = call_all(build_server(tmp_path), [
        ('policy_submit', {'policy_dir': str(HOLD)}),
        ('policy_submit', {'policy_dir': str(HOLD)}),
        ('policy_list', {}),
        ('policy_show', {'revision': 'placeholder'}),
        ('policy_submit', {'policy_dir': str(BAD / 'returns_nan')}),
        ('trial_show', {'trial': 'no_such_trial'}),
    ])
    assert names == sorted(TOOL_NAMES)
    assert not sub.is_error and sub.structured_content['created']
    rid = sub.structured_content['revision_id']
    assert again.structured_content['revision_id'] == rid
    assert not again.structured_content['created']
    assert [r['revision_id'] for r in listing.structured_content['revisions']] == [rid]
    assert error_of(shown)['error'] == 'UNKNOWN_NAME'
    err = error_of(bad)
    assert err['error_code'] == 401 and 'guard against NaN' in err['message']
    assert err['ok'] is False
    assert error_of(unknown)['ok'] is False
    assert tools.policy_list(tmp_path) == listing.structured_content


def test_task_show_tool_returns_what_the_cli_prints(tmp_path, capsys):
    from enpire_bringup.cli import main

    _, (res,) = call_all(build_server(tmp_path), [('task_show', {'task': 'push_t'})])
    assert main(['task', 'show', 'push_t', '--json']) == 0
    assert json.loads(capsys.readouterr().out) == res.structured_content
    assert res.structured_content['action']['rate_hz'] == 10.0


def test_the_tools_of_other_packages_return_their_verbs_results_and_errors(tmp_path):
    from enpire_evolution.cli_commands import exp_compare
    from enpire_evolution.cli_trial import trial_list

    _, (listed, compared) = call_all(build_server(tmp_path), [
        ('trial_list', {'experiment': 'nothing_here'}),
        ('exp_compare', {'a': 'aaaaaa', 'b': 'bbbbbb', 'experiment': 'nope'}),
    ])
    assert listed.structured_content == trial_list('nothing_here', tmp_path)
    assert listed.structured_content == {'ok': True, 'experiment': 'nothing_here',
                                         'trials': [], 'damaged': []}
    err = error_of(compared)
    assert err['error'] == 'UNKNOWN_NAME' and "unknown experiment 'nope'" in err['message']
    with pytest.raises(Exception, match="unknown experiment 'nope'"):
        exp_compare('aaaaaa', 'bbbbbb', experiment='nope', home=tmp_path)


def test_the_tool_table_is_named_and_ordered_like_tool_names(tmp_path):
    assert tuple(fn.__name__ for fn in build_tools(tmp_path)) == TOOL_NAMES


def test_the_bridge_imports_no_higher_layer():
    """agent_bridge sits below evolution and bringup: its modules never import them."""
    import ast

    package = Path(tools.__file__).parent
    for path in package.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
            bad = [n for n in names if n.split('.')[0] in ('enpire_bringup', 'enpire_evolution')]
            assert not bad, f'{path.relative_to(package)} imports {bad}'


@pytest.mark.system
@pytest.mark.slow
def test_an_mcp_client_submits_hold_runs_five_trials_and_reads_them(tmp_path):
    from mcp import Client, StdioServerParameters

    env = {**os.environ, 'ENPIRE_HOME': str(tmp_path)}
    params = StdioServerParameters(command=sys.executable,
                                   args=['-m', 'enpire_bringup.cli', 'mcp'], env=env,
                                   cwd=str(ROOT))

    async def go():
        async with Client(params) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            sub = await client.call_tool('policy_submit', {'policy_dir': str(HOLD)})
            assert not sub.is_error, sub.content
            rid = sub.structured_content['revision_id']
            run = await client.call_tool(
                'trial_run', {'count': 5, 'revision': rid, 'seed_start': 0,
                              'experiment': 'mcp'}, read_timeout_seconds=400)
            assert not run.is_error, run.content
            shown = []
            for t in run.structured_content['trials']:
                shown.append(await client.call_tool('trial_show', {'trial': t['trial_id']}))
            return names, rid, run.structured_content, shown

    names, rid, run, shown = anyio.run(go)
    assert names == sorted(TOOL_NAMES)
    assert run['n_trials'] == 5 and run['revision_id'] == rid
    assert len(run['trials']) == 5
    for t, s in zip(run['trials'], shown, strict=True):
        assert not s.is_error, s.content
        assert s.structured_content['outcome'] == t['outcome']
        assert Path(s.structured_content['trial_dir']).is_dir()
