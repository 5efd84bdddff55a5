"""The ``enpire`` printer: verbs return results, one printer renders text or JSON, exit codes
follow the result or the error class, and --json / --home work before or after the verb."""

from __future__ import annotations

import argparse
import json

import pytest

from enpire_bringup.cli import build_parser, main, render, render_error
from enpire_common.errors import (
    CellUnavailableError,
    ContractMismatchError,
    EnpireTimeoutError,
    PolicyRejectedError,
)


def _leaves(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if child.get_default('func') is not None:
                    yield name, child
                yield from _leaves(child)


def test_json_before_the_noun_prints_what_json_after_the_verb_prints(capsys):
    assert main(['--json', 'task', 'show', 'push_t']) == 0
    before = capsys.readouterr().out
    assert main(['task', 'show', 'push_t', '--json']) == 0
    after = capsys.readouterr().out
    assert before == after and len(before.splitlines()) == 1
    assert json.loads(before)['action']['rate_hz'] == 10.0


def test_home_works_before_the_noun_and_after_the_verb(tmp_path, capsys):
    assert main(['--home', str(tmp_path / 'a'), 'task', 'lock', 'push_t', '--json']) == 0
    assert main(['task', 'lock', 'push_t', '--home', str(tmp_path / 'b'), '--json']) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first['sha256'] == second['sha256']
    assert {p.name for p in tmp_path.iterdir()} == {'a', 'b'}


def test_every_verb_accepts_json_and_home_after_it_without_shadowing_the_root():
    verbs = dict(_leaves(build_parser()))
    assert {'show', 'submit', 'run', 'compare', 'improve', 'echo', 'up', 'mcp'} <= set(verbs)
    for name, parser in verbs.items():
        for flag in ('--json', '--home'):
            action = parser._option_string_actions[flag]  # no public accessor
            assert action.default is argparse.SUPPRESS, (name, flag)


@pytest.mark.parametrize('argv', [[], ['exp'], ['bag'], ['topic']])
def test_a_noun_without_a_verb_prints_its_help_and_exits_2(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().out.startswith(f"usage: {' '.join(['enpire', *argv])} ")


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{'json': False, **kw})


def test_render_prints_text_or_one_json_object_and_the_exit_code_follows_ok(capsys):
    out = {'ok': False, 'b': 1, 'a': 2}
    assert render(_args(text=lambda o, _a: f"b={o['b']}"), out) == 1
    assert capsys.readouterr().out == 'b=1\n'
    assert render(_args(json=True, sort_keys=True), out) == 1
    assert capsys.readouterr().out == '{"a": 2, "b": 1, "ok": false}\n'
    assert render(_args(), {'x': 1}) == 0  # no ok: fine; default text is indented JSON
    assert json.loads(capsys.readouterr().out) == {'x': 1}


def test_render_honours_quiet_text_streams_and_the_verbs_exit_code(capsys):
    assert render(_args(text=lambda _o, _a: None), {'ok': True}) == 0
    assert render(_args(json=True, streams=True), {'ok': True}) == 0
    assert capsys.readouterr().out == ''
    assert render(_args(json=True, exit_code=lambda o: 0 if o['goal_met'] else 1),
                  {'ok': True, 'goal_met': False}) == 1
    assert json.loads(capsys.readouterr().out) == {'ok': True, 'goal_met': False}


@pytest.mark.parametrize(('err', 'code'), [
    (PolicyRejectedError('act returned NaN'), 4),
    (EnpireTimeoutError('no answer in 3 s'), 3),
    (ContractMismatchError('contract changed'), 2),
    (CellUnavailableError('no cell'), 1),
])
def test_errors_exit_by_class_as_one_json_object_or_one_stderr_line(err, code, capsys):
    assert render_error(_args(json=True), err) == code
    assert json.loads(capsys.readouterr().out) == {
        'ok': False, 'error_code': err.code, 'error': err.name, 'message': str(err)}
    assert render_error(_args(), err) == code
    captured = capsys.readouterr()
    assert captured.out == '' and captured.err == f'enpire: error: {err}\n'


def test_a_failing_verb_prints_only_the_error_object(capsys):
    assert main(['task', 'show', 'nope', '--json']) == 2
    out = json.loads(capsys.readouterr().out)
    assert out['error'] == 'UNKNOWN_NAME' and "unknown task 'nope'" in out['message']
