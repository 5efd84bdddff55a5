"""``enpire trial run|list|show``: budgeted trials on a cell and their records.

The verbs live in evolution (not rollout) because a run submits the policy directory as a
revision and records every trial in the experiment store (enpire_evolution.ros.trials_port).
:func:`trial_run`, :func:`trial_list` and :func:`trial_show` are the verbs (keyword
arguments, the result dict, house errors); the CLI handlers and the MCP tools both call them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enpire_common.tasks import DEFAULT_TASK


def register_trial(sub: argparse._SubParsersAction) -> None:
    trial = sub.add_parser('trial', help='run budgeted trials and read their records')
    verbs = trial.add_subparsers(dest='verb', metavar='<verb>', required=True)

    run = verbs.add_parser('run', help='run N trials of a policy on a cell (starts the sim '
                                       'cell if none runs)')
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument('--policy', help='policy directory (policy.py + policy.yaml)')
    src.add_argument('--revision', help='revision id (or unique prefix) from the store')
    run.add_argument('--task', default=DEFAULT_TASK)
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
    run.add_argument('--reset-stage', default='',
                     help="start every trial at a later stage of the task: 'pre_insertion' "
                          '(insertion tasks: the part held over its goal); default: the start')
    run.add_argument('--verifier-backend', default='',
                     help="the camera verifier's backend when this starts the cell (default: "
                          "the task's own); a learned one must have passed its calibration "
                          '(enpire verify calibrate), else nothing starts (exit 2)')
    run.set_defaults(func=_run, text=_run_text)

    ls = verbs.add_parser('list', help='list recorded trials of an experiment')
    ls.add_argument('--experiment', default='manual')
    ls.set_defaults(func=_list, text=_list_text)

    show = verbs.add_parser('show', help='one trial: outcome, score, video, evidence, bag')
    show.add_argument('trial', help='trial id or directory')
    show.set_defaults(func=_show)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def trial_run(*, count: int = 10, policy_dir: str = '', revision: str = '',
              task: str = DEFAULT_TASK, seeds: Sequence[int] = (), seed_start: int | None = None,
              experiment: str = 'manual', cell: str = 'cell_0', start: bool = True,
              max_wall_time_s: float = 0.0, max_episode_steps: int = 0, attempts: int = 1,
              allow_unconfined: bool = False, home: str | Path | None = None,
              reset_stage: str = '', verifier_backend: str = '') -> dict[str, Any]:
    """Run budgeted trials of a policy directory or a stored revision on ``cell``.

    Starts the sim cell when none answers (unless ``start`` is false); progress goes to
    stderr. Returns successes, the Wilson 95% interval, outcomes and one entry per trial.

    Raises:
        ConfigError: not exactly one of ``policy_dir`` / ``revision``, or no trial asked for.
        ContractMismatchError: the task contract differs from its lock (no cell is started).
        VerifierUncalibratedError: ``verifier_backend`` has no passing calibration (no cell
            is started).
        EnpireError: what the cell reported (see enpire_rollout.client).
    """
    from enpire_common.errors import ConfigError
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import load_task, verify_contract
    from enpire_evolution.ros.trials_port import TrialsSession
    from enpire_rollout.client import trial_to_dict

    if bool(policy_dir) == bool(revision):
        raise ConfigError('give exactly one of policy_dir or revision')
    spec = load_task(task)
    if count <= 0 and not seeds:
        raise ConfigError(f'--trials {count} is invalid: must be >= 1')
    # An edited contract fails here, before any cell starts (the cell refuses it too).
    verify_contract(spec, enpire_home(home), lock_if_missing=True)
    if verifier_backend:
        from enpire_reward.core.calibration import require_calibrated

        require_calibrated(spec, verifier_backend, enpire_home(home))
    first_seed = spec.tuning_seeds[0] if seed_start is None else seed_start
    total = len(seeds) if seeds else count
    session = TrialsSession(home=enpire_home(home), task=spec.name, cell=cell, start=start,
                            log=_progress,
                            **({'launch_args': {'verifier_backend': verifier_backend}}
                               if verifier_backend else {}))
    state = {'done': 0, 'success': 0, 'seen': set()}

    def on_feedback(fb: Any) -> None:
        last = fb.last
        if last.trial_id and last.trial_id not in state['seen']:
            state['seen'].add(last.trial_id)
            state['done'] += 1
            state['success'] += bool(last.success)
            _progress(f"trial {state['done']}/{total} seed {last.seed}: {last.outcome} "
                      f"(score {last.score:.3f}, {last.steps} steps"
                      f"{', ' + last.reason if last.reason and not last.success else ''}"
                      f"{'; stages ' + ','.join(last.stages) if len(last.stages) else ''}) | "
                      f"success {state['success']}/{state['done']}")

    try:
        result = session.client.run_trials(
            count=total, policy_dir=str(Path(policy_dir).resolve()) if policy_dir else '',
            revision_id=revision, seeds=seeds, seed_start=first_seed,
            experiment_id=experiment, max_wall_time_s=max_wall_time_s,
            max_episode_steps=max_episode_steps, attempts=attempts,
            allow_unconfined=allow_unconfined, on_feedback=on_feedback,
            **({'reset_stage': reset_stage} if reset_stage else {}))
    finally:
        session.close()
    trials = [trial_to_dict(t) for t in result.trials]
    outcomes: dict[str, int] = {}
    for t in trials:
        outcomes[t['outcome']] = outcomes.get(t['outcome'], 0) + 1
    out = {'ok': True, 'task': spec.name, 'experiment': experiment, 'cell': cell,
           'revision_id': trials[0]['revision_id'] if trials else revision,
           'n_trials': len(trials), 'n_success': int(result.n_success),
           'success_rate': float(result.success_rate),
           'wilson_95': [float(result.ci_low), float(result.ci_high)],
           'stop_reason': result.stop_reason, 'outcomes': outcomes, 'trials': trials}
    if result.stop_reason == 'disk_low':
        # The cell's disk guard: why it stopped (free and needed MB, the path).
        out['stop_detail'] = result.error_msg
    if attempts > 1:
        out.update(k=attempts, pass_at_1=float(result.pass_at_1),
                   pass_at_k=float(result.pass_at_k))
    if spec.stages:
        # Partial success: how many trials reached each stage, and each stages in order.
        for t in trials:
            reached = set(t.get('stages') or ())
            t['stages_in_order'] = next((i for i, s in enumerate(spec.stages)
                                         if s not in reached), len(spec.stages))
        out['stages'] = {s: sum(s in (t.get('stages') or ()) for t in trials)
                         for s in spec.stages}
        out['stages_in_order_mean'] = (sum(t['stages_in_order'] for t in trials)
                                       / max(1, len(trials)))
    return out


def trial_list(experiment: str = 'manual', home: str | Path | None = None) -> dict[str, Any]:
    """The recorded trials of ``experiment`` (trial.json contents); ``damaged``: the records
    that cannot be read, each with its error (``enpire bag recover`` rebuilds them)."""
    from enpire_common.paths import enpire_home
    from enpire_rollout.core.records import list_trials

    damaged: list[dict[str, Any]] = []
    trials = list_trials(enpire_home(home) / experiment, skipped=damaged)
    return {'ok': True, 'experiment': experiment, 'trials': trials, 'damaged': damaged}


def trial_show(trial: str, home: str | Path | None = None) -> dict[str, Any]:
    """One trial (id or directory): outcome, reason, score, seed, videos, evidence, bag, and
    ``pruned`` (what ``enpire gc`` deleted) when it was thinned."""
    from enpire_common.paths import enpire_home
    from enpire_rollout.core.records import find_trial, read_trial

    trial_dir = find_trial(trial, [enpire_home(home)])
    record = read_trial(trial_dir)
    videos = {view: str(trial_dir / v.get('file', f'{view}.mp4'))
              for view, v in (record.get('videos') or {}).items()
              if not (isinstance(v, dict) and v.get('pruned'))}   # `enpire gc` deleted it
    evidence = [v.get('evidence_path') for v in record.get('verdicts') or []
                if v.get('evidence_path')]
    return {'ok': True, 'trial_dir': str(trial_dir), 'outcome': record.get('outcome'),
            'reason': record.get('reason'), 'score': record.get('score'),
            'seed': record.get('seed'), 'ids': record.get('ids'), 'videos': videos,
            'evidence': evidence, 'bag': str(trial_dir / 'episode'),
            'verdicts': record.get('verdicts'), 'gaps': record.get('gaps'),
            **({'pruned': record['pruned']} if record.get('pruned') else {})}


# --- CLI handlers ----------------------------------------------------------------------------
def _run(args: argparse.Namespace) -> dict[str, Any]:
    return trial_run(count=args.trials, policy_dir=args.policy or '',
                     revision=args.revision or '', task=args.task, seeds=args.seeds or (),
                     seed_start=args.seed_start, experiment=args.experiment, cell=args.cell,
                     start=not args.no_start, max_wall_time_s=args.max_wall_time_s,
                     max_episode_steps=args.max_episode_steps, attempts=args.attempts,
                     allow_unconfined=args.allow_unconfined, home=args.home,
                     reset_stage=args.reset_stage, verifier_backend=args.verifier_backend)


def _run_text(out: dict[str, Any], args: argparse.Namespace) -> str:
    from enpire_common.paths import enpire_home

    text = (f"{out['n_success']}/{out['n_trials']} successes "
            f"({100 * out['success_rate']:.1f}%, Wilson 95% "
            f"[{100 * out['wilson_95'][0]:.1f}, {100 * out['wilson_95'][1]:.1f}]) "
            f"stop: {out['stop_reason']}; records under "
            f"{enpire_home(args.home) / out['experiment']}")
    if out['stop_reason'] == 'cell_paused':
        text += (f"\nthe cell paused itself after failed resets (alert on /{args.cell}/alerts). "
                 f"Look at the scene, then: enpire cell resume --cell {args.cell}")
    if out['stop_reason'] == 'disk_low':
        text += (f"\nthe cell paused: {out.get('stop_detail') or 'its records disk is low'} "
                 f"(alert on /{args.cell}/alerts). Free space: `enpire gc` shows what it "
                 'would delete (videos of routine successes), `enpire gc --apply` deletes '
                 'it; then run again')
    return text


def _list(args: argparse.Namespace) -> dict[str, Any]:
    return trial_list(args.experiment, args.home)


def _list_text(out: dict[str, Any], _args: argparse.Namespace) -> str | None:
    lines = []
    for r in out['trials']:
        ids = r.get('ids') or {}
        lines.append(f"{ids.get('trial_id', '?'):<32} seed {r.get('seed')!s:>7}  "
                     f"{r.get('outcome', '?'):<13} score {r.get('score', 0) or 0:.3f}")
    lines += [f"damaged: {d['trial_id']}: {d['message']}" for d in out.get('damaged') or []]
    return '\n'.join(lines) or None  # no trials: print nothing


def _show(args: argparse.Namespace) -> dict[str, Any]:
    return trial_show(args.trial, args.home)
