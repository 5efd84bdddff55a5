"""``enpire`` commands of enpire_rollout: ``bag`` and ``trial`` (see cli_trial.py).

Each noun has a ``_register_<noun>(sub)`` function; :func:`register` calls them in order.
Heavy imports (rosbags, mcap) happen inside handlers.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's nouns to the ``enpire`` parser."""
    from enpire_rollout.cli_trial import register_trial

    _register_bag(sub)
    register_trial(sub)


def _runs_roots() -> list[Path]:
    return [Path(os.environ.get('ENPIRE_HOME', 'runs'))]


# --- bag -------------------------------------------------------------------------------------
def _register_bag(sub: argparse._SubParsersAction) -> None:
    bag = sub.add_parser('bag', help='inspect trial recordings (rosbag2 MCAP + MP4 + JSON)')
    verbs = bag.add_subparsers(dest='verb', metavar='<verb>')
    info = verbs.add_parser('info', help='topics, counts, duration and integrity of a trial')
    info.add_argument('trial', help='trial directory, bag directory, or trial id under '
                                    '$ENPIRE_HOME/<experiment>/trials/')
    info.add_argument('--json', action='store_true', help='print one JSON object')
    info.set_defaults(func=_bag_info)
    bag.set_defaults(func=lambda _args: bag.print_help() or 2)


def _bag_info(args: argparse.Namespace) -> int:
    from enpire_common.errors import ConfigError
    from enpire_rollout.core.bag import bag_info
    from enpire_rollout.core.records import TRIAL_JSON, find_trial, read_trial, verify_files

    path = find_trial(args.trial, _runs_roots())
    info: dict[str, Any] = {'ok': True, 'bag': bag_info(path)}
    trial_dir = path if (path / TRIAL_JSON).is_file() else path.parent
    if (trial_dir / TRIAL_JSON).is_file():
        try:
            record = read_trial(trial_dir)
        except ConfigError as exc:
            info['trial_error'] = str(exc)
        else:
            info['trial'] = {k: record.get(k) for k in ('ids', 'seed', 'outcome', 'reason',
                                                        'score', 'gaps', 'videos', 'timings')}
            info['integrity'] = verify_files(trial_dir, record)
    info['ok'] = info['bag']['consistent'] and not info.get('integrity')
    if args.json:
        print(json.dumps(info))
        return 0 if info['ok'] else 1
    bag = info['bag']
    print(f"bag:       {bag['path']}")
    print(f"duration:  {bag['duration_s']:.3f} s   messages: {bag['message_count']}")
    width = max((len(t) for t in bag['topics']), default=5)
    for topic, entry in sorted(bag['topics'].items()):
        print(f"  {topic:<{width}}  {entry['count']:>7}  {entry['type']}")
    for err in bag['errors']:
        print(f'  mismatch: {err}')
    trial = info.get('trial')
    if trial:
        ids = trial['ids']
        print(f"trial:     {ids.get('trial_id')} ({ids.get('experiment_id')}) outcome "
              f"{trial['outcome']} score {trial.get('score')} gaps {trial.get('gaps')}")
        for view, video in (trial.get('videos') or {}).items():
            print(f"video:     {view}: {video['frames']} frames {video['codec']} "
                  f"@ {video['fps']:g} fps")
        bad = info.get('integrity') or {}
        print('integrity: ' + ('ok' if not bad else ', '.join(f'{k} {v}' for k, v in
                                                              bad.items())))
    return 0 if info['ok'] else 1
