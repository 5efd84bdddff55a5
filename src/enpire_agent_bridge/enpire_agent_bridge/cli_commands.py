"""`enpire task ...`: show, lock and verify the frozen task contract."""

from __future__ import annotations

import argparse
import json

from enpire_common.paths import enpire_home


def register(sub: argparse._SubParsersAction) -> None:
    task = sub.add_parser('task', help='show, lock and verify task contracts')
    verbs = task.add_subparsers(dest='verb', metavar='<verb>', required=True)

    p = verbs.add_parser('list', help='list registered tasks')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=_list)

    p = verbs.add_parser('show', help='print a task contract (spec, views, limits, seeds)')
    p.add_argument('task')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=_show)

    for verb, helptext in (('lock', 'record the contract hash (deliberate re-lock)'),
                           ('verify', 'check the contract against its lock')):
        p = verbs.add_parser(verb, help=helptext)
        p.add_argument('task')
        p.add_argument('--home', help='runtime data dir (default $ENPIRE_HOME or ./runs)')
        p.add_argument('--json', action='store_true')
        p.set_defaults(func=_lock if verb == 'lock' else _verify)


def _list(args: argparse.Namespace) -> int:
    from enpire_common.tasks import available_tasks

    tasks = {name: str(path) for name, path in available_tasks().items()}
    if args.json:
        print(json.dumps({'ok': True, 'tasks': tasks}))
    else:
        for name, path in tasks.items():
            print(f'{name}\t{path}')
    return 0


def _show(args: argparse.Namespace) -> int:
    from enpire_common.tasks import contract_hash, load_task

    task = load_task(args.task)
    out = {
        'ok': True, 'task': task.name, 'id': task.id, 'directory': str(task.directory),
        'contract_sha256': contract_hash(task),
        'observation': {k: {'shape': list(v.shape), 'dtype': v.dtype, 'source': v.source}
                        for k, v in task.observation.items()},
        'action': {'shape': list(task.action.shape), 'low': list(task.action.low),
                   'high': list(task.action.high), 'rate_hz': task.action.rate_hz,
                   'deadline_s': task.action.deadline_s},
        'views': {k: {'width_px': v.width_px, 'height_px': v.height_px}
                  for k, v in task.views.items()},
        'goal_pose': list(task.goal_pose), 'success_threshold': task.success_threshold,
        'safety': {'low': list(task.safety.low), 'high': list(task.safety.high),
                   'max_step_px': task.safety.max_step_px, 'mode': task.safety.mode},
        'episode': {'max_steps': task.max_steps, 'max_time_s': task.max_time_s},
        'seeds': {'tuning': list(task.tuning_seeds), 'evaluation': list(task.evaluation_seeds)},
    }
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


def _lock(args: argparse.Namespace) -> int:
    from enpire_common.tasks import load_task, lock_contract

    digest = lock_contract(load_task(args.task), enpire_home(args.home))
    print(json.dumps({'ok': True, 'task': args.task, 'sha256': digest}) if args.json
          else f'locked {args.task} contract {digest}')
    return 0


def _verify(args: argparse.Namespace) -> int:
    from enpire_common.tasks import load_task, verify_contract

    digest = verify_contract(load_task(args.task), enpire_home(args.home),
                             lock_if_missing=False)
    print(json.dumps({'ok': True, 'task': args.task, 'sha256': digest}) if args.json
          else f'{args.task} contract unchanged ({digest[:12]})')
    return 0
