"""``enpire trial run|list|show``: budgeted trials on a cell and their records."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register_trial(sub: argparse._SubParsersAction) -> None:
    trial = sub.add_parser('trial', help='run budgeted trials and read their records')
    verbs = trial.add_subparsers(dest='verb', metavar='<verb>', required=True)

    run = verbs.add_parser('run', help='run N trials of a policy on a cell (starts the sim '
                                       'cell if none runs)')
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument('--policy', help='policy directory (policy.py + policy.yaml)')
    src.add_argument('--revision', help='revision id (or unique prefix) from the store')
    run.add_argument('--task', default='push_t')
    run.add_argument('--trials', type=int, default=10, help='number of trials (default 10)')
    run.add_argument('--seed-start', type=int, default=None,
                     help="first seed (default: the start of the task's tuning range)")
    run.add_argument('--seeds', type=int, nargs='+', help='explicit seeds')
    run.add_argument('--experiment', default='manual', help='experiment id (default manual)')
    run.add_argument('--cell', default='cell_0', help='cell namespace (default cell_0)')
    run.add_argument('--no-start', action='store_true',
                     help='fail instead of starting the sim cell when none runs')
    run.add_argument('--max-wall-time-s', type=float, default=0.0)
    run.add_argument('--max-episode-steps', type=int, default=0)
    run.add_argument('--attempts', type=int, default=1,
                     help='pass@k: attempts per subtask without a reset (default 1)')
    run.add_argument('--allow-unconfined', action='store_true',
                     help='run the policy even where no sandbox confinement (Landlock, '
                          'bubblewrap) is available; trial.json records it (default: refuse)')
    run.add_argument('--home', help='runtime data dir (default $ENPIRE_HOME or ./runs)')
    run.add_argument('--json', action='store_true', help='print exactly one JSON object')
    run.set_defaults(func=_run)

    ls = verbs.add_parser('list', help='list recorded trials of an experiment')
    ls.add_argument('--experiment', default='manual')
    ls.add_argument('--home')
    ls.add_argument('--json', action='store_true')
    ls.set_defaults(func=_list)

    show = verbs.add_parser('show', help='one trial: outcome, score, video, evidence, bag')
    show.add_argument('trial', help='trial id or directory')
    show.add_argument('--home')
    show.add_argument('--json', action='store_true')
    show.set_defaults(func=_show)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import load_task
    from enpire_rollout.client import CellSession, trial_to_dict

    home = enpire_home(args.home)
    task = load_task(args.task)
    if args.trials <= 0 and not args.seeds:
        from enpire_common.errors import ConfigError

        raise ConfigError(f'--trials {args.trials} is invalid: must be >= 1')
    seed_start = task.tuning_seeds[0] if args.seed_start is None else args.seed_start
    count = len(args.seeds) if args.seeds else args.trials
    session = CellSession(home=home, cell=args.cell, start=not args.no_start, log=_progress)
    state = {'done': 0, 'success': 0, 'seen': set()}

    def on_feedback(fb: Any) -> None:
        last = fb.last
        if last.trial_id and last.trial_id not in state['seen']:
            state['seen'].add(last.trial_id)
            state['done'] += 1
            state['success'] += bool(last.success)
            _progress(f"trial {state['done']}/{count} seed {last.seed}: {last.outcome} "
                      f"(score {last.score:.3f}, {last.steps} steps"
                      f"{', ' + last.reason if last.reason and not last.success else ''}) | "
                      f"success {state['success']}/{state['done']}")

    try:
        policy = str(Path(args.policy).resolve()) if args.policy else ''
        result = session.client.run_trials(
            count=count, policy_dir=policy, revision_id=args.revision or '',
            seeds=args.seeds or (), seed_start=seed_start, experiment_id=args.experiment,
            max_wall_time_s=args.max_wall_time_s, max_episode_steps=args.max_episode_steps,
            attempts=args.attempts, allow_unconfined=args.allow_unconfined,
            on_feedback=on_feedback)
    finally:
        session.close()
    trials = [trial_to_dict(t) for t in result.trials]
    outcomes: dict[str, int] = {}
    for t in trials:
        outcomes[t['outcome']] = outcomes.get(t['outcome'], 0) + 1
    out = {'ok': True, 'task': task.name, 'experiment': args.experiment, 'cell': args.cell,
           'revision_id': trials[0]['revision_id'] if trials else args.revision or '',
           'n_trials': len(trials), 'n_success': int(result.n_success),
           'success_rate': float(result.success_rate),
           'wilson_95': [float(result.ci_low), float(result.ci_high)],
           'stop_reason': result.stop_reason, 'outcomes': outcomes, 'trials': trials}
    if args.attempts > 1:
        out.update(k=args.attempts, pass_at_1=float(result.pass_at_1),
                   pass_at_k=float(result.pass_at_k))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['n_success']}/{out['n_trials']} successes "
              f"({100 * out['success_rate']:.1f}%, Wilson 95% "
              f"[{100 * out['wilson_95'][0]:.1f}, {100 * out['wilson_95'][1]:.1f}]) "
              f"stop: {out['stop_reason']}; records under {home / args.experiment}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from enpire_common.paths import enpire_home
    from enpire_rollout.core.records import list_trials

    rows = list_trials(enpire_home(args.home) / args.experiment)
    if args.json:
        print(json.dumps({'ok': True, 'experiment': args.experiment, 'trials': rows}))
        return 0
    for r in rows:
        ids = r.get('ids') or {}
        print(f"{ids.get('trial_id', '?'):<32} seed {r.get('seed')!s:>7}  "
              f"{r.get('outcome', '?'):<13} score {r.get('score', 0) or 0:.3f}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from enpire_common.paths import enpire_home
    from enpire_rollout.core.records import find_trial, read_trial

    trial_dir = find_trial(args.trial, [enpire_home(args.home)])
    record = read_trial(trial_dir)
    videos = {view: str(trial_dir / v.get('file', f'{view}.mp4'))
              for view, v in (record.get('videos') or {}).items()}
    evidence = [v.get('evidence_path') for v in record.get('verdicts') or []
                if v.get('evidence_path')]
    out = {'ok': True, 'trial_dir': str(trial_dir), 'outcome': record.get('outcome'),
           'reason': record.get('reason'), 'score': record.get('score'),
           'seed': record.get('seed'), 'ids': record.get('ids'), 'videos': videos,
           'evidence': evidence, 'bag': str(trial_dir / 'episode'),
           'verdicts': record.get('verdicts'), 'gaps': record.get('gaps')}
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0
