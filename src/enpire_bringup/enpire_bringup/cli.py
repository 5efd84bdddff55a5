"""The ``enpire`` command: ``enpire [--json] [--home DIR] <noun> <verb> ...``.

Each enpire package contributes its commands through an optional
``<package>.cli_commands`` module with ``register(subparsers)``. A verb is a function
``(args) -> dict`` bound with ``set_defaults(func=...)``: it returns its result (the object
that ``--json`` prints) and raises an :class:`EnpireError` on failure. It never prints its
result; :func:`render` is the one printer. Optional keys next to ``func`` say how to print:

``text``
    ``(out, args) -> str | None``: the text form (default: ``out`` as indented JSON);
    ``None`` prints nothing (the verb's output already streamed, e.g. ``topic echo``).
``exit_code``
    ``(out) -> int`` (default: 0, or 1 when ``out['ok']`` is false).
``sort_keys``
    ``True``: ``--json`` prints the object with sorted keys.
``streams``
    ``True``: the verb writes its own output while it runs (one JSON line per event, a
    protocol on stdout); the printer then prints only errors.

``--json`` (exactly one JSON object on stdout; progress goes to stderr) and ``--home``
(runtime data dir, default ``$ENPIRE_HOME`` or ./runs) belong to the root parser and are
accepted after any noun or verb too (``enpire task show <task> --json``); packages do not
declare them. Ports that a lower package's verb needs from a higher layer ride on the root
parser's defaults too: ``trial_stats`` (``policy show``'s trial counts from the experiment
store, see :mod:`enpire_bringup.agent_tools`).

Exit codes by error class: 0 ok, 1 failed, 2 usage/config (contract mismatch included),
3 timeout, 4 policy rejected. Heavy imports (rclpy, torch, cv2) happen inside verbs, never
here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from enpire_bringup.agent_tools import agent_tooling, recording_session, revision_trials
from enpire_common.errors import (
    ConfigError,
    EnpireError,
    EnpireTimeoutError,
    PolicyRejectedError,
)
from enpire_evolution.agents.gateway import GATEWAY_ENV

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_REJECTED = 0, 1, 2, 3, 4

# Packages whose ``cli_commands`` module adds commands (in help order).
COMMAND_PACKAGES = (
    'enpire_bringup',
    'enpire_sim',
    'enpire_reset',
    'enpire_reward',
    'enpire_rollout',
    'enpire_agent_bridge',
    'enpire_evolution',
)

#: Options of every verb: on the root parser, and again after each noun and verb.
SHARED_OPTIONS: dict[str, dict[str, Any]] = {
    '--json': {'action': 'store_true',
               'help': 'print exactly one JSON object on stdout (progress goes to stderr)'},
    '--home': {'metavar': 'DIR', 'help': 'runtime data dir (default $ENPIRE_HOME or ./runs)'},
}


def exit_code_for(err: EnpireError) -> int:
    """Map an error onto the CLI's stable exit codes."""
    if isinstance(err, PolicyRejectedError):
        return EXIT_REJECTED
    if isinstance(err, EnpireTimeoutError):
        return EXIT_TIMEOUT
    if isinstance(err, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


def _children(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    seen: set[int] = set()
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if id(child) not in seen:  # aliases share one parser
                    seen.add(id(child))
                    yield child


def _share_options(parser: argparse.ArgumentParser) -> None:
    """Accept the shared options after every noun and verb below ``parser``.

    Their default there is SUPPRESS, so a value given before the noun stays. Each noun
    also records itself as the parser whose help a verb-less command prints.
    """
    children = list(_children(parser))
    if children:
        parser.set_defaults(help_parser=parser)
    for child in children:
        for flag, kwargs in SHARED_OPTIONS.items():
            # A verb that declares its own keeps it (and so shadows the root's value).
            with contextlib.suppress(argparse.ArgumentError):
                child.add_argument(flag, default=argparse.SUPPRESS, **kwargs)
        _share_options(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='enpire',
        description='ENPIRE-ROS: reset, run, verify, record and evolve robot policies.')
    for flag, kwargs in SHARED_OPTIONS.items():
        parser.add_argument(flag, **kwargs)
    parser.set_defaults(trial_stats=revision_trials, recording_session=recording_session,
                        agent_tooling=agent_tooling)
    sub = parser.add_subparsers(dest='command', metavar='<command>')
    for pkg in COMMAND_PACKAGES:
        try:
            module = importlib.import_module(f'{pkg}.cli_commands')
        except ModuleNotFoundError as exc:
            if exc.name in (f'{pkg}.cli_commands', pkg):
                continue
            raise
        module.register(sub)
    _share_options(parser)
    return parser


def render(args: argparse.Namespace, out: dict[str, Any]) -> int:
    """Print a verb's result as ``--json`` or text; return its exit code."""
    if not getattr(args, 'streams', False):
        if args.json:
            print(json.dumps(out, sort_keys=bool(getattr(args, 'sort_keys', False))))
        else:
            text = getattr(args, 'text', None)
            shown = json.dumps(out, indent=2) if text is None else text(out, args)
            if shown is not None:
                print(shown)
    exit_code = getattr(args, 'exit_code', None)
    if exit_code is not None:
        return int(exit_code(out))
    return EXIT_OK if out.get('ok', True) else EXIT_FAILED


def render_error(args: argparse.Namespace, err: EnpireError) -> int:
    """Print an error as the ``--json`` error object or one stderr line; its exit code."""
    if getattr(args, 'json', False):
        print(json.dumps(err.to_dict()))
    else:
        print(f'enpire: error: {err}', file=sys.stderr)
    return exit_code_for(err)


#: Inside a coding agent's sandbox (``ENPIRE_GATEWAY`` set) these verbs run through the
#: agent's gateway, as the MCP tool of the same name; every other verb is refused there.
GATEWAY_VERBS: dict[tuple[str, str], tuple[str, Any]] = {
    ('task', 'show'): ('task_show', lambda a: {'task': a.task}),
    ('policy', 'submit'): ('policy_submit', lambda a: {'policy_dir': a.dir,
                                                       'parent': a.parent}),
    ('policy', 'list'): ('policy_list', lambda a: {}),
    ('policy', 'show'): ('policy_show', lambda a: {'revision': a.rev}),
    ('policy', 'activate'): ('policy_activate', lambda a: {'revision': a.rev,
                                                           'best_effort': a.best_effort}),
    ('trial', 'run'): ('trial_run', lambda a: {
        'count': a.trials, 'policy_dir': a.policy or '', 'revision': a.revision or '',
        'seed_start': a.seed_start}),
    ('trial', 'list'): ('trial_list', lambda a: {'experiment': a.experiment}),
    ('trial', 'show'): ('trial_show', lambda a: {'trial': a.trial}),
    ('exp', 'compare'): ('exp_compare', lambda a: {'a': a.a, 'b': a.b,
                                                   'experiment': a.experiment or '',
                                                   'trials': a.trials}),
    ('cell', 'status'): ('cell_status', lambda a: {}),
}


def _through_gateway(args: argparse.Namespace, address: str) -> dict[str, Any]:
    """Run a verb inside a coding agent's sandbox: forwarded to its gateway, or refused."""
    from enpire_common.errors import AgentScopeError
    from enpire_evolution.agents.gateway import call

    key = (str(getattr(args, 'command', '')), str(getattr(args, 'verb', '')))
    if key[0] == 'mcp':
        return args.func(args)
    if key not in GATEWAY_VERBS:
        raise AgentScopeError(
            f"`enpire {' '.join(k for k in key if k)}` is not available to a coding agent; "
            f"its verbs: {', '.join(' '.join(k) for k in GATEWAY_VERBS)}")
    tool, to_args = GATEWAY_VERBS[key]
    return call(address, tool, to_args(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    verb = getattr(args, 'func', None)
    if verb is None:
        getattr(args, 'help_parser', parser).print_help()
        return EXIT_USAGE
    address = os.environ.get(GATEWAY_ENV)
    try:
        out = _through_gateway(args, address) if address else verb(args)
    except EnpireError as err:
        return render_error(args, err)
    except KeyboardInterrupt:
        print('enpire: interrupted', file=sys.stderr)
        return 130
    if not isinstance(out, dict):
        raise TypeError(f'the verb {verb.__qualname__} returned {type(out).__name__}, '
                        'not its result dict')
    return render(args, out)


if __name__ == '__main__':
    sys.exit(main())
