"""``enpire dataset export``: trial records as a LeRobot v3.0 dataset whose episodes, frames
and actions are the bags' own, written so that an interrupted export resumes, a rerun changes
nothing, and bad records are refused with a reason instead of corrupting the dataset."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError
from enpire_rollout.core.config import RecorderConfig
from enpire_rollout.core.lerobot_export import LeRobotExporter, experiment_trials
from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta
from enpire_rollout.core.records import atomic_write_json, read_trial

pa = pytest.importorskip('pyarrow')
pq = pytest.importorskip('pyarrow.parquet')
av = pytest.importorskip('av')

SIZE = 32
CELL = 'cell_0'


def _stamp(ns: int) -> dict:
    return {'sec': ns // 1_000_000_000, 'nanosec': ns % 1_000_000_000}


def record_trial(exp_dir: Path, trial_id: str, n: int, *, seed: int = 0, task: str = 'push_t',
                 success: bool = True, skip_command: int | None = None,
                 image_every: int = 1) -> Path:
    """A recorded trial of ``n`` control steps: state tick i = (i, 2i, 0, 0), command tick i =
    (100 + seed + i, -i), image i flat grey 4i (one image every ``image_every`` ticks), one
    extra state and command past the end, as a live cell records them."""
    clock = FakeClock(50.0)
    rec = EpisodeRecorder(RecorderConfig(), clock=clock, wall_clock=FakeClock(1.7e9 + seed))
    trial_dir = exp_dir / 'trials' / trial_id
    rec.open(trial_dir, TrialMeta(exp_dir.name, trial_id, f'rev{seed % 2}', CELL, task,
                                  seed=seed))
    for i in range(n + 1):
        ns = int(round(clock.now_s() * 1e9))
        head = {'stamp': _stamp(ns), 'frame_id': ''}
        if i % image_every == 0:
            frame = np.full((SIZE, SIZE, 3), (4 * i) % 256, dtype=np.uint8)
            rec.write(f'/{CELL}/camera/top/image_raw', 'sensor_msgs/msg/Image', ns,
                      {'header': {**head, 'frame_id': 'top'}, 'height': SIZE, 'width': SIZE,
                       'encoding': 'rgb8', 'step': SIZE * 3, 'data': frame.tobytes()})
            rec.write_frame('top', ns, frame)
        rec.write(f'/{CELL}/state', 'enpire_interfaces/msg/StateVector', ns,
                  {'header': head, 'tick': i, 'names': ['x', 'y', 'vx', 'vy'],
                   'values': [float(i), 2.0 * i, 0.0, 0.0]})
        if i != skip_command:
            for topic in (f'/{CELL}/policy/command', f'/{CELL}/command'):
                rec.write(topic, 'enpire_interfaces/msg/Command', ns,
                          {'header': head, 'tick': i, 'revision_id': 'r',
                           'action': [100.0 + seed + i, -float(i)]})
        if i == n // 2:
            rec.write(f'/{CELL}/verdicts', 'enpire_interfaces/msg/Verdict', ns,
                      {'view': 'fused', 'score': 0.5, 'success': False})
        clock.advance(0.1)
    rec.close('success' if success else 'failure', reason='r', success=success,
              score=0.97 if success else 0.2, steps=n,
              verdicts=[{'view': 'fused', 'score': 0.97, 'success': success}])
    return trial_dir


def bag_actions(trial_dir: Path, n: int) -> np.ndarray:
    """The executed commands of ticks 0..n-1, read with the mcap reader (not the exporter's)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    by_tick: dict[int, list[float]] = {}
    for path in sorted((trial_dir / 'episode').glob('*.mcap')):
        with path.open('rb') as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()])
            for _s, channel, _m, msg in reader.iter_decoded_messages():
                if channel.topic == f'/{CELL}/command' and msg.tick < n:
                    by_tick[msg.tick] = list(msg.action)
    return np.array([by_tick[t] for t in range(n)])


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


def exporter(out: Path, **kw) -> LeRobotExporter:
    return LeRobotExporter(out, task='push_t', fps=10, task_text='push the T', **kw)


LENGTHS = [5 + (i * 7) % 13 for i in range(20)]


@pytest.fixture(scope='module')
def experiment(tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp('home') / 'exp20'
    for i, n in enumerate(LENGTHS):
        record_trial(exp, f't{i:02d}', n, seed=i, success=i % 3 == 0)
    return exp


@pytest.fixture(scope='module')
def exported(experiment, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('ds') / 'push_t'
    trials, left = experiment_trials(experiment)
    assert len(trials) == 20 and left == []
    result = exporter(out).export(trials)
    assert result.episodes == 20 and len(result.added) == 20 and not result.skipped
    return out


def test_a_20_trial_experiment_exports_episodes_frames_and_actions_exactly_as_its_bags(
        experiment, exported):
    info = json.loads((exported / 'meta' / 'info.json').read_text())
    assert info['codebase_version'] == 'v3.0' and info['fps'] == 10
    assert info['total_episodes'] == 20 and info['total_frames'] == sum(LENGTHS)
    assert info['features']['observation.images.top']['shape'] == [SIZE, SIZE, 3]
    assert info['features']['observation.state']['names'] == ['x', 'y', 'vx', 'vy']

    data = pa.concat_tables([pq.read_table(p)
                             for p in sorted((exported / 'data').glob('*/*.parquet'))])
    assert data.num_rows == sum(LENGTHS)
    assert data['index'].to_pylist() == list(range(sum(LENGTHS)))
    episodes = pq.read_table(exported / 'meta/episodes/chunk-000/file-000.parquet').to_pylist()
    assert [e['episode_index'] for e in episodes] == list(range(20))
    assert [e['trial_id'] for e in episodes] == [f't{i:02d}' for i in range(20)]
    assert [e['length'] for e in episodes] == LENGTHS
    assert [e['seed'] for e in episodes] == list(range(20))
    assert [e['outcome'] for e in episodes] == \
        ['success' if i % 3 == 0 else 'failure' for i in range(20)]
    actions = np.array(data['action'].to_pylist())
    states = np.array(data['observation.state'].to_pylist())
    for e in episodes:
        lo, hi = e['dataset_from_index'], e['dataset_to_index']
        assert hi - lo == e['length']
        trial_dir = experiment / 'trials' / e['trial_id']
        np.testing.assert_array_equal(actions[lo:hi],
                                      bag_actions(trial_dir, e['length']).astype(np.float32))
        np.testing.assert_array_equal(states[lo:hi, 0], np.arange(e['length']))
        rows = data.slice(lo, hi - lo)
        assert rows['frame_index'].to_pylist() == list(range(e['length']))
        assert set(rows['episode_index'].to_pylist()) == {e['episode_index']}
        np.testing.assert_allclose(rows['timestamp'].to_pylist(),
                                   np.arange(e['length']) / 10, atol=1e-6)
        done = rows['next.done'].to_pylist()
        assert done == [False] * (e['length'] - 1) + [True]
        assert rows['next.success'].to_pylist()[-1] == (e['outcome'] == 'success')
        # The mid-episode verdict's score is the reward from the frame after it on.
        reward = rows['next.reward'].to_pylist()
        assert reward[0] == 0.0 and reward[e['length'] // 2] == pytest.approx(0.5)


def test_each_video_holds_one_frame_per_tick_at_k_over_fps_with_the_bags_images(exported):
    episodes = pq.read_table(exported / 'meta/episodes/chunk-000/file-000.parquet').to_pylist()
    for e in episodes[:4]:
        path = exported / (f"videos/observation.images.top/chunk-000/"
                           f"file-{e['videos/observation.images.top/file_index']:03d}.mp4")
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = [(float(f.pts * stream.time_base), f.to_ndarray(format='rgb24'))
                      for f in container.decode(stream)]
        assert len(frames) == e['length']
        assert [round(t, 6) for t, _ in frames] == [round(k / 10, 6) for k in range(e['length'])]
        for k, (_t, img) in enumerate(frames):
            assert abs(float(img.mean()) - 4 * k) < 3, (e['trial_id'], k, img.mean())
        assert e['videos/observation.images.top/to_timestamp'] == pytest.approx(e['length'] / 10)


def test_a_rerun_changes_nothing_and_an_interrupted_export_resumes_to_the_same_dataset(
        experiment, exported, tmp_path):
    before = tree_digest(exported)
    trials, _ = experiment_trials(experiment)
    again = exporter(exported).export(trials)
    assert again.added == [] and again.kept == 20 and again.episodes == 20
    assert tree_digest(exported) == before

    out = tmp_path / 'resumed'
    written: list[str] = []

    def die_after_seven(line: str) -> None:
        written.append(line)
        if len(written) == 7:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        exporter(out, note=die_after_seven).export(trials)
    journal = json.loads((out / 'meta' / 'enpire_export.json').read_text())
    assert len(journal['episodes']) == 7
    resumed = exporter(out).export(trials)
    assert resumed.kept == 7 and len(resumed.added) == 13
    assert tree_digest(out) == before


def test_bad_records_are_skipped_with_their_reason_and_never_reach_the_dataset(tmp_path):
    exp = tmp_path / 'exp'
    record_trial(exp, 'good', 6)
    record_trial(exp, 'gap', 6, skip_command=3)
    record_trial(exp, 'pin', 6, task='pin_insertion')
    cut = record_trial(exp, 'cut', 6)
    mcap = next((cut / 'episode').glob('*.mcap'))
    mcap.write_bytes(mcap.read_bytes()[:300])
    running = record_trial(exp, 'open', 6)
    atomic_write_json(running / 'trial.json', {**read_trial(running), 'outcome': 'running'})
    trials, left = experiment_trials(exp)
    assert left == [{'trial_id': 'open', 'reason': 'outcome running'}]
    notes: list[str] = []
    result = exporter(tmp_path / 'ds', note=notes.append).export(trials)
    assert result.added == ['good'] and result.episodes == 1
    reasons = {s['trial_id']: s['reason'] for s in result.skipped}
    assert set(reasons) == {'gap', 'pin', 'cut'}
    assert 'no command for tick 3' in reasons['gap']
    assert "'pin_insertion' trial" in reasons['pin']
    assert 'no state for tick 0' in reasons['cut'] and 'truncated' in reasons['cut']
    assert sum(line.startswith('skip ') for line in notes) == 3
    data = list((tmp_path / 'ds' / 'data').glob('*/*.parquet'))
    assert len(data) == 1 and pq.read_table(data[0]).num_rows == 6


def test_only_success_sparse_images_are_held_and_a_foreign_out_dir_is_refused(tmp_path):
    exp = tmp_path / 'exp'
    record_trial(exp, 'win', 9, success=True, image_every=3)
    record_trial(exp, 'lose', 9, success=False)
    trials, left = experiment_trials(exp, only='success')
    assert [t.name for t in trials] == ['win'] and left[0]['trial_id'] == 'lose'
    out = tmp_path / 'ds'
    exporter(out).export(trials)
    with av.open(str(out / 'videos/observation.images.top/chunk-000/file-000.mp4')) as c:
        means = [float(f.to_ndarray(format='rgb24').mean()) for f in c.decode(video=0)]
    # Images at ticks 0, 3, 6 only: each held until the next one arrives.
    assert [round(m / 4) for m in means] == [0, 0, 0, 3, 3, 3, 6, 6, 6]

    with pytest.raises(ConfigError, match='push_t dataset at 10 fps'):
        LeRobotExporter(out, task='pin_insertion', fps=30)
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'notes.txt').write_text('mine')
    with pytest.raises(ConfigError, match='not an ENPIRE LeRobot export'):
        exporter(other)
    with pytest.raises(ConfigError, match='integer fps'):
        LeRobotExporter(tmp_path / 'x', task='push_t', fps=7.5)
    with pytest.raises(ConfigError, match='no trial records'):
        experiment_trials(tmp_path / 'nothing')


def test_lerobot_reads_the_export_back(exported):
    """LeRobot's own LeRobotDataset loads the dataset (skipped where lerobot is absent)."""
    pytest.importorskip('lerobot', reason='lerobot is not installed (it pins torch<2.11, so '
                                          'requirements.txt cannot carry it)')
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}
    # torch_compat stands in for torchvision's compiled ops beside the CPU torch (as for yolo).
    code = ('import sys\n'
            'from enpire_reward.core.torch_compat import ensure_torchvision_ops\n'
            'ensure_torchvision_ops()\n'
            'from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata\n'
            'm = LeRobotDatasetMetadata("local/x", root=sys.argv[1])\n'
            'print(m.total_episodes, m.total_frames, m.fps)\n')
    out = subprocess.run([sys.executable, '-c', code, str(exported)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['20', str(sum(LENGTHS)), '10']
