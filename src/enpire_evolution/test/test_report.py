from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from enpire_common.errors import UnknownNameError
from enpire_evolution.core.fakes import FAKE_START_S, populate_fake_experiment
from enpire_evolution.core.metrics import wilson_interval
from enpire_evolution.core.report import build_report, render_html
from enpire_evolution.core.store import ExperimentStore


@pytest.fixture
def store(store_url):  # every backend (conftest.py)
    with ExperimentStore(store_url) as s:
        populate_fake_experiment(s, 'e1', branch_rates={'main': (0.3, 0.7), 'wide': (0.5,)},
                                 trials_per_revision=12, eval_trials=3, seed=7,
                                 views=('top', 'side'))
        yield s


# SQL both backends run: SUM over a boolean needs the CASE on PostgreSQL.
WINS = 'SUM(CASE WHEN success THEN 1 ELSE 0 END)'


def _sql(store, query, **params):
    """Ask the store's database directly, past the store's own queries."""
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query), params)]


def _embedded(html_text):
    m = re.search(r'<script type="application/json" id="enpire-report">(.*?)</script>',
                  html_text, re.S)
    return json.loads(m.group(1).replace('<\\/', '</'))


def test_report_numbers_equal_the_stores(store):
    report = build_report(store, 'e1')
    (n, s), = _sql(store, f'SELECT COUNT(*), {WINS} FROM trials WHERE experiment = :e', e='e1')
    assert (report['summary']['n'], report['summary']['successes']) == (n, s)
    assert report['summary']['ci_low'] == pytest.approx(wilson_interval(s, n)[0])
    rows = _sql(store, f'SELECT branch, COUNT(*), {WINS}, AVG(score) FROM trials '
                       'GROUP BY branch ORDER BY branch')
    got = {b['name']: (b['n'], b['successes'], pytest.approx(b['mean_score']))
           for b in report['branches']}
    assert got == {b: (bn, bs, avg) for b, bn, bs, avg in rows}
    (en, es), = _sql(store, f'SELECT COUNT(*), {WINS} FROM trials WHERE is_eval')
    assert (report['summary']['eval']['n'], report['summary']['eval']['successes']) == (en, es)
    for r in report['revisions']:
        (rn, rs), = _sql(store, f'SELECT COUNT(*), {WINS} FROM trials WHERE revision = :r',
                         r=r['id'])
        assert (r['n'], r['successes']) == (rn, rs)
        hyp, = _sql(store, 'SELECT hypothesis FROM revisions WHERE id = :r', r=r['id'])
        assert r['hypothesis'] == hyp[0]


def test_report_mru_equals_busy_time_over_span_per_cell(store):
    report = build_report(store, 'e1')
    (lo, hi), = _sql(store, 'SELECT MIN(started_at), MAX(ended_at) FROM trials')
    for cell, busy in _sql(store, 'SELECT cell, SUM(ended_at - started_at) FROM trials '
                                  'GROUP BY cell'):
        # Fake trials on one cell never overlap, so the sum is the merged busy time.
        assert report['mru']['per_cell'][cell] == pytest.approx(busy / (hi - lo))
    cells = report['mru']['per_cell']
    assert report['mru']['mean'] == pytest.approx(sum(cells.values()) / len(cells))
    assert report['mru']['span_s'] == pytest.approx([lo - FAKE_START_S, hi - FAKE_START_S])


def test_idea_tree_has_a_lane_per_branch_and_marks_borrowed_edges(store):
    tree = build_report(store, 'e1')['idea_tree']
    assert tree['lanes'] == ['main', 'wide']
    assert len(tree['nodes']) == 3
    kinds = sorted(e['kind'] for e in tree['edges'])
    assert kinds == ['borrowed', 'parent']
    wide = [n for n in tree['nodes'] if n['branch'] == 'wide'][0]
    assert wide['origin'].startswith('borrowed from agent agent_0')
    assert tree['nodes'][0]['raised_best']
    best = -1.0
    for n in tree['nodes']:
        assert n['raised_best'] == (n['success_rate'] > best)
        best = max(best, n['success_rate'])


def test_html_is_self_contained_and_embeds_the_same_numbers(store, tmp_path):
    report = build_report(store, 'e1')
    out = render_html(report, tmp_path / 'out' / 'report.html', home=tmp_path / 'home')
    text = out.read_text()
    assert _embedded(text) == json.loads(json.dumps(report))
    assert not re.search(r'<(script|link|img|iframe)[^>]*(src|href)\s*=\s*["\']?https?://',
                         text, re.I)
    assert 'http://' not in text and 'https://' not in text
    assert '<svg' in text
    for r in report['revisions']:
        assert r['hypothesis'] in text
    s = report['summary']
    assert f"<td>{s['n']}</td><td>{s['successes']}</td><td>{s['success_rate']:.3f}</td>" in text


def test_html_links_trial_videos_by_relative_path(store, tmp_path):
    report = build_report(store, 'e1')
    first = report['trials'][0]
    assert first['videos'] == [f"{first['record_dir']}/side.mp4",
                               f"{first['record_dir']}/top.mp4"]
    out = render_html(report, tmp_path / 'out' / 'report.html', home=tmp_path / 'home')
    assert f'href="../home/{first["record_dir"]}/top.mp4"' in out.read_text()


def test_report_of_an_empty_experiment_renders(tmp_path):
    with ExperimentStore(f'sqlite:///{tmp_path / "x.db"}') as s:
        s.create_experiment('empty', 'push_t', 5.0)
        report = build_report(s, 'empty')
    assert report['summary']['n'] == 0 and report['mru']['mean'] == 0.0
    assert render_html(report, tmp_path / 'r.html').exists()


def test_report_of_an_unknown_experiment_suggests_a_name(store):
    with pytest.raises(UnknownNameError, match=r"unknown experiment 'e2' \(known: e1\)"):
        build_report(store, 'e2')
