"""``enpire up``, ``enpire graph``, ``enpire topic echo``, ``enpire doctor``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        'up', help='run a ros2 launch YAML file (embedded launcher or ros2 launch)',
        description='Run a launch file. Nodes are supervised OS processes; Ctrl-C stops them '
                    'all (SIGINT, then SIGTERM, then SIGKILL). Uses ros2 launch where it is '
                    'installed unless --embedded.')
    up.add_argument('file', help='path of a .launch.yaml file')
    up.add_argument('launch_args', nargs='*', metavar='name:=value',
                    help='launch arguments declared by the file')
    up.add_argument('--embedded', action='store_true',
                    help='use the embedded launcher even where ros2 launch exists')
    up.add_argument('--print', dest='print_only', action='store_true',
                    help='validate and print the resolved node commands; start nothing')
    up.add_argument('--log-dir', default=None,
                    help='per-node logs for output: log (default log/enpire_up/<stamp>)')
    up.set_defaults(func=_up)

    graph = sub.add_parser('graph', help='list nodes, topics, services and actions')
    graph.add_argument('--json', action='store_true', help='print one JSON object')
    graph.add_argument('--wait-s', type=float, default=2.0,
                       help='discovery time before reading the graph (s)')
    graph.add_argument('--all', action='store_true',
                       help='include hidden topics/services (/_action/, parameters)')
    graph.set_defaults(func=_graph)

    topic = sub.add_parser('topic', help='topic tools')
    tsub = topic.add_subparsers(dest='topic_command', metavar='<verb>')
    echo = tsub.add_parser('echo', help='print messages of a topic')
    echo.add_argument('topic')
    echo.add_argument('--count', type=int, default=None, help='stop after N messages')
    echo.add_argument('--timeout-s', type=float, default=None,
                      help='give up after T s (exit 3 when fewer than --count arrived)')
    echo.add_argument('--json', action='store_true',
                      help='print one JSON object with all messages at the end')
    echo.set_defaults(func=_echo)
    topic.set_defaults(func=lambda args: (topic.print_help(), 2)[1])

    doctor = sub.add_parser('doctor', help='report the ROS, Python and GPU environment')
    doctor.add_argument('--json', action='store_true', help='print one JSON object')
    doctor.set_defaults(func=_doctor)


def _up(args: argparse.Namespace) -> int:
    from enpire_bringup.launcher.runner import up

    return up(args.file, args.launch_args, embedded=args.embedded,
              print_only=args.print_only, log_dir=args.log_dir)


def _graph(args: argparse.Namespace) -> int:
    from enpire_bringup.introspect import format_graph, read_graph

    graph = read_graph(wait_s=args.wait_s, include_hidden=args.all)
    print(json.dumps(graph) if args.json else format_graph(graph))
    return 0


def _echo(args: argparse.Namespace) -> int:
    from enpire_bringup.introspect import echo

    return echo(args.topic, count=args.count, timeout_s=args.timeout_s, as_json=args.json)


def _doctor(args: argparse.Namespace) -> int:
    from enpire_bringup.introspect import doctor, format_doctor

    report = doctor()
    print(json.dumps(report) if args.json else format_doctor(report))
    return 0
