from __future__ import annotations

import json
from pathlib import Path

import pytest

from enpire_bringup.cli import main
from enpire_evolution.core.fakes import populate_fake_experiment
from enpire_evolution.core.store import ExperimentStore


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv('ENPIRE_STORE_URL', raising=False)
    h = tmp_path / 'runs'
    with ExperimentStore.open(h) as s:
        populate_fake_experiment(s, 'exp_a', branch_rates={'main': (0.1, 0.9), 'wide': (0.05,)},
                                 trials_per_revision=30, seed=1)
    return h


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_exp_list_json_lists_experiments_with_counts(home, capsys):
    assert main(['exp', 'list', '--home', str(home), '--json']) == 0
    out = _json(capsys)
    assert [(e['id'], e['trials'], e['revisions']) for e in out['experiments']] == [
        ('exp_a', 90, 3)]


def test_exp_list_uses_enpire_home_and_creates_nothing_when_empty(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path / 'none'))
    assert main(['exp', 'list', '--json']) == 0
    assert _json(capsys)['experiments'] == []
    assert not (tmp_path / 'none').exists()


def test_exp_show_prints_summary_and_branches(home, capsys):
    assert main(['exp', 'show', 'exp_a', '--home', str(home)]) == 0
    text = capsys.readouterr().out
    assert 'experiment exp_a  task push_t' in text and 'wide' in text


def test_unknown_experiment_exits_2_with_did_you_mean(home, capsys):
    assert main(['exp', 'show', 'exp_b', '--home', str(home), '--json']) == 2
    out = _json(capsys)
    assert out['error'] == 'UNKNOWN_NAME' and "did you mean 'exp_a'" in out['message']


def test_exp_compare_branches_and_revision_prefixes(home, capsys):
    with ExperimentStore.open(home) as s:
        revs = [r.id for r in s.revisions('exp_a', branch='main')]
        a = s.trials_for('exp_a', revision=revs[0])
        b = s.trials_for('exp_a', revision=revs[1])
    assert main(['exp', 'compare', revs[0][:8], revs[1][:10], '--home', str(home),
                 '--json']) == 0
    out = _json(capsys)
    assert out['experiment'] == 'exp_a' and out['decision'] == 'keep'
    assert out['a']['successes'] == sum(t.success for t in a)
    assert out['b']['n'] == len(b)
    assert main(['exp', 'compare', 'main', 'wide', '--experiment', 'exp_a',
                 '--home', str(home)]) == 0
    assert 'decision: revert' in capsys.readouterr().out


def test_exp_compare_unknown_revision_exits_2(home, capsys):
    assert main(['exp', 'compare', 'main', 'mian', '--experiment', 'exp_a',
                 '--home', str(home)]) == 2
    assert main(['exp', 'compare', 'nope', 'main', '--home', str(home), '--json']) == 2
    assert _json(capsys)['error'] == 'UNKNOWN_NAME'


def test_exp_prune_dry_run_changes_nothing_then_prunes(home, capsys):
    assert main(['exp', 'prune', 'exp_a', '--home', str(home), '--dry-run', '--json']) == 0
    assert _json(capsys)['pruned'] == ['wide']
    with ExperimentStore.open(home) as s:
        assert s.branch('exp_a', 'wide').status == 'active'
    assert main(['exp', 'prune', 'exp_a', '--home', str(home)]) == 0
    assert 'pruned: wide' in capsys.readouterr().out
    with ExperimentStore.open(home) as s:
        assert s.branch('exp_a', 'wide').status == 'pruned'


def test_report_writes_html_and_json_is_the_report_dict(home, tmp_path, capsys):
    from enpire_evolution.core.report import build_report

    out = tmp_path / 'r' / 'report.html'
    assert main(['report', 'exp_a', '--out', str(out), '--home', str(home), '--json']) == 0
    printed = _json(capsys)
    with ExperimentStore.open(home) as s:
        assert printed == json.loads(json.dumps(build_report(s, 'exp_a')))
    assert out.read_text().startswith('<!DOCTYPE html>')


def test_exp_recipe_writes_the_task_recipe(home, capsys):
    assert main(['exp', 'recipe', 'exp_a', '--home', str(home), '--json']) == 0
    path = _json(capsys)['path']
    assert path.endswith('recipes/push_t.md')
    assert 'Kept changes' in Path(path).read_text()


def test_json_and_home_are_accepted_before_the_noun_too(home, capsys):
    assert main(['--json', '--home', str(home), 'exp', 'list']) == 0
    assert _json(capsys)['experiments'][0]['id'] == 'exp_a'
    assert main(['--home', str(home), 'report', 'nope', '--json']) == 2
    assert _json(capsys)['error'] == 'UNKNOWN_NAME'
