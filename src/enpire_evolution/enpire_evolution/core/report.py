"""The experiment report: one dict of numbers, and one self-contained offline HTML file.

:func:`build_report` computes everything (the ``--json`` output is exactly this dict);
:func:`render_html` only draws it: inline SVG plots, tables, and the dict itself embedded as
JSON, with no external scripts, styles or fonts, so the file opens offline anywhere.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enpire_common.paths import enpire_home
from enpire_evolution.core import metrics
from enpire_evolution.core.agent_accounting import experiment_accounting
from enpire_evolution.core.compare import summarise
from enpire_evolution.core.config import ReportConfig
from enpire_evolution.core.store import ExperimentStore, Trial

REPORT_VERSION = 1
FUSED_VIEW = 'fused'


def build_report(store: ExperimentStore, experiment: str,
                 config: ReportConfig | None = None) -> dict[str, Any]:
    """Every number of an experiment's report, JSON-serialisable.

    Times on plot axes (``t_s``) are seconds since the experiment's ``created_at``, at each
    trial's end. A revision's ``success_rate`` in the idea tree covers all its trials
    (tuning and evaluation); a node ``raised_best`` when its rate beat every earlier
    revision's (in creation order). MRU spans the first trial start to the last trial end.

    Raises:
        UnknownNameError: no such experiment.
    """
    cfg = config or ReportConfig()
    exp = store.experiment(experiment)
    t0 = exp.created_at
    trials = store.trials_for(experiment)
    verdicts = store.verdicts_for(experiment)
    branches = store.branches(experiment)
    revisions = store.revisions(experiment)
    outcomes = [t.success for t in trials]

    summary = {
        **summarise(trials, cfg.z),
        'tuning': summarise([t for t in trials if not t.is_eval], cfg.z),
        'eval': summarise([t for t in trials if t.is_eval], cfg.z),
        'longest_streak': metrics.longest_consecutive_successes(outcomes),
        'current_streak': metrics.current_streak(outcomes),
        'goal_consecutive': cfg.goal_consecutive,
        'time_to_success_s': metrics.time_to_success(
            [(t.ended_at, t.success) for t in trials], consecutive=cfg.goal_consecutive,
            start_s=t0),
        'best_revision': None,
    }
    best = store.best_revision(experiment, z=cfg.z)
    summary['best_revision'] = best.id if best else None

    # Per-branch curves against wall clock.
    by_branch: dict[str, list[Trial]] = {}
    for t in trials:
        by_branch.setdefault(t.branch, []).append(t)
    branch_rows = []
    known = {b.name for b in branches}
    extra = [name for name in by_branch if name not in known]  # trials of unregistered lanes
    for b in [*branches, *extra]:
        name = b if isinstance(b, str) else b.name
        bt = by_branch.get(name, [])
        outs = [t.success for t in bt]
        cumulative = metrics.cumulative_success(outs)
        branch_rows.append({
            'name': name,
            'agent': None if isinstance(b, str) else b.agent,
            'parent': None if isinstance(b, str) else b.parent,
            'status': 'active' if isinstance(b, str) else b.status,
            'pruned_reason': '' if isinstance(b, str) else b.pruned_reason,
            **summarise(bt, cfg.z),
            'series': {'t_s': [t.ended_at - t0 for t in bt], 'cumulative': cumulative,
                       'rolling': metrics.rolling_success(outs, cfg.rolling_window)},
        })

    # Revisions table and idea tree.
    by_rev: dict[str, list[Trial]] = {}
    for t in trials:
        by_rev.setdefault(t.revision, []).append(t)
    lanes = [row['name'] for row in branch_rows]
    for r in revisions:
        if r.branch not in lanes:
            lanes.append(r.branch)
    rev_ids = {r.id for r in revisions}
    nodes, edges, table = [], [], []
    best_rate = -1.0
    for order, r in enumerate(revisions):
        rt = by_rev.get(r.id, [])
        block = summarise(rt, cfg.z)
        raised = bool(rt) and block['success_rate'] > best_rate
        if raised:
            best_rate = block['success_rate']
        nodes.append({'id': r.id, 'short': r.id[:8], 'branch': r.branch,
                      'lane': lanes.index(r.branch), 'order': order,
                      'created_s': r.created_at - t0, 'parent': r.parent,
                      'hypothesis': r.hypothesis, 'status': r.status, 'origin': r.origin,
                      'n': block['n'], 'success_rate': block['success_rate'],
                      'raised_best': raised})
        if r.parent and r.parent in rev_ids:
            edges.append({'from': r.parent, 'to': r.id,
                          'kind': 'borrowed' if r.origin else 'parent'})
        tuning = [t for t in rt if not t.is_eval]
        evals = [t for t in rt if t.is_eval]
        table.append({'id': r.id, 'branch': r.branch, 'parent': r.parent, 'commit': r.commit,
                      'hypothesis': r.hypothesis, 'regime': r.regime, 'status': r.status,
                      'origin': r.origin, 'created_s': r.created_at - t0, 'params': r.params,
                      **block, 'tuning': summarise(tuning, cfg.z),
                      'eval': summarise(evals, cfg.z)})

    # MRU: busy intervals per cell over the experiment's trial span.
    intervals: dict[str, list[tuple[float, float]]] = {}
    for t in trials:
        intervals.setdefault(t.cell, []).append((t.started_at, t.ended_at))
    span = ((min(t.started_at for t in trials), max(t.ended_at for t in trials))
            if trials else (t0, t0))
    mru = metrics.mru_by_cell(intervals, *span)
    # Fleet runs store their own MRU over each run's wall span (core.fleet.FLEET_RUN).
    fleet_runs = [{'t_s': e.ts - t0, 'span_s': e.data['span'][1] - e.data['span'][0],
                   'per_cell': e.data['mru']['per_cell'], 'mean': e.data['mru']['mean'],
                   'how': e.data['mru'].get('how', ''),
                   'cells': e.data.get('cell_status', [])}
                  for e in store.events(experiment, 'fleet_run')]

    trial_rows = []
    for t in trials:
        views = [v.view for v in verdicts.get(t.trial_id, []) if v.view != FUSED_VIEW]
        videos = [str(Path(t.record_dir) / f'{v}.mp4') for v in dict.fromkeys(views)
                  ] if t.record_dir else []
        trial_rows.append({'trial_id': t.trial_id, 'revision': t.revision, 'branch': t.branch,
                           'cell': t.cell, 'seed': t.seed, 'outcome': t.outcome,
                           'success': t.success, 'score': t.score, 'is_eval': t.is_eval,
                           'ended_s': t.ended_at - t0, 'duration_s': t.duration_s,
                           'reset_s': t.reset_s, 'record_dir': t.record_dir,
                           'videos': videos})

    return {
        'version': REPORT_VERSION,
        'experiment': {'id': exp.id, 'task': exp.task, 'created_at': exp.created_at,
                       'status': exp.status, 'config': exp.config},
        'summary': summary,
        'rolling': {'window': cfg.rolling_window, 't_s': [t.ended_at - t0 for t in trials],
                    'rate': metrics.rolling_success(outcomes, cfg.rolling_window)},
        'branches': branch_rows,
        'idea_tree': {'lanes': lanes, 'nodes': nodes, 'edges': edges},
        'mru': {'span_s': [span[0] - t0, span[1] - t0], 'per_cell': mru.per_cell,
                'mean': mru.mean,
                'how': 'per cell: union of its trials\' started_at..ended_at intervals / the '
                       'experiment\'s trial span (first trial start to last trial end, '
                       'across runs); mean over cells',
                'fleet_runs': fleet_runs},
        'revisions': table,
        'trials': trial_rows,
        'rl_rounds': _rl_rounds(store, experiment),
        'coding_agents': experiment_accounting(store, experiment),
    }


# --- HTML ------------------------------------------------------------------------------------
_COLORS = ('#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
           '#7f7f7f', '#bcbd22', '#17becf')
_E = html.escape


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return '-'
    if isinstance(x, bool):
        return 'yes' if x else 'no'
    if isinstance(x, float):
        return f'{x:.{digits}f}'
    return _E(str(x))


def _rl_rounds(store: ExperimentStore, experiment: str) -> list[dict[str, Any]]:
    """The residual RL rounds of the experiment (``rl_round`` events), with the episodes
    run up to the end of each: the learning curve."""
    out, episodes = [], 0
    for e in store.events(experiment, 'rl_round'):
        d = e.data
        episodes += int(d.get('n', 0))
        out.append({'round': int(d.get('round', 0)), 'episodes': episodes,
                    'successes': int(d.get('successes', 0)), 'n': int(d.get('n', 0)),
                    'success_rate': d.get('successes', 0) / max(1, d.get('n', 0)),
                    'mean_return': float(d.get('mean_return', 0.0)),
                    'revision': d.get('revision', '')})
    return out


def _svg_lines(series: Sequence[tuple[str, Sequence[float], Sequence[float], str, str]],
               title: str, x_label: str, y_label: str, width: int = 760,
               height: int = 280) -> str:
    """A line chart; each series is (name, xs, ys, colour, dash)."""
    ml, mr, mt, mb = 50, 150, 28, 40
    pw, ph = width - ml - mr, height - mt - mb
    xs_all = [x for _, xs, _, _, _ in series for x in xs]
    x_max = max(xs_all) if xs_all else 1.0
    x_max = x_max if x_max > 0 else 1.0

    def px(x: float) -> float:
        return ml + pw * x / x_max

    def py(y: float) -> float:
        return mt + ph * (1.0 - y)

    out = [f'<svg class="chart" width="{width}" '
           f'height="{height}" role="img" aria-label="{_E(title)}">',
           f'<text x="{ml}" y="16" class="title">{_E(title)}</text>']
    for i in range(6):
        y = i / 5
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   'class="grid"/>')
        out.append(f'<text x="{ml - 6}" y="{py(y) + 4:.1f}" class="tick" '
                   f'text-anchor="end">{y:.1f}</text>')
    for i in range(5):
        x = x_max * i / 4
        out.append(f'<text x="{px(x):.1f}" y="{mt + ph + 16}" class="tick" '
                   f'text-anchor="middle">{x:.0f}</text>')
    out.append(f'<text x="{ml + pw / 2}" y="{height - 4}" class="label" '
               f'text-anchor="middle">{_E(x_label)}</text>')
    out.append(f'<text x="12" y="{mt + ph / 2}" class="label" text-anchor="middle" '
               f'transform="rotate(-90 12 {mt + ph / 2})">{_E(y_label)}</text>')
    for k, (name, xs, ys, colour, dash) in enumerate(series):
        if xs:
            pts = ' '.join(f'{px(x):.1f},{py(y):.1f}' for x, y in zip(xs, ys, strict=True))
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" '
                       f'stroke-dasharray="{dash}" points="{pts}"><title>{_E(name)}</title>'
                       '</polyline>')
        ly = mt + 14 * k + 6
        out.append(f'<line x1="{ml + pw + 10}" x2="{ml + pw + 30}" y1="{ly}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
        out.append(f'<text x="{ml + pw + 34}" y="{ly + 4}" class="tick">{_E(name)}</text>')
    out.append('</svg>')
    return '\n'.join(out)


def _svg_tree(tree: dict[str, Any], width_per_node: int = 46, lane_h: int = 44) -> str:
    lanes, nodes = tree['lanes'], tree['nodes']
    ml, mt = 150, 20
    width = ml + width_per_node * (len(nodes) + 1)
    height = mt + lane_h * max(1, len(lanes)) + 10
    pos = {n['id']: (ml + width_per_node * (n['order'] + 0.5), mt + lane_h * (n['lane'] + 0.5))
           for n in nodes}
    out = [f'<svg class="chart" width="{width}" '
           f'height="{height}" role="img" aria-label="idea tree">']
    for i, lane in enumerate(lanes):
        y = mt + lane_h * (i + 0.5)
        out.append(f'<line x1="{ml - 10}" x2="{width - 10}" y1="{y}" y2="{y}" class="lane"/>')
        out.append(f'<text x="{ml - 14}" y="{y + 4}" class="tick" text-anchor="end">'
                   f'{_E(lane)}</text>')
    for e in tree['edges']:
        (x1, y1), (x2, y2) = pos[e['from']], pos[e['to']]
        dash = '5,4' if e['kind'] == 'borrowed' else ''
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                   f'class="edge {e["kind"]}" stroke-dasharray="{dash}"/>')
    for n in nodes:
        x, y = pos[n['id']]
        colour = _COLORS[n['lane'] % len(_COLORS)]
        radius = 5 + 8 * n['success_rate'] if n['n'] else 4
        tip = (f"{n['short']} ({n['status']}) rate {n['success_rate']:.2f} over {n['n']}: "
               f"{n['hypothesis']}" + (f" [{n['origin']}]" if n['origin'] else ''))
        ring = ' class="best"' if n['raised_best'] else ''
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour}"'
                   f'{ring}><title>{_E(tip)}</title></circle>')
        if n['raised_best']:
            out.append(f'<text x="{x:.1f}" y="{y - radius - 3:.1f}" class="star" '
                       'text-anchor="middle">&#9733;</text>')
    out.append('</svg>')
    return '\n'.join(out)


def _svg_bars(values: dict[str, float], title: str, width: int = 420) -> str:
    bar_h, ml, mt = 22, 90, 26
    height = mt + bar_h * max(1, len(values)) + 10
    pw = width - ml - 60
    out = [f'<svg class="chart" width="{width}" '
           f'height="{height}" role="img" aria-label="{_E(title)}">',
           f'<text x="{ml}" y="16" class="title">{_E(title)}</text>']
    for i, (name, v) in enumerate(values.items()):
        y = mt + bar_h * i
        out.append(f'<text x="{ml - 6}" y="{y + 15}" class="tick" text-anchor="end">'
                   f'{_E(name)}</text>')
        out.append(f'<rect x="{ml}" y="{y + 3}" width="{pw * v:.1f}" height="{bar_h - 6}" '
                   f'fill="#4c78a8"><title>{_E(name)} {v:.3f}</title></rect>')
        out.append(f'<text x="{ml + pw * v + 4:.1f}" y="{y + 15}" class="tick">{v:.3f}</text>')
    out.append('</svg>')
    return '\n'.join(out)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = '') -> str:
    head = ''.join(f'<th>{_E(h)}</th>' for h in headers)
    body = '\n'.join('<tr>' + ''.join(f'<td>{c}</td>' for c in r) + '</tr>' for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.chart{display:block;margin:8px 0;overflow:visible}
.chart .grid{stroke:#eee}.chart .lane{stroke:#ddd}.chart .tick{font-size:10px;fill:#555}
.chart .label{font-size:11px;fill:#333}.chart .title{font-size:13px;font-weight:600}
.chart .edge{stroke:#999;stroke-width:1.5}.chart .edge.borrowed{stroke:#c33}
.chart .best{stroke:#000;stroke-width:2}.chart .star{font-size:12px;fill:#d4a000}
.ok{color:#1a7f37}.fail{color:#b42318}.muted{color:#777}
"""


def _link(path: str, out_dir: Path, home: Path) -> str:
    p = Path(path)
    target = p if p.is_absolute() else (home / p).absolute()
    if target.parent.is_dir() and not target.exists():
        # `enpire gc` thinned it (its trial.json says so); a record on another host is
        # linked as it is.
        return f'<span class="muted">{_E(p.name)} (pruned)</span>'
    rel = Path(os.path.relpath(target, out_dir.absolute())).as_posix()
    return f'<a href="{_E(rel, quote=True)}">{_E(p.name)}</a>'


def _agents_html(acct: dict[str, Any]) -> list[str]:
    """The coding agents' section: accounting per agent and success vs tokens and time."""
    if not acct.get('agents'):
        return []
    t = acct['totals']
    rows = [[_E(a['agent']), _E(a['kind']), _fmt(a['model'] or '-'), _E(a['cell']),
             str(a['sessions']), str(a['input_tokens']), str(a['cache_read_tokens']),
             str(a['cache_write_tokens']), str(a['output_tokens']), str(a['tokens']),
             _fmt(a['cost_usd'], 4), str(a['turns']), _fmt(a['wall_s'], 0),
             _fmt(a['mtu'], 0), str(a['trials']), _E(', '.join(a['stops']))]
            for a in acct['agents']]
    rows.append(['<b>all</b>', '', '', '', str(t['sessions']), str(t['input_tokens']),
                 str(t['cache_read_tokens']), str(t['cache_write_tokens']),
                 str(t['output_tokens']), str(t['tokens']), _fmt(t['cost_usd'], 4),
                 str(t['turns']), _fmt(t['wall_s'], 0), _fmt(t['mtu'], 0), str(t['trials']),
                 ''])
    curve = acct['curve']
    out = ['<h2>Coding agents</h2>',
           '<p class="muted">Tokens as each agent reported them: uncached input, cache reads, '
           'cache writes, output. MTU: tokens per minute of agent wall time. Cost only where '
           'the agent reports it.</p>',
           _table(['agent', 'kind', 'model', 'cell', 'sessions', 'input', 'cache read',
                   'cache write', 'output', 'tokens', 'USD', 'turns', 'wall s', 'MTU',
                   'trials', 'stops'], rows, 'agents'),
           _table(['tokens to first success', 'time to first success (s)'],
                  [[_fmt(acct['tokens_to_success']), _fmt(acct['time_to_success_s'], 1)]],
                  'agents2'),
           _svg_lines([('success rate so far', [p['tokens'] for p in curve],
                        [p['rate'] for p in curve], '#1f77b4', '')],
                      'success vs tokens', 'tokens spent (all agents)', 'success rate'),
           _svg_lines([('success rate so far', [p['time_s'] for p in curve],
                        [p['rate'] for p in curve], '#2ca02c', '')],
                      'success vs wall clock', 'seconds since the first agent session',
                      'success rate')]
    return out


def render_html(report: dict[str, Any], out_path: str | Path, *,
                home: str | Path | None = None) -> Path:
    """Write ``report`` (from :func:`build_report`) as one self-contained HTML file.

    Video links are relative to the file's directory; a relative ``record_dir`` is taken
    relative to ``home`` (default ``$ENPIRE_HOME`` or ./runs). The report dict is embedded
    as ``<script type="application/json" id="enpire-report">``.

    Returns:
        The path written.
    """
    out_path = Path(out_path)
    out_dir = out_path.parent
    home_dir = enpire_home(home)
    exp, s = report['experiment'], report['summary']
    parts = [f'<h1>Experiment {_E(exp["id"])} <span class="muted">task {_E(exp["task"])}, '
             f'{_E(exp["status"])}</span></h1>']

    def rate_cells(b: dict[str, Any]) -> list[str]:
        return [str(b['n']), str(b['successes']), _fmt(b['success_rate']),
                f"{_fmt(b['ci_low'])} - {_fmt(b['ci_high'])}", _fmt(b['mean_score'])]

    rate_head = ['trials', 'successes', 'success rate', 'Wilson 95% CI', 'mean score']
    parts.append('<h2>Summary</h2>')
    parts.append(_table(['set', *rate_head], [
        ['all', *rate_cells(s)], ['tuning', *rate_cells(s['tuning'])],
        ['held-out eval', *rate_cells(s['eval'])]], 'summary'))
    tts = s['time_to_success_s']
    parts.append(_table(['longest streak', 'current streak',
                         f"time to {s['goal_consecutive']} consecutive successes (s)",
                         'best revision', 'mean MRU'],
                        [[str(s['longest_streak']), str(s['current_streak']), _fmt(tts, 1),
                          _E((s['best_revision'] or '-')[:12]),
                          _fmt(report['mru']['mean'])]], 'summary2'))

    series = []
    for i, b in enumerate(report['branches']):
        colour = _COLORS[i % len(_COLORS)]
        series.append((f"{b['name']} (cumulative)", b['series']['t_s'],
                       b['series']['cumulative'], colour, ''))
        series.append((f"{b['name']} (rolling)", b['series']['t_s'], b['series']['rolling'],
                       colour, '4,3'))
    parts.append('<h2>Success vs wall clock, per branch</h2>')
    parts.append(_svg_lines(series, 'success rate per branch', 'seconds since start',
                            'success rate'))
    roll = report['rolling']
    parts.append(_svg_lines([(f"last {roll['window']}", roll['t_s'], roll['rate'], '#333',
                              '')], f"rolling success (window {roll['window']})",
                            'seconds since start', 'success rate'))
    rounds = report.get('rl_rounds') or []
    if rounds:
        episodes = [r['episodes'] for r in rounds]
        parts.append('<h2>Residual RL: success vs episodes</h2>')
        parts.append(_svg_lines(
            [('success rate of the round', episodes, [r['success_rate'] for r in rounds],
              '#1f77b4', ''),
             ('mean return / 2', episodes, [min(1.0, r['mean_return'] / 2) for r in rounds],
              '#ff7f0e', '4,3')],
            'residual RL learning curve', 'episodes', 'rate'))
    parts += _agents_html(report.get('coding_agents') or {})
    parts.append('<h2>Branches</h2>')
    parts.append(_table(['branch', 'agent', 'parent', 'status', *rate_head, 'pruned because'], [
        [_E(b['name']), _fmt(b['agent']), _fmt(b['parent']), _E(b['status']),
         *rate_cells(b), _E(b['pruned_reason'])] for b in report['branches']], 'branches'))

    parts.append('<h2>Idea tree</h2><p class="muted">One lane per branch, one dot per '
                 'revision (size = success rate), &#9733; = raised the best so far, red dashed '
                 'edge = borrowed from another agent.</p>')
    parts.append(_svg_tree(report['idea_tree']))

    parts.append('<h2>Machine utilisation (MRU)</h2>')
    parts.append(_svg_bars({**report['mru']['per_cell'], 'mean': report['mru']['mean']},
                           'fraction of wall time executing trials'))
    parts.append(f'<p class="muted">{_E(report["mru"].get("how", ""))}</p>')
    runs = report['mru'].get('fleet_runs') or []
    if runs:
        cells = sorted({c for r in runs for c in r['per_cell']})
        parts.append('<h3>Fleet runs</h3>')
        parts.append(_table(
            ['run', 'wall span s', *[f'MRU {c}' for c in cells], 'fleet MRU', 'cells lost'],
            [[str(i + 1), f"{r['span_s']:.0f}",
              *[_fmt(r['per_cell'].get(c, 0.0)) for c in cells], _fmt(r['mean']),
              _E(', '.join(f"{c['cell']} ({c['status']})" for c in r['cells']
                           if c.get('status') != 'ok') or '-')]
             for i, r in enumerate(runs)], 'fleet_runs'))
        parts.append(f'<p class="muted">{_E(runs[-1]["how"])}</p>')

    parts.append('<h2>Revisions</h2>')
    parts.append(_table(
        ['revision', 'branch', 'parent', 'status', 'regime', 'hypothesis', 'origin',
         *rate_head, 'eval rate'],
        [[f'<code>{_E(r["id"][:12])}</code>', _E(r['branch']),
          _E((r['parent'] or '-')[:12]), _E(r['status']), _E(r['regime']),
          _E(r['hypothesis']), _E(r['origin']), *rate_cells(r),
          _fmt(r['eval']['success_rate']) if r['eval']['n'] else '-']
         for r in report['revisions']], 'revisions'))

    parts.append('<h2>Trials</h2>')
    parts.append(_table(
        ['trial', 'revision', 'branch', 'cell', 'seed', 'outcome', 'score', 'eval',
         'ended (s)', 'videos'],
        [[_E(t['trial_id']), _E(t['revision'][:12]), _E(t['branch']), _E(t['cell']),
          str(t['seed']),
          f'<span class="{"ok" if t["success"] else "fail"}">{_E(t["outcome"])}</span>',
          _fmt(t['score']), _fmt(t['is_eval']), _fmt(t['ended_s'], 1),
          ' '.join(_link(v, out_dir, home_dir) for v in t['videos'])]
         for t in report['trials']], 'trials'))

    # '</' inside JSON would end the script element early.
    data = json.dumps(report, sort_keys=True).replace('</', '<\\/')
    doc = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<title>ENPIRE report: {_E(exp["id"])}</title><style>{_CSS}</style></head>'
           '<body>\n' + '\n'.join(parts) +
           f'\n<script type="application/json" id="enpire-report">{data}</script>\n'
           '</body></html>\n')
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f'.{out_path.name}.tmp')
    tmp.write_text(doc, encoding='utf-8')
    os.replace(tmp, out_path)
    return out_path
