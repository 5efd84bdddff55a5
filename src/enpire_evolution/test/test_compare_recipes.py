from __future__ import annotations

from dataclasses import dataclass

import pytest

from enpire_evolution.core.compare import compare, prune, prune_experiment
from enpire_evolution.core.config import CompareConfig, PruneConfig
from enpire_evolution.core.fakes import populate_fake_experiment
from enpire_evolution.core.recipes import param_diff, write_recipe
from enpire_evolution.core.store import ExperimentStore


@dataclass(frozen=True)
class T:
    success: bool
    score: float = 0.0


def trials(successes: int, n: int) -> list[T]:
    return [T(i < successes, 1.0 if i < successes else 0.5) for i in range(n)]


@pytest.fixture
def store(store_url):  # every backend (conftest.py)
    with ExperimentStore(store_url) as s:
        yield s


def test_compare_keeps_a_significantly_better_candidate():
    out = compare(trials(5, 30), trials(20, 30))
    assert out['decision'] == 'keep' and out['significant']
    assert out['p_value'] < 0.001
    assert out['a']['success_rate'] == pytest.approx(5 / 30)
    assert out['b']['ci_low'] < out['b']['success_rate'] < out['b']['ci_high']
    assert out['rate_delta'] == pytest.approx(0.5)
    assert out['mean_score_delta'] == pytest.approx((20 + 5) / 30 - (5 + 12.5) / 30)


def test_compare_reverts_a_significantly_worse_candidate():
    assert compare(trials(20, 30), trials(5, 30))['decision'] == 'revert'


def test_compare_keeps_a_likely_better_candidate_whose_interval_excludes_the_baseline_rate():
    # 25/50 vs 33/50: p ~ 0.16, but B's Wilson lower bound 0.52 >= A's rate 0.50.
    out = compare(trials(25, 50), trials(33, 50))
    assert not out['significant']
    assert out['decision'] == 'keep'
    assert "lower bound" in out['reason']


def test_compare_is_inconclusive_for_a_small_difference():
    out = compare(trials(25, 50), trials(27, 50))
    assert out['decision'] == 'inconclusive'
    assert 'run more trials' in out['reason']


def test_compare_is_inconclusive_below_the_minimum_trial_count():
    out = compare(trials(0, 5), trials(5, 5), CompareConfig(min_trials=10))
    assert out['decision'] == 'inconclusive'
    assert 'too few trials (A 5, B 5; need 10 each)' in out['reason']


def test_prune_drops_branches_whose_upper_bound_is_below_the_best_lower_bound():
    decisions = prune({'good': trials(40, 50), 'bad': trials(5, 50), 'close': trials(35, 50),
                       'young': trials(0, 5)}, PruneConfig(min_trials=20))
    by = {d.branch: d for d in decisions}
    assert [d.branch for d in decisions if d.prune] == ['bad']
    assert by['good'].reason == 'best branch'
    assert 'Wilson upper bound' in by['bad'].reason
    assert not by['young'].eligible and by['young'].reason == 'only 5 trials (need 20)'


def test_prune_experiment_marks_pruned_branches_in_the_store(store):
    populate_fake_experiment(store, 'e1', branch_rates={'a': (0.9,), 'b': (0.05,)},
                             trials_per_revision=40)
    decisions = prune_experiment(store, 'e1', PruneConfig(min_trials=20), now_s=123.0)
    assert [d.branch for d in decisions if d.prune] == ['b']
    assert store.branch('e1', 'b').status == 'pruned'
    assert 'Wilson upper bound' in store.branch('e1', 'b').pruned_reason
    assert store.events('e1', kind='prune')[0].data['branch'] == 'b'
    # Pruned branches are not considered again.
    assert [d.branch for d in prune_experiment(store, 'e1')] == ['a']


def test_param_diff_reports_changed_added_and_removed_keys():
    old = {'gain': 0.5, 'pid': {'kp': 1.0, 'ki': 0.1}, 'gone': 1}
    new = {'gain': 0.75, 'pid': {'kp': 1.0, 'kd': 0.2}}
    assert param_diff(old, new) == [('gain', 0.5, 0.75), ('gone', 1, None),
                                    ('pid.kd', None, 0.2), ('pid.ki', 0.1, None)]


def test_write_recipe_lists_kept_changes_with_effect_and_keeps_other_sections(store, tmp_path):
    fake = populate_fake_experiment(store, 'e1', branch_rates={'main': (0.2, 0.8, 0.1)},
                                    trials_per_revision=30, seed=3)
    populate_fake_experiment(store, 'e2', branch_rates={'main': (0.5,)}, seed=4)
    path = write_recipe(store, 'e1', 'push_t', tmp_path / 'recipes')
    assert path == tmp_path / 'recipes' / 'push_t.md'
    write_recipe(store, 'e2', 'push_t', tmp_path / 'recipes')
    write_recipe(store, 'e1', 'push_t', tmp_path / 'recipes')  # rewrite keeps e2's section
    text = path.read_text()
    assert text.count('<!-- experiment: e1 -->') == 1
    assert text.count('<!-- experiment: e2 -->') == 1
    kept = fake.revisions['main'][1]
    first = store.trials_for('e1', revision=fake.revisions['main'][0], is_eval=False)
    second = store.trials_for('e1', revision=kept, is_eval=False)
    s1, s2 = sum(t.success for t in first), sum(t.success for t in second)
    assert f'revision `{kept[:12]}`' in text
    assert f'success {s1}/30' in text and f'-> {s2}/30' in text
    assert '`gain`: 0.5 -> 0.75' in text
    assert 'main idea 2: gain 1.00' in text.split('Tried and dropped')[1]
