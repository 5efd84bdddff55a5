"""``enpire verify label``'s side in the rollout: the final camera frame of each recorded
trial (from its bag, else its MP4), bad records skipped with a line, and the terminal
labeller driven through a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from enpire_common.clock import FakeClock
from enpire_rollout.core.frames import TrialFrames
from enpire_rollout.core.recorder import EpisodeRecorder
from enpire_rollout.core.records import atomic_write_json, read_trial

sys.path.insert(0, str(Path(__file__).parent))
from test_recorder import record_episode  # noqa: E402


def record(root: Path, trial_id: str, n: int) -> Path:
    """A recorded Push-T trial whose frames are flat grey n-1 at the end (frame i is i)."""
    clock = FakeClock(10.0)
    trial_dir = root / 'exp1' / 'trials' / trial_id
    record_episode(EpisodeRecorder(clock=clock), clock, trial_dir, n, trial_id=trial_id)
    return trial_dir


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('runs')
    for i, trial_id in enumerate(['t1', 't2', 't3', 't4']):
        record(root, trial_id, 3 + i)
    bad = root / 'exp1' / 'trials' / 'bad'
    bad.mkdir()
    (bad / 'trial.json').write_text('{broken')
    return root


def test_each_trial_gives_its_last_bag_frame_and_bad_records_are_skipped_with_a_line(
        runs, tmp_path):
    notes: list[str] = []
    frames = TrialFrames([runs], 'push_t', ['top'], note=notes.append)
    assert frames.total == 4
    got = list(frames)
    assert [(f.trial_id, f.view, f.source) for f in got] == \
        [(t, 'top', 'bag') for t in ('t1', 't2', 't3', 't4')]
    for f, n in zip(got, (3, 4, 5, 6), strict=True):
        assert f.image.shape == (96, 96, 3) and (f.image == n - 1).all()
    assert got[0].stamp_ns == int(10.2e9)           # the third frame, 0.1 s apart
    assert got[0].recorded['outcome'] == 'success'
    assert got[0].recorded['verdicts'] == [{'view': 'fused', 'score': 0.97, 'success': True}]
    assert len(notes) == 1 and notes[0].startswith('skip ') and 'bad' in notes[0] \
        and 'invalid JSON' in notes[0] and '\n' not in notes[0]
    assert TrialFrames([runs], 'pin_insertion', ['task_top']).other_tasks == 4


def test_a_trial_with_a_broken_bag_falls_back_to_its_video_and_without_one_is_skipped(
        tmp_path):
    pytest.importorskip('av')
    record(tmp_path, 'ok', 4)
    cut = record(tmp_path, 'cut', 5)
    mcap = cut / 'episode' / 'episode.mcap'
    mcap.write_bytes(mcap.read_bytes()[:200])                 # a bag cut short
    gone = record(tmp_path, 'gone', 3)
    (gone / 'episode' / 'episode.mcap').write_bytes(b'\0' * 64)    # overwritten: damaged
    (gone / 'top.mp4').unlink()
    running = record(tmp_path, 'open', 3)
    rec = read_trial(running)
    atomic_write_json(running / 'trial.json', {**rec, 'outcome': 'running'})
    notes: list[str] = []
    frames = TrialFrames([tmp_path], 'push_t', ['top'], note=notes.append)
    assert frames.total == 3                                  # the open trial is not asked
    got = {f.trial_id: f for f in frames}
    assert frames.total == 2 and set(got) == {'ok', 'cut'}
    assert got['ok'].source == 'bag'
    assert got['cut'].source == 'mp4' and got['cut'].stamp_ns == int(0.4e9)
    assert np.abs(got['cut'].image.astype(int) - 4).max() <= 3    # lossy, but frame 4
    assert any('open' in n and 'still running' in n for n in notes)
    assert any('gone' in n and 'RecordDamagedError' in n and 'no top.mp4' in n for n in notes)


def _label(runs: Path, out: Path, answers: str) -> subprocess.CompletedProcess:
    env = {**os.environ, 'ENPIRE_HOME': str(out.parent / 'home')}
    return subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'verify', 'label',
                           '--task', 'push_t', '--records', str(runs), '--out', str(out),
                           '--labeller', 'ana'],
                          input=answers, capture_output=True, text=True, timeout=120, env=env)


def test_the_terminal_labeller_reads_answers_from_a_pipe_quits_and_resumes(runs, tmp_path):
    out = tmp_path / 'set'
    first = _label(runs, out, 's\nf\nmaybe\ni\nq\n')
    assert first.returncode == 0, first.stderr
    assert '[0/4 labelled] trial t1  view top' in first.stdout
    assert f'image:    {out / "pending.png"}' in first.stdout
    assert 'recorded: outcome success; score 0.970; verdicts: fused success 0.970' in \
        first.stdout
    assert "? 'maybe': answer s, f, i, k or q" in first.stdout
    assert '[3/4 labelled] trial t4' in first.stdout and 'stopped: 3/4 labelled' in first.stdout
    assert 'skip ' in first.stderr and 'bad' in first.stderr      # the broken record
    lines = [json.loads(x) for x in (out / 'labels.jsonl').read_text().splitlines()]
    assert [(x['trial_id'], x['label'], x['labeller']) for x in lines] == \
        [('t1', 'success', 'ana'), ('t2', 'failure', 'ana'), ('t3', 'invalid', 'ana')]

    second = _label(runs, out, 's\n')                             # resumes at t4
    assert second.returncode == 0, second.stderr
    assert 'trial t1' not in second.stdout and '[3/4 labelled] trial t4' in second.stdout
    assert 'finished: 4/4 labelled' in second.stdout
    assert '1 labelled now, 4/4 frames labelled (2 success, 1 failure, 1 invalid)' in \
        second.stdout
    assert not (out / 'pending.png').exists()
    third = _label(runs, out, '')                                 # nothing left to ask
    assert 'finished: 4/4 labelled' in third.stdout and 'trial t' not in third.stdout
    assert len((out / 'labels.jsonl').read_text().splitlines()) == 4
