from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError, RecordDamagedError, UnknownNameError
from enpire_rollout.core import bag as bagmod
from enpire_rollout.core.bag import bag_info, bag_readable, make_bag_writer
from enpire_rollout.core.config import RecorderConfig
from enpire_rollout.core.recorder import EpisodeRecorder, MemoryEpisodeWriter, TrialMeta
from enpire_rollout.core.records import (
    atomic_write_json,
    list_trials,
    open_trials,
    read_trial,
    recover_incomplete,
    verify_files,
)

SIZE = 96  # small frames keep the tests fast; the benchmark uses 480x480


def image(i: int, size: int = SIZE) -> tuple[dict, np.ndarray]:
    frame = np.full((size, size, 3), i % 256, dtype=np.uint8)
    msg = {'header': {'stamp': {'sec': i // 10, 'nanosec': (i % 10) * 100_000_000},
                      'frame_id': 'top'},
           'height': size, 'width': size, 'encoding': 'rgb8', 'step': size * 3,
           'data': frame.tobytes()}
    return msg, frame


def record_episode(recorder: EpisodeRecorder, clock: FakeClock, trial_dir: Path, n: int,
                   trial_id: str = 't1', close: bool = True) -> dict | None:
    recorder.open(trial_dir, TrialMeta('exp1', trial_id, 'rev1', 'cell_0', 'push_t', seed=7))
    for i in range(n):
        ns = int(clock.now_s() * 1e9)
        msg, frame = image(i)
        recorder.write('/cell_0/camera/top/image_raw', 'sensor_msgs/msg/Image', ns, msg)
        recorder.write_frame('top', ns, frame)
        recorder.write('/cell_0/state', 'enpire_interfaces/msg/StateVector', ns,
                       {'tick': i, 'names': ['x_px', 'y_px'], 'values': [i, 2.0 * i]})
        for topic in ('/cell_0/policy/command', '/cell_0/command'):
            recorder.write(topic, 'enpire_interfaces/msg/Command', ns,
                           {'tick': i, 'revision_id': 'rev1', 'action': [1.0, 2.0]})
        clock.advance(0.1)
    recorder.write('/cell_0/verdicts', 'enpire_interfaces/msg/Verdict',
                   int(clock.now_s() * 1e9), {'view': 'top', 'score': 0.97, 'success': True})
    if not close:
        return None
    return recorder.close('success', reason='coverage 0.97', success=True, score=0.97, steps=n,
                          verdicts=[{'view': 'fused', 'score': 0.97, 'success': True}],
                          controller={'late_acts': 2, 'resent_commands': 0})


@pytest.fixture
def recorder():
    clock = FakeClock(1000.0)
    return EpisodeRecorder(RecorderConfig(), clock=clock, wall_clock=FakeClock(1.7e9)), clock


def test_an_episode_round_trips_through_rosbags_mcap_and_the_mp4(tmp_path, recorder):
    rec, clock = recorder
    record = record_episode(rec, clock, tmp_path / 'trials' / 't1', 100)
    trial_dir = tmp_path / 'trials' / 't1'

    assert read_trial(trial_dir)['controller'] == {'late_acts': 2, 'resent_commands': 0}
    info = bag_info(trial_dir)
    assert info['consistent'], info['errors']
    counts = {t: e['count'] for t, e in info['topics'].items()}
    assert counts == {'/cell_0/camera/top/image_raw': 100, '/cell_0/state': 100,
                      '/cell_0/policy/command': 100, '/cell_0/command': 100,
                      '/cell_0/verdicts': 1}
    assert all(e['mcap_count'] == e['count'] for e in info['topics'].values())

    from rosbags.rosbag2 import Reader

    with Reader(trial_dir / 'episode') as reader:
        conns = [c for c in reader.connections if c.topic.endswith('state')]
        ticks = [bagmod.typestore().deserialize_cdr(raw, c.msgtype).tick
                 for c, _t, raw in reader.messages(connections=conns)]
    assert ticks == list(range(100))

    import av
    import cv2

    with av.open(str(trial_dir / 'top.mp4')) as container:
        assert sum(1 for _ in container.decode(video=0)) == 100
    cap = cv2.VideoCapture(str(trial_dir / 'top.mp4'))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 100
    cap.release()

    on_disk = read_trial(trial_dir)
    assert on_disk == record
    assert on_disk['outcome'] == 'success' and on_disk['ids']['trial_id'] == 't1'
    assert on_disk['videos']['top']['frames'] == 100
    assert on_disk['videos']['top']['codec'] in ('libx264', 'mpeg4')
    assert set(on_disk['files']) == {'episode/episode.mcap', 'episode/metadata.yaml', 'top.mp4'}
    assert verify_files(trial_dir, on_disk) == {}
    assert on_disk['streams']['state']['expected'] == 100
    assert on_disk['gaps'] is False


def _mcap_chunk_compressions(path: Path) -> set[str]:
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    with path.open('rb') as stream:
        return {r.compression for r in StreamReader(stream, emit_chunks=True).records
                if isinstance(r, Chunk)}


@pytest.mark.parametrize('compression', ['zstd', 'none'])
def test_bags_are_zstd_chunk_compressed_by_default_and_read_back_either_way(tmp_path,
                                                                            compression):
    clock = FakeClock(1000.0)
    rec = EpisodeRecorder(RecorderConfig(bag_compression=compression), clock=clock,
                          wall_clock=FakeClock(1.7e9))
    trial_dir = tmp_path / 't1'
    record_episode(rec, clock, trial_dir, 50)
    mcap = trial_dir / 'episode' / 'episode.mcap'
    assert _mcap_chunk_compressions(mcap) == ({'zstd'} if compression == 'zstd' else {''})
    info = bag_info(trial_dir)
    assert info['consistent'], info['errors']
    assert info['topics']['/cell_0/camera/top/image_raw']['count'] == 50
    assert RecorderConfig().bag_compression == 'zstd'


def test_an_unknown_bag_compression_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="bag_compression='lz4' is invalid"):
        RecorderConfig(bag_compression='lz4')
    with pytest.raises(UnknownNameError, match="unknown bag compression 'zst'.*did you mean"):
        make_bag_writer('rosbags', compression='zst')


def test_a_modified_file_fails_the_integrity_check(tmp_path, recorder):
    rec, clock = recorder
    record = record_episode(rec, clock, tmp_path / 't1', 5)
    with open(tmp_path / 't1' / 'top.mp4', 'ab') as stream:
        stream.write(b'x')
    (tmp_path / 't1' / 'episode' / 'metadata.yaml').unlink()
    assert verify_files(tmp_path / 't1', record) == {'top.mp4': 'modified',
                                                     'episode/metadata.yaml': 'missing'}


def test_dropped_frames_set_the_gaps_flag(tmp_path, recorder):
    rec, clock = recorder
    rec.open(tmp_path / 't1', TrialMeta('exp1', 't1'))
    for i in range(50):
        if 10 <= i < 20:  # a one-second camera outage
            clock.advance(0.1)
            continue
        msg, _frame = image(i)
        rec.write('camera/top/image_raw', 'sensor_msgs/msg/Image', int(clock.now_s() * 1e9),
                  msg)
        clock.advance(0.1)
    record = rec.close('failure', steps=50)
    cam = record['streams']['camera/top/image_raw']
    assert (cam['expected'], cam['count'], cam['missing']) == (50, 40, 10)
    assert cam['gaps'] and record['gaps']


def test_opening_a_second_trial_or_reusing_a_trial_dir_is_refused(tmp_path, recorder):
    rec, clock = recorder
    record_episode(rec, clock, tmp_path / 't1', 2)
    with pytest.raises(ConfigError, match='already holds a trial'):
        rec.open(tmp_path / 't1', TrialMeta('exp1', 't1'))
    rec.open(tmp_path / 't2', TrialMeta('exp1', 't2'))
    with pytest.raises(ConfigError, match='already being recorded'):
        rec.open(tmp_path / 't3', TrialMeta('exp1', 't3'))
    with pytest.raises(UnknownNameError, match="unknown trial outcome 'sucess'"):
        rec.close('sucess')
    with pytest.raises(UnknownNameError, match="unknown camera view 'side'"):
        rec.write_frame('side', 0, np.zeros((4, 4, 3), np.uint8))


def test_an_open_trial_is_marked_running_until_closed(tmp_path, recorder):
    rec, clock = recorder
    rec.open(tmp_path / 't1', TrialMeta('exp1', 't1'))
    assert read_trial(tmp_path / 't1')['outcome'] == 'running'
    rec.close('timeout', steps=0)
    assert read_trial(tmp_path / 't1')['outcome'] == 'timeout'


def test_unknown_message_fields_are_refused_with_the_known_ones(tmp_path, recorder):
    rec, _clock = recorder
    rec.open(tmp_path / 't1', TrialMeta('exp1', 't1'))
    with pytest.raises(bagmod.BagError, match=r"has no field\(s\) \['bogus'\]"):
        rec.write('state', 'enpire_interfaces/msg/StateVector', 0, {'bogus': 1})


def test_auto_picks_rosbag2_py_only_when_it_is_importable(monkeypatch):
    monkeypatch.setattr(bagmod, 'rosbag2_py_available', lambda: True)
    assert make_bag_writer('auto').name == 'rosbag2_py'
    monkeypatch.setattr(bagmod, 'rosbag2_py_available', lambda: False)
    assert make_bag_writer('auto').name == 'rosbags'
    with pytest.raises(UnknownNameError, match="did you mean 'rosbags'"):
        make_bag_writer('rosbag')


def test_atomic_json_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / 'a.json', {'x': 1})
    atomic_write_json(tmp_path / 'a.json', {'x': 2})
    assert json.loads((tmp_path / 'a.json').read_text()) == {'x': 2}
    assert [p.name for p in tmp_path.iterdir()] == ['a.json']


def test_read_trial_names_the_problem(tmp_path):
    with pytest.raises(ConfigError, match='no trial record here'):
        read_trial(tmp_path)
    (tmp_path / 'trial.json').write_text('{"schema": "other"}')
    with pytest.raises(ConfigError, match="schema 'other' is not 'enpire.trial/1'"):
        read_trial(tmp_path)


def test_memory_episode_writer_keeps_every_call():
    fake = MemoryEpisodeWriter()
    fake.open('/nowhere', TrialMeta('e', 't'))
    fake.write('state', 'enpire_interfaces/msg/StateVector', 5, {'tick': 1})
    fake.write_frame('top', 5, np.zeros((2, 2, 3), np.uint8))
    record = fake.close('success', score=1.0)
    assert record['outcome'] == 'success' and record['frames'] == {'top': 1}
    assert len(fake.trials) == 1 and fake.current is None


CHILD = textwrap.dedent('''
    import sys
    from pathlib import Path
    from enpire_common.clock import FakeClock
    from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta
    sys.path.insert(0, {testdir!r})
    from test_recorder import image

    clock = FakeClock(2000.0)
    rec = EpisodeRecorder(clock=clock)
    rec.open(Path({trial_dir!r}), TrialMeta('exp1', 't2'))
    for i in range(10_000):
        ns = int(clock.now_s() * 1e9)
        rec.write('state', 'enpire_interfaces/msg/StateVector', ns, {{'tick': i}})
        msg, frame = image(i)
        rec.write('camera/top/image_raw', 'sensor_msgs/msg/Image', ns, msg)
        rec.write_frame('top', ns, frame)
        clock.advance(0.1)
        if i == 40:
            print('ready', flush=True)
''')


@pytest.mark.parametrize('isolated', [False, True], ids=['in_process', 'in_a_child'])
def test_a_killed_recorder_leaves_earlier_trials_intact_and_is_recovered_as_aborted(
        tmp_path, recorder, isolated):
    rec, clock = recorder
    trials = tmp_path / 'run' / 'trials'
    first = record_episode(rec, clock, trials / 't1', 20)
    script = CHILD.format(testdir=str(Path(__file__).parent), trial_dir=str(trials / 't2'))
    child = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                             text=True, env=os.environ.copy())
    try:
        assert child.stdout.readline().strip() == 'ready'
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert read_trial(trials / 't2')['outcome'] == 'running'
    assert not bag_readable(trials / 't2')

    assert open_trials(tmp_path / 'run') == [trials / 't2']
    assert recover_incomplete(tmp_path / 'run', isolated=isolated) == ['t2']

    killed = read_trial(trials / 't2')
    assert killed['outcome'] == 'aborted' and 'recover_incomplete' in killed['reason']
    assert killed['bag']['repaired'] and killed['bag']['readable']
    info = bag_info(trials / 't2')
    assert info['consistent'] and info['state'] == 'ok'
    # 1 s chunks: at most about a second of the 41+ recorded steps is lost.
    assert info['topics']['state']['count'] >= 30
    assert killed['bag_recovered']['per_topic']['state'] == info['topics']['state']['count']
    assert not list((trials / 't2' / 'episode').glob('*.damaged'))   # no backup here
    assert verify_files(trials / 't2', killed) == {}
    assert not list((trials / 't2').glob('.*.tmp'))

    assert read_trial(trials / 't1') == first
    assert bag_info(trials / 't1')['topics']['/cell_0/state']['count'] == 20
    assert verify_files(trials / 't1', first) == {}
    assert [r['ids']['trial_id'] for r in list_trials(tmp_path / 'run')] == ['t1', 't2']
    assert recover_incomplete(tmp_path / 'run', isolated=isolated) == []


def test_open_trials_reads_a_closed_record_once_until_it_changes(tmp_path, recorder,
                                                                  monkeypatch):
    from enpire_rollout.core import records

    rec, clock = recorder
    trials = tmp_path / 'run' / 'trials'
    for name in ('t1', 't2'):
        record_episode(rec, clock, trials / name, 3)
    reads = []
    real = records.read_trial
    monkeypatch.setattr(records, 'read_trial', lambda d: reads.append(Path(d).name) or real(d))
    assert open_trials(tmp_path / 'run') == [] and sorted(reads) == ['t1', 't2']
    reads.clear()
    assert open_trials(tmp_path / 'run') == [] and reads == []
    record = read_trial(trials / 't2')           # the record is rewritten (gc, a repair...)
    record['outcome'] = 'running'
    record['writer'] = {'host': 'elsewhere', 'pid': 1}
    atomic_write_json(trials / 't2' / 'trial.json', record)
    assert open_trials(tmp_path / 'run') == [trials / 't2'] and reads == ['t2']


def test_a_recovery_child_that_fails_says_so_and_leaves_the_trial_open(tmp_path, recorder,
                                                                        monkeypatch):
    rec, clock = recorder
    trials = tmp_path / 'run' / 'trials'
    record_episode(rec, clock, trials / 't1', 5)
    record = read_trial(trials / 't1')
    record['outcome'] = 'running'
    record['writer'] = {'host': 'elsewhere', 'pid': 1}        # not this host: gone
    atomic_write_json(trials / 't1' / 'trial.json', record)
    assert open_trials(tmp_path / 'run') == [trials / 't1']
    monkeypatch.setattr(sys, 'executable', '/bin/false')
    with pytest.raises(RecordDamagedError, match=r'open trial\(s\) t1 failed \(exit 1\); they '
                                                 r'stay open'):
        recover_incomplete(tmp_path / 'run', isolated=True)
    assert read_trial(trials / 't1')['outcome'] == 'running'


def test_middleware_bytes_with_trailing_garbage_are_canonicalised_for_strict_readers():
    from rclpy.serialization import serialize_message

    from enpire_interfaces.msg import SafetyEvent
    from enpire_rollout.core.bag import canonical_cdr, typestore

    raw = serialize_message(SafetyEvent(cell_id='c', kind=3, action=2, requested=[1.0, 2.0],
                                        applied=[], revision_id='r', detail='x'))
    fixed = canonical_cdr('enpire_interfaces/msg/SafetyEvent', raw)
    assert len(fixed) < len(raw)
    msg = typestore().deserialize_cdr(fixed, 'enpire_interfaces/msg/SafetyEvent')
    assert (msg.kind, list(msg.requested), list(msg.applied), msg.detail) == (
        3, [1.0, 2.0], [], 'x')
