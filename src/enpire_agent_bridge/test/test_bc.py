"""``enpire train bc``: behaviour cloning from an exported dataset into a policy directory that
acts in the sandbox; a killed run resumes to the same weights; bad checkpoints, datasets and
shapes each get a clear error and never leave a half-written policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from enpire_common.errors import ConfigError

torch = pytest.importorskip('torch')
pytest.importorskip('pyarrow')

from enpire_agent_bridge.core.config import HostingConfig  # noqa: E402
from enpire_agent_bridge.core.contract import spec_for_revision  # noqa: E402
from enpire_agent_bridge.core.host import PolicyHost  # noqa: E402
from enpire_agent_bridge.learning import bc_policy  # noqa: E402
from enpire_agent_bridge.learning.bc import BCConfig, train_bc  # noqa: E402
from enpire_agent_bridge.learning.dataset import DatasetError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
# The wall-clock limit of one act as the policy host node sets it (HostingConfig's minimum);
# the policy's own budget (spec.deadline_s) is checked on its CPU time, as in a trial. A
# loaded machine's scheduler decides one act's wall time, not the policy.
HARD_S = HostingConfig().hard_deadline_min_s
TINY = dict(epochs=3, batch_size=32, lr=2e-3, image_size=16, horizon=1, n_action_steps=1, width=32,
            channels=4, shift_px=1)


@pytest.fixture(scope='module')
def trained(bc_dataset, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp('bc') / 'bc_policy'
    result = train_bc(bc_dataset, out, config=BCConfig(**{**TINY, 'epochs': 25}))
    return out, result


def test_bc_writes_a_policy_directory_whose_network_learned_the_teacher(trained, bc_dataset):
    out, result = trained
    assert sorted(p.name for p in out.iterdir()) == \
        ['policy.py', 'policy.yaml', 'train.json', 'weights.pt']
    assert not list(out.parent.glob('.bc_policy.*'))          # no temporary left beside it
    manifest = yaml.safe_load((out / 'policy.yaml').read_text())
    assert manifest['regime'] == 'bc' and manifest['task'] == 'push_t'
    assert manifest['params']['layout']['state'] == ['agent_pos', 'agent_vel']
    history = json.loads((out / 'train.json').read_text())['history']
    assert len(history) == 25 and result.frames == 240 and result.episodes == 6
    # The loss (L1 on actions scaled to [-1, 1]) falls well below a constant guess's ~0.5.
    assert history[-1]['loss'] < 0.6 * history[0]['loss']
    assert history[-1]['loss'] < 0.2


def test_the_bc_policy_acts_in_the_sandbox_within_the_deadline(trained):
    out, _ = trained
    task = yaml.safe_load((ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml').read_text())
    spec = spec_for_revision(task, out)
    obs = spec.example_observation(agent_pos=np.array([200.0, 300.0]))
    with PolicyHost(out, spec) as host:
        host.reset(0)
        actions = [host.act(obs, deadline_s=spec.deadline_s, hard_deadline_s=HARD_S)
                   for _ in range(5)]
    for a in actions:
        assert a.shape == (2,) and np.all(np.isfinite(a))
        assert np.all(a >= spec.action_low) and np.all(a <= spec.action_high)


def _killed_after_epoch_2_then_resumed(dataset: Path, out: Path, cfg: dict):
    """Train into ``out``, killed (an exception from its progress) once epoch 2 is done, then
    run again: the second run's result."""
    class KilledError(Exception):
        pass

    def kill_after_epoch_2(line: str) -> None:
        if line.startswith('epoch 2/'):
            raise KilledError
    with pytest.raises(KilledError):
        train_bc(dataset, out, config=BCConfig(**cfg), progress=kill_after_epoch_2)
    assert not out.exists()                                  # no half-written policy
    return train_bc(dataset, out, config=BCConfig(**cfg))


def test_a_killed_training_resumes_from_its_last_epoch_to_the_same_weights(bc_dataset, tmp_path):
    cfg = BCConfig(**TINY)
    whole = train_bc(bc_dataset, tmp_path / 'whole', config=cfg)
    out = tmp_path / 'resumed'
    resumed = _killed_after_epoch_2_then_resumed(bc_dataset, out, TINY)
    assert resumed.resumed_from == 2
    a = torch.load(tmp_path / 'whole' / 'weights.pt', weights_only=True)
    b = torch.load(out / 'weights.pt', weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert resumed.final_loss == pytest.approx(whole.final_loss)
    # Another configuration over the same work directory is refused, not mixed in.
    with pytest.raises(ConfigError, match='another dataset or configuration'):
        train_bc(bc_dataset, tmp_path / 'other', work=out.with_name('resumed.work'),
                 config=BCConfig(**{**TINY, 'width': 64}))


def test_corrupt_truncated_and_mismatched_checkpoints_fail_with_the_reason(trained, tmp_path):
    out, _ = trained
    params = yaml.safe_load((out / 'policy.yaml').read_text())['params']
    bad = tmp_path / 'bad'
    shutil.copytree(out, bad)
    weights = bad / 'weights.pt'
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match='unreadable weights.*corrupt or truncated'):
        bc_policy.load_model(bad, params['model'])
    weights.write_bytes(b'not a checkpoint at all')
    with pytest.raises(RuntimeError, match='unreadable weights'):
        bc_policy.load_model(bad, params['model'])
    with pytest.raises(RuntimeError, match='do not fit the network'):
        bc_policy.load_model(out, {**params['model'], 'width': 64})
    weights.unlink()
    with pytest.raises(RuntimeError, match='no weights'):
        bc_policy.load_model(bad, params['model'])
    # In the sandbox the same reasons end the policy at start, as a fault with the reason.
    from enpire_common.errors import PolicyFaultError

    shutil.copyfile(out / 'weights.pt', weights)
    weights.write_bytes(weights.read_bytes()[:1000])
    task = yaml.safe_load((ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml').read_text())
    with pytest.raises(PolicyFaultError, match='unreadable weights'), \
            PolicyHost(bad, spec_for_revision(task, bad)):
        pass


def test_bad_datasets_and_arguments_are_refused_with_the_reason(bc_dataset, trained, tmp_path):
    out, _ = trained
    with pytest.raises(DatasetError, match='a push_t dataset, not pin_insertion'):
        train_bc(bc_dataset, tmp_path / 'x', task_name='pin_insertion', config=BCConfig(**TINY))
    with pytest.raises(DatasetError, match='info.json: not found'):
        train_bc(tmp_path, tmp_path / 'x', task_name='push_t', config=BCConfig(**TINY))
    with pytest.raises(ConfigError, match='exists'):
        train_bc(bc_dataset, out, config=BCConfig(**TINY))
    with pytest.raises(ConfigError, match='not implemented'):
        train_bc(bc_dataset, tmp_path / 'x', config=BCConfig(**{**TINY, 'arch': 'transformer'}))
    broken = tmp_path / 'broken'
    shutil.copytree(bc_dataset, broken)
    info = json.loads((broken / 'meta' / 'info.json').read_text())
    info['features']['action']['shape'] = [3]
    next((broken / 'data').glob('*/*.parquet')).write_bytes(b'PAR1 torn')
    (broken / 'meta' / 'info.json').write_text(json.dumps(info))
    with pytest.raises(DatasetError, match='unreadable parquet'):
        train_bc(broken, tmp_path / 'x', config=BCConfig(**TINY))
    video = next((bc_dataset / 'videos').rglob('*.mp4'))
    cut = tmp_path / 'cut'
    shutil.copytree(bc_dataset, cut)
    target = cut / video.relative_to(bc_dataset)
    target.write_bytes(target.read_bytes()[:2000])
    with pytest.raises(DatasetError, match='cannot decode|frames from'):
        train_bc(cut, tmp_path / 'x', config=BCConfig(**TINY))
    assert not (tmp_path / 'x').exists()


def test_offline_rl_trains_an_advantage_weighted_actor_that_resumes_exactly(bc_dataset,
                                                                            tmp_path):
    """``enpire train iql``: the same policy network, trained by IQL on the verifier's
    rewards; its critic checkpoints with it, so a killed run resumes to the same weights."""
    cfg = {**TINY, 'objective': 'iql', 'epochs': 3, 'horizon': 3}    # a chunk, unlike V/Q
    whole = train_bc(bc_dataset, tmp_path / 'whole', config=BCConfig(**cfg))
    manifest = yaml.safe_load((tmp_path / 'whole' / 'policy.yaml').read_text())
    assert manifest['regime'] == 'offline_rl' and 'IQL' in manifest['hypothesis']
    assert np.isfinite(whole.final_loss)

    class KilledError(Exception):
        pass

    def kill(line: str) -> None:
        if line.startswith('epoch 2/'):
            raise KilledError
    with pytest.raises(KilledError):
        train_bc(bc_dataset, tmp_path / 'resumed', config=BCConfig(**cfg), progress=kill)
    ckpt = torch.load(tmp_path / 'resumed.work' / 'last.pt', weights_only=False)
    assert {'critic', 'target', 'critic_optim'} <= set(ckpt)
    resumed = train_bc(bc_dataset, tmp_path / 'resumed', config=BCConfig(**cfg))
    assert resumed.resumed_from == 2
    a = torch.load(tmp_path / 'whole' / 'weights.pt', weights_only=True)
    b = torch.load(tmp_path / 'resumed' / 'weights.pt', weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key])

    no_rewards = tmp_path / 'no_rewards'
    shutil.copytree(bc_dataset, no_rewards)
    info = json.loads((no_rewards / 'meta' / 'info.json').read_text())
    del info['features']['next.reward']
    (no_rewards / 'meta' / 'info.json').write_text(json.dumps(info))
    with pytest.raises(DatasetError, match='offline RL needs the rewards'):
        train_bc(no_rewards, tmp_path / 'x', config=BCConfig(**cfg))
    with pytest.raises(ConfigError, match='objective'):
        train_bc(bc_dataset, tmp_path / 'x', config=BCConfig(**{**cfg, 'objective': 'ppo'}))


def test_knn_clones_from_the_pose_the_tool_reads_in_every_frame(knn_dataset, knn_teacher,
                                                                tmp_path):
    """``--arch knn``: the pose tool runs on every full-size frame of the export; the memory
    holds each frame's object-frame features (and their mirror images: the T is symmetric)
    and its action chunk; in the sandbox, with the task's tools, the policy replays the
    teacher's action at a recorded state."""
    from enpire_agent_bridge.core.policy_tools import task_tools
    from enpire_common.tasks import load_task
    from enpire_sim.core.push_t import PushTSim

    out = tmp_path / 'knn'
    result = train_bc(knn_dataset, out, config=BCConfig(arch='knn', horizon=2,
                                                        n_action_steps=1))
    assert sorted(p.name for p in out.iterdir()) == \
        ['memory.npz', 'policy.py', 'policy.yaml', 'train.json']
    manifest = yaml.safe_load((out / 'policy.yaml').read_text())
    knn = manifest['params']['knn']
    assert manifest['regime'] == 'bc' and knn['view'] == 'top' and knn['mirror'] is True
    assert result.frames == 36 and result.episodes == 3 and result.epochs == 0
    features, offsets = bc_policy.load_memory(out, 2)
    assert features.shape == (72, 6) and offsets.shape == (72, 2, 2)
    # The features are those of the simulator's truth, read back from the MP4 frames.
    task = load_task('push_t')
    sim = PushTSim(task)
    truth = []
    for seed in range(3):
        sim.reset(seed=seed)
        for _ in range(12):
            agent, pose = sim.agent_state()[:2], sim.object_pose()
            truth.append((agent, pose, sim.render(), knn_teacher(agent, pose)))
            sim.step(truth[-1][3])
    want = np.stack([bc_policy.object_frame(a, p, task.goal_pose)[0] for a, p, _, _ in truth])
    assert np.abs(features[:36] - want).max() < 2.0
    np.testing.assert_allclose(bc_policy.mirrored(features[:36], offsets[:36])[0],
                               features[36:])
    raw = yaml.safe_load((ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml').read_text())
    spec = spec_for_revision(raw, out)
    with PolicyHost(out, spec, tools=task_tools(task)) as host:
        host.reset(0)
        for agent, _pose, frame, action in (truth[0], truth[5], truth[30]):
            obs = spec.example_observation(agent_pos=agent, image_top=frame)
            got = host.act(obs, deadline_s=spec.deadline_s, hard_deadline_s=HARD_S)
            assert np.abs(got - action).max() < 2.0, (got, action)
        assert host.tool_stats.take()['tool_calls.estimate_pose'] == 3
    sim.close()


def test_knn_refuses_what_it_cannot_clone_and_a_bad_memory(knn_dataset, tmp_path):
    from enpire_agent_bridge.learning.bc import knn_layout
    from enpire_common.tasks import load_task

    with pytest.raises(ConfigError, match='pin_insertion lacks a 2-D position action'):
        knn_layout(load_task('pin_insertion'))
    with pytest.raises(ConfigError, match='knn clones'):
        train_bc(knn_dataset, tmp_path / 'x', config=BCConfig(arch='knn', objective='iql'))
    out = tmp_path / 'knn'
    first_two = train_bc(knn_dataset, out, config=BCConfig(arch='knn', horizon=2,
                                                           n_action_steps=1, max_episodes=2))
    assert (first_two.episodes, first_two.frames) == (2, 24)
    with pytest.raises(RuntimeError, match='do not fit policy.yaml'):
        bc_policy.load_memory(out, 3)
    memory = out / bc_policy.MEMORY
    memory.write_bytes(memory.read_bytes()[:500])
    with pytest.raises(RuntimeError, match='unreadable memory.*corrupt or truncated'):
        bc_policy.load_memory(out, 2)
    memory.unlink()
    with pytest.raises(RuntimeError, match='no memory'):
        bc_policy.load_memory(out, 2)


@pytest.mark.parametrize('arch', ['diffusion', 'act'])
def test_chunk_networks_learn_resume_exactly_and_act_in_the_sandbox(bc_dataset, tmp_path,
                                                                    arch):
    """``--arch diffusion`` (denoising head, 10 DDIM steps to act) and ``--arch act`` (CVAE
    transformer): the loss falls, a run killed after epoch 2 resumes to the same weights,
    and the policy acts within the deadline, the same chunk for the same trial seed."""
    cfg = {**TINY, 'arch': arch, 'horizon': 4, 'n_action_steps': 2, 'epochs': 4}
    whole = train_bc(bc_dataset, tmp_path / 'whole', config=BCConfig(**cfg))
    history = json.loads((tmp_path / 'whole' / 'train.json').read_text())['history']
    assert history[-1]['loss'] < history[0]['loss']
    out = tmp_path / 'resumed'
    resumed = _killed_after_epoch_2_then_resumed(bc_dataset, out, cfg)
    assert resumed.resumed_from == 2 and resumed.final_loss == pytest.approx(whole.final_loss)
    a = torch.load(tmp_path / 'whole' / 'weights.pt', weights_only=True)
    b = torch.load(out / 'weights.pt', weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    manifest = yaml.safe_load((out / 'policy.yaml').read_text())
    assert manifest['params']['model']['arch'] == arch
    task = yaml.safe_load((ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml').read_text())
    spec = spec_for_revision(task, out)
    obs = spec.example_observation(agent_pos=np.array([200.0, 300.0]))
    runs = []
    with PolicyHost(out, spec) as host:
        for _ in range(2):
            host.reset(7)
            runs.append([host.act(obs, deadline_s=spec.deadline_s, hard_deadline_s=HARD_S)
                         for _ in range(3)])
    for act in runs[0]:
        assert act.shape == (2,) and np.all(np.isfinite(act))
        assert np.all(act >= spec.action_low) and np.all(act <= spec.action_high)
    np.testing.assert_allclose(runs[0], runs[1])
    with pytest.raises(ConfigError, match=f'--arch {arch} clones'):
        BCConfig(**{**cfg, 'objective': 'iql'}).check()
