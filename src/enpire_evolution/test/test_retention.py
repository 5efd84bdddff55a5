from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from enpire_bringup.cli import main
from enpire_evolution.core.config import RetentionConfig
from enpire_evolution.core.fakes import revision_id
from enpire_evolution.core.retention import References, collect, plan
from enpire_evolution.core.store import ExperimentStore, Revision, Trial, Verdict
from enpire_rollout.core.records import SCHEMA, hash_files, read_trial, verify_files

EXP = 'exp'
BEST = revision_id('best')      # the store's best revision: kept whole
ROUTINE = revision_id('routine')
VIDEO_BYTES, BAG_BYTES = 1000, 500


def write_trial(home: Path, trial_id: str, revision: str, outcome: str, started: float,
                *, experiment: str = EXP) -> Path:
    """A finished trial as the recorder leaves it: bag, one MP4, trial.json with hashes."""
    d = home / experiment / 'trials' / trial_id
    (d / 'episode').mkdir(parents=True)
    (d / 'episode' / 'episode.mcap').write_bytes(b'b' * BAG_BYTES)
    (d / 'episode' / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    (d / 'top.mp4').write_bytes(b'v' * VIDEO_BYTES)
    record = {
        'schema': SCHEMA, 'outcome': outcome, 'success': outcome == 'success', 'score': 1.0,
        'ids': {'experiment_id': experiment, 'trial_id': trial_id, 'revision_id': revision,
                'cell_id': 'cell_0', 'task': 'push_t'},
        'timings': {'started_unix_s': started},
        'bag': {'path': 'episode', 'storage': 'mcap'},
        'videos': {'top': {'path': 'top.mp4', 'frames': 30, 'codec': 'libx264', 'fps': 10.0}},
        'files': hash_files(d, ['episode/episode.mcap', 'episode/metadata.yaml', 'top.mp4']),
    }
    if outcome == 'running':
        record.pop('videos')
        record.pop('files')
    (d / 'trial.json').write_text(json.dumps(record))
    return d


@pytest.fixture
def home(tmp_path, monkeypatch):
    """One experiment: a best revision (2 successes on disk) and a routine revision with
    6 successes (s1 named by a comparison event), 2 failures and 1 open trial."""
    monkeypatch.delenv('ENPIRE_STORE_URL', raising=False)
    h = tmp_path / 'runs'
    trials = [('b1', BEST, 'success', 1.0), ('b2', BEST, 'success', 2.0)]
    trials += [(f's{i}', ROUTINE, 'success', 10.0 + i) for i in range(6)]
    trials += [('f1', ROUTINE, 'failure', 20.0), ('r1', ROUTINE, 'reset_failed', 21.0)]
    for tid, rev, outcome, started in trials:
        write_trial(h, tid, rev, outcome, started)
    write_trial(h, 'open1', ROUTINE, 'running', 5.0)   # its writer may be recording it
    with ExperimentStore.open(h) as s:
        s.create_experiment(EXP, 'push_t', 0.0)
        s.add_branch(EXP, 'main', created_at=0.0)
        for rev in (BEST, ROUTINE):
            s.add_revision(Revision(EXP, rev, 'main', created_at=0.0))
        extra = [(f'x{i}', BEST, 'success', 30.0 + i) for i in range(10)]  # BEST is best
        for tid, rev, outcome, started in trials + extra:
            ok = outcome == 'success'
            s.record_trial(Trial(tid, EXP, rev, 'main', 'cell_0', 0, outcome, ok,
                                 1.0 if ok else 0.0, started_at=started, ended_at=started + 1,
                                 record_dir=f'{EXP}/trials/{tid}'),
                           [Verdict(tid, 'top', 'opencv', ok, 1.0 if ok else 0.0)])
        s.add_event(EXP, 'comparison', 3.0, {'decision': 'keep', 'evidence': ['s1']})
    return h


def mp4s(home: Path) -> set[str]:
    return {p.parent.name for p in (home / EXP / 'trials').glob('*/top.mp4')}


def gc(home: Path, **kwargs):
    with ExperimentStore.open(home) as store:
        return collect(home, store=store, now_s=1234.0, **kwargs)


ALL = {'b1', 'b2', 's0', 's1', 's2', 's3', 's4', 's5', 'f1', 'r1', 'open1'}


def test_a_dry_run_says_what_it_would_free_and_changes_nothing(home):
    before = {p: p.read_bytes() for p in home.rglob('trial.json')}
    out = gc(home)
    (row,) = out['experiments']
    assert out['dry_run'] is True and row['bytes_freed'] == 0
    # routine successes s0, s2..s5 (s1 is referenced): the newest 3 keep their videos.
    assert row['thinned_trials'] == ['s0', 's2'] and row['bytes'] == 2 * VIDEO_BYTES
    assert row['kept'] == {'failure': 2, 'referenced': 1, 'best_revision': 2, 'newest': 3}
    assert row['skipped'] == {'open': 1, 'unreadable': 0, 'no_record': 0}
    assert row['scanned'] == 11
    assert mp4s(home) == ALL
    assert {p: p.read_bytes() for p in home.rglob('trial.json')} == before


def test_apply_deletes_exactly_the_thinned_videos_and_says_so_in_trial_json(home):
    out = gc(home, do_apply=True)
    (row,) = out['experiments']
    assert row['bytes_freed'] == 2 * VIDEO_BYTES and row['thinned_trials'] == ['s0', 's2']
    assert mp4s(home) == ALL - {'s0', 's2'}
    for tid in ('s0', 's2'):
        d = home / EXP / 'trials' / tid
        record = read_trial(d)
        assert record['pruned'] == {
            'videos': ['top.mp4'], 'bag': [], 'bytes': VIDEO_BYTES, 'at': 1234.0,
            'by': 'enpire gc',
            'reason': f'a routine success beyond the newest 3 of revision {ROUTINE[:12]}'}
        assert record['videos']['top']['pruned'] is True
        assert (d / 'episode' / 'episode.mcap').is_file()   # bags stay unless asked
        # A pruned file is not a tampered one.
        assert 'top.mp4' not in record['files'] and verify_files(d, record) == {}
    from enpire_evolution.cli_trial import trial_show

    shown = trial_show('s0', home)
    assert shown['videos'] == {} and shown['pruned']['videos'] == ['top.mp4']
    assert trial_show('s5', home)['videos'] == {'top': str(home / EXP / 'trials/s5/top.mp4')}


def test_a_second_run_frees_nothing(home):
    gc(home, do_apply=True)
    again = gc(home, do_apply=True)
    (row,) = again['experiments']
    assert row['bytes_freed'] == 0 and row['thinned'] == 0 and row['already_thinned'] == 2
    assert again['totals']['bytes_freed'] == 0
    assert mp4s(home) == ALL - {'s0', 's2'}


def test_bags_are_thinned_too_when_asked(home):
    out = gc(home, do_apply=True, config=RetentionConfig(keep_per_revision=3, bags=True))
    assert out['totals']['bytes_freed'] == 2 * (VIDEO_BYTES + BAG_BYTES) + 2 * len(
        'rosbag2_bagfile_information: {}\n')
    d = home / EXP / 'trials' / 's0'
    record = read_trial(d)
    assert not (d / 'episode').exists() and (d / 'trial.json').is_file()
    assert record['pruned']['bag'] == ['episode/episode.mcap', 'episode/metadata.yaml']
    assert record['bag']['pruned'] is True and verify_files(d, record) == {}


def test_keep_per_revision_0_thins_every_routine_success_but_never_failures_or_open_ones(
        home):
    gc(home, do_apply=True, config=RetentionConfig(keep_per_revision=0))
    assert mp4s(home) == {'b1', 'b2', 's1', 'f1', 'r1', 'open1'}


def test_damaged_records_and_dirs_without_one_are_skipped_untouched(home):
    trials = home / EXP / 'trials'
    (trials / 's0' / 'trial.json').write_text('{"schema": "enpire.trial/1", "ids": {')
    (trials / 'half').mkdir()
    (trials / 'half' / 'top.mp4').write_bytes(b'v')   # the recorder had not written trial.json
    (row,) = gc(home, do_apply=True)['experiments']
    assert row['skipped'] == {'open': 1, 'unreadable': 1, 'no_record': 1}
    assert row['thinned_trials'] == ['s2']
    assert (trials / 's0' / 'top.mp4').is_file() and (trials / 'half' / 'top.mp4').is_file()


def test_a_best_revision_named_by_a_report_keeps_its_trials(home):
    reports = home / 'reports'
    reports.mkdir()
    data = json.dumps({'runs': [{'best_revision': ROUTINE}]}).replace('/', '\\/')
    (reports / 'bench-1.html').write_text(
        f'<html><script type="application/json" id="enpire-bench">{data}</script></html>')
    (row,) = gc(home)['experiments']
    assert row['thinned'] == 0 and row['kept']['best_revision'] == 7   # b1 b2 s0 s2..s5


def test_without_a_store_only_the_disk_rules_apply(home):
    out = collect(home, now_s=0.0)
    (row,) = out['experiments']
    assert row['kept']['referenced'] == 0 and row['kept']['best_revision'] == 0
    assert row['thinned_trials'] == ['s0', 's1', 's2']   # s1 is referenced only by the store


def test_references_name_trials_by_id_or_by_a_path_through_their_dir(home):
    refs = References(trials={'s0': 'named'}, revisions={})
    p = plan(home / EXP, refs, RetentionConfig())
    assert {t.trial_id for t in p.trials if t.reason == 'referenced'} == {'s0'}
    with ExperimentStore.open(home) as s:
        s.add_event(EXP, 'note', 4.0, {'video': f'{home}/{EXP}/trials/s2/top.mp4'})
    (row,) = gc(home)['experiments']
    assert row['kept']['referenced'] == 2 and row['thinned_trials'] == ['s0']


def test_a_pruned_video_shows_as_pruned_in_the_report(home, tmp_path):
    from enpire_evolution.core.report import build_report, render_html

    gc(home, do_apply=True)
    with ExperimentStore.open(home) as s:
        report = build_report(s, EXP)
    html = render_html(report, home / EXP / 'report.html', home=home).read_text()
    assert 'top.mp4 (pruned)' in html
    assert 'href="trials/s5/top.mp4"' in html


# --- CLI ------------------------------------------------------------------------------------
def test_cli_dry_run_json_and_text(home, capsys):
    assert main(['gc', EXP, '--home', str(home), '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['dry_run'] is True and out['totals']['bytes'] == 2 * VIDEO_BYTES
    assert out['experiments'][0]['thinned_trials'] == ['s0', 's2']
    assert main(['gc', '--home', str(home)]) == 0
    captured = capsys.readouterr()
    assert 'dry run: would free 0.0 MB (2 files' in captured.out
    assert '`enpire gc --apply` deletes them' in captured.out
    assert 'gc: exp: scanning 11 trial dir(s)' in captured.err   # progress on stderr
    assert mp4s(home) == ALL


def test_cli_apply_deletes_and_a_second_run_frees_nothing(home, capsys):
    assert main(['gc', '--home', str(home), '--apply', '--keep-per-revision', '1']) == 0
    text = capsys.readouterr().out
    assert 'freed 0.0 MB: the videos of 4 routine successes beyond the newest 1' in text
    assert mp4s(home) == ALL - {'s0', 's2', 's3', 's4'}
    assert main(['gc', '--home', str(home), '--apply', '--keep-per-revision', '1',
                 '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['totals']['bytes_freed'] == 0 and out['totals']['already_thinned'] == 4


def test_cli_unknown_experiment_exits_2_with_did_you_mean(home, capsys):
    assert main(['gc', 'exq', '--home', str(home), '--json']) == 2
    out = json.loads(capsys.readouterr().out)
    assert out['error'] == 'UNKNOWN_NAME' and "did you mean 'exp'" in out['message']


def test_cli_negative_keep_per_revision_exits_2(home, capsys):
    assert main(['gc', '--home', str(home), '--keep-per-revision', '-1']) == 2
    assert 'keep_per_revision=-1 is invalid' in capsys.readouterr().err


# --- the disk guard seen from the CLI and the agents --------------------------------------------
def test_trial_run_text_says_how_to_free_space_when_the_cell_paused_on_disk(tmp_path):
    from enpire_evolution.cli_trial import _run_text

    out = {'n_success': 0, 'n_trials': 0, 'success_rate': 0.0, 'wilson_95': [0.0, 1.0],
           'stop_reason': 'disk_low', 'experiment': 'manual',
           'stop_detail': 'disk low: only 12 MB free on the filesystem of /x (needs 1024 MB)'}
    text = _run_text(out, SimpleNamespace(home=str(tmp_path), cell='cell_0'))
    assert 'stop: disk_low' in text and 'only 12 MB free' in text
    assert '`enpire gc --apply` deletes it' in text and '/cell_0/alerts' in text


def test_an_agent_trials_port_stops_on_a_disk_low_run_instead_of_spinning(tmp_path):
    from enpire_common.errors import CellPausedError
    from enpire_evolution.ros.trials_port import RosTrialsPort

    port = RosTrialsPort(SimpleNamespace(client=None, close=lambda: None), home=tmp_path)
    port.trials.run_trials = lambda **_kw: SimpleNamespace(
        stop_reason='disk_low', trials=[], error_msg='disk low: only 12 MB free on /x')
    with pytest.raises(CellPausedError, match=r'only 12 MB free.*enpire gc --apply'):
        port.run(experiment_id='e', revision_id='r', revision_dir=tmp_path, seeds=[1])
