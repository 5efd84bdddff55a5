"""Read ros2 launch YAML files into a validated :class:`LaunchPlan` (pure: no processes).

Over 500 lines on purpose: one reader per launch action (arg, let, node, group, include,
push-ros-namespace, set-env, ...) sharing one scope and one error path; split, each would
need the whole reader state.

The schema is launch / launch_ros's YAML frontend::

    launch:
    - arg: {name: n, default: '2', description: ...}
    - let: {name: x, value: $(var n)}
    - node:
        pkg: enpire_bringup
        exec: heartbeat
        name: heartbeat          # -> -r __node:=heartbeat
        namespace: sensors       # relative names are pushed under the group namespace
        output: screen           # screen | log | both (default: log, as launch_ros)
        respawn: 'true'
        respawn_delay: 1.0
        on_exit: shutdown        # the node is required: its exit ends the launch
        args: '--foo bar'        # before --ros-args
        ros_args: '--log-level debug'
        env: [{name: X, value: Y}]
        param: [{name: rate_hz, value: 2.0}, {from: $(dirname)/params.yaml}]
        remap: [{from: heartbeat, to: beat}]
    - group:                    # scoped: let/arg values and namespaces stay inside
        - push-ros-namespace: {namespace: cell_0}   # or push_ros_namespace
        - node: {...}
    - include:
        file: $(dirname)/other.launch.yaml
        arg: [{name: n, value: '3'}]

Any action takes ``if:`` / ``unless:``. Unknown tags or keys are errors with the file and line
(and a did-you-mean), found before anything starts.
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from enpire_bringup.launcher.substitutions import (
    SubstitutionContext,
    SubstitutionError,
    has_substitution,
    substitute,
    to_bool,
)
from enpire_common.errors import LaunchError

OUTPUTS = ('screen', 'log', 'both')


class PackageIndex(Protocol):
    """Where packages and their executables live (the ament index in production)."""

    def packages(self) -> Sequence[str]:
        """Every known package name."""

    def prefix(self, package: str) -> str:
        """The install prefix of ``package``; KeyError when unknown."""


class AmentIndex:
    """:class:`PackageIndex` over ament_index_python (``AMENT_PREFIX_PATH``)."""

    def packages(self) -> Sequence[str]:
        from ament_index_python.packages import get_packages_with_prefixes

        return sorted(get_packages_with_prefixes())

    def prefix(self, package: str) -> str:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        try:
            return get_package_prefix(package)
        except PackageNotFoundError as exc:
            raise KeyError(package) from exc


@dataclass(frozen=True)
class ParamFile:
    """``--params-file path`` (a ``ros__parameters`` YAML passed through)."""

    path: str


@dataclass(frozen=True)
class InlineParams:
    """Consecutive ``{name, value}`` params; written to one generated params file."""

    values: tuple[tuple[str, object], ...]

    def as_yaml(self) -> str:
        """The generated file's text: every node (``/**``) gets these parameters."""
        return yaml.safe_dump({'/**': {'ros__parameters': dict(self.values)}},
                              default_flow_style=False, sort_keys=False)


@dataclass(frozen=True)
class NodeSpec:
    """One node to run as its own OS process, fully resolved."""

    package: str
    executable: str
    executable_path: str
    name: str | None
    namespace: str
    params: tuple[ParamFile | InlineParams, ...] = ()
    remaps: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    ros_args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    output: str = 'log'
    respawn: bool = False
    respawn_delay_s: float = 0.0
    required: bool = False
    label: str = ''
    source: str = ''

    @property
    def fqn(self) -> str:
        """The fully qualified node name (or namespace + executable when unnamed)."""
        base = self.name or self.executable
        return f"{self.namespace.rstrip('/')}/{base}"

    def command(self, params_file_for: Callable[[InlineParams], str]) -> list[str]:
        """The argv launch_ros would build: exec, args, then ``--ros-args`` remaps/params.

        Args:
            params_file_for: writes an inline param block to a file and returns its path.
        """
        ros: list[str] = []
        if self.name:
            ros += ['-r', f'__node:={self.name}']
        if self.namespace != '/':
            ros += ['-r', f'__ns:={self.namespace}']
        for p in self.params:
            path = p.path if isinstance(p, ParamFile) else params_file_for(p)
            ros += ['--params-file', path]
        for src, dst in self.remaps:
            ros += ['-r', f'{src}:={dst}']
        ros += list(self.ros_args)
        cmd = [self.executable_path, *self.args]
        if ros:
            cmd += ['--ros-args', *ros]
        return cmd


@dataclass(frozen=True)
class ArgDecl:
    name: str
    default: str | None
    description: str


@dataclass(frozen=True)
class LaunchPlan:
    """Everything ``enpire up`` will start, in order, plus the top file's declared args."""

    file: str
    nodes: tuple[NodeSpec, ...]
    args: tuple[ArgDecl, ...] = ()
    configs: Mapping[str, str] = field(default_factory=dict)


# --- YAML with line numbers ----------------------------------------------------------------
_CONSTRUCTOR = yaml.SafeLoader('')


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _compose_file(path: str, line: int | None = None, including: str | None = None
                  ) -> yaml.Node | None:
    try:
        text = Path(path).read_text()
    except FileNotFoundError as exc:
        raise LaunchError(f"launch file '{path}' does not exist", including, line) from exc
    except OSError as exc:
        raise LaunchError(f"cannot read launch file '{path}': {exc.strerror}",
                          including, line) from exc
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        problem = getattr(exc, 'problem', None) or str(exc)
        raise LaunchError(f'invalid YAML: {problem}', path,
                          mark.line + 1 if mark else None) from exc


class _Reader:
    """Walks composed YAML nodes, tracking the file for error positions."""

    def __init__(self, file: str) -> None:
        self.file = file

    def err(self, node: yaml.Node | None, problem: str) -> LaunchError:
        return LaunchError(problem, self.file, _line(node) if node is not None else None)

    def mapping(self, node: yaml.Node, what: str, allowed: Sequence[str]
                ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.err(node, f'{what} must be a mapping of attributes')
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ''
                raise self.err(key_node, f"unknown attribute '{key}' in {what}{hint} "
                                         f"(allowed: {', '.join(allowed)})")
            if key in out:
                raise self.err(key_node, f"duplicate attribute '{key}' in {what}")
            out[key] = value_node
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.err(node, f'{what} must be a list')
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> object:
        if not isinstance(node, yaml.ScalarNode):
            raise self.err(node, f'{what} must be a single value, not a list or mapping')
        return _CONSTRUCTOR.construct_object(node)

    def value(self, node: yaml.Node) -> object:
        return _CONSTRUCTOR.construct_object(node, deep=True)


@dataclass
class _Scope:
    configs: dict[str, str]
    namespace: str  # pushed ROS namespace, '' or '/a/b'
    env: Mapping[str, str]
    file: str


ACTIONS = ('arg', 'let', 'node', 'group', 'include', 'push-ros-namespace',
           'push_ros_namespace')
NODE_KEYS = ('pkg', 'exec', 'name', 'namespace', 'param', 'remap', 'output', 'respawn',
             'respawn_delay', 'args', 'ros_args', 'env', 'on_exit', 'if', 'unless')


class LaunchParser:
    """Turns a launch file plus ``name:=value`` arguments into a :class:`LaunchPlan`.

    Args:
        index: package lookup (the ament index unless a test passes a fake).
        env: environment used by ``$(env)`` (defaults to ``os.environ``).
    """

    def __init__(self, index: PackageIndex | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self._index = index or AmentIndex()
        self._env = dict(os.environ if env is None else env)
        self._nodes: list[NodeSpec] = []
        self._declared: set[str] = set()
        self._include_depth = 0

    def parse(self, file: str | os.PathLike, cli_args: Mapping[str, str] | None = None
              ) -> LaunchPlan:
        """Read, resolve and validate ``file``.

        Raises:
            LaunchError: with the file and line of the first problem found.
        """
        path = os.path.abspath(os.fspath(file))
        cli = dict(cli_args or {})
        scope = _Scope(configs=dict(cli), namespace='', env=self._env, file=path)
        top_args = self._run_file(path, scope, line=None, including=None)
        unknown = sorted(set(cli) - self._declared)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(self._declared), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            known = ', '.join(sorted(self._declared)) or '(none declared)'
            raise LaunchError(f"unknown launch argument '{unknown[0]}:=...'{hint} "
                              f'(declared: {known})', path)
        return LaunchPlan(file=path, nodes=tuple(_label(self._nodes)), args=tuple(top_args),
                          configs=dict(scope.configs))

    # -- files and actions --------------------------------------------------------------
    def _run_file(self, path: str, scope: _Scope, line: int | None, including: str | None
                  ) -> list[ArgDecl]:
        if self._include_depth > 20:
            raise LaunchError(f"includes nested deeper than 20 at '{path}': is there a cycle?",
                              including, line)
        root = _compose_file(path, line, including)
        r = _Reader(path)
        if root is None:
            raise LaunchError("empty launch file: expected a top-level 'launch:' list", path, 1)
        top = r.mapping(root, 'the launch file', ('launch',))
        if 'launch' not in top:
            raise r.err(root, "missing top-level 'launch:' list")
        old_file = scope.file
        scope.file = path
        decls: list[ArgDecl] = []
        try:
            self._run_actions(r, r.sequence(top['launch'], "'launch'"), scope, decls)
        finally:
            scope.file = old_file
        return decls

    def _run_actions(self, r: _Reader, items: list[yaml.Node], scope: _Scope,
                     decls: list[ArgDecl]) -> None:
        for item in items:
            if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
                raise r.err(item, 'each launch entry must be a mapping with exactly one tag '
                                  f"({', '.join(ACTIONS)})")
            key_node, body = item.value[0]
            tag = key_node.value
            if tag not in ACTIONS:
                close = difflib.get_close_matches(str(tag), ACTIONS, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ''
                raise r.err(key_node, f"unknown launch tag '{tag}'{hint} "
                                      f"(supported: {', '.join(ACTIONS)})")
            # 'push-ros-namespace' and 'push_ros_namespace' share one handler, as in launch.
            getattr(self, '_do_' + tag.replace('-', '_'))(r, body, scope, decls)

    def _sub(self, r: _Reader, node: yaml.Node, scope: _Scope, what: str) -> str:
        raw = r.scalar(node, what)
        text = '' if raw is None else str(raw).lower() if isinstance(raw, bool) else str(raw)
        try:
            return substitute(text, self._ctx(scope))
        except SubstitutionError as exc:
            raise r.err(node, f'{what}: {exc}') from exc

    def _ctx(self, scope: _Scope) -> SubstitutionContext:
        return SubstitutionContext(configs=scope.configs, env=scope.env, file=scope.file,
                                   package_prefix=self._pkg_prefix)

    def _pkg_prefix(self, package: str) -> str:
        try:
            return self._index.prefix(package)
        except KeyError:
            raise SubstitutionError(_unknown_package(package, self._index.packages())) from None

    def _enabled(self, r: _Reader, attrs: dict[str, yaml.Node], scope: _Scope) -> bool:
        for key, want in (('if', True), ('unless', False)):
            if key in attrs:
                text = self._sub(r, attrs[key], scope, f"'{key}'")
                try:
                    if to_bool(text, f"'{key}'") != want:
                        return False
                except SubstitutionError as exc:
                    raise r.err(attrs[key], str(exc)) from exc
        return True

    def _required(self, r: _Reader, attrs: dict[str, yaml.Node], key: str,
                  owner: yaml.Node, what: str) -> yaml.Node:
        if key not in attrs:
            raise r.err(owner, f"{what} needs a '{key}' attribute")
        return attrs[key]

    def _do_arg(self, r, body, scope, decls) -> None:
        a = r.mapping(body, "'arg'", ('name', 'default', 'description', 'if', 'unless'))
        name = self._sub(r, self._required(r, a, 'name', body, "'arg'"), scope, 'arg name')
        if not self._enabled(r, a, scope):
            return
        default = (self._sub(r, a['default'], scope, f"default of arg '{name}'")
                   if 'default' in a else None)
        desc = str(r.scalar(a['description'], 'description') or '') if 'description' in a else ''
        self._declared.add(name)
        decls.append(ArgDecl(name, default, desc))
        if name in scope.configs:
            return
        if default is None:
            raise r.err(body, f"launch argument '{name}' is required (no default) and was "
                              f'not given: pass {name}:=<value>')
        scope.configs[name] = default

    def _do_let(self, r, body, scope, decls) -> None:
        a = r.mapping(body, "'let'", ('name', 'value', 'if', 'unless'))
        name = self._sub(r, self._required(r, a, 'name', body, "'let'"), scope, 'let name')
        value_node = self._required(r, a, 'value', body, "'let'")
        if self._enabled(r, a, scope):
            scope.configs[name] = self._sub(r, value_node, scope, f"value of let '{name}'")

    def _do_push_ros_namespace(self, r, body, scope, decls) -> None:
        a = r.mapping(body, "'push-ros-namespace'", ('namespace', 'if', 'unless'))
        ns_node = self._required(r, a, 'namespace', body, "'push-ros-namespace'")
        if not self._enabled(r, a, scope):
            return
        ns = self._sub(r, ns_node, scope, 'namespace').strip()
        scope.namespace = _join_ns(scope.namespace, ns)

    def _do_group(self, r, body, scope, decls) -> None:
        scoped = True
        if isinstance(body, yaml.MappingNode):
            a = r.mapping(body, "'group'", ('children', 'scoped', 'forwarding', 'if', 'unless'))
            if not self._enabled(r, a, scope):
                return
            if 'scoped' in a:
                try:
                    scoped = to_bool(self._sub(r, a['scoped'], scope, 'scoped'), "'scoped'")
                except SubstitutionError as exc:
                    raise r.err(a['scoped'], str(exc)) from exc
            children = r.sequence(self._required(r, a, 'children', body, "'group'"),
                                  "'children'")
        else:
            children = r.sequence(body, "'group'")
        if not scoped:
            self._run_actions(r, children, scope, decls)
            return
        inner = _Scope(configs=dict(scope.configs), namespace=scope.namespace, env=scope.env,
                       file=scope.file)
        self._run_actions(r, children, inner, decls)

    def _do_include(self, r, body, scope, decls) -> None:
        a = r.mapping(body, "'include'", ('file', 'arg', 'if', 'unless'))
        file_node = self._required(r, a, 'file', body, "'include'")
        if not self._enabled(r, a, scope):
            return
        target = self._sub(r, file_node, scope, 'include file')
        if not os.path.isabs(target):
            # launch resolves relative include paths against the working directory; a path
            # relative to the including file is what authors mean far more often.
            local = os.path.join(os.path.dirname(scope.file), target)
            target = local if os.path.exists(local) else os.path.abspath(target)
        if not target.endswith(('.yaml', '.yml')):
            raise r.err(file_node, f"cannot include '{target}': the embedded launcher reads "
                                   'YAML launch files only (use ros2 launch for .py/.xml)')
        inner = _Scope(configs=dict(scope.configs), namespace=scope.namespace, env=scope.env,
                       file=scope.file)
        for item in r.sequence(a['arg'], "'arg' of include") if 'arg' in a else []:
            ia = r.mapping(item, "include 'arg'", ('name', 'value'))
            name = self._sub(r, self._required(r, ia, 'name', item, "include 'arg'"), scope,
                             'include arg name')
            inner.configs[name] = self._sub(r, self._required(r, ia, 'value', item,
                                                              "include 'arg'"),
                                            scope, f"value of include arg '{name}'")
        self._include_depth += 1
        try:
            self._run_file(target, inner, line=_line(file_node), including=scope.file)
        finally:
            self._include_depth -= 1

    def _do_node(self, r, body, scope, decls) -> None:
        a = r.mapping(body, "'node'", NODE_KEYS)
        if not self._enabled(r, a, scope):
            return
        pkg = self._sub(r, self._required(r, a, 'pkg', body, "'node'"), scope, 'pkg')
        exe = self._sub(r, self._required(r, a, 'exec', body, "'node'"), scope, 'exec')
        try:
            prefix = self._index.prefix(pkg)
        except KeyError:
            raise r.err(a['pkg'], _unknown_package(pkg, self._index.packages())) from None
        exe_path = os.path.join(prefix, 'lib', pkg, exe)
        if not (os.path.isfile(exe_path) and os.access(exe_path, os.X_OK)):
            libdir = Path(prefix, 'lib', pkg)
            known = sorted(p.name for p in libdir.iterdir()
                           if p.is_file() and os.access(p, os.X_OK)) if libdir.is_dir() else []
            close = difflib.get_close_matches(exe, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            raise r.err(a['exec'], f"package '{pkg}' has no executable '{exe}'{hint} "
                                   f"(known: {', '.join(known) or 'none'})")
        name = self._sub(r, a['name'], scope, 'name') if 'name' in a else None
        if name is not None and (not name or '/' in name):
            raise r.err(a['name'], f"node name '{name}' is invalid: use a plain name and "
                                   "put the path in 'namespace'")
        ns = self._sub(r, a['namespace'], scope, 'namespace') if 'namespace' in a else ''
        namespace = ns if ns.startswith('/') else _join_ns(scope.namespace, ns)
        output = self._sub(r, a['output'], scope, 'output') if 'output' in a else 'log'
        if output not in OUTPUTS:
            raise r.err(a['output'], f"output '{output}' is invalid: use one of "
                                     f"{', '.join(OUTPUTS)}")
        respawn = self._bool(r, a, 'respawn', scope)
        delay = 0.0
        if 'respawn_delay' in a:
            text = self._sub(r, a['respawn_delay'], scope, 'respawn_delay')
            try:
                delay = float(text)
            except ValueError:
                delay = -1.0
            if delay < 0:
                raise r.err(a['respawn_delay'], f"respawn_delay '{text}' is invalid: use a "
                                                'number of seconds >= 0')
        required = False
        if 'on_exit' in a:
            action = self._sub(r, a['on_exit'], scope, 'on_exit')
            if action != 'shutdown':
                raise r.err(a['on_exit'], f"on_exit '{action}' is not supported: the "
                                          "embedded launcher knows 'shutdown'")
            required = True
        args = tuple(shlex.split(self._sub(r, a['args'], scope, 'args'))) if 'args' in a else ()
        ros_args = (tuple(shlex.split(self._sub(r, a['ros_args'], scope, 'ros_args')))
                    if 'ros_args' in a else ())
        env = []
        for item in r.sequence(a['env'], "'env'") if 'env' in a else []:
            e = r.mapping(item, "'env' entry", ('name', 'value'))
            env.append((self._sub(r, self._required(r, e, 'name', item, "'env' entry"), scope,
                                  'env name'),
                        self._sub(r, self._required(r, e, 'value', item, "'env' entry"),
                                  scope, 'env value')))
        remaps = []
        for item in r.sequence(a['remap'], "'remap'") if 'remap' in a else []:
            m = r.mapping(item, "'remap' entry", ('from', 'to'))
            remaps.append((self._sub(r, self._required(r, m, 'from', item, "'remap'"), scope,
                                     'remap from'),
                           self._sub(r, self._required(r, m, 'to', item, "'remap'"), scope,
                                     'remap to')))
        params = self._params(r, a['param'], scope) if 'param' in a else ()
        self._nodes.append(NodeSpec(
            package=pkg, executable=exe, executable_path=exe_path, name=name,
            namespace=namespace or '/', params=params, remaps=tuple(remaps), args=args,
            ros_args=ros_args, env=tuple(env), output=output, respawn=respawn,
            respawn_delay_s=delay, required=required,
            source=f'{scope.file}:{_line(body)}'))

    def _bool(self, r: _Reader, a: dict[str, yaml.Node], key: str, scope: _Scope) -> bool:
        if key not in a:
            return False
        try:
            return to_bool(self._sub(r, a[key], scope, key), f"'{key}'")
        except SubstitutionError as exc:
            raise r.err(a[key], str(exc)) from exc

    def _params(self, r: _Reader, node: yaml.Node, scope: _Scope
                ) -> tuple[ParamFile | InlineParams, ...]:
        out: list[ParamFile | InlineParams] = []
        inline: list[tuple[str, object]] = []
        for item in r.sequence(node, "'param'"):
            p = r.mapping(item, "'param' entry", ('name', 'value', 'from'))
            if 'from' in p:
                if 'name' in p or 'value' in p:
                    raise r.err(item, "a 'param' entry has either 'from' or 'name'+'value'")
                if inline:
                    out.append(InlineParams(tuple(inline)))
                    inline = []
                path = self._sub(r, p['from'], scope, 'param file')
                if not os.path.isabs(path):
                    path = os.path.abspath(path)
                self._check_param_file(r, p['from'], path)
                out.append(ParamFile(path))
                continue
            name = self._sub(r, self._required(r, p, 'name', item, "'param' entry"), scope,
                             'param name')
            value_node = self._required(r, p, 'value', item, "'param' entry")
            inline.append((name, self._param_value(r, value_node, scope, name)))
        if inline:
            out.append(InlineParams(tuple(inline)))
        return tuple(out)

    def _param_value(self, r: _Reader, node: yaml.Node, scope: _Scope, name: str) -> object:
        value = r.value(node)

        def resolve(v: object) -> object:
            if isinstance(v, str) and has_substitution(v):
                try:
                    text = substitute(v, self._ctx(scope))
                except SubstitutionError as exc:
                    raise r.err(node, f"param '{name}': {exc}") from exc
                # launch_ros types substituted text the way YAML would ('2.0' -> 2.0).
                try:
                    typed = yaml.safe_load(text)
                except yaml.YAMLError:
                    return text
                return typed if isinstance(typed, (bool, int, float, str, list)) else text
            if isinstance(v, list):
                return [resolve(x) for x in v]
            if isinstance(v, dict):
                raise r.err(node, f"param '{name}' is a mapping: nested params are not "
                                  "supported, use dotted names ('group.key')")
            return v

        return resolve(value)

    @staticmethod
    def _check_param_file(r: _Reader, node: yaml.Node, path: str) -> None:
        if not os.path.isfile(path):
            raise r.err(node, f"param file '{path}' does not exist")
        try:
            data = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, 'problem_mark', None)
            raise LaunchError(f'invalid YAML in param file: {getattr(exc, "problem", exc)}',
                              path, mark.line + 1 if mark else None) from exc
        if not isinstance(data, dict):
            raise r.err(node, f"param file '{path}' must map node names to "
                              "{ros__parameters: {...}}")


def _unknown_package(package: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(package, list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    return (f"package '{package}' not found in the ament index{hint} "
            '(is the workspace built and scripts/env.sh sourced?)')


def _join_ns(base: str, ns: str) -> str:
    ns = ns.strip('/')
    if not ns:
        return base
    return f"{base.rstrip('/')}/{ns}" if base else f'/{ns}'


def _label(nodes: list[NodeSpec]) -> list[NodeSpec]:
    """Give each node a unique short label (its FQN without the leading '/')."""
    from dataclasses import replace

    seen: dict[str, int] = {}
    out = []
    for n in nodes:
        base = n.fqn.lstrip('/')
        seen[base] = seen.get(base, 0) + 1
        label = base if seen[base] == 1 else f'{base}-{seen[base]}'
        out.append(replace(n, label=label))
    return out


def parse_cli_args(items: Sequence[str]) -> dict[str, str]:
    """``['a:=1', 'b:=x']`` -> ``{'a': '1', 'b': 'x'}``.

    Raises:
        LaunchError: an item is not ``name:=value``.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(':=')
        if not sep or not name:
            raise LaunchError(f"launch argument '{item}' is malformed: use name:=value")
        out[name] = value
    return out


def load_plan(file: str | os.PathLike, cli_args: Mapping[str, str] | None = None,
              index: PackageIndex | None = None, env: Mapping[str, str] | None = None
              ) -> LaunchPlan:
    """Parse and validate a launch file (see :class:`LaunchParser`)."""
    return LaunchParser(index=index, env=env).parse(file, cli_args)
