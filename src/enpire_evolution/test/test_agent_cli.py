"""``enpire improve``: the --fake demo loop end to end, JSON output, missing ROS port."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from enpire_bringup.cli import main
from enpire_evolution.core.store import ExperimentStore


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch):
    monkeypatch.delenv('ENPIRE_STORE_URL', raising=False)


def test_improve_fake_runs_the_loop_and_prints_one_json_object_with_the_report(tmp_path,
                                                                              capsys):
    home = tmp_path / 'runs'
    # 3 simulated minutes = 36 trials of 5 s: the baseline and a few candidates (each one
    # validated by the real check_policy sandbox).
    code = main(['improve', '--fake', '--home', str(home), '--budget-min', '3',
                 '--goal-consecutive', '5', '--experiment', 'demo', '--json'])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == 1 and out['ok'] and not out['goal_met'] and out['stop_reason'] == 'budget'
    assert out['experiment'] == 'demo' and out['n_trials'] == 36
    assert out['best_revision'] and out['n_candidates'] >= 1
    assert Path(out['report']) == home / 'reports' / 'demo.html'
    assert Path(out['report']).read_text().startswith('<!DOCTYPE html>')
    assert Path(out['recipe_path']).is_file()
    assert 'BASELINE' in captured.err  # progress goes to stderr under --json
    with ExperimentStore.open(home) as store:
        assert store.count_trials('demo') == 36


def test_improve_without_fake_exits_2_when_the_ros_port_cannot_be_imported(tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'enpire_evolution.ros.trials_port', None)
    code = main(['improve', '--home', str(tmp_path / 'runs'), '--budget-min', '1'])
    assert code == 2
    assert 'ROS trials port is unavailable' in capsys.readouterr().err


def test_improve_rejects_a_bad_budget_as_a_usage_error(tmp_path):
    assert main(['improve', '--fake', '--home', str(tmp_path), '--budget-min', '0']) == 2
