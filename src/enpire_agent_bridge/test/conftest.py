"""Shared fixtures of enpire_agent_bridge's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from enpire_common.clock import FakeClock

SIZE = 32


def _stamp(ns: int) -> dict:
    return {'sec': ns // 1_000_000_000, 'nanosec': ns % 1_000_000_000}


def _record(exp: Path, trial_id: str, n: int, seed: int) -> None:
    """A Push-T trial whose action is a fixed function of the state and of where a bright
    square is in the image (so a network must read both)."""
    from enpire_rollout.core.config import RecorderConfig
    from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta

    clock = FakeClock(10.0)
    rec = EpisodeRecorder(RecorderConfig(), clock=clock, wall_clock=FakeClock(1.7e9 + seed))
    rec.open(exp / 'trials' / trial_id, TrialMeta(exp.name, trial_id, 'teacher', 'cell_0',
                                                  'push_t', seed=seed))
    rng = np.random.default_rng(seed)
    for i in range(n + 1):
        ns = int(round(clock.now_s() * 1e9))
        head = {'stamp': _stamp(ns), 'frame_id': ''}
        x, y = rng.uniform(50, 450, 2)
        u, v = (int(c) for c in rng.integers(2, SIZE - 8, 2))
        frame = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        frame[v:v + 6, u:u + 6] = 255
        rec.write('/cell_0/camera/top/image_raw', 'sensor_msgs/msg/Image', ns,
                  {'header': head, 'height': SIZE, 'width': SIZE, 'encoding': 'rgb8',
                   'step': SIZE * 3, 'data': frame.tobytes()})
        rec.write_frame('top', ns, frame)
        rec.write('/cell_0/state', 'enpire_interfaces/msg/StateVector', ns,
                  {'header': head, 'tick': i, 'names': ['x', 'y', 'vx', 'vy'],
                   'values': [x, y, 0.0, 0.0]})
        rec.write('/cell_0/command', 'enpire_interfaces/msg/Command', ns,
                  {'header': head, 'tick': i, 'revision_id': 'teacher',
                   'action': [x, 10.0 * u]})
        clock.advance(0.1)
    rec.close('success', reason='r', success=True, score=0.97, steps=n,
              verdicts=[{'view': 'fused', 'score': 0.97, 'success': True}])


@pytest.fixture(scope='session')
def bc_dataset(tmp_path_factory) -> Path:
    from enpire_rollout.core.lerobot_export import LeRobotExporter, experiment_trials

    home = tmp_path_factory.mktemp('home')
    for k in range(6):
        _record(home / 'teach', f't{k}', 40, seed=k)
    out = home / 'ds'
    trials, _ = experiment_trials(home / 'teach')
    LeRobotExporter(out, task='push_t', fps=10).export(trials)
    return out


