"""Crash-safe bags: a killed recorder's bag is read to its last chunk, damage is refused with a
clear error, and recovery rebuilds an indexed bag and brings trial.json along."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError, RecordDamagedError
from enpire_rollout.core.bag import bag_info, typestore
from enpire_rollout.core.bag_reader import BagReader, check_bag
from enpire_rollout.core.bag_recover import recover_bag, recover_trial
from enpire_rollout.core.mcap_scan import scan_mcap
from enpire_rollout.core.recorder import EpisodeRecorder
from enpire_rollout.core.records import (
    list_trials,
    read_trial,
    salvage_trial_json,
    verify_files,
)
from enpire_rollout.replay import read_messages

sys.path.insert(0, str(Path(__file__).parent))
from test_recorder import record_episode  # noqa: E402

STATE = 'enpire_interfaces/msg/StateVector'

# Writes 10 states per second of stamp time with 1 s chunks, then waits to be killed after
# tick 45: the chunks closed at ticks 10, 20, 30 and 40 are on disk, ticks 41..45 are not.
CHILD = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from enpire_common.clock import FakeClock
    from enpire_rollout.core.config import RecorderConfig
    from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta

    clock = FakeClock(2000.0)
    rec = EpisodeRecorder(RecorderConfig(chunk_interval_s=1.0), clock=clock,
                          wall_clock=FakeClock(1.7e9))
    rec.open(Path(sys.argv[1]), TrialMeta('exp1', 'killed', 'rev1', 'cell_0', 'push_t'))
    for tick in range(46):
        rec.write('/cell_0/state', '{state}', 2_000_000_000_000 + tick * 100_000_000,
                  {{'tick': tick, 'values': [float(tick)]}})
        clock.advance(0.1)
    print('ready', flush=True)
    time.sleep(120)
''').format(state=STATE)


def _ticks(messages) -> list[int]:
    return [typestore().deserialize_cdr(m.data, STATE).tick for m in messages]


@pytest.fixture
def killed(tmp_path) -> Path:
    """A trial whose recorder was SIGKILLed mid-recording (trial.json still 'running')."""
    trial = tmp_path / 'exp1' / 'trials' / 'killed'
    child = subprocess.Popen([sys.executable, '-c', CHILD, str(trial)], stdout=subprocess.PIPE,
                             text=True, env=os.environ.copy())
    try:
        assert child.stdout.readline().strip() == 'ready'
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    return trial


def test_a_killed_recorders_bag_is_streamed_to_its_last_complete_chunk_with_a_warning(killed):
    assert not (killed / 'episode' / 'metadata.yaml').exists()
    with BagReader(killed) as reader:
        assert not reader.indexed and reader.state == 'truncated'
        assert 'truncated' in reader.warnings[0]
        assert 'enpire bag recover' in reader.warnings[0]
    warnings: list[str] = []
    assert _ticks(read_messages(killed, warnings=warnings)) == list(range(41))
    assert warnings and 'read by streaming its 41 intact message(s)' in warnings[0]
    info = bag_info(killed)
    assert (info['state'], info['indexed'], info['consistent']) == ('truncated', False, False)
    assert info['topics']['/cell_0/state']['count'] == 41
    assert info['hint'] == f'enpire bag recover {killed}'
    # Killed while writing a chunk: the chunks before it come back, the cut one is lost.
    mcap = killed / 'episode' / 'episode.mcap'
    mcap.write_bytes(mcap.read_bytes()[:max(scan_mcap(mcap).chunk_spans) + 20])
    assert _ticks(read_messages(killed)) == list(range(31))
    assert scan_mcap(mcap).cut_at is not None and bag_info(killed)['bytes_dropped'] > 0


def test_recover_rebuilds_an_indexed_bag_and_records_the_counts_in_trial_json(killed):
    out = recover_trial(killed, now_unix_s=1.75e9)
    assert out['recovered'] and out['record']['marked_aborted'] and out['record']['updated']
    assert out['bag']['state'] == 'truncated' and out['bag']['per_topic'] == {
        '/cell_0/state': 41}
    assert out['bag']['bytes_dropped'] == 0      # only whole chunks reach the file
    record = read_trial(killed)
    assert record['outcome'] == 'aborted'
    assert record['bag_recovered']['at'] == 1.75e9
    assert record['bag_recovered']['messages'] == 41
    assert record['bag_recovered']['per_topic'] == {'/cell_0/state': 41}
    assert verify_files(killed, record) == {}
    assert set(record['files']) == {'episode/episode.mcap', 'episode/metadata.yaml'}
    meta = yaml.safe_load((killed / 'episode' / 'metadata.yaml').read_text())
    counts = {t['topic_metadata']['name']: t['message_count']
              for t in meta['rosbag2_bagfile_information']['topics_with_message_count']}
    assert counts == {'/cell_0/state': 41}
    with BagReader(killed) as reader:
        assert reader.indexed and not reader.warnings
    assert _ticks(read_messages(killed)) == list(range(41))
    assert check_bag(killed).state == 'ok'
    assert (killed / 'episode' / 'episode.mcap.damaged').is_file()
    # Idempotent: a healthy trial is left alone.
    again = recover_trial(killed, now_unix_s=1.76e9)
    assert not again['recovered'] and again['detail'].startswith('nothing to do')
    assert read_trial(killed) == record


def _chunk_offsets(mcap: Path) -> list[tuple[int, int]]:
    from mcap.reader import make_reader

    with mcap.open('rb') as stream:
        summary = make_reader(stream).get_summary()
    return [(c.chunk_start_offset, c.chunk_length) for c in summary.chunk_indexes]


@pytest.fixture
def closed(tmp_path) -> Path:
    clock = FakeClock(10.0)
    trial = tmp_path / 'exp1' / 'trials' / 't1'
    record_episode(EpisodeRecorder(clock=clock), clock, trial, 50)
    return trial


def _overwrite(path: Path, at: int, data: bytes) -> None:
    with path.open('r+b') as stream:
        stream.seek(at)
        stream.write(data)


def test_a_bag_overwritten_in_the_middle_is_refused_then_recovered_without_that_chunk(closed):
    mcap = closed / 'episode' / 'episode.mcap'
    start, length = _chunk_offsets(mcap)[1]
    _overwrite(mcap, start + length // 2, b'\xa5' * 32)
    with pytest.raises(RecordDamagedError, match=r'damaged.*enpire bag recover') as err:
        list(read_messages(closed))
    assert err.value.code == 601
    info = bag_info(closed)
    assert info['state'] == 'damaged' and not info['consistent']
    assert any(f'bytes {start}..{start + length} unreadable' in p for p in info['problems'])

    out = recover_trial(closed, now_unix_s=1.75e9)
    assert out['recovered'] and out['bag']['bytes_dropped'] >= length
    record = read_trial(closed)
    lost = record['bag_recovered']['lost_per_topic']
    assert lost and all(n > 0 for n in lost.values())
    state_topic = '/cell_0/state'
    kept = record['bag_recovered']['per_topic'][state_topic]
    assert kept + lost[state_topic] == 50
    assert record['outcome'] == 'success'           # a closed trial keeps its outcome
    assert verify_files(closed, record) == {}
    assert len(list(read_messages(closed, lambda t: t == state_topic))) == kept


def test_a_corrupt_record_length_is_skipped_to_the_next_intact_chunk(closed):
    mcap = closed / 'episode' / 'episode.mcap'
    chunks = _chunk_offsets(mcap)
    start, _length = chunks[1]
    _overwrite(mcap, start + 1, b'\xff' * 8)
    scan = scan_mcap(mcap)
    assert scan.damaged and scan.damage[0].offset == start
    assert scan.damage[0].offset + scan.damage[0].length == chunks[2][0]
    assert scan.chunks == len(chunks) - 1


@pytest.mark.parametrize(('damage', 'match'), [
    ('empty', 'holds no data.*0 bytes'),
    ('magic', 'does not start as an MCAP file.*enpire bag recover'),
])
def test_an_empty_or_foreign_file_is_refused_by_every_reader(closed, damage, match):
    mcap = closed / 'episode' / 'episode.mcap'
    if damage == 'empty':
        mcap.write_bytes(b'')
    else:
        _overwrite(mcap, 0, b'NOTMCAP!')
    with pytest.raises(RecordDamagedError, match=match):
        list(read_messages(closed))
    assert bag_info(closed)['state'] == ('empty' if damage == 'empty' else 'damaged')
    if damage == 'empty':
        with pytest.raises(RecordDamagedError, match='nothing in it can be read'):
            recover_bag(closed)
        assert mcap.stat().st_size == 0              # left as it was
    else:
        out = recover_bag(closed)          # only the header record is lost
        assert out['per_topic']['/cell_0/state'] == 50 and out['bytes_dropped'] < 100


def test_no_bag_at_all_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigError, match='no rosbag2 bag here'):
        BagReader(tmp_path).open()


def _cut_json(trial: Path, after: str) -> str:
    text = (trial / 'trial.json').read_text()
    cut = text[:text.index(after) + len(after) + 5]
    (trial / 'trial.json').write_text(cut)
    return text


def test_a_truncated_trial_json_is_refused_skipped_by_the_listing_and_rebuilt(closed):
    clock = FakeClock(20.0)
    record_episode(EpisodeRecorder(clock=clock), clock, closed.parent / 't2', 3,
                   trial_id='t2')
    whole = json.loads(_cut_json(closed, '"outcome"'))
    with pytest.raises(RecordDamagedError, match=r'invalid JSON.*cut short.*enpire bag '
                                                 r'recover') as err:
        read_trial(closed)
    assert err.value.code == 601
    skipped: list[dict] = []
    assert [r['ids']['trial_id'] for r in list_trials(closed.parent.parent, skipped)] == ['t2']
    assert [(s['trial_id'], s['error']) for s in skipped] == [('t1', 'RECORD_DAMAGED')]
    from enpire_rollout.core.lerobot_export import experiment_trials

    kept, left = experiment_trials(closed.parent.parent)
    assert [t.name for t in kept] == ['t2'] and left[0]['trial_id'] == 't1'
    assert 'trial record is damaged' in left[0]['reason']

    out = recover_trial(closed, now_unix_s=1.75e9)
    assert out['record']['rebuilt'] and not out['bag']['recovered']
    record = read_trial(closed)
    assert record['ids'] == whole['ids'] and record['files'] == whole['files']
    assert record['outcome'] == 'invalid' and 'outcome' not in \
        record['record_recovered']['kept_fields']
    assert (closed / 'trial.json.damaged').is_file()
    assert [r['ids']['trial_id'] for r in list_trials(closed.parent.parent)] == ['t1', 't2']


@pytest.mark.parametrize('text', ['', '[1, 2]', '{"schema": "enpire.trial/1"}',
                                  '{"schema": "enpire.trial/1", "ids": [], "outcome": "x"}'])
def test_a_trial_json_that_is_not_a_whole_record_is_refused_as_damaged(tmp_path, text):
    (tmp_path / 'trial.json').write_text(text)
    with pytest.raises(RecordDamagedError, match='trial record is damaged'):
        read_trial(tmp_path)


def test_salvage_keeps_every_whole_top_level_field():
    text = json.dumps({'a': 1, 'b': {'c': [1, 2]}, 'd': 'x'}, indent=2, sort_keys=True)
    assert salvage_trial_json(text) == {'a': 1, 'b': {'c': [1, 2]}, 'd': 'x'}
    assert salvage_trial_json(text[:text.index('"d"') + 3]) == {'a': 1, 'b': {'c': [1, 2]}}
    assert salvage_trial_json(text.replace('"c": [', '"c": [[')) == {'a': 1, 'd': 'x'}
