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
    home = tmp_path_factory.mktemp('home')
    for k in range(6):
        _record(home / 'teach', f't{k}', 40, seed=k)
    return _export(home)


def _export(home: Path) -> Path:
    """``home/teach``'s trials exported as a Push-T LeRobot dataset at ``home/ds``."""
    from enpire_rollout.core.lerobot_export import LeRobotExporter, experiment_trials

    out = home / 'ds'
    trials, _ = experiment_trials(home / 'teach')
    LeRobotExporter(out, task='push_t', fps=10).export(trials)
    return out





def teacher_action(agent: np.ndarray, pose) -> np.ndarray:
    """The knn fixture's teacher: head for the point 40 px beyond the block's bar, in its
    own frame (a function of the block pose and the agent that knn has to recover)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    target = np.array(pose[:2]) + np.array([[c, -s], [s, c]]) @ np.array([20.0, -40.0])
    step = target - agent
    step *= min(1.0, 30.0 / (float(np.linalg.norm(step)) + 1e-9))
    return np.clip(agent + step, 30.0, 482.0)


def _teacher_trial(exp: Path, trial_id: str, n: int, seed: int) -> None:
    """A real Push-T trial on PushTSim: :func:`teacher_action` fed the simulator's pose, its
    exact 480 px top frames recorded as the cell records them."""
    from enpire_common.tasks import load_task
    from enpire_rollout.core.config import RecorderConfig
    from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta
    from enpire_sim.core.push_t import PushTSim

    sim = PushTSim(load_task('push_t'))
    sim.reset(seed=seed)
    clock = FakeClock(10.0)
    rec = EpisodeRecorder(RecorderConfig(), clock=clock, wall_clock=FakeClock(1.7e9 + seed))
    rec.open(exp / 'trials' / trial_id, TrialMeta(exp.name, trial_id, 'teacher', 'cell_0',
                                                  'push_t', seed=seed))
    for i in range(n):
        ns = int(round(clock.now_s() * 1e9))
        head = {'stamp': _stamp(ns), 'frame_id': ''}
        frame = sim.render()
        h, w = frame.shape[:2]
        rec.write('/cell_0/camera/top/image_raw', 'sensor_msgs/msg/Image', ns,
                  {'header': head, 'height': h, 'width': w, 'encoding': 'rgb8',
                   'step': w * 3, 'data': frame.tobytes()})
        rec.write_frame('top', ns, frame)
        state = sim.agent_state()
        rec.write('/cell_0/state', 'enpire_interfaces/msg/StateVector', ns,
                  {'header': head, 'tick': i, 'names': ['x', 'y', 'vx', 'vy'],
                   'values': [float(v) for v in state]})
        action = teacher_action(state[:2], sim.object_pose())
        rec.write('/cell_0/command', 'enpire_interfaces/msg/Command', ns,
                  {'header': head, 'tick': i, 'revision_id': 'teacher',
                   'action': [float(v) for v in action]})
        sim.step(action)
        clock.advance(0.1)
    sim.close()
    rec.close('success', reason='r', success=True, score=0.97, steps=n,
              verdicts=[{'view': 'fused', 'score': 0.97, 'success': True}])


@pytest.fixture(scope='session')
def knn_dataset(tmp_path_factory) -> Path:
    """3 Push-T trials of 12 ticks with real camera frames, exported."""
    pytest.importorskip('gym_pusht')
    home = tmp_path_factory.mktemp('knn_home')
    for k in range(3):
        _teacher_trial(home / 'teach', f't{k}', 12, seed=k)
    return _export(home)


@pytest.fixture(scope='session')
def knn_teacher():
    """The knn dataset's teacher (:func:`teacher_action`)."""
    return teacher_action
