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


def _damage_middle(trial: Path) -> None:
    from mcap.reader import make_reader

    mcap = trial / 'episode' / 'episode.mcap'
    with mcap.open('rb') as stream:
        chunk = make_reader(stream).get_summary().chunk_indexes[1]
    with mcap.open('r+b') as stream:
        stream.seek(chunk.chunk_start_offset + chunk.chunk_length // 2)
        stream.write(b'\xa5' * 32)


def test_bag_recover_json_rebuilds_a_damaged_bag_once_then_has_nothing_to_do(
        tmp_path, monkeypatch, capsys):
    clock = FakeClock(10.0)
    record_episode(EpisodeRecorder(clock=clock), clock, tmp_path / 'exp1' / 'trials' / 't9',
                   40, trial_id='t9')
    _damage_middle(tmp_path / 'exp1' / 'trials' / 't9')
    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path))
    assert main(['bag', 'info', 't9', '--json']) == 1
    info = json.loads(capsys.readouterr().out)
    assert info['bag']['state'] == 'damaged' and 'enpire bag recover' in info['bag']['hint']
    assert info['integrity'] == {'episode/episode.mcap': 'modified'}

    assert main(['bag', 'recover', 't9', '--dry-run', '--json']) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry['dry_run'] and not dry['recovered'] and dry['detail'].startswith('would rebuild')

    assert main(['bag', 'recover', 't9', '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['ok'] and out['recovered'] and out['bag']['state'] == 'damaged'
    assert out['bag']['per_topic']['/cell_0/state'] < 40 and out['bag']['bytes_dropped'] > 0
    assert out['record']['updated'] and out['bag']['backup']

    assert main(['bag', 'info', 't9', '--json']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['bag']['state'] == 'ok' and info['integrity'] == {}
    assert info['trial']['bag_recovered']['messages'] == out['bag']['messages']

    assert main(['bag', 'recover', 't9', '--json']) == 0
    again = json.loads(capsys.readouterr().out)
    assert not again['recovered'] and again['detail'].startswith('nothing to do')


def test_bag_recover_text_says_what_was_lost_and_where_the_original_is(tmp_path, capsys):
    clock = FakeClock(10.0)
    trial = tmp_path / 't1'
    record_episode(EpisodeRecorder(clock=clock), clock, trial, 40)
    _damage_middle(trial)
    assert main(['bag', 'recover', str(trial)]) == 0
    text = capsys.readouterr().out
    assert 'bag was damaged' in text and 'byte(s) lost' in text
    assert f"originals kept as {trial / 'episode' / 'episode.mcap.damaged'}" in text
    assert 'trial.json updated' in text
    assert main(['bag', 'recover', str(trial)]) == 0
    assert capsys.readouterr().out.startswith(f'{trial}: nothing to do: the bag is intact (')


def test_a_zero_length_bag_is_refused_with_the_record_damaged_code(tmp_path, capsys):
    clock = FakeClock(10.0)
    trial = tmp_path / 't1'
    record_episode(EpisodeRecorder(clock=clock), clock, trial, 3)
    (trial / 'episode' / 'episode.mcap').write_bytes(b'')
    assert main(['bag', 'recover', str(trial), '--json']) == 1
    err = json.loads(capsys.readouterr().out)
    assert (err['error_code'], err['error']) == (601, 'RECORD_DAMAGED')
    assert 'holds no data' in err['message']
    assert main(['replay', str(trial), '--json']) == 1
    assert json.loads(capsys.readouterr().out)['error'] == 'RECORD_DAMAGED'


def test_trial_list_skips_and_reports_a_truncated_trial_json_and_show_refuses_it(
        tmp_path, monkeypatch, capsys):
    clock = FakeClock(10.0)
    for tid in ('t1', 't2'):
        record_episode(EpisodeRecorder(clock=clock), clock,
                       tmp_path / 'exp1' / 'trials' / tid, 3, trial_id=tid)
    path = tmp_path / 'exp1' / 'trials' / 't2' / 'trial.json'
    path.write_text(path.read_text()[:200])
    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path))
    assert main(['trial', 'list', '--experiment', 'exp1', '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert [t['ids']['trial_id'] for t in out['trials']] == ['t1']
    assert [(d['trial_id'], d['error_code']) for d in out['damaged']] == [('t2', 601)]
    assert main(['trial', 'list', '--experiment', 'exp1']) == 0
    assert 'damaged: t2: ' in capsys.readouterr().out
    assert main(['trial', 'show', 't2']) == 1
    assert 'enpire bag recover' in capsys.readouterr().err
