"""``enpire up``, ``graph``, ``topic echo``, ``view``, ``dashboard``, ``doctor``, ``mcp``.

Verbs return their result (see :mod:`enpire_bringup.cli`); ``up`` and ``topic echo`` stream
their output while they run (launcher lines, one JSON line per message) and print no text
result.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _quiet(_out: dict[str, Any], _args: argparse.Namespace) -> None:
    """Text form of a verb whose output already streamed: nothing more."""
    return None


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        'up', help='run a ros2 launch YAML file (embedded launcher or ros2 launch)',
        description='Run a launch file. Nodes are supervised OS processes; Ctrl-C stops them '
                    'all (SIGINT, then SIGTERM, then SIGKILL). Uses ros2 launch where it is '
                    'installed unless --embedded. With --json the launcher output goes to '
                    'stderr and stdout gets {"ok", "exit_code"} at the end.')
    up.add_argument('file', help='path of a .launch.yaml file')
    up.add_argument('launch_args', nargs='*', metavar='name:=value',
                    help='launch arguments declared by the file')
    up.add_argument('--embedded', action='store_true',
                    help='use the embedded launcher even where ros2 launch exists')
    up.add_argument('--print', dest='print_only', action='store_true',
                    help='validate and print the resolved node commands; start nothing')
    up.add_argument('--log-dir', default=None,
                    help='per-node logs for output: log (default log/enpire_up/<stamp>)')
    up.set_defaults(func=_up, text=_quiet, exit_code=lambda out: out['exit_code'])

    graph = sub.add_parser('graph', help='list nodes, topics, services and actions')
    graph.add_argument('--wait-s', type=float, default=2.0,
                       help='discovery time before reading the graph (s)')
    graph.add_argument('--all', action='store_true',
                       help='include hidden topics/services (/_action/, parameters)')
    graph.set_defaults(func=_graph, text=_graph_text)

    topic = sub.add_parser('topic', help='topic tools')
    tsub = topic.add_subparsers(dest='topic_command', metavar='<verb>')
    echo = tsub.add_parser('echo', help='print messages of a topic (one JSON line each; '
                                        '--json: one object with all of them at the end)')
    echo.add_argument('topic')
    echo.add_argument('--count', type=int, default=None, help='stop after N messages')
    echo.add_argument('--timeout-s', type=float, default=None,
                      help='give up after T s (exit 3 when fewer than --count arrived)')
    echo.set_defaults(func=_echo, text=_quiet)

    view = sub.add_parser(
        'view', help="serve a cell's live topics to the Foxglove app (WebSocket)",
        description="Serve /<cell>'s topics over the Foxglove WebSocket protocol until "
                    'Ctrl-C. In the Foxglove app: Open connection -> Foxglove WebSocket -> the '
                    'printed URL; config/foxglove/<task>.json is a layout for it. A topic is '
                    'read from the cell only while a viewer subscribes it.')
    view.add_argument('--cell', default='cell_0')
    view.add_argument('--host', default='127.0.0.1',
                      help='interface to listen on (default 127.0.0.1; 0.0.0.0 for others)')
    view.add_argument('--port', type=int, default=8765, help='default 8765 (Foxglove\'s)')
    view.add_argument('--duration-s', type=float, default=None,
                      help='stop after this long (default: until Ctrl-C)')
    view.set_defaults(func=_view, text=_view_text)

    dash = sub.add_parser(
        'dashboard', help='a live web dashboard of the cells and the experiment (local)',
        description='Serve a web page with the cells and their state, each cell\'s live '
                    'camera, success vs wall clock per agent, MRU, tokens per minute and the '
                    'idea tree, updated live over a WebSocket. Read-only unless --control; '
                    'then pause/resume/home need the printed token. No internet needed.')
    dash.add_argument('--host', default='127.0.0.1',
                      help='interface (default 127.0.0.1; 0.0.0.0 to share it)')
    dash.add_argument('--port', type=int, default=8080)
    dash.add_argument('--experiment', default='',
                      help='the experiment shown (default: the latest one, followed live)')
    dash.add_argument('--control', action='store_true',
                      help='allow pause / resume / home from the page (token-protected)')
    dash.add_argument('--token', default='',
                      help='the control token (default: a random one, printed; or '
                           '$ENPIRE_DASHBOARD_TOKEN)')
    dash.add_argument('--duration-s', type=float, default=None,
                      help='stop after this long (default: until Ctrl-C)')
    dash.set_defaults(func=_dashboard, text=_dashboard_text)

    doctor = sub.add_parser('doctor', help='report the ROS, Python and GPU environment')
    doctor.set_defaults(func=_doctor, text=_doctor_text)

    mcp = sub.add_parser('mcp', help='serve the agent tools over MCP (stdio)',
                         description='An MCP server on stdin/stdout with the tools task_show, '
                                     'policy_submit, policy_list, policy_show, '
                                     'policy_activate, trial_run, trial_show, trial_list, '
                                     'exp_compare, cell_status (same JSON as the CLI verbs).')
    mcp.set_defaults(func=_mcp, streams=True)


def _up(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_bringup.launcher.runner import up

    rc = up(args.file, args.launch_args, embedded=args.embedded, print_only=args.print_only,
            log_dir=args.log_dir, out=sys.stderr if args.json else None)
    return {'ok': rc == 0, 'exit_code': rc}


def _graph(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_bringup.introspect import read_graph

    return read_graph(wait_s=args.wait_s, include_hidden=args.all)


def _graph_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    from enpire_bringup.introspect import format_graph

    return format_graph(out)


def _echo(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_bringup.introspect import echo

    def stream(message: dict[str, Any]) -> None:
        print(json.dumps(message), flush=True)

    return echo(args.topic, count=args.count, timeout_s=args.timeout_s,
                on_message=None if args.json else stream)


def _view(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_bringup.foxglove_view import serve

    def ready(view: Any) -> None:
        print(f'serving /{view.cell} on {view.url} (Foxglove app: Open connection -> '
              'Foxglove WebSocket); Ctrl-C stops', file=sys.stderr, flush=True)

    return serve(args.cell, args.host, args.port, args.duration_s, on_ready=ready)


def _view_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    sent = sum(out['forwarded'].values())
    return (f"served /{out['cell']} on {out['url']}: {len(out['topics'])} topics, "
            f'{sent} messages forwarded')


def _dashboard(args: argparse.Namespace) -> dict[str, Any]:
    import os

    from enpire_bringup.dashboard.server import serve

    token = args.token or os.environ.get('ENPIRE_DASHBOARD_TOKEN', '')

    def ready(dash: Any) -> None:
        where = dash.url + (f'#token={dash.token}' if dash.control else '')
        mode = 'control on (keep the token private)' if dash.control else 'read-only'
        print(f'dashboard on {where} ({mode}); Ctrl-C stops', file=sys.stderr, flush=True)

    return serve(args.home, args.host, args.port, args.experiment, args.control, token,
                 args.duration_s, on_ready=ready)


def _dashboard_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    return f"dashboard {out['url']} served {out['updates']} updates"


def _doctor(_args: argparse.Namespace) -> dict[str, Any]:
    from enpire_bringup.introspect import doctor

    return doctor()


def _doctor_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    from enpire_bringup.introspect import format_doctor

    return format_doctor(out)


def _mcp(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_bringup.agent_tools import serve

    serve(args.home)
    return {'ok': True}
