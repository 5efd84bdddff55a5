"""The ``$(...)`` substitution language of ros2 launch frontends (pure, no I/O but lookups).

Supported: ``$(var name)``, ``$(env NAME)``, ``$(env NAME default)``, ``$(optenv NAME
[default])``, ``$(find-pkg-share pkg)``, ``$(find-pkg-prefix pkg)``, ``$(dirname)``,
``$(filename)``, ``$(not x)``, ``$(equals a b)``, ``$(eval 'expr')``. Arguments may be quoted
with ``'`` or ``"`` and may nest other substitutions, as in launch: ``$(var $(env WHICH))``.

``$(eval)`` is launch's PythonExpression restricted to what a launch file needs to count:
numbers, strings, ``+ - * // %``, comparisons, ``and``/``or``/``not`` and parentheses (no
names, calls or attributes). ``$(eval '$(var cells) - 1')`` gives ``1`` for ``cells:=2``, so a
file can include itself once per cell (launch/fleet_sim.launch.yaml).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class SubstitutionError(ValueError):
    """A substitution is malformed, unknown or cannot be resolved (message says which)."""


@dataclass(frozen=True)
class SubstitutionContext:
    """What substitutions can see.

    Attributes:
        configs: launch configurations (``arg`` / ``let`` values) in scope.
        env: the environment variables.
        file: absolute path of the launch file being read (for ``dirname``/``filename``).
        package_prefix: returns the install prefix of a package or raises ``SubstitutionError``.
    """

    configs: Mapping[str, str]
    env: Mapping[str, str]
    file: str
    package_prefix: Callable[[str], str]


SUBSTITUTIONS = ('var', 'env', 'optenv', 'find-pkg-share', 'find-pkg-prefix', 'dirname',
                 'filename', 'not', 'equals', 'eval')

def has_substitution(text: str) -> bool:
    """Whether ``text`` contains a ``$(`` substitution."""
    return '$(' in text


def parse(text: str) -> list:
    """Parse ``text`` into literal strings and ``(name, args)`` substitution tuples."""
    return _parse_text(text, 0)[0]


def _parse_text(text: str, pos: int) -> tuple[list, int]:
    parts: list = []
    buf = ''
    while pos < len(text):
        if text.startswith('$(', pos):
            if buf:
                parts.append(buf)
                buf = ''
            sub, pos = _parse_sub(text, pos + 2)
            parts.append(sub)
            continue
        buf += text[pos]
        pos += 1
    if buf:
        parts.append(buf)
    return parts, pos


def _parse_sub(text: str, pos: int) -> tuple[tuple, int]:
    start = pos
    while pos < len(text) and not text[pos].isspace() and text[pos] != ')':
        pos += 1
    name = text[start:pos]
    if not name:
        raise SubstitutionError(f"empty substitution in '{text}'")
    args: list[list] = []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            raise SubstitutionError(f"unterminated substitution '$({name}' in '{text}': "
                                    "add the closing ')'")
        if text[pos] == ')':
            return (name, args), pos + 1
        arg, pos = _parse_arg(text, pos)
        args.append(arg)


def _parse_arg(text: str, pos: int) -> tuple[list, int]:
    parts: list = []
    buf = ''
    quote = None
    while pos < len(text):
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = None
                pos += 1
                continue
        elif ch in '\'"':
            quote = ch
            pos += 1
            continue
        elif ch.isspace() or ch == ')':
            break
        if text.startswith('$(', pos):
            if buf:
                parts.append(buf)
                buf = ''
            sub, pos = _parse_sub(text, pos + 2)
            parts.append(sub)
            continue
        buf += ch
        pos += 1
    if quote:
        raise SubstitutionError(f"unterminated quote {quote} in '{text}'")
    if buf or not parts:
        parts.append(buf)
    return parts, pos


def substitute(text: str, ctx: SubstitutionContext) -> str:
    """Resolve every substitution in ``text``.

    Raises:
        SubstitutionError: unknown substitution, undefined variable, missing package...
    """
    return _eval_parts(parse(text), ctx)


def _eval_parts(parts: list, ctx: SubstitutionContext) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            name, args = part
            out.append(_eval_sub(name, [_eval_parts(a, ctx) for a in args], ctx))
    return ''.join(out)


def _nargs(name: str, args: list[str], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        want = str(low) if low == high else f'{low} to {high}'
        raise SubstitutionError(f'$({name}) takes {want} argument(s), got {len(args)}')


def _eval_sub(name: str, args: list[str], ctx: SubstitutionContext) -> str:
    import os

    if name == 'var':
        _nargs(name, args, 1, 1)
        if args[0] not in ctx.configs:
            close = difflib.get_close_matches(args[0], list(ctx.configs), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            raise SubstitutionError(f"launch configuration '{args[0]}' is not set{hint} "
                                    "(declare it with an 'arg' or 'let')")
        return ctx.configs[args[0]]
    if name in ('env', 'optenv'):
        _nargs(name, args, 1, 2)
        if args[0] in ctx.env:
            return ctx.env[args[0]]
        if len(args) == 2:
            return args[1]
        if name == 'optenv':
            return ''
        raise SubstitutionError(f"environment variable '{args[0]}' is not set: set it or "
                                f"give a default, $(env {args[0]} <default>)")
    if name in ('find-pkg-share', 'find-pkg-prefix'):
        _nargs(name, args, 1, 1)
        prefix = ctx.package_prefix(args[0])
        return os.path.join(prefix, 'share', args[0]) if name == 'find-pkg-share' else prefix
    if name == 'dirname':
        _nargs(name, args, 0, 0)
        return os.path.dirname(ctx.file)
    if name == 'filename':
        _nargs(name, args, 0, 0)
        return ctx.file
    if name == 'not':
        _nargs(name, args, 1, 1)
        return 'false' if to_bool(args[0], 'argument of $(not)') else 'true'
    if name == 'equals':
        _nargs(name, args, 2, 2)
        return 'true' if args[0] == args[1] else 'false'
    if name == 'eval':
        _nargs(name, args, 1, 1)
        return str(safe_eval(args[0]))
    close = difflib.get_close_matches(name, SUBSTITUTIONS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    raise SubstitutionError(f"unknown substitution '$({name})'{hint} "
                            f"(supported: {', '.join(SUBSTITUTIONS)})")


def safe_eval(expr: str) -> object:
    """Evaluate the arithmetic/comparison/boolean expression of ``$(eval)`` (see the top)."""
    import ast
    import operator

    binops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
    cmps = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}

    def ev(node: ast.AST) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in binops:
            return binops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else not value
        if isinstance(node, ast.BoolOp):  # Python's value semantics: 0 or 2 -> 2
            value = ev(node.values[0])
            for nxt in node.values[1:]:
                if bool(value) != isinstance(node.op, ast.And):
                    return value
                value = ev(nxt)
            return value
        if isinstance(node, ast.Compare) and all(type(o) in cmps for o in node.ops):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = ev(right_node)
                if not cmps[type(op)](left, right):
                    return False
                left = right
            return True
        raise SubstitutionError(f"$(eval '{expr}'): only numbers, strings, + - * // %, "
                                f'comparisons and and/or/not are supported here '
                                f'(found {type(node).__name__})')

    try:
        tree = ast.parse(expr.strip(), mode='eval')
    except SyntaxError as exc:
        raise SubstitutionError(f"$(eval '{expr}') is not an expression: {exc.msg}") from None
    try:
        return ev(tree.body)
    except (TypeError, ZeroDivisionError) as exc:
        raise SubstitutionError(f"$(eval '{expr}') failed: {exc}") from None


def to_bool(value: object, what: str) -> bool:
    """Launch's boolean reading: true/false/1/0 (any case) or a YAML bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', '1'):
        return True
    if text in ('false', '0'):
        return False
    raise SubstitutionError(f"{what} must be true or false, got '{value}'")
