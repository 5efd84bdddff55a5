"""``enpire bench agents``: agents on the same task, seed policy and budget; one HTML report.

Each (agent, repeat) is one ``enpire improve`` run in its own experiment
(``bench-<id>-<agent>-r<k>``), as a child process (a crashing agent never ends the bench).
Afterwards the best revision of each run is evaluated on held-out evaluation seeds.

The score is staged and normalised, in the manner of AutoEnvBench: a run reaches stage

1. **submitted**: it stored a revision of its own (valid: it passed the offline checks);
2. **tried**: it ran trials of a revision of its own;
3. **succeeded**: one of its tuning trials succeeded;
4. **improved**: its best revision's tuning success rate is at least ``--improve-rate``;
5. **held out**: its best revision succeeds on at least ``--heldout-rate`` of the held-out
   evaluation trials;

and scores the fraction of stages reached (stages count only in order); an agent's score is
the mean over its repeats. The report also shows success against wall time and against
tokens per run, and the best held-out success with its Wilson interval.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError
from enpire_common.metrics import wilson_interval
from enpire_common.tasks import DEFAULT_TASK

STAGES = ('submitted', 'tried', 'succeeded', 'improved', 'held out')
BENCH_AGENTS = ('builtin', 'claude-code', 'codex', 'kimi', 'openai')


def register_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser('bench', help='benchmark agents on a task')
    verbs = bench.add_subparsers(dest='verb', metavar='<verb>', required=True)
    p = verbs.add_parser('agents', help='run agents under one budget from one seed policy and '
                                        'report staged scores, success vs time and tokens')
    p.add_argument('--task', default=DEFAULT_TASK)
    p.add_argument('--agents', required=True,
                   help=f"comma-separated agents ({', '.join(BENCH_AGENTS)})")
    p.add_argument('--budget-min', type=float, required=True, help='wall budget per run')
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--budget-tokens', type=int, default=None)
    p.add_argument('--max-restarts', type=int, default=5)
    p.add_argument('--eval-trials', type=int, default=5,
                   help='held-out trials of each run\'s best revision (default 5)')
    p.add_argument('--improve-rate', type=float, default=0.5)
    p.add_argument('--heldout-rate', type=float, default=0.5)
    p.add_argument('--seed-policy', default=None)
    p.add_argument('--model', default='')
    p.add_argument('--endpoint', default='')
    p.add_argument('--id', default='', help='bench id (default: a timestamp)')
    p.set_defaults(func=_bench, text=_bench_text)


def _run(argv: list[str], log_path: Path) -> dict[str, Any]:
    with open(log_path, 'a') as log:
        out = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', *argv, '--json'],
                             stdout=subprocess.PIPE, stderr=log, text=True, check=False)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {'ok': False, 'message': f'exit {out.returncode}; see {log_path}'}


def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import load_task
    from enpire_evolution.cli_agents import check_agent
    from enpire_evolution.core.agent_accounting import experiment_accounting
    from enpire_evolution.core.store import ExperimentStore

    agents = [a.strip() for a in args.agents.split(',') if a.strip()]
    unknown = [a for a in agents if a not in BENCH_AGENTS]
    if unknown or not agents:
        raise ConfigError(f"--agents {args.agents}: known agents are {', '.join(BENCH_AGENTS)}")
    for a in agents:  # every agent usable before anything starts
        if a != 'builtin':
            check_agent(a, args.endpoint)
    if args.repeats < 1:
        raise ConfigError('--repeats must be >= 1')
    home = enpire_home(args.home)
    spec = load_task(args.task)
    bench_id = args.id or time.strftime('%Y%m%d-%H%M%S')
    logs = home / 'logs' / f'bench-{bench_id}'
    logs.mkdir(parents=True, exist_ok=True)
    common = ['--home', str(home)]
    runs: list[dict[str, Any]] = []
    for agent in agents:
        for k in range(args.repeats):
            exp = f'bench-{bench_id}-{agent}-r{k}'
            print(f'bench {bench_id}: {agent} repeat {k + 1}/{args.repeats} ({exp})',
                  file=sys.stderr, flush=True)
            argv = ['improve', '--task', spec.name, '--agent', agent, '--budget-min',
                    str(args.budget_min), '--experiment', exp, '--no-report', *common]
            if agent != 'builtin':
                argv += ['--max-restarts', str(args.max_restarts)]
                if args.budget_tokens:
                    argv += ['--budget-tokens', str(args.budget_tokens)]
                if args.model:
                    argv += ['--model', args.model]
                if args.endpoint:
                    argv += ['--endpoint', args.endpoint]
            if args.seed_policy:
                argv += ['--seed-policy', args.seed_policy]
            t0 = time.time()
            out = _run(argv, logs / f'{exp}.log')
            runs.append({'agent': agent, 'repeat': k, 'experiment': exp, 'ok': out.get('ok'),
                         'error': '' if out.get('ok') else out.get('message', ''),
                         'wall_s': round(time.time() - t0, 1),
                         'best_revision': _best_of(out)})
    first, _ = spec.evaluation_seeds
    with ExperimentStore.open(home) as store:
        for r in runs:  # held-out evaluation of each run's best revision
            if not r['best_revision']:  # a run that named none: the store's best
                try:
                    best = store.best_revision(r['experiment'], is_eval=False)
                except ConfigError:
                    best = None
                r['best_revision'] = best.id if best else ''
            r['eval'] = None
            if r['best_revision']:
                out = _run(['trial', 'run', '--task', spec.name, '--revision',
                            r['best_revision'], '--trials', str(args.eval_trials),
                            '--seed-start', str(first), '--experiment',
                            f"{r['experiment']}-eval", *common],
                           logs / f"{r['experiment']}-eval.log")
                if out.get('ok'):
                    n, s = int(out['n_trials']), int(out['n_success'])
                    lo, hi = wilson_interval(s, n)
                    r['eval'] = {'n': n, 'successes': s, 'rate': s / n if n else 0.0,
                                 'ci95': [lo, hi]}
        for r in runs:
            r.update(_stages(store, r, args.improve_rate, args.heldout_rate))
            try:
                r['accounting'] = experiment_accounting(store, r['experiment'])
                r['curve'] = _curve(store, r['experiment'])
            except ConfigError:
                r['accounting'], r['curve'] = None, []
    summary = []
    for agent in agents:
        mine = [r for r in runs if r['agent'] == agent]
        evals = [r['eval'] for r in mine if r['eval']]
        best = max(evals, key=lambda e: (e['rate'], e['n']), default=None)
        tokens = [r['accounting']['totals']['tokens'] for r in mine if r.get('accounting')]
        summary.append({'agent': agent, 'repeats': len(mine),
                        'score': sum(r['score'] for r in mine) / len(mine),
                        'stages': {s: sum(r['stages'][s] for r in mine) for s in STAGES},
                        'best_heldout': best,
                        'tokens_mean': sum(tokens) / len(tokens) if tokens else 0})
    result = {'ok': True, 'bench': bench_id, 'task': spec.name, 'budget_min': args.budget_min,
              'repeats': args.repeats, 'stages': list(STAGES), 'agents': summary, 'runs': runs}
    path = home / 'reports' / f'bench-{bench_id}.html'
    render_bench(result, path)
    result['report'] = str(path)
    return result


def _best_of(out: dict[str, Any]) -> str:
    if out.get('coding'):
        bests = [a['best'] for a in out.get('agents', []) if a.get('best')]
        best = max(bests, key=lambda b: (b['rate'], b['n']), default=None)
        return best['revision'] if best else ''
    return str(out.get('best_revision') or '')


def _curve(store: Any, experiment: str) -> list[dict[str, Any]]:
    """Success so far against seconds since the run's start, over every trial of the run."""
    try:
        exp = store.experiment(experiment)
    except ConfigError:
        return []
    from enpire_evolution.core.metrics import cumulative_success

    trials = sorted(store.trials_for(experiment), key=lambda t: t.ended_at)
    rates = cumulative_success(t.success for t in trials)
    return [{'time_s': round(t.ended_at - exp.created_at, 1), 'rate': rate}
            for t, rate in zip(trials, rates, strict=True)]


def _stages(store: Any, run: dict[str, Any], improve_rate: float, heldout_rate: float
            ) -> dict[str, Any]:
    exp = run['experiment']
    try:
        revisions = [r for r in store.revisions(exp) if r.branch != 'manual']
        stats = store.revision_stats(exp, is_eval=False)
    except ConfigError:
        revisions, stats = [], []
    own = {r.id for r in revisions}
    own_stats = [s for s in stats if s.revision in own]
    best_rate = max((s.success_rate for s in own_stats if s.n), default=0.0)
    ev = run.get('eval')
    reached = {'submitted': bool(own), 'tried': any(s.n for s in own_stats),
               'succeeded': any(s.successes for s in own_stats),
               'improved': best_rate >= improve_rate,
               'held out': bool(ev and ev['rate'] >= heldout_rate)}
    n = 0
    for s in STAGES:  # stages count only in order
        if not reached[s]:
            break
        n += 1
    return {'stages': {s: i < n for i, s in enumerate(STAGES)}, 'score': n / len(STAGES),
            'best_tuning_rate': best_rate}


def render_bench(result: dict[str, Any], path: Path) -> Path:
    """The bench report: one self-contained HTML file (the result embedded as JSON)."""
    from enpire_evolution.core.report import _COLORS, _E, _fmt, _svg_lines, _table

    rows = []
    for a in result['agents']:
        b = a['best_heldout']
        rows.append([_E(a['agent']), str(a['repeats']), _fmt(a['score']),
                     *[str(a['stages'][s]) for s in result['stages']],
                     f"{b['successes']}/{b['n']} ({_fmt(b['rate'])}, 95% CI "
                     f"{_fmt(b['ci95'][0])}-{_fmt(b['ci95'][1])})" if b else '-',
                     _fmt(a['tokens_mean'], 0)])
    time_series, token_series = [], []
    for i, r in enumerate(result['runs']):
        colour = _COLORS[i % len(_COLORS)]
        name = f"{r['agent']} r{r['repeat']}"
        time_series.append((name, [p['time_s'] for p in r['curve']],
                            [p['rate'] for p in r['curve']], colour, ''))
        acct = r.get('accounting') or {}
        if acct.get('curve'):
            token_series.append((name, [p['tokens'] for p in acct['curve']],
                                 [p['rate'] for p in acct['curve']], colour, ''))
    run_rows = [[_E(r['experiment']), _E(r['agent']), str(r['repeat']), _fmt(r['score']),
                 _fmt(r['best_tuning_rate']), _E((r['best_revision'] or '-')[:12]),
                 f"{r['eval']['successes']}/{r['eval']['n']}" if r['eval'] else '-',
                 str((r.get('accounting') or {}).get('totals', {}).get('tokens', 0)),
                 _fmt(r['wall_s'], 0), _E(r['error'] or '')] for r in result['runs']]
    body = [f"<h1 id=\"bench-title\">Agent bench {_E(result['bench'])} <span class=\"muted\">"
            f"task {_E(result['task'])}, {result['budget_min']:g} min per run, "
            f"{result['repeats']} repeat(s)</span></h1>",
            '<p class="muted">Staged, normalised score: the fraction of the stages '
            f"{', '.join(result['stages'])} reached in order, averaged over repeats. "
            'Stand-in agents are test doubles, not models.</p>',
            _table(['agent', 'repeats', 'score', *result['stages'], 'best held-out (Wilson)',
                    'mean tokens'], rows, 'bench-agents'),
            _svg_lines(time_series, 'success vs wall clock', 'seconds since the run started',
                       'success rate so far'),
            _svg_lines(token_series, 'success vs tokens', 'tokens spent',
                       'success rate so far') if token_series else
            '<p class="muted">No agent reported tokens.</p>',
            '<h2>Runs</h2>',
            _table(['experiment', 'agent', 'repeat', 'score', 'best tuning rate', 'best',
                    'held out', 'tokens', 'wall s', 'error'], run_rows, 'bench-runs')]
    data = json.dumps(result, default=str).replace('</', '<\\/')
    html_text = ('<!doctype html><html><head><meta charset="utf-8"><title>Agent bench '
                 f"{_E(result['bench'])}</title><style>body{{font-family:sans-serif;margin:2em}}"
                 'table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}'
                 '.muted{color:#777}.grid{stroke:#eee}.tick,.label{font-size:11px}'
                 '.title{font-weight:bold;font-size:13px}</style></head><body>'
                 + '\n'.join(body)
                 + f'<script type="application/json" id="enpire-bench">{data}</script>'
                 '<script>document.body.dataset.rendered = document.querySelectorAll('
                 '"table.bench-agents tr").length;</script></body></html>')
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp')
    tmp.write_text(html_text, encoding='utf-8')
    os.replace(tmp, path)
    return path


def _bench_text(out: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"bench {out['bench']} on {out['task']} ({out['budget_min']:g} min, "
             f"{out['repeats']} repeat(s)):"]
    for a in out['agents']:
        b = a['best_heldout']
        lines.append(f"  {a['agent']}: score {a['score']:.2f}; best held-out "
                     + (f"{b['successes']}/{b['n']}" if b else '-')
                     + f"; mean tokens {a['tokens_mean']:.0f}")
    lines.append(f"report {out['report']}")
    return '\n'.join(lines)
