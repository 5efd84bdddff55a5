"""Unit tests of the embedded launcher's parsing, substitution and validation (no processes)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from enpire_bringup.launcher.parse import InlineParams, ParamFile, load_plan, parse_cli_args
from enpire_bringup.launcher.runner import EMBEDDED, ROS2_LAUNCH, choose_runner, up
from enpire_bringup.launcher.substitutions import (
    SubstitutionContext,
    SubstitutionError,
    substitute,
)
from enpire_common.errors import LaunchError


class FakeIndex:
    """A package index over a temporary prefix with real executable files."""

    def __init__(self, root: Path, packages: dict[str, list[str]]) -> None:
        self.root = root
        for pkg, exes in packages.items():
            (root / 'share' / pkg).mkdir(parents=True)
            (root / 'lib' / pkg).mkdir(parents=True)
            for exe in exes:
                path = root / 'lib' / pkg / exe
                path.write_text('#!/bin/sh\n')
                path.chmod(0o755)
        self._packages = sorted(packages)

    def packages(self) -> list[str]:
        return self._packages

    def prefix(self, package: str) -> str:
        if package not in self._packages:
            raise KeyError(package)
        return str(self.root)


@pytest.fixture
def index(tmp_path: Path) -> FakeIndex:
    return FakeIndex(tmp_path / 'prefix', {'demo_pkg': ['talker', 'listener'],
                                           'other_pkg': ['tool']})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def ctx(**configs: str) -> SubstitutionContext:
    return SubstitutionContext(configs=configs, env={'HOME_X': '/h'}, file='/a/b/x.yaml',
                               package_prefix=lambda p: f'/opt/{p}')


@pytest.mark.parametrize(('text', 'expected'), [
    ('plain', 'plain'),
    ('$(var n)', '3'),
    ('cell_$(var n)/x', 'cell_3/x'),
    ('$(env HOME_X)', '/h'),
    ('$(env NOPE fallback)', 'fallback'),
    ("$(env NOPE 'two words')", 'two words'),
    ('$(optenv NOPE)', ''),
    ('$(find-pkg-share demo)/launch', '/opt/demo/share/demo/launch'),
    ('$(find-pkg-prefix demo)', '/opt/demo'),
    ('$(dirname)/p.yaml', '/a/b/p.yaml'),
    ('$(var $(var which))', '3'),
    ('$(not $(equals a b))', 'true'),
])
def test_substitutions_resolve_like_ros2_launch(text, expected):
    assert substitute(text, ctx(n='3', which='n')) == expected


@pytest.mark.parametrize(('text', 'match'), [
    ('$(var nn)', "launch configuration 'nn' is not set; did you mean 'n'"),
    ('$(env NOPE)', "environment variable 'NOPE' is not set"),
    ('$(vra n)', r"unknown substitution '\$\(vra\)'; did you mean 'var'"),
    ('$(var n', 'unterminated substitution'),
    ('$(dirname x)', 'takes 0 argument'),
])
def test_bad_substitutions_name_the_problem(text, match):
    with pytest.raises(SubstitutionError, match=match):
        substitute(text, ctx(n='3'))


def test_nodes_in_groups_get_pushed_namespaces_and_ros_args_in_launch_ros_order(
        tmp_path, index):
    params = write(tmp_path, 'p.yaml', '/**:\n  ros__parameters:\n    a: 1\n')
    f = write(tmp_path, 'main.launch.yaml', f"""\
        launch:
        - arg: {{name: rate, default: '2.5'}}
        - group:
          - push-ros-namespace: {{namespace: cell_0}}
          - node:
              pkg: demo_pkg
              exec: talker
              name: talk
              namespace: sub
              args: --foo 'bar baz'
              param:
              - {{name: rate_hz, value: $(var rate)}}
              - {{name: label, value: hi}}
              - from: {params}
              - {{name: n, value: 4}}
              remap: [{{from: chatter, to: /global}}]
        - group:
            scoped: 'true'
            children:
            - push_ros_namespace: {{namespace: /cell_1}}
            - node: {{pkg: demo_pkg, exec: listener}}
        - node: {{pkg: demo_pkg, exec: listener, namespace: /abs}}
        """)
    plan = load_plan(f, {'rate': '4.0'}, index=index, env={})
    talk, listen, absolute = plan.nodes
    assert (talk.namespace, talk.fqn, talk.label) == ('/cell_0/sub', '/cell_0/sub/talk',
                                                      'cell_0/sub/talk')
    assert talk.params == (InlineParams((('rate_hz', 4.0), ('label', 'hi'))),
                           ParamFile(str(params)), InlineParams((('n', 4),)))
    written: list[InlineParams] = []

    def file_for(block: InlineParams) -> str:
        written.append(block)
        return f'/tmp/gen{len(written)}.yaml'

    assert talk.command(file_for) == [
        str(index.root / 'lib/demo_pkg/talker'), '--foo', 'bar baz', '--ros-args',
        '-r', '__node:=talk', '-r', '__ns:=/cell_0/sub', '--params-file', '/tmp/gen1.yaml',
        '--params-file', str(params), '--params-file', '/tmp/gen2.yaml',
        '-r', 'chatter:=/global']
    assert yaml.safe_load(written[0].as_yaml()) == {
        '/**': {'ros__parameters': {'rate_hz': 4.0, 'label': 'hi'}}}
    assert listen.namespace == '/cell_1' and listen.name is None
    assert listen.command(file_for) == [str(index.root / 'lib/demo_pkg/listener'),
                                        '--ros-args', '-r', '__ns:=/cell_1']
    assert absolute.namespace == '/abs'


def test_scoped_groups_and_includes_keep_their_lets_inside(tmp_path, index):
    write(tmp_path, 'child.launch.yaml', """\
        launch:
        - arg: {name: who, default: nobody}
        - let: {name: leaked, value: 'yes'}
        - node: {pkg: demo_pkg, exec: talker, name: $(var who), respawn: true,
                 respawn_delay: 1.5, on_exit: shutdown, output: screen}
        """)
    f = write(tmp_path, 'main.launch.yaml', """\
        launch:
        - let: {name: ns, value: outer}
        - group:
          - let: {name: ns, value: inner}
          - push-ros-namespace: {namespace: $(var ns)}
          - include:
              file: child.launch.yaml
              arg: [{name: who, value: alice}]
        - node: {pkg: demo_pkg, exec: talker, namespace: $(var ns),
                 if: $(equals $(var ns) outer)}
        - node: {pkg: demo_pkg, exec: listener, unless: 'true'}
        """)
    plan = load_plan(f, index=index, env={})
    assert [n.fqn for n in plan.nodes] == ['/inner/alice', '/outer/talker']
    child = plan.nodes[0]
    assert (child.respawn, child.respawn_delay_s, child.required, child.output) == (
        True, 1.5, True, 'screen')
    assert 'leaked' not in plan.configs


@pytest.mark.parametrize(('body', 'line', 'match'), [
    ('- node: {pkg: demo_pkgg, exec: talker}', 2,
     "package 'demo_pkgg' not found in the ament index; did you mean 'demo_pkg'"),
    ('- node: {pkg: demo_pkg, exec: talkr}', 2,
     "package 'demo_pkg' has no executable 'talkr'; did you mean 'talker'"),
    ('- arg: {name: must}', 2, "launch argument 'must' is required .* pass must:=<value>"),
    ('- node:\n    pkg: demo_pkg\n    exec: talker\n    param: [{from: /no/such.yaml}]', 5,
     "param file '/no/such.yaml' does not exist"),
    ('- node:\n    pkg: demo_pkg\n    exec: talker\n    respwan: true', 5,
     "unknown attribute 'respwan' in 'node'; did you mean 'respawn'"),
    ('- nodes: {pkg: demo_pkg}', 2, "unknown launch tag 'nodes'; did you mean 'node'"),
    ('- node: {pkg: demo_pkg, exec: talker, output: loud}', 2, "output 'loud' is invalid"),
    ('- node: {pkg: demo_pkg, exec: talker, respawn: maybe}', 2,
     "'respawn' must be true or false, got 'maybe'"),
    ('- node: {pkg: demo_pkg, exec: talker, on_exit: restart}', 2,
     "on_exit 'restart' is not supported"),
    ('- node: {pkg: demo_pkg}', 2, "'node' needs a 'exec' attribute"),
    ('- node: {pkg: demo_pkg, exec: $(var nope)}', 2, "launch configuration 'nope' is not set"),
    ('- include: {file: missing.launch.yaml}', 2, "launch file '.*missing.launch.yaml' does "
                                                  'not exist'),
    ('- node: {pkg: demo_pkg, exec: talker}}', 2, 'invalid YAML'),
])
def test_invalid_launch_files_fail_with_file_line_and_problem(tmp_path, index, body, line,
                                                              match):
    f = write(tmp_path, 'bad.launch.yaml', 'launch:\n' + body + '\n')
    with pytest.raises(LaunchError, match=match) as info:
        load_plan(f, index=index, env={})
    assert (info.value.file, info.value.line) == (str(f), line)
    assert str(info.value).startswith(f'{f}:{line}: ')
    assert '\n' not in str(info.value)


def test_unknown_command_line_argument_suggests_the_declared_one(tmp_path, index):
    f = write(tmp_path, 'a.launch.yaml', "launch:\n- arg: {name: rate_hz, default: '1.0'}\n")
    with pytest.raises(LaunchError, match=r"unknown launch argument 'rate:=...'; did you mean "
                                          "'rate_hz'"):
        load_plan(f, {'rate': '2'}, index=index, env={})


def test_errors_inside_an_included_file_name_that_file(tmp_path, index):
    child = write(tmp_path, 'child.launch.yaml', 'launch:\n- node: {pkg: nope, exec: x}\n')
    f = write(tmp_path, 'main.launch.yaml', 'launch:\n- include: {file: $(dirname)/child.'
                                            'launch.yaml}\n')
    with pytest.raises(LaunchError) as info:
        load_plan(f, index=index, env={})
    assert (info.value.file, info.value.line) == (str(child), 2)


@pytest.mark.parametrize(('items', 'expected'), [
    ([], {}), (['a:=1', 'b:=x:=y', 'c:='], {'a': '1', 'b': 'x:=y', 'c': ''})])
def test_command_line_arguments_split_at_the_first_colon_equals(items, expected):
    assert parse_cli_args(items) == expected


def test_malformed_command_line_argument_is_rejected():
    with pytest.raises(LaunchError, match="launch argument 'rate=2' is malformed"):
        parse_cli_args(['rate=2'])


@pytest.mark.parametrize(('embedded', 'present', 'ros2', 'expected'), [
    (False, True, '/opt/ros/jazzy/bin/ros2', ROS2_LAUNCH),
    (True, True, '/opt/ros/jazzy/bin/ros2', EMBEDDED),
    (False, False, '/opt/ros/jazzy/bin/ros2', EMBEDDED),
    (False, True, None, EMBEDDED),
])
def test_up_defers_to_ros2_launch_only_where_it_is_installed(embedded, present, ros2,
                                                             expected):
    got = choose_runner(embedded, find_spec=lambda m: object() if present else None,
                        which=lambda exe: ros2)
    assert got == expected


def test_up_execs_ros2_launch_with_the_same_file_and_args(monkeypatch, tmp_path):
    import io

    from enpire_bringup.launcher import runner

    monkeypatch.setattr(runner.importlib.util, 'find_spec', lambda m: object())
    monkeypatch.setattr(runner.shutil, 'which', lambda exe: '/usr/bin/ros2')
    calls = []
    rc = up('demo.launch.yaml', ['a:=1'], out=io.StringIO(),
            exec_fn=lambda exe, argv: calls.append((exe, argv)))
    assert rc == 0
    assert calls == [('ros2', ['ros2', 'launch', 'demo.launch.yaml', 'a:=1'])]


def test_the_workspace_launch_folder_is_not_mistaken_for_the_launch_library(tmp_path,
                                                                            monkeypatch):
    import importlib

    (tmp_path / 'launch').mkdir()
    (tmp_path / 'ros2launch').mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert choose_runner(False, which=lambda exe: '/usr/bin/ros2') == EMBEDDED


def test_up_refuses_before_starting_anything_when_a_node_name_is_taken(
        tmp_path, index, monkeypatch):
    """Every taken name is reported and no node starts (no half-started second cell)."""
    import io
    import os

    from enpire_bringup.launcher import supervisor
    from enpire_common.claims import claim_node_name

    monkeypatch.setenv('TMPDIR', str(tmp_path))     # claims live under the temp dir
    monkeypatch.setenv('ROS_DOMAIN_ID', '57')
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', None)
    f = write(tmp_path, 'cell.launch.yaml', """\
        launch:
        - node: {pkg: demo_pkg, exec: talker, name: talker, namespace: cell_9}
        - node: {pkg: demo_pkg, exec: listener, name: listener, namespace: cell_9}
        - node: {pkg: other_pkg, exec: tool, name: tool, namespace: cell_9}
        """)
    fds = [claim_node_name('/cell_9/talker'), claim_node_name('/cell_9/tool')]
    started = []
    monkeypatch.setattr(supervisor.Supervisor, 'run', lambda self: started.append(1) or 0)
    try:
        out = io.StringIO()
        rc = up(str(f), [], embedded=True, out=out, index=index)
    finally:
        for fd in fds:
            os.close(fd)
    text = out.getvalue()
    assert rc == 1 and not started, text
    assert f'node /cell_9/talker already runs on this host on ROS_DOMAIN_ID=57 (pid ' \
           f'{os.getpid()})' in text
    assert 'node /cell_9/tool already runs on this host' in text
    assert '/cell_9/listener' not in text
    assert '2 of its node name(s) are taken' in text
    # Once the holders are gone the same file starts.
    assert up(str(f), [], embedded=True, out=io.StringIO(), index=index) == 0 and started
