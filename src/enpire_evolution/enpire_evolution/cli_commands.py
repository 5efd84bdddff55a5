"""``enpire exp list|show|compare|prune|recipe``, ``enpire report`` and ``enpire improve``.

The store is ``--url`` if given, else ``$ENPIRE_STORE_URL``, else the SQLite file
``<home>/enpire.db`` with home from ``--home``, ``$ENPIRE_HOME`` or ./runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, UnknownNameError

URL_ENV = 'ENPIRE_STORE_URL'


def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument('--home', default=None,
                   help='runtime data directory (default $ENPIRE_HOME or ./runs)')
    p.add_argument('--url', default=None,
                   help='SQLAlchemy URL of the store (default $ENPIRE_STORE_URL or '
                        'sqlite:///<home>/enpire.db)')
    if json_flag:
        p.add_argument('--json', action='store_true', help='print one JSON object')


def register(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser('exp', help='experiments: list, show, compare, prune, recipe')
    verbs = exp.add_subparsers(dest='exp_command', metavar='<verb>')
    exp.set_defaults(func=lambda args: (exp.print_help(), 2)[1])

    p = verbs.add_parser('list', help='list experiments with trial counts and success rates')
    _common(p)
    p.set_defaults(func=_list)

    p = verbs.add_parser('show', help='summary, branches and best revision of an experiment')
    p.add_argument('experiment')
    _common(p)
    p.set_defaults(func=_show)

    p = verbs.add_parser(
        'compare', help='compare two revisions or branches (Wilson CIs, Fisher exact test)',
        description='A is the baseline, B the candidate. Decision: keep (B better), revert '
                    '(B worse) or inconclusive; see enpire_evolution.core.compare.')
    p.add_argument('a', help='baseline: revision id (or unique prefix) or branch name')
    p.add_argument('b', help='candidate: revision id (or unique prefix) or branch name')
    p.add_argument('--experiment', default=None,
                   help='experiment holding both (default: search every experiment)')
    p.add_argument('--trials', choices=('all', 'tuning', 'eval'), default='all',
                   help='which trials to compare (default all)')
    p.add_argument('--alpha', type=float, default=0.05, help='significance level')
    p.add_argument('--min-trials', type=int, default=10,
                   help='fewer trials on either side -> inconclusive')
    _common(p)
    p.set_defaults(func=_compare)

    p = verbs.add_parser('prune', help="mark branches clearly worse than the best 'pruned'")
    p.add_argument('experiment')
    p.add_argument('--min-trials', type=int, default=20,
                   help='trials a branch needs before it can be pruned (default 20)')
    p.add_argument('--dry-run', action='store_true', help='decide and print; change nothing')
    _common(p)
    p.set_defaults(func=_prune)

    p = verbs.add_parser('recipe', help='write <dir>/<task>.md from the kept changes')
    p.add_argument('experiment')
    p.add_argument('--dir', default=None, help='recipes directory (default <home>/recipes)')
    _common(p)
    p.set_defaults(func=_recipe)

    p = sub.add_parser('report', help='write an offline HTML report of an experiment',
                       description='One self-contained HTML file (inline SVG plots, no '
                                   'network). --json prints the same numbers as one object.')
    p.add_argument('experiment')
    p.add_argument('--out', default=None,
                   help='HTML file to write (default <home>/<experiment>/report.html)')
    p.add_argument('--window', type=int, default=50, help='rolling success window')
    _common(p)
    p.set_defaults(func=_report)

    _register_improve(sub)


# --- helpers ---------------------------------------------------------------------------------
def _store_url(args: argparse.Namespace) -> str:
    from enpire_evolution.core.config import default_store_url

    return args.url or os.environ.get(URL_ENV) or default_store_url(args.home)


def _open(args: argparse.Namespace, experiment: str | None = None) -> Any:
    """Open the store; without one on disk, a named experiment is unknown (nothing created)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from enpire_evolution.core.store import ExperimentStore

    url = _store_url(args)
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None  # ExperimentStore reports a bad URL as a ConfigError
    if (parsed is not None and parsed.get_backend_name() == 'sqlite' and parsed.database
            and parsed.database != ':memory:' and not Path(parsed.database).exists()):
        if experiment is not None:
            raise UnknownNameError('experiment', experiment, [])
        return None
    return ExperimentStore(url)


def _print(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj, sort_keys=True) if args.json else text)


def _pct(x: float) -> str:
    return f'{100 * x:5.1f}%'


# --- handlers --------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> int:
    store = _open(args)
    rows: list[dict[str, Any]] = []
    if store is not None:
        with store:
            for e in store.experiments():
                stats = store.revision_stats(e.id)
                n, s = sum(st.n for st in stats), sum(st.successes for st in stats)
                rows.append({'id': e.id, 'task': e.task, 'status': e.status,
                             'created_at': e.created_at, 'trials': n, 'successes': s,
                             'success_rate': s / n if n else 0.0,
                             'branches': len(store.branches(e.id)),
                             'revisions': len(store.revisions(e.id))})
    lines = [f"{'experiment':24} {'task':14} {'status':8} {'trials':>6} {'success':>7} "
             f"{'branches':>8} {'revisions':>9}"]
    lines += [f"{r['id']:24} {r['task']:14} {r['status']:8} {r['trials']:6d} "
              f"{_pct(r['success_rate']):>7} {r['branches']:8d} {r['revisions']:9d}"
              for r in rows]
    if not rows:
        lines = [f'no experiments in {_store_url(args)}']
    _print(args, {'ok': True, 'experiments': rows}, '\n'.join(lines))
    return 0


def _show(args: argparse.Namespace) -> int:
    from enpire_evolution.core.report import build_report

    store = _open(args, args.experiment)
    with store:
        report = build_report(store, args.experiment)
    s = report['summary']
    branches = [{k: v for k, v in b.items() if k != 'series'} for b in report['branches']]
    out = {'ok': True, 'experiment': report['experiment'], 'summary': s,
           'branches': branches, 'mru': report['mru'],
           'revisions': len(report['revisions'])}
    e = report['experiment']
    lines = [f"experiment {e['id']}  task {e['task']}  status {e['status']}",
             f"trials {s['n']}  success {s['successes']}/{s['n']} = {_pct(s['success_rate'])}"
             f"  (95% CI {s['ci_low']:.3f}-{s['ci_high']:.3f})  eval "
             f"{s['eval']['successes']}/{s['eval']['n']}",
             f"longest streak {s['longest_streak']}  current streak {s['current_streak']}  "
             f"best revision {(s['best_revision'] or '-')[:12]}  mean MRU "
             f"{report['mru']['mean']:.3f}",
             '', f"{'branch':20} {'status':8} {'trials':>6} {'success':>7} {'CI':>13}"]
    lines += [f"{b['name']:20} {b['status']:8} {b['n']:6d} {_pct(b['success_rate']):>7} "
              f"{b['ci_low']:.2f}-{b['ci_high']:.2f}" for b in branches]
    _print(args, out, '\n'.join(lines))
    return 0


def _trials_of(store: Any, experiment: str, ref: str, which: str) -> tuple[str, str, list]:
    """(kind, resolved name, trials) of a branch name or revision id/prefix."""
    is_eval = {'all': None, 'tuning': False, 'eval': True}[which]
    if ref in {b.name for b in store.branches(experiment)}:
        return 'branch', ref, store.trials_for(experiment, branch=ref, is_eval=is_eval)
    try:
        rev = store.revision(experiment, ref)
    except UnknownNameError:
        names = [b.name for b in store.branches(experiment)]
        names += [r.id[:12] for r in store.revisions(experiment)]
        raise UnknownNameError(f"revision or branch of experiment '{experiment}'", ref,
                               names) from None
    return 'revision', rev.id, store.trials_for(experiment, revision=rev.id, is_eval=is_eval)


def _find_experiment(store: Any, refs: list[str]) -> str:
    """The one experiment in which every ref resolves."""
    hits, names = [], []
    for e in store.experiments():
        ok = True
        for ref in refs:
            try:
                _trials_of(store, e.id, ref, 'all')
            except UnknownNameError as err:
                names += [c for c in err.choices if c not in names]
                ok = False
        if ok:
            hits.append(e.id)
    if not hits:
        missing = ' / '.join(refs)
        raise UnknownNameError('revision or branch (in any experiment)', missing, names)
    if len(hits) > 1:
        raise ConfigError(f"'{' and '.join(refs)}' exist in several experiments "
                          f"({', '.join(hits)}); pass --experiment")
    return hits[0]


def _compare(args: argparse.Namespace) -> int:
    from enpire_evolution.core.compare import compare
    from enpire_evolution.core.config import CompareConfig

    cfg = CompareConfig(alpha=args.alpha, min_trials=args.min_trials)
    store = _open(args, args.experiment or args.a)
    with store:
        experiment = args.experiment or _find_experiment(store, [args.a, args.b])
        store.experiment(experiment)
        a_kind, a_name, a_trials = _trials_of(store, experiment, args.a, args.trials)
        b_kind, b_name, b_trials = _trials_of(store, experiment, args.b, args.trials)
    result = compare(a_trials, b_trials, cfg)
    out = {'ok': True, 'experiment': experiment, 'trials': args.trials,
           'a_ref': {'kind': a_kind, 'name': a_name},
           'b_ref': {'kind': b_kind, 'name': b_name}, **result}

    def side(label: str, name: str, s: dict[str, Any]) -> str:
        score = '-' if s['mean_score'] is None else f"{s['mean_score']:.3f}"
        return (f"{label} {name[:20]:20} {s['successes']:4d}/{s['n']:<4d} "
                f"{_pct(s['success_rate'])}  CI {s['ci_low']:.3f}-{s['ci_high']:.3f}  "
                f"mean score {score}")

    text = '\n'.join([side('A', a_name, result['a']), side('B', b_name, result['b']),
                      f"Fisher exact two-sided p={result['p_value']:.4g}  delta "
                      f"{result['rate_delta']:+.3f}",
                      f"decision: {result['decision']} ({result['reason']})"])
    _print(args, out, text)
    return 0


def _prune(args: argparse.Namespace) -> int:
    from enpire_evolution.core.compare import prune_experiment
    from enpire_evolution.core.config import PruneConfig

    store = _open(args, args.experiment)
    with store:
        decisions = prune_experiment(store, args.experiment,
                                     PruneConfig(min_trials=args.min_trials),
                                     apply=not args.dry_run)
    rows = [d.to_dict() for d in decisions]
    verb = 'would prune' if args.dry_run else 'pruned'
    lines = [f"{'PRUNE' if d.prune else 'keep':5} {d.branch:20} {d.successes:4d}/{d.n:<4d} "
             f'CI {d.ci_low:.3f}-{d.ci_high:.3f}  {d.reason}' for d in decisions]
    pruned = [d.branch for d in decisions if d.prune]
    lines.append(f"{verb}: {', '.join(pruned) if pruned else 'none'}")
    if not decisions:
        lines = [f"no active branches in '{args.experiment}'"]
    _print(args, {'ok': True, 'experiment': args.experiment, 'dry_run': args.dry_run,
                  'decisions': rows, 'pruned': pruned}, '\n'.join(lines))
    return 0


def _recipe(args: argparse.Namespace) -> int:
    from enpire_evolution.core.config import enpire_home
    from enpire_evolution.core.recipes import write_recipe

    store = _open(args, args.experiment)
    with store:
        exp = store.experiment(args.experiment)
        out_dir = Path(args.dir) if args.dir else enpire_home(args.home) / 'recipes'
        path = write_recipe(store, exp.id, exp.task, out_dir)
    _print(args, {'ok': True, 'experiment': exp.id, 'task': exp.task, 'path': str(path)},
           f'wrote {path}')
    return 0


def _report(args: argparse.Namespace) -> int:
    from enpire_evolution.core.config import ReportConfig, enpire_home
    from enpire_evolution.core.report import build_report, render_html

    cfg = ReportConfig(rolling_window=args.window)
    store = _open(args, args.experiment)
    with store:
        report = build_report(store, args.experiment, cfg)
    out = Path(args.out) if args.out else (enpire_home(args.home) / args.experiment /
                                           'report.html')
    render_html(report, out, home=args.home)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        s = report['summary']
        m = report['mru']
        print(f"wrote {out} ({s['n']} trials, success {_pct(s['success_rate'])}, "
              f"{len(report['revisions'])} revisions)")
        print('MRU ' + '  '.join(f'{c} {v:.2f}' for c, v in m['per_cell'].items())
              + f"  mean {m['mean']:.2f} ({m['how']})")
        for i, r in enumerate(m.get('fleet_runs') or []):
            print(f'fleet run {i + 1}: MRU '
                  + '  '.join(f'{c} {v:.2f}' for c, v in r['per_cell'].items())
                  + f"  fleet mean {r['mean']:.2f} over {r['span_s']:.0f} s")
    return 0


# --- enpire improve ----------------------------------------------------------------------------
IMPROVE_AGENTS = ('builtin',)


def _register_improve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'improve', help='let an agent improve the task policy until a goal or a budget',
        description='The built-in agent searches the seed policy\'s params with optuna (TPE), '
                    'tries each candidate on common tuning seeds (successive halving), keeps '
                    'or reverts it, and evaluates the best on held-out seeds until GOAL '
                    'consecutive successes. Resumable: run the same command again. Exit 0 '
                    'when the goal is met, 1 when the budget ran out first.')
    p.add_argument('--task', default='push_t', help='task name (default push_t)')
    p.add_argument('--agent', default='builtin', choices=IMPROVE_AGENTS,
                   help='which agent improves the policy')
    p.add_argument('--budget-min', type=float, default=30.0,
                   help='wall-clock budget of this run in minutes (default 30)')
    p.add_argument('--experiment', default=None,
                   help='experiment id (default improve-<task>)')
    p.add_argument('--goal-consecutive', type=int, default=50,
                   help='consecutive held-out successes that meet the goal (default 50)')
    p.add_argument('--cells', type=int, default=1,
                   help='cells to run trials on (default 1); N > 1 runs a fleet: one agent '
                        'per cell on its own branch, sharing ideas through '
                        '<home>/remote.git (see enpire_evolution.core.fleet)')
    p.add_argument('--seed-policy', default=None,
                   help='policy directory seeding the workspace (default '
                        'examples/policies/<task>/scripted)')
    p.add_argument('--fake', action='store_true',
                   help='no ROS: a synthetic success model over the params decides each trial '
                        '(FakeTrialsPort + peaked_success_model, 5 simulated s per trial, '
                        'simulated clock); demonstrates the whole loop')
    p.add_argument('--no-report', action='store_true', help='skip the HTML report')
    _common(p)
    p.set_defaults(func=_improve)


def _write_report(store: Any, experiment: str, goal_consecutive: int, home: Path) -> Path:
    """Render ``<home>/reports/<experiment>.html`` at the end of an improve run."""
    from enpire_evolution.core.config import ReportConfig
    from enpire_evolution.core.report import build_report, render_html

    report = build_report(store, experiment, ReportConfig(goal_consecutive=goal_consecutive))
    path = home / 'reports' / f'{experiment}.html'
    render_html(report, path, home=home)
    return path


def _improve(args: argparse.Namespace) -> int:
    import time

    from enpire_agent_bridge.core.revisions import RevisionStore
    from enpire_common.clock import FakeClock, SystemClock
    from enpire_evolution.core.agent import BuiltinAgent
    from enpire_evolution.core.agent_config import BuiltinAgentConfig
    from enpire_evolution.core.branches import PolicyWorkspace
    from enpire_evolution.core.config import enpire_home
    from enpire_evolution.core.store import ExperimentStore

    home = enpire_home(args.home).absolute()
    if args.cells > 1:
        return _improve_fleet(args, home)
    config = BuiltinAgentConfig(task=args.task, experiment=args.experiment or '',
                                budget_min=args.budget_min,
                                goal_consecutive=args.goal_consecutive, cells=args.cells)
    out = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=out, flush=True)

    store = ExperimentStore(_store_url(args))
    port: object = None
    try:
        if args.fake:
            from enpire_common.tasks import load_task
            from enpire_evolution.core.trials_port import (
                PUSH_T_FAKE_OPTIMUM,
                FakeTrialsPort,
                peaked_success_model,
            )

            task = load_task(args.task)
            clock: object = FakeClock(start_s=time.time())
            wall = clock.now_s  # type: ignore[attr-defined]
            port = FakeTrialsPort(store, peaked_success_model(PUSH_T_FAKE_OPTIMUM),
                                  evaluation_seeds=task.evaluation_seeds,
                                  clock=clock, trial_s=5.0,  # type: ignore[arg-type]
                                  wall=wall)
        else:
            try:
                from enpire_rollout.client import make_ros_trials_port
            except ImportError as exc:
                print(f'enpire improve: the ROS trials port is unavailable ({exc}); install '
                      'enpire_rollout and ROS 2, or pass --fake', file=sys.stderr)
                return 2
            clock, wall = SystemClock(), time.time
            port = make_ros_trials_port(args.task, home, args.cells, log=log)
        agent = BuiltinAgent(
            config, store, RevisionStore(home / 'revisions'),
            PolicyWorkspace(home / 'workspace' / args.task), port,  # type: ignore[arg-type]
            home=home, seed_policy=args.seed_policy, clock=clock,  # type: ignore[arg-type]
            wall=wall, log=log)
        result = agent.run()
        report_path = None if args.no_report else _write_report(
            store, result.experiment, config.goal_consecutive, home)
    finally:
        close = getattr(port, 'close', None)
        if callable(close):
            close()
        store.close()
    res = result.to_dict()
    bt = result.best_tuning
    summary = [
        f"experiment {result.experiment}: {'GOAL MET' if result.goal_met else 'goal not met'}"
        f' ({result.stop_reason})',
        f"best revision {(result.best_revision or '-')[:12]}  tuning "
        f"{bt.get('successes', 0)}/{bt.get('n', 0)} (95% CI {bt.get('ci_low', 0):.2f}-"
        f"{bt.get('ci_high', 1):.2f})",
        f'best evaluation streak {result.best_eval_streak}/{result.goal_consecutive}  '
        f'evaluation seeds used {result.eval_seeds_used}',
        f'{result.n_candidates} candidates, {result.n_trials} trials, this run '
        f'{result.wall_time_s:.0f} s, time to success '
        f"{'-' if result.time_to_success_s is None else f'{result.time_to_success_s:.0f} s'}",
        f'recipe {result.recipe_path}']
    if report_path is not None:
        summary.append(f'report {report_path}')
    _print(args, {'ok': True, **res, 'report': str(report_path) if report_path else None},
           '\n'.join(summary))
    return 0 if result.goal_met else 1


def _improve_fleet(args: argparse.Namespace, home: Path) -> int:
    """``enpire improve --cells N`` (N > 1): one built-in agent per cell (core.fleet)."""
    import time

    from enpire_agent_bridge.core.revisions import RevisionStore
    from enpire_common.clock import FakeClock, SystemClock
    from enpire_evolution.core.agent_config import BuiltinAgentConfig
    from enpire_evolution.core.fleet import MAX_CELLS, Fleet, LockedWorkspace, cell_name
    from enpire_evolution.core.store import ExperimentStore

    if args.cells > MAX_CELLS:
        raise ConfigError(f'--cells {args.cells}: the sim fleet launch starts 1 to {MAX_CELLS} '
                          'cells; use --cells 1..4 (or several hosts)')
    config = BuiltinAgentConfig(task=args.task, experiment=args.experiment or '',
                                budget_min=args.budget_min,
                                goal_consecutive=args.goal_consecutive)
    out = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=out, flush=True)

    store = ExperimentStore(_store_url(args))
    ports: list[Any] = []
    session: Any = None
    try:
        if args.fake:
            from enpire_common.tasks import load_task
            from enpire_evolution.core.trials_port import (
                PUSH_T_FAKE_OPTIMUM,
                FakeTrialsPort,
                peaked_success_model,
            )

            task = load_task(args.task)
            start = time.time()
            clocks: list[Any] = [FakeClock(start_s=start) for _ in range(args.cells)]
            walls: list[Any] = [c.now_s for c in clocks]
            model = peaked_success_model(PUSH_T_FAKE_OPTIMUM)
            ports = [FakeTrialsPort(store, model, evaluation_seeds=task.evaluation_seeds,
                                    clock=c, trial_s=5.0, cell=cell_name(i), wall=c.now_s)
                     for i, c in enumerate(clocks)]
        else:
            try:
                from enpire_rollout.client import make_ros_fleet_ports
            except ImportError as exc:
                print(f'enpire improve: the ROS trials port is unavailable ({exc}); install '
                      'enpire_rollout and ROS 2, or pass --fake', file=sys.stderr)
                return 2
            clocks, walls = SystemClock(), time.time  # type: ignore[assignment]
            session, ports = make_ros_fleet_ports(args.task, home, args.cells, log=log)
        fleet = Fleet(config, store, RevisionStore(home / 'revisions'),
                      LockedWorkspace(home / 'workspace' / args.task), ports, home=home,
                      seed_policy=args.seed_policy, clocks=clocks, walls=walls, log=log)
        result = fleet.run()
        report_path = None if args.no_report else _write_report(
            store, result.experiment, config.goal_consecutive, home)
    finally:
        for port in ports:
            close = getattr(port, 'close', None)
            if callable(close):
                close()
        if session is not None:
            session.close()
        store.close()
    m = result.mru
    lines = [f"experiment {result.experiment} (fleet of {args.cells}): "
             f"{'GOAL MET' if result.goal_met else 'goal not met'}"]
    for a in result.agents:
        bt = a['best_tuning']
        lines.append(f"  {a['branch']}@{a['cell']}: {a['stop_reason']}"
                     f"{(' - ' + a['error']) if a['error'] else ''}; best "
                     f"{(a['best_revision'] or '-')[:12]} tuning {bt.get('successes', 0)}/"
                     f"{bt.get('n', 0)}; {a['candidates']} candidates")
    lines.append(f"borrowed ideas: {len(result.borrowed)} ("
                 f"{sum(b['status'] == 'kept' for b in result.borrowed)} kept)")
    per_cell = '  '.join(f'{c} {v:.2f}' for c, v in m['per_cell'].items())
    lines.append(f"MRU {per_cell}  fleet mean {m['mean']:.2f} over {m['span_s']:.0f} s "
                 f"({m['how']})")
    g = result.gpu
    lines.append(f"GPU utilisation {g['mean']:.2f}" if g.get('available') else
                 f"GPU utilisation unavailable ({g.get('reason', '')})")
    lines.append(f'{result.n_trials} trials in the experiment, this run '
                 f'{result.wall_time_s:.0f} s; recipe {result.recipe_path}')
    if report_path is not None:
        lines.append(f'report {report_path}')
    _print(args, {'ok': True, **result.to_dict(),
                  'report': str(report_path) if report_path else None}, '\n'.join(lines))
    return 0 if result.goal_met else 1
