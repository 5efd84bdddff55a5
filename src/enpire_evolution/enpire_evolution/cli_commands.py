"""``enpire exp list|show|compare|prune|recipe``, ``enpire report``, ``enpire improve`` and
``enpire gc`` (:mod:`enpire_evolution.cli_gc`).

The store is ``--url`` if given, else ``$ENPIRE_STORE_URL``, else the SQLite file
``<home>/enpire.db`` with home from ``--home``, ``$ENPIRE_HOME`` or ./runs. Verbs return
their result (see enpire_bringup.cli); ``--json`` prints it with sorted keys.
:func:`exp_compare` and :func:`revision_trials` are the verbs the MCP tools and
``policy show`` use too.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, UnknownNameError

URL_ENV = 'ENPIRE_STORE_URL'


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument('--url', default=None,
                   help='SQLAlchemy URL of the store (default $ENPIRE_STORE_URL or '
                        'sqlite:///<home>/enpire.db)')
    p.set_defaults(sort_keys=True)


def register(sub: argparse._SubParsersAction) -> None:
    from enpire_evolution.cli_rl import register_rl
    from enpire_evolution.cli_trial import register_trial

    register_trial(sub)
    register_rl(sub)
    exp = sub.add_parser('exp', help='experiments: list, show, compare, prune, recipe')
    verbs = exp.add_subparsers(dest='exp_command', metavar='<verb>')

    p = verbs.add_parser('list', help='list experiments with trial counts and success rates')
    _common(p)
    p.set_defaults(func=_list, text=_list_text)

    p = verbs.add_parser('show', help='summary, branches and best revision of an experiment')
    p.add_argument('experiment')
    _common(p)
    p.set_defaults(func=_show, text=_show_text)

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
    p.set_defaults(func=_compare, text=_compare_text)

    p = verbs.add_parser('prune', help="mark branches clearly worse than the best 'pruned'")
    p.add_argument('experiment')
    p.add_argument('--min-trials', type=int, default=20,
                   help='trials a branch needs before it can be pruned (default 20)')
    p.add_argument('--dry-run', action='store_true', help='decide and print; change nothing')
    _common(p)
    p.set_defaults(func=_prune, text=_prune_text)

    p = verbs.add_parser('recipe', help='write <dir>/<task>.md from the kept changes')
    p.add_argument('experiment')
    p.add_argument('--dir', default=None, help='recipes directory (default <home>/recipes)')
    _common(p)
    p.set_defaults(func=_recipe, text=lambda out, _args: f"wrote {out['path']}")

    p = sub.add_parser('report', help='write an offline HTML report of an experiment',
                       description='One self-contained HTML file (inline SVG plots, no '
                                   'network). --json prints the same numbers as one object.')
    p.add_argument('experiment')
    p.add_argument('--out', default=None,
                   help='HTML file to write (default <home>/<experiment>/report.html)')
    p.add_argument('--window', type=int, default=50, help='rolling success window')
    _common(p)
    p.set_defaults(func=_report, text=_report_text)

    from enpire_evolution.cli_bench import register_bench
    from enpire_evolution.cli_gc import register_gc
    from enpire_evolution.cli_improve import register_improve

    register_improve(sub)
    register_bench(sub)
    register_gc(sub)


# --- helpers ---------------------------------------------------------------------------------
def store_url(url: str | None = None, home: str | Path | None = None) -> str:
    """``url``, else ``$ENPIRE_STORE_URL``, else the SQLite file of ``home``."""
    from enpire_evolution.core.config import default_store_url

    return url or os.environ.get(URL_ENV) or default_store_url(home)


def _open(url: str, experiment: str | None = None) -> Any:
    """Open the store; without one on disk, a named experiment is unknown (nothing created)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from enpire_evolution.core.store import ExperimentStore

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


def _url(args: argparse.Namespace) -> str:
    return store_url(args.url, args.home)


def _pct(x: float) -> str:
    return f'{100 * x:5.1f}%'


# --- verbs -----------------------------------------------------------------------------------
def _list(args: argparse.Namespace) -> dict[str, Any]:
    store = _open(_url(args))
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
    return {'ok': True, 'experiments': rows}


def _list_text(out: dict[str, Any], args: argparse.Namespace) -> str:
    rows = out['experiments']
    if not rows:
        return f'no experiments in {_url(args)}'
    lines = [f"{'experiment':24} {'task':14} {'status':8} {'trials':>6} {'success':>7} "
             f"{'branches':>8} {'revisions':>9}"]
    lines += [f"{r['id']:24} {r['task']:14} {r['status']:8} {r['trials']:6d} "
              f"{_pct(r['success_rate']):>7} {r['branches']:8d} {r['revisions']:9d}"
              for r in rows]
    return '\n'.join(lines)


def _show(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_evolution.core.report import build_report

    with _open(_url(args), args.experiment) as store:
        report = build_report(store, args.experiment)
    branches = [{k: v for k, v in b.items() if k != 'series'} for b in report['branches']]
    return {'ok': True, 'experiment': report['experiment'], 'summary': report['summary'],
            'branches': branches, 'mru': report['mru'],
            'revisions': len(report['revisions'])}


def _show_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    e, s = out['experiment'], out['summary']
    lines = [f"experiment {e['id']}  task {e['task']}  status {e['status']}",
             f"trials {s['n']}  success {s['successes']}/{s['n']} = {_pct(s['success_rate'])}"
             f"  (95% CI {s['ci_low']:.3f}-{s['ci_high']:.3f})  eval "
             f"{s['eval']['successes']}/{s['eval']['n']}",
             f"longest streak {s['longest_streak']}  current streak {s['current_streak']}  "
             f"best revision {(s['best_revision'] or '-')[:12]}  mean MRU "
             f"{out['mru']['mean']:.3f}",
             '', f"{'branch':20} {'status':8} {'trials':>6} {'success':>7} {'CI':>13}"]
    lines += [f"{b['name']:20} {b['status']:8} {b['n']:6d} {_pct(b['success_rate']):>7} "
              f"{b['ci_low']:.2f}-{b['ci_high']:.2f}" for b in out['branches']]
    return '\n'.join(lines)


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


def exp_compare(a: str, b: str, *, experiment: str | None = None, trials: str = 'all',
                alpha: float = 0.05, min_trials: int = 10, home: str | Path | None = None,
                url: str | None = None) -> dict[str, Any]:
    """Compare baseline ``a`` with candidate ``b`` (revision ids/prefixes or branch names).

    Returns Wilson CIs, the Fisher exact p and ``decision`` keep / revert / inconclusive
    (see enpire_evolution.core.compare), plus what ``a`` and ``b`` resolved to.

    Raises:
        UnknownNameError: a ref (or the experiment) is unknown; ConfigError: ambiguous.
    """
    from enpire_evolution.core.compare import compare
    from enpire_evolution.core.config import CompareConfig

    if trials not in ('all', 'tuning', 'eval'):
        raise ConfigError(f"trials='{trials}' is invalid: use all, tuning or eval")
    cfg = CompareConfig(alpha=alpha, min_trials=min_trials)
    with _open(store_url(url, home), experiment or a) as store:
        experiment = experiment or _find_experiment(store, [a, b])
        store.experiment(experiment)
        a_kind, a_name, a_trials = _trials_of(store, experiment, a, trials)
        b_kind, b_name, b_trials = _trials_of(store, experiment, b, trials)
    return {'ok': True, 'experiment': experiment, 'trials': trials,
            'a_ref': {'kind': a_kind, 'name': a_name},
            'b_ref': {'kind': b_kind, 'name': b_name}, **compare(a_trials, b_trials, cfg)}


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    return exp_compare(args.a, args.b, experiment=args.experiment, trials=args.trials,
                       alpha=args.alpha, min_trials=args.min_trials, home=args.home,
                       url=args.url)


def _compare_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    def side(label: str, name: str, s: dict[str, Any]) -> str:
        score = '-' if s['mean_score'] is None else f"{s['mean_score']:.3f}"
        return (f"{label} {name[:20]:20} {s['successes']:4d}/{s['n']:<4d} "
                f"{_pct(s['success_rate'])}  CI {s['ci_low']:.3f}-{s['ci_high']:.3f}  "
                f"mean score {score}")

    return '\n'.join([side('A', out['a_ref']['name'], out['a']),
                      side('B', out['b_ref']['name'], out['b']),
                      f"Fisher exact two-sided p={out['p_value']:.4g}  delta "
                      f"{out['rate_delta']:+.3f}",
                      f"decision: {out['decision']} ({out['reason']})"])


def revision_trials(home: str | Path | None, revision_id: str) -> list[dict[str, Any]]:
    """Per-experiment trial counts of a revision (``policy show``); [] without a store.

    Never creates a database just to read it.
    """
    store = _open(store_url(None, home))
    if store is None:
        return []
    rows = []
    with store:
        for e in store.experiments():
            for st in store.revision_stats(e.id):
                if st.revision == revision_id:
                    rows.append({'experiment': e.id, 'branch': st.branch, 'n': st.n,
                                 'successes': st.successes,
                                 'success_rate': round(st.success_rate, 6),
                                 'mean_score': st.mean_score})
    return rows


def _prune(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_evolution.core.compare import prune_experiment
    from enpire_evolution.core.config import PruneConfig

    with _open(_url(args), args.experiment) as store:
        decisions = prune_experiment(store, args.experiment,
                                     PruneConfig(min_trials=args.min_trials),
                                     apply=not args.dry_run)
    return {'ok': True, 'experiment': args.experiment, 'dry_run': args.dry_run,
            'decisions': [d.to_dict() for d in decisions],
            'pruned': [d.branch for d in decisions if d.prune]}


def _prune_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    if not out['decisions']:
        return f"no active branches in '{out['experiment']}'"
    lines = [f"{'PRUNE' if d['prune'] else 'keep':5} {d['branch']:20} "
             f"{d['successes']:4d}/{d['n']:<4d} CI {d['ci_low']:.3f}-{d['ci_high']:.3f}  "
             f"{d['reason']}" for d in out['decisions']]
    lines.append(f"{'would prune' if out['dry_run'] else 'pruned'}: "
                 f"{', '.join(out['pruned']) if out['pruned'] else 'none'}")
    return '\n'.join(lines)


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.paths import enpire_home
    from enpire_evolution.core.recipes import write_recipe

    with _open(_url(args), args.experiment) as store:
        exp = store.experiment(args.experiment)
        out_dir = Path(args.dir) if args.dir else enpire_home(args.home) / 'recipes'
        path = write_recipe(store, exp.id, exp.task, out_dir)
    return {'ok': True, 'experiment': exp.id, 'task': exp.task, 'path': str(path)}


def _report_path(args: argparse.Namespace) -> Path:
    from enpire_common.paths import enpire_home

    return Path(args.out) if args.out else enpire_home(args.home) / args.experiment / 'report.html'


def _report(args: argparse.Namespace) -> dict[str, Any]:
    """The report's numbers (what --json prints); writes the HTML file."""
    from enpire_evolution.core.config import ReportConfig
    from enpire_evolution.core.report import build_report, render_html

    with _open(_url(args), args.experiment) as store:
        report = build_report(store, args.experiment, ReportConfig(rolling_window=args.window))
    render_html(report, _report_path(args), home=args.home)
    return report


def _report_text(report: dict[str, Any], args: argparse.Namespace) -> str:
    s, m = report['summary'], report['mru']
    lines = [f"wrote {_report_path(args)} ({s['n']} trials, success {_pct(s['success_rate'])}, "
             f"{len(report['revisions'])} revisions)",
             'MRU ' + '  '.join(f'{c} {v:.2f}' for c, v in m['per_cell'].items())
             + f"  mean {m['mean']:.2f} ({m['how']})"]
    lines += [f'fleet run {i + 1}: MRU '
              + '  '.join(f'{c} {v:.2f}' for c, v in r['per_cell'].items())
              + f"  fleet mean {r['mean']:.2f} over {r['span_s']:.0f} s"
              for i, r in enumerate(m.get('fleet_runs') or [])]
    return '\n'.join(lines)
