"""Pin insertion end to end on its simulated arm cell: ``enpire trial run --task pin_insertion``
starts the arm cell launch, runs the scripted baseline and leaves verifiable records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _topic_counts(bag: Path) -> dict[str, int]:
    """Messages per topic, each decoded by the third-party readers Foxglove's own tools use
    (``mcap`` + ``mcap-ros2-support``) from the bag's embedded ros2msg schemas."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts: dict[str, int] = {}
    for path in sorted(bag.glob('*.mcap')):
        with path.open('rb') as stream:
            reader = make_reader(stream, decoder_factories=[DecoderFactory()])
            for schema, channel, _msg, decoded in reader.iter_decoded_messages():
                assert schema.encoding == 'ros2msg' and channel.message_encoding == 'cdr'
                assert decoded is not None
                name = channel.topic.split('/', 2)[-1]
                counts[name] = counts.get(name, 0) + 1
    return counts


def test_trial_run_records_every_camera_the_arms_and_the_safety_layer(tmp_path) -> None:
    env = {**os.environ, 'ENPIRE_HOME': str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, '-m', 'enpire_bringup.cli', 'trial', 'run', '--task', 'pin_insertion',
         '--policy', 'examples/policies/pin_insertion/scripted', '--trials', '2', '--json'],
        env=env, capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out['ok'] and out['task'] == 'pin_insertion' and out['n_trials'] == 2
    for trial in out['trials']:
        assert trial['outcome'] in ('success', 'failure'), trial
        d = Path(trial['record_dir'])
        record = json.loads((d / 'trial.json').read_text())
        counts = _topic_counts(d / 'episode')
        steps = record['steps']
        # camera frames: image_transport's compressed topics (config/arm_sim.yaml bag_images)
        for topic in ('camera/task_top/image_raw/compressed', 'camera/side/image_raw/compressed',
                      'camera/right_wrist/image_raw/compressed', 'state', 'joint_states', 'tf',
                      'left/ee_pose', 'right/ee_pose', 'command', 'policy/command'):
            assert counts.get(topic, 0) >= 0.9 * steps, (topic, counts)
        assert counts['tf_static'] == 1 and counts['robot_description'] == 1
        for view in ('task_top', 'side', 'right_wrist'):
            assert (d / f'{view}.mp4').stat().st_size > 0
        # the fused verdict and both views; a component a view cannot see is null
        verdicts = {v['view']: v for v in record['verdicts']}
        assert {'task_top', 'side', 'fused'} <= set(verdicts)
        assert verdicts['side']['object_pose'][:1] in ([None], [])
        # how the start was reached: the robot, or the recorded sim_place fallback
        assert record['reset']['method'] in ('robot', 'sim_place (fallback)'), record['reset']
    # the first start of a fresh cell is a robot reset from the scene's own start
    first = json.loads((Path(out['trials'][0]['record_dir']) / 'trial.json').read_text())
    assert first['reset']['method'] == 'robot'
    # the hardest stage: every trial starts with the pin held over the hole
    proc = subprocess.run(
        [sys.executable, '-m', 'enpire_bringup.cli', 'trial', 'run', '--task', 'pin_insertion',
         '--policy', 'examples/policies/pin_insertion/hold', '--trials', '1', '--seeds', '7',
         '--reset-stage', 'pre_insertion', '--max-episode-steps', '30', '--json'],
        env=env, capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = json.loads(proc.stdout)['trials']
    record = json.loads((Path(trial['record_dir']) / 'trial.json').read_text())
    assert record['reset']['stage'] == 'pre_insertion' and record['reset']['method'] == 'robot'
    assert trial['outcome'] == 'failure'    # held, not inserted: the hold policy does nothing


def test_the_reset_benchmark_replays_saved_trial_ends(tmp_path) -> None:
    """``benchmarks/resets.py --replay DIR`` resets from each state ``--save-failed`` wrote
    (here the pin wedged in its slot of seed 65) and names a file that is not one."""
    saved = tmp_path / 'fails'
    saved.mkdir()
    state = ROOT / 'src' / 'enpire_sim' / 'test' / 'data' / 'pin_trial_end_seed65.npy'
    (saved / 'seed_65.npy').write_bytes(state.read_bytes())
    (saved / 'seed_7.npy').write_text('not a state')
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'resets.py'), '--task', 'pin_insertion',
         '--replay', str(saved)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out['resets'] == 2 and out['verified'] == 1, out
    assert out['causes'] == {'verified': 1, 'unreadable saved state': 1}, out
    assert 'seed_7.npy: not a state of this scene' in proc.stderr
    assert 'seed 65: verified' in proc.stderr
