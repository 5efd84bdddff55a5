from __future__ import annotations

import json
import sys
from pathlib import Path

from enpire_bringup.cli import main
from enpire_common.clock import FakeClock
from enpire_rollout.core.recorder import EpisodeRecorder

sys.path.insert(0, str(Path(__file__).parent))
from test_recorder import record_episode  # noqa: E402


def test_bag_info_finds_a_trial_by_id_and_prints_one_json_object(tmp_path, monkeypatch,
                                                                  capsys):
    clock = FakeClock(10.0)
    record_episode(EpisodeRecorder(clock=clock), clock, tmp_path / 'exp1' / 'trials' / 't9', 5,
                   trial_id='t9')
    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path))
    assert main(['bag', 'info', 't9', '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['ok'] and out['integrity'] == {}
    assert out['bag']['topics']['/cell_0/state']['count'] == 5
    assert out['trial']['outcome'] == 'success'


def test_bag_info_of_a_tampered_trial_exits_1_and_names_the_file(tmp_path, capsys):
    clock = FakeClock(10.0)
    trial = tmp_path / 't1'
    record_episode(EpisodeRecorder(clock=clock), clock, trial, 3)
    with open(trial / 'top.mp4', 'ab') as stream:
        stream.write(b'\0')
    assert main(['bag', 'info', str(trial)]) == 1
    assert 'integrity: top.mp4 modified' in capsys.readouterr().out


def test_bag_info_of_an_unknown_trial_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path))
    assert main(['bag', 'info', 'nope', '--json']) == 2
    assert "no trial 'nope'" in json.loads(capsys.readouterr().out)['message']
