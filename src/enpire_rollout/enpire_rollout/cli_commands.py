"""``enpire`` commands of enpire_rollout: ``bag``, ``replay``, ``dataset`` (``trial`` lives in
evolution),
and the ``label`` verb of enpire_reward's ``verify`` noun (it reads trial records, which is
this layer's job; the labelled set and the labeller are enpire_reward's).

Each noun has a ``_register_<noun>(sub)`` function; :func:`register` calls them in order.
Verbs return their result dict (see enpire_bringup.cli); ``text`` renders it. Heavy imports
(rosbags, mcap) happen inside handlers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's nouns to the ``enpire`` parser."""
    _register_bag(sub)
    _register_replay(sub)
    _register_dataset(sub)
    _register_verify_label(sub)


# --- dataset ---------------------------------------------------------------------------------
def _register_dataset(sub: argparse._SubParsersAction) -> None:
    ds = sub.add_parser('dataset', help='learning datasets from trial records (LeRobot v3.0)')
    verbs = ds.add_subparsers(dest='verb', metavar='<verb>')
    ex = verbs.add_parser(
        'export', help="an experiment's trials as a LeRobot v3.0 dataset (parquet + MP4 + "
                       'meta); rerun to resume or to add new trials')
    ex.add_argument('--experiment', required=True,
                    help='the experiment whose trials to export ($ENPIRE_HOME/<experiment>)')
    ex.add_argument('--out', required=True, help='the dataset directory (new, or an export '
                                                 'to resume)')
    ex.add_argument('--format', default='lerobot', choices=['lerobot'])
    ex.add_argument('--only', default='all', choices=['all', 'success'],
                    help='every finished trial (default) or only verified successes')
    ex.add_argument('--task', default='',
                    help="the task to export when the experiment holds several (default: "
                         "its trials' task)")
    ex.add_argument('--task-text', default='',
                    help="the episodes' language instruction (default: the task's "
                         'description)')
    ex.set_defaults(func=_dataset_export, text=_dataset_export_text)


def _dataset_export(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.errors import ConfigError
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import load_task
    from enpire_rollout.core.lerobot_export import LeRobotExporter, experiment_trials
    from enpire_rollout.core.records import list_trials

    run_dir = enpire_home(args.home) / args.experiment
    task = args.task or None
    if task is None:
        tasks = sorted({(r.get('ids') or {}).get('task') or '?' for r in list_trials(run_dir)})
        if len(tasks) > 1:
            raise ConfigError(f'experiment {args.experiment} holds trials of {tasks}; pass '
                              '--task to choose one')
        task = tasks[0] if tasks else None
    trials, left = experiment_trials(run_dir, only=args.only, task=task)
    spec = load_task(str(task))
    text = args.task_text or ' '.join(str(spec.raw.get('description') or spec.name).split())
    names = spec.raw.get('action', {}).get('names')

    def note(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    print(f'exporting {len(trials)} trial(s) of {args.experiment} ({task}, '
          f'{spec.action.rate_hz:g} fps) to {args.out}', file=sys.stderr, flush=True)
    exporter = LeRobotExporter(args.out, task=str(task), fps=spec.action.rate_hz,
                               task_text=text, action_names=names, note=note)
    result = exporter.export(trials).to_dict()
    result['left_out'] = left
    result['experiment'] = args.experiment
    return result


def _dataset_export_text(res: dict[str, Any], _args: argparse.Namespace) -> str:
    lines = [f"{res['out']}: {res['episodes']} episode(s), {res['frames']} frame(s) "
             f"({res['added']} added, {res['kept']} already there)"]
    for item in res['skipped']:
        lines.append(f"  skipped {item['trial_id']}: {item['reason']}")
    if res['left_out']:
        lines.append(f"  left out {len(res['left_out'])} trial(s): " + ', '.join(
            f"{i['trial_id']} ({i['reason']})" for i in res['left_out'][:5])
            + (' ...' if len(res['left_out']) > 5 else ''))
    return '\n'.join(lines)


# --- bag -------------------------------------------------------------------------------------
def _register_bag(sub: argparse._SubParsersAction) -> None:
    bag = sub.add_parser('bag', help='inspect trial recordings (rosbag2 MCAP + MP4 + JSON)')
    verbs = bag.add_subparsers(dest='verb', metavar='<verb>')
    info = verbs.add_parser('info', help='topics, counts, duration and integrity of a trial')
    info.add_argument('trial', help='trial directory, bag directory, or trial id under '
                                    '$ENPIRE_HOME/<experiment>/trials/')
    info.set_defaults(func=_bag_info, text=_bag_info_text)
    rec = verbs.add_parser(
        'recover', help="rebuild a trial's bag (fully indexed) from every intact record after "
                        'a crash or damage, and bring trial.json along; a healthy trial is '
                        'left alone')
    rec.add_argument('trial', help='trial directory, bag directory, or trial id under '
                                   '$ENPIRE_HOME/<experiment>/trials/')
    rec.add_argument('--no-backup', action='store_true',
                     help='do not keep the damaged originals as <name>.damaged')
    rec.add_argument('--dry-run', action='store_true',
                     help='report what would be recovered; change nothing')
    rec.add_argument('--force', action='store_true',
                     help='recover even when the trial\'s recorder still runs on this host')
    rec.set_defaults(func=_bag_recover, text=_bag_recover_text)


def _bag_info(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.errors import ConfigError, RecordDamagedError
    from enpire_common.paths import enpire_home
    from enpire_rollout.core.bag import bag_info
    from enpire_rollout.core.records import TRIAL_JSON, find_trial, read_trial, verify_files

    path = find_trial(args.trial, [enpire_home(args.home)])
    info: dict[str, Any] = {'ok': True, 'bag': bag_info(path)}
    trial_dir = path if (path / TRIAL_JSON).is_file() else path.parent
    if (trial_dir / TRIAL_JSON).is_file():
        try:
            record = read_trial(trial_dir)
        except (ConfigError, RecordDamagedError) as exc:
            info['trial_error'] = str(exc)
        else:
            info['trial'] = {k: record.get(k) for k in ('ids', 'seed', 'outcome', 'reason',
                                                        'score', 'gaps', 'videos', 'timings',
                                                        'bag_recovered')}
            info['integrity'] = verify_files(trial_dir, record)
    info['ok'] = (info['bag']['consistent'] and not info.get('integrity')
                  and 'trial_error' not in info)
    return info


def _bag_info_text(info: dict[str, Any], _args: argparse.Namespace) -> str:
    bag = info['bag']
    lines = [f"bag:       {bag['path']}",
             f"state:     {bag['state']}" + ('' if bag['indexed'] else ' (unindexed: read '
                                                                     'from its intact records)'),
             f"duration:  {bag['duration_s']:.3f} s   messages: {bag['message_count']}"]
    width = max((len(t) for t in bag['topics']), default=5)
    lines += [f"  {topic:<{width}}  {entry['count']:>7}  {entry['type']}"
              for topic, entry in sorted(bag['topics'].items())]
    lines += [f'  problem: {err}' for err in bag['errors']]
    if bag['hint']:
        lines.append(f"  {bag['bytes_dropped']} byte(s) unreadable; to rebuild: {bag['hint']}")
    if info.get('trial_error'):
        lines.append(f"trial:     {info['trial_error']}")
    trial = info.get('trial')
    if trial:
        ids = trial['ids']
        lines.append(f"trial:     {ids.get('trial_id')} ({ids.get('experiment_id')}) outcome "
                     f"{trial['outcome']} score {trial.get('score')} gaps {trial.get('gaps')}")
        lines += [f"video:     {view}: {video['frames']} frames {video['codec']} "
                  f"@ {video['fps']:g} fps"
                  for view, video in (trial.get('videos') or {}).items()]
        if trial.get('bag_recovered'):
            note = trial['bag_recovered']
            lines.append(f"recovered: {note.get('messages')} messages, "
                         f"{note.get('bytes_dropped')} byte(s) dropped (was {note.get('state')})")
        bad = info.get('integrity') or {}
        lines.append('integrity: ' + ('ok' if not bad else ', '.join(f'{k} {v}' for k, v in
                                                                     bad.items())))
    return '\n'.join(lines)


def _bag_recover(args: argparse.Namespace) -> dict[str, Any]:
    import time

    from enpire_common.paths import enpire_home
    from enpire_rollout.core.bag_recover import recover_trial
    from enpire_rollout.core.records import find_trial

    path = find_trial(args.trial, [enpire_home(args.home)])
    out = recover_trial(path, now_unix_s=time.time(), backup=not args.no_backup,
                        force=args.force, dry_run=args.dry_run)
    out['ok'] = out['record']['state'] != 'damaged' or out['record']['rebuilt']
    return out


def _bag_recover_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    bag, rec = out['bag'], out['record']
    head = 'dry run: ' if out['dry_run'] else ''
    lines = [f"{head}{out['trial_dir']}: {out['detail']}"]
    if bag and bag['state'] != 'ok':
        lines.append(f"  bag was {bag['state']}: " + '; '.join(bag['problems']))
        verb = 'holds' if out['dry_run'] else 'recovered'
        lines.append(f"  {verb} {bag['messages']} message(s), {bag['bytes_dropped']} of "
                     f"{bag['bytes']} byte(s) lost")
        width = max((len(t) for t in bag['per_topic']), default=5)
        lines += [f'    {topic:<{width}}  {n:>7}' for topic, n in sorted(bag['per_topic'].items())]
        lines += [f'    {topic:<{width}}  {n:>7} dropped: bytes do not parse as their type'
                  for topic, n in sorted(bag['invalid'].items())]
        if bag['backup']:
            lines.append('  originals kept as ' + ', '.join(bag['backup']))
    if rec['state'] == 'damaged' and not out['dry_run']:
        lines.append('  trial.json was damaged and is rebuilt from its whole fields')
    if rec['updated']:
        lines.append('  trial.json updated (bag_recovered, file hashes)')
    elif rec['state'] == 'missing':
        lines.append('  no trial.json here: only the bag was recovered')
    return '\n'.join(lines)


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
    rp.set_defaults(func=_replay, text=_replay_text)


def _replay(args: argparse.Namespace) -> dict[str, Any]:
    import signal
    import threading

    from enpire_common.paths import enpire_home
    from enpire_rollout.core.records import find_trial

    home = enpire_home(args.home)
    path = find_trial(args.trial, [home])
    if args.rerun:
        from enpire_rollout.replay import rerun_trial

        trial_dir = path if (path / 'trial.json').is_file() else path.parent
        kw = {'cell': args.cell or 'cell_0', 'start': not args.no_start,
              'log': lambda line: print(line, file=sys.stderr, flush=True)}
        # The top layer hands in a session that records the rerun in the experiment store
        # (enpire_evolution's TrialsSession); the rollout itself records nothing.
        factory = getattr(args, 'recording_session', None)
        session = factory(home=home, **kw) if factory else None
        try:
            return rerun_trial(trial_dir, home=home, session=session, **kw)
        finally:
            if session is not None:
                session.close()

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
    return {'ok': True, 'bag': str(path), **stats.to_dict()}


def _replay_text(out: dict[str, Any], args: argparse.Namespace) -> str:
    if not args.rerun:
        return '\n'.join([f"published {out['messages']} messages on {len(out['topics'])} "
                          f"topics in {out['duration_s']:.2f} s ({out['loops']} full "
                          'pass(es))'] + [f'warning: {w}' for w in out.get('warnings') or []])
    o, r, st = out['original'], out['rerun'], out['states']
    lines = [f"original {o['trial_id']}: {o['outcome']} ({o['steps']} steps, score "
             f"{o['score']})",
             f"rerun    {r['trial_id']}: {r['outcome']} ({r['steps']} steps, score "
             f"{r['score']})",
             f"outcome reproduced: {out['outcome_reproduced']}"]
    if st is None:
        lines.append('states: not compared (a bag is missing)')
    elif st['identical']:
        lines.append(f"states: bit-identical over {st['compared_ticks']} ticks"
                     f"{'' if out['lockstep'] else ' (not lockstep)'}")
    else:
        d = st['first_diff']
        lines.append(f"states differ from tick {d['tick']}: original {d['original']} rerun "
                     f"{d['rerun']} ({st['original_ticks']} vs {st['rerun_ticks']} ticks)")
    return '\n'.join(lines)


# --- verify label ----------------------------------------------------------------------------
def verbs_of(sub: argparse._SubParsersAction, noun: str) -> argparse._SubParsersAction:
    """The verb subparsers of a noun that a lower package registered (``verify``)."""
    parser = sub.choices.get(noun)
    if parser is None:
        parser = sub.add_parser(noun)
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest='verb', metavar='<verb>')


def _register_verify_label(sub: argparse._SubParsersAction) -> None:
    from enpire_common.tasks import DEFAULT_TASK

    lb = verbs_of(sub, 'verify').add_parser(
        'label', help='label the final camera frames of recorded trials by hand (success, '
                      'failure, invalid): the set `verify calibrate --labels` scores')
    lb.add_argument('--task', default=DEFAULT_TASK)
    lb.add_argument('--records', action='append', required=True, metavar='DIR',
                    help='trial directories to label: a trial dir, a run dir or ENPIRE_HOME '
                         '(repeatable)')
    lb.add_argument('--out', default='',
                    help='the labelled set (default: $ENPIRE_HOME/labels/<task>); an existing '
                         'one is resumed')
    lb.add_argument('--views', default='',
                    help="comma list of camera views (default: the views the task's verifier "
                         'judges)')
    lb.add_argument('--labeller', default='',
                    help='who labels, recorded with each label (default: the login name)')
    lb.add_argument('--web', action='store_true',
                    help='a page on 127.0.0.1 with the image and buttons, instead of the '
                         'terminal')
    lb.add_argument('--port', type=int, default=8765,
                    help='with --web: the port (default 8765; 0 picks a free one)')
    lb.set_defaults(func=_verify_label, text=_verify_label_text)


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):    # no login name for this uid (a container)
        return 'unknown'


def _verify_label(args: argparse.Namespace) -> dict[str, Any]:
    import time
    from pathlib import Path

    from enpire_common.errors import UnknownNameError
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import load_task
    from enpire_reward.core.labelled_set import open_labelled_set
    from enpire_reward.labeller import WebLabeller, label_in_terminal
    from enpire_rollout.core.frames import TrialFrames

    task = load_task(args.task)
    views = [v.strip() for v in args.views.split(',') if v.strip()] if args.views else \
        list(task.section('success').get('views') or task.views)
    for view in views:
        if view not in task.views:
            raise UnknownNameError('camera view', view, task.views)
    out = Path(args.out) if args.out else enpire_home(args.home) / 'labels' / task.name
    lset = open_labelled_set(out, task.name)
    # the session talks on stderr when stdout carries the one --json object
    talk = sys.stderr if args.json else sys.stdout
    for warning in lset.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    frames = TrialFrames(args.records, task.name, views,
                         note=lambda line: print(line, file=sys.stderr, flush=True))
    labeller = args.labeller or _login_name()
    if not args.web:
        result = label_in_terminal(lset, frames, labeller=labeller, stdin=sys.stdin, out=talk)
    else:
        web = WebLabeller(lset, frames, labeller=labeller, port=args.port)
        url = web.start()
        print(f'labelling {task.name} at {url} (Ctrl-C stops; labels are kept as made)',
              file=talk, flush=True)
        try:
            while not web.finished.wait(0.5):
                pass
            time.sleep(1.0)     # a grace: the page after the last answer still loads
        except KeyboardInterrupt:
            pass
        finally:
            result = web.stop()
    return {**result, 'task': task.name, 'views': views, 'skipped_records': frames.notes,
            'other_tasks': frames.other_tasks}


def _verify_label_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    counts = ', '.join(f'{n} {k}' for k, n in out['counts'].items())
    return (f"{out['task']}: {out['labelled']} labelled now, {out['done']}/{out['total']} "
            f"frames labelled ({counts}) in {out['out']}"
            + (f"; {len(out['skipped_records'])} record(s) skipped" if out['skipped_records']
               else '')
            + f"\nnext: enpire verify calibrate --task {out['task']} --backend <backend> "
              f"--labels {out['out']}")
