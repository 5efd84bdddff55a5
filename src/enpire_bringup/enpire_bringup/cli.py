"""The ``enpire`` command: ``enpire <noun> <verb> ...``.

Each enpire package contributes its commands through an optional
``<package>.cli_commands`` module with ``register(subparsers)``; handlers take the parsed
args and return the exit code. Exit codes:
0 ok, 1 failed, 2 usage/config, 3 timeout, 4 policy rejected. ``--json`` prints exactly one
JSON object on stdout. Heavy imports (rclpy, torch, cv2) happen inside handlers, never here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from enpire_common.errors import (
    ConfigError,
    EnpireError,
    EnpireTimeoutError,
    PolicyRejectedError,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_REJECTED = 0, 1, 2, 3, 4

# Packages whose ``cli`` module adds commands (in help order).
COMMAND_PACKAGES = (
    'enpire_bringup',
    'enpire_sim',
    'enpire_reset',
    'enpire_reward',
    'enpire_rollout',
    'enpire_agent_bridge',
    'enpire_evolution',
)


def exit_code_for(err: EnpireError) -> int:
    """Map an error onto the CLI's stable exit codes."""
    if isinstance(err, PolicyRejectedError):
        return EXIT_REJECTED
    if isinstance(err, EnpireTimeoutError):
        return EXIT_TIMEOUT
    if isinstance(err, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='enpire',
        description='ENPIRE-ROS: reset, run, verify, record and evolve robot policies.')
    sub = parser.add_subparsers(dest='command', metavar='<command>')
    for pkg in COMMAND_PACKAGES:
        try:
            module = importlib.import_module(f'{pkg}.cli_commands')
        except ModuleNotFoundError as exc:
            if exc.name in (f'{pkg}.cli_commands', pkg):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    handler = getattr(args, 'func', None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except EnpireError as err:
        if getattr(args, 'json', False):
            print(json.dumps({'ok': False, 'error_code': err.code, 'error': err.name,
                              'message': str(err)}))
        else:
            print(f'enpire: error: {err}', file=sys.stderr)
        return exit_code_for(err)
    except KeyboardInterrupt:
        print('enpire: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
