"""``enpire`` commands of enpire_rollout: ``bag``, ``trial`` (see cli_trial.py), ``replay``.

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
    _register_replay(sub)


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


# --- replay ----------------------------------------------------------------------------------
def _register_replay(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser('replay', help="republish a trial's bag (like ros2 bag play), or "
                                       're-run the trial in sim and compare (--rerun)')
    rp.add_argument('trial', help='trial id (under $ENPIRE_HOME/<experiment>/trials/) or '
                                  'trial/bag directory')
    rp.add_argument('--rate', type=float, default=1.0,
                    help='playback speed factor (default 1.0; 0 = as fast as possible)')
    rp.add_argument('--loop', action='store_true', help='play again at the end (Ctrl-C stops)')
    rp.add_argument('--cell', default='',
                    help='publish under this cell namespace instead of the recorded one; with '
                         '--rerun: the cell to run on (default cell_0)')
    rp.add_argument('--remap-prefix', default='',
                    help='put this namespace in front of every topic (/replay/cell_0/state), '
                         'so a live cell is not disturbed')
    rp.add_argument('--topics', nargs='+', metavar='SUFFIX',
                    help='only topics ending in these names (e.g. state camera/top/image_raw)')
    rp.add_argument('--wait-subscribers-s', type=float, default=0.0,
                    help='wait up to this long for subscribers before playing (default 0)')
    rp.add_argument('--rerun', action='store_true',
                    help='re-run the trial on a sim cell from its seed and revision (experiment '
                         '<experiment>-rerun) and report whether outcome and states reproduce')
    rp.add_argument('--no-start', action='store_true',
                    help='with --rerun: fail instead of starting the sim cell when none runs')
    rp.add_argument('--home', help='runtime data dir (default $ENPIRE_HOME or ./runs)')
    rp.add_argument('--json', action='store_true', help='print exactly one JSON object')
    rp.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading

    from enpire_common.paths import enpire_home
    from enpire_rollout.core.records import find_trial

    home = enpire_home(args.home)
    path = find_trial(args.trial, [home])
    if args.rerun:
        from enpire_rollout.replay import rerun_trial

        trial_dir = path if (path / 'trial.json').is_file() else path.parent
        out = rerun_trial(trial_dir, home=home, cell=args.cell or 'cell_0',
                          start=not args.no_start,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
        if args.json:
            print(json.dumps(out))
        else:
            o, r, st = out['original'], out['rerun'], out['states']
            print(f"original {o['trial_id']}: {o['outcome']} ({o['steps']} steps, score "
                  f"{o['score']})")
            print(f"rerun    {r['trial_id']}: {r['outcome']} ({r['steps']} steps, score "
                  f"{r['score']})")
            print(f"outcome reproduced: {out['outcome_reproduced']}")
            if st is None:
                print('states: not compared (a bag is missing)')
            elif st['identical']:
                print(f"states: bit-identical over {st['compared_ticks']} ticks"
                      f"{'' if out['lockstep'] else ' (not lockstep)'}")
            else:
                d = st['first_diff']
                print(f"states differ from tick {d['tick']}: original {d['original']} rerun "
                      f"{d['rerun']} ({st['original_ticks']} vs {st['rerun_ticks']} ticks)")
        return 0 if out['ok'] else 1

    from enpire_rollout.replay import replay_bag

    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_a: stop.set())
    suffixes = tuple(args.topics or ())
    try:
        stats = replay_bag(path, rate=args.rate, loop=args.loop, cell=args.cell,
                           prefix=args.remap_prefix, stop=stop,
                           topics=(lambda t: t.endswith(suffixes)) if suffixes else None,
                           wait_subscribers_s=args.wait_subscribers_s)
    finally:
        signal.signal(signal.SIGINT, previous)
    out = {'ok': True, 'bag': str(path), **stats.to_dict()}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"published {out['messages']} messages on {len(out['topics'])} topics in "
              f"{out['duration_s']:.2f} s ({out['loops']} full pass(es))")
    return 0
