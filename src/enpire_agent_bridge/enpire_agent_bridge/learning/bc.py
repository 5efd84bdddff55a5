"""``enpire train bc``: behaviour cloning from a LeRobot dataset into a policy directory.

The result is an ordinary policy (``policy.py`` = :mod:`.bc_policy`, ``policy.yaml`` with
regime ``bc``, ``weights.pt``, ``train.json``) that is submitted as a revision like any other
and acts in the sandbox. Training state goes to a work directory (``<out>.work`` by default):
``last.pt`` after every epoch, written atomically, so a job killed mid-epoch resumes from its
last finished epoch with the same result. The policy directory is assembled under a temporary
name and renamed into place at the end: no half-written policy is ever left at ``out``.

The mapping from a dataset frame to the policy's observation goes through the task plugin's
own ``build_observation`` (the same code the cell's observations come from), so the state the
network trains on is the state it will see.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from enpire_agent_bridge.learning import bc_policy
from enpire_agent_bridge.learning.dataset import (
    DatasetError,
    TrainingData,
    load_training_data,
)
from enpire_common.errors import ConfigError
from enpire_common.files import fsync_path

CHECKPOINT = 'last.pt'
TRAIN_JSON = 'train.json'
#: bc: behaviour cloning; iql: offline RL (implicit Q-learning + advantage-weighted actor).
OBJECTIVES = ('bc', 'iql')
#: The manifest regime of each objective's policy.
REGIME_OF = {'bc': 'bc', 'iql': 'offline_rl'}


@dataclass
class BCConfig:
    arch: str = 'mlp'
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-6
    image_size: int = 96
    horizon: int = 8              # actions predicted per observation
    n_action_steps: int = 4       # of which the policy executes this many before predicting
    width: int = 256
    channels: int = 16
    shift_px: int = 4             # random-shift augmentation of the images (DrQ)
    seed: int = 0
    device: str = 'cpu'
    only_success: bool = False
    max_episodes: int = 0         # the first this many episodes (after only_success); 0: all
    # Offline RL (objective 'iql'): implicit Q-learning on the dataset's verifier rewards,
    # the actor trained by advantage-weighted regression of the same network as BC.
    objective: str = 'bc'
    gamma: float = 0.99
    expectile: float = 0.7
    beta: float = 3.0
    polyak: float = 0.005

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective {self.objective!r}: use one of "
                              f"{', '.join(OBJECTIVES)}")
        if not (0.0 <= self.gamma < 1.0 and 0.5 <= self.expectile < 1.0 and self.beta > 0
                and 0.0 < self.polyak <= 1.0):
            raise ConfigError('--gamma in [0, 1), --expectile in [0.5, 1), --beta > 0 and '
                              'polyak in (0, 1]')
        if self.arch not in bc_policy.ARCHS:
            raise ConfigError(f'--arch {self.arch}: not implemented (have: '
                              f"{', '.join(bc_policy.ARCHS)})")
        if self.arch in ('knn', 'diffusion', 'act') and self.objective != 'bc':
            raise ConfigError(f'--arch {self.arch} clones (bc); offline RL\'s actor is the '
                              'regression network (mlp)')
        for name in ('epochs', 'batch_size', 'image_size', 'horizon', 'n_action_steps',
                     'width', 'channels'):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f'--{name.replace("_", "-")} must be >= 1')
        if int(self.max_episodes) < 0:
            raise ConfigError('--max-episodes must be >= 0 (0: all)')
        if self.n_action_steps > self.horizon:
            raise ConfigError('--n-action-steps must be <= --horizon')


def observation_layout(task: Any) -> dict[str, Any]:
    """Which observation entries the network reads: every camera (by view) and every
    non-scalar numeric state entry, in contract order."""
    from enpire_tasks.observation import CAMERA_PREFIX, source_view

    images, views, state = [], [], []
    for name, f in task.observation.items():
        if f.source.startswith(CAMERA_PREFIX):
            images.append(name)
            views.append(source_view(f.source))
        elif f.source == 'state' and tuple(f.shape) != ():
            state.append(name)
    return {'images': images, 'views': views, 'state': state}


def policy_observations(task: Any, data: TrainingData) -> list[dict[str, Any]]:
    """The policy's observation of every frame (its images blank), built by the task plugin
    from the dataset's state (by name) exactly as a live cell's observation is."""
    from enpire_tasks import registry
    from enpire_tasks.plugin import CellReading

    layout = observation_layout(task)
    plugin = registry.get(task)
    if len(data.state_names) != data.state.shape[1]:
        raise DatasetError(f"{data.root}: observation.state has {data.state.shape[1]} values "
                           f'but {len(data.state_names)} names; the state names map it to the '
                           "task's observation")
    blank = {task.observation[n].source: np.zeros((2, 2, 3), np.uint8)
             for n in layout['images']}
    out = []
    for i in range(data.n):
        reading = CellReading(images=blank, state=dict(zip(data.state_names,
                                                           map(float, data.state[i]),
                                                           strict=True)),
                              tick=int(data.frame[i]))
        try:
            out.append(plugin.build_observation(task, reading))
        except Exception as exc:  # noqa: BLE001 - the plugin says what is missing
            raise DatasetError(f"{data.root}: its state does not give task {task.name}'s "
                               f'observation: {exc}') from None
    return out


def policy_states(task: Any, data: TrainingData) -> np.ndarray:
    """The policy's state vector of every frame (see :func:`policy_observations`)."""
    layout = observation_layout(task)
    if not layout['state']:
        return np.zeros((data.n, 0), dtype=np.float32)
    rows = [np.concatenate([np.atleast_1d(np.asarray(obs[n], np.float64)).reshape(-1)
                            for n in layout['state']])
            for obs in policy_observations(task, data)]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chunk_index(episode: np.ndarray, horizon: int) -> np.ndarray:
    """(N, horizon) frame indices of each frame's next ``horizon`` actions, the episode's
    last action repeated past its end."""
    n = episode.shape[0]
    idx = np.arange(n)[:, None] + np.arange(horizon)[None, :]
    idx = np.minimum(idx, n - 1)
    # Clamp to the last frame of the same episode.
    last = np.empty(n, dtype=np.int64)
    end = n - 1
    for i in range(n - 1, -1, -1):
        if i < n - 1 and episode[i] != episode[i + 1]:
            end = i
        last[i] = end
    return np.minimum(idx, last[:, None])


@dataclass
class BCResult:
    out: Path
    epochs: int
    final_loss: float
    val_loss: float | None
    frames: int
    episodes: int
    resumed_from: int
    train_s: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d['out'] = str(self.out)
        return {'ok': True, **d}


def train_bc(dataset: str | Path, out: str | Path, *, task_name: str = '',
             config: BCConfig | None = None, work: str | Path | None = None,
             progress: Callable[[str], None] | None = None, force: bool = False) -> BCResult:
    """Train a BC policy on ``dataset`` and write its policy directory at ``out``.

    Raises:
        ConfigError / DatasetError: bad arguments, a dataset of another task or of other
            shapes, an out directory that exists (without ``force``), or a checkpoint in
            ``work`` from another configuration.
    """
    import torch

    from enpire_common.tasks import load_task

    cfg = config or BCConfig()
    cfg.check()
    say = progress or (lambda _line: None)
    dataset, out = Path(dataset), Path(out)
    work = Path(work) if work else out.with_name(out.name + '.work')
    if out.exists() and not force:
        raise ConfigError(f'{out}: exists; pass another --out (or --force to replace it)')
    if cfg.device.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'--device {cfg.device}: torch sees no CUDA device here')
    from enpire_agent_bridge.learning.dataset import dataset_task, read_info

    info = read_info(dataset)
    recorded = dataset_task(dataset)
    task_name = task_name or recorded
    if not task_name:
        raise ConfigError(f'{dataset}: not an ENPIRE export; pass --task')
    if recorded and recorded != task_name:
        raise DatasetError(f'{dataset}: a {recorded} dataset, not {task_name}')
    task = load_task(task_name)
    layout = observation_layout(task)
    if int(info['fps']) != round(task.action.rate_hz):
        raise DatasetError(f"{dataset}: recorded at {info['fps']} fps; {task_name} acts at "
                           f'{task.action.rate_hz:g} Hz')
    if cfg.arch == 'knn':
        return _train_knn(dataset, out, task, cfg, say, force)
    t0 = time.monotonic()
    say(f'loading {dataset} (views {layout["views"]}, {cfg.image_size} px)')
    data = load_training_data(
        dataset, image_size=cfg.image_size, views=layout['views'], progress=say,
        episode_filter=(lambda e: bool(e.get('success'))) if cfg.only_success else None,
        max_episodes=cfg.max_episodes)
    if data.action.shape[1] != int(np.prod(task.action.shape)):
        raise DatasetError(f'{dataset}: actions of {data.action.shape[1]} values; '
                           f'{task_name} takes {int(np.prod(task.action.shape))}')
    if cfg.objective == 'iql' and (data.reward is None or data.done is None):
        raise DatasetError(f'{dataset}: no next.reward / next.done features; offline RL needs '
                           'the rewards (enpire dataset export writes the verifier\'s)')
    states = policy_states(task, data)
    images = np.stack([data.images[v] for v in layout['views']], axis=1)  # N, V, S, S, 3
    chunks = _chunk_index(data.episode, cfg.horizon)
    following = _chunk_index(data.episode, 2)[:, 1]      # the next frame (itself at the end)
    say(f'{data.n} frames of {len(data.episodes)} episodes loaded in '
        f'{time.monotonic() - t0:.1f} s')

    # Hold out ~10% of the episodes (>= 1 where there are 5 or more) for a validation loss.
    ep_ids = np.unique(data.episode)
    rng = np.random.default_rng(cfg.seed)
    n_val = len(ep_ids) // 10 if len(ep_ids) >= 5 else 0
    val_eps = set(rng.choice(ep_ids, n_val, replace=False).tolist()) if n_val else set()
    is_val = np.isin(data.episode, list(val_eps))
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)

    model_cfg = {'arch': cfg.arch, 'views': len(layout['views']), 'image_size': cfg.image_size,
                 'state_dim': int(states.shape[1]), 'action_dim': int(data.action.shape[1]),
                 'horizon': cfg.horizon, 'width': cfg.width, 'channels': cfg.channels}
    if cfg.arch == 'diffusion':
        model_cfg.update(diffusion_steps=bc_policy.DIFFUSION_STEPS,
                         sample_steps=bc_policy.SAMPLE_STEPS)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model = bc_policy.build_model(model_cfg)
    with torch.no_grad():
        lo, hi = states.min(0), states.max(0)
        model.state_low.copy_(torch.from_numpy(lo))
        model.state_high.copy_(torch.from_numpy(np.maximum(hi, lo + 1e-3)))
        alo, ahi = data.action.min(0), data.action.max(0)
        model.action_low.copy_(torch.from_numpy(alo))
        model.action_high.copy_(torch.from_numpy(np.maximum(ahi, alo + 1e-3)))
    model.to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    critic = target = critic_optim = None
    if cfg.objective == 'iql':
        critic = _build_critic(model_cfg).to(device)
        with torch.no_grad():                                # the same normalisation
            for name in ('state_low', 'state_high', 'action_low', 'action_high'):
                getattr(critic.body, name).copy_(getattr(model, name))
        target = _build_critic(model_cfg).to(device)
        target.load_state_dict(critic.state_dict())
        critic_optim = torch.optim.AdamW(critic.parameters(), lr=cfg.lr,
                                         weight_decay=cfg.weight_decay)
    fingerprint = {'config': asdict(cfg), 'model': model_cfg, 'frames': data.n,
                   'dataset': str(dataset.resolve()),
                   'episodes': [e.get('trial_id', e['episode_index']) for e in data.episodes]}
    fingerprint['config'].pop('device')
    work.mkdir(parents=True, exist_ok=True)
    ckpt_path = work / CHECKPOINT
    start_epoch, history = 0, []
    if ckpt_path.is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file
            raise ConfigError(f'{ckpt_path}: unreadable checkpoint ({type(exc).__name__}); '
                              'remove it to start over') from None
        if ckpt.get('fingerprint') != fingerprint:
            raise ConfigError(f'{ckpt_path}: a checkpoint of another dataset or configuration; '
                              'pass another --work or remove it to start over')
        model.load_state_dict(ckpt['model'])
        optim.load_state_dict(ckpt['optim'])
        if critic is not None:
            critic.load_state_dict(ckpt['critic'])
            target.load_state_dict(ckpt['target'])
            critic_optim.load_state_dict(ckpt['critic_optim'])
        start_epoch, history = int(ckpt['epoch']), list(ckpt['history'])
        torch.set_rng_state(ckpt['torch_rng'])
        say(f'resuming from epoch {start_epoch} ({ckpt_path})')

    img_t = torch.from_numpy(images)
    state_t = torch.from_numpy(states)
    action_t = torch.from_numpy(data.action)
    chunk_t = torch.from_numpy(chunks)

    reward_t = torch.from_numpy(data.reward) if data.reward is not None else None
    done_t = torch.from_numpy(data.done.astype(np.float32)) if data.done is not None else None
    next_t = torch.from_numpy(following)

    def batch_loss(idx: np.ndarray, augment: bool) -> Any:
        ix = torch.from_numpy(idx)
        imgs = img_t[ix].to(device)
        if augment and cfg.shift_px > 0:
            imgs = _random_shift(imgs, cfg.shift_px)
        want = model.normalize_action(action_t[chunk_t[ix]].to(device))
        if cfg.arch == 'diffusion':
            return model.diffusion_loss(imgs, state_t[ix].to(device), want)
        if cfg.arch == 'act':
            return model.act_loss(imgs, state_t[ix].to(device), want)
        pred = model.normalized(imgs, state_t[ix].to(device))
        if critic is None:
            return torch.nn.functional.l1_loss(pred, want)
        # IQL: V by expectile regression on the target Q; Q by TD on V of the next frame;
        # the actor by L1 regression weighted with exp(beta * advantage).
        st = state_t[ix].to(device)
        a0 = want[:, 0]
        nx = next_t[ix]
        feat = critic.body.features(imgs, st)
        with torch.no_grad():
            tfeat = target.body.features(imgs, st)
            tq = torch.minimum(target.q1(torch.cat([tfeat, a0], 1)),
                               target.q2(torch.cat([tfeat, a0], 1))).squeeze(1)
            v_next = critic.v(critic.body.features(img_t[nx].to(device),
                                                   state_t[nx].to(device))).squeeze(1)
            q_want = reward_t[ix].to(device) + cfg.gamma * (1.0 - done_t[ix].to(device)) * v_next
        v = critic.v(feat).squeeze(1)
        u = tq - v
        v_loss = (torch.abs(cfg.expectile - (u < 0).float()) * u ** 2).mean()
        fa = torch.cat([feat, a0], 1)
        q_loss = ((critic.q1(fa).squeeze(1) - q_want) ** 2
                  + (critic.q2(fa).squeeze(1) - q_want) ** 2).mean()
        if augment:                  # training: the critic steps here, the actor outside
            critic_optim.zero_grad(set_to_none=True)
            (v_loss + q_loss).backward()
            critic_optim.step()
            with torch.no_grad():
                for p_t, p in zip(target.parameters(), critic.parameters(), strict=True):
                    p_t.mul_(1.0 - cfg.polyak).add_(p, alpha=cfg.polyak)
        weight = torch.exp(cfg.beta * (tq - v.detach())).clamp(max=100.0)
        per = torch.nn.functional.l1_loss(pred, want, reduction='none').mean(dim=(1, 2))
        return (weight * per).mean()

    train_t0 = time.monotonic()
    loss_v = float('nan')
    val_v: float | None = None
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = np.random.default_rng(cfg.seed * 100_003 + epoch).permutation(train_idx)
        losses = []
        for b in range(0, len(perm), cfg.batch_size):
            loss = batch_loss(perm[b:b + cfg.batch_size], augment=True)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            losses.append(float(loss.detach()))
        loss_v = float(np.mean(losses))
        val_v = None
        if len(val_idx):
            model.eval()
            with torch.no_grad():
                val_v = float(np.mean([float(batch_loss(val_idx[b:b + 256], augment=False))
                                       for b in range(0, len(val_idx), 256)]))
        history.append({'epoch': epoch + 1, 'loss': loss_v, 'val_loss': val_v,
                        't_s': round(time.monotonic() - train_t0, 2)})
        state = {'fingerprint': fingerprint, 'epoch': epoch + 1,
                 'model': model.state_dict(), 'optim': optim.state_dict(),
                 'history': history, 'torch_rng': torch.get_rng_state()}
        if critic is not None:
            state.update(critic=critic.state_dict(), target=target.state_dict(),
                         critic_optim=critic_optim.state_dict())
        _atomic_torch_save(state, ckpt_path)
        say(f'epoch {epoch + 1}/{cfg.epochs}: loss {loss_v:.4f}'
            + (f' val {val_v:.4f}' if val_v is not None else '')
            + f' ({time.monotonic() - train_t0:.0f} s)')
    if history:
        loss_v, val_v = history[-1]['loss'], history[-1]['val_loss']
    train_s = time.monotonic() - train_t0
    def write(directory: Path) -> None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, directory / bc_policy.WEIGHTS)

    params = {'layout': {'images': layout['images'], 'state': layout['state'],
                         'image_size': cfg.image_size},
              'model': model_cfg, 'n_action_steps': cfg.n_action_steps}
    _write_policy_dir(out, write, params, f"{layout['views']} and {layout['state']}", cfg,
                      task_name, data, history, force)
    return BCResult(out=out, epochs=cfg.epochs, final_loss=loss_v, val_loss=val_v,
                    frames=data.n, episodes=len(data.episodes), resumed_from=start_epoch,
                    train_s=round(train_s, 1))


#: The knn policy's agent position: the observation entry it reads (the action's frame).
KNN_POSITION = 'agent_pos'


def knn_layout(task: Any) -> dict[str, Any]:
    """What the knn policy reads of ``task``: the pose tool's view and its camera observation,
    the agent's position, the planar goal, and whether mirrored frames are valid (the object's
    outline symmetric about its own y axis).

    Raises:
        ConfigError: the task is not a planar one that knn can clone (and what it lacks).
    """
    from enpire_tasks.observation import CAMERA_PREFIX, source_view

    raw = task.raw
    lacks = []
    goal = raw.get('goal_pose')
    if not isinstance(goal, (list, tuple)) or len(goal) < 3:
        lacks.append('a planar goal_pose (x, y, theta)')
    if 'estimate_pose' not in (raw.get('tools') or []):
        lacks.append('the estimate_pose tool')
    if tuple(task.action.shape) != (2,):
        lacks.append('a 2-D position action')
    pos = task.observation.get(KNN_POSITION)
    if pos is None or tuple(pos.shape) != (2,):
        lacks.append(f'a 2-D {KNN_POSITION} observation')
    views = (raw.get('success') or {}).get('views') or list(task.views)
    cams = {source_view(f.source): name for name, f in task.observation.items()
            if f.source.startswith(CAMERA_PREFIX)}
    view = next((str(v) for v in views if str(v) in cams), '')
    if not view:
        lacks.append('a camera observation of a success view')
    if lacks:
        raise ConfigError(f"--arch knn: task {task.name} lacks {'; '.join(lacks)} (knn clones "
                          'planar pushing from the pose tool; use --arch mlp)')
    outlines = [p['outline_px'] for p in (raw.get('parts') or {}).values()
                if isinstance(p, dict) and 'outline_px' in p]
    mirror = False
    if len(outlines) == 1:
        pts = {(round(float(x), 3), round(float(y), 3)) for x, y in outlines[0]}
        mirror = {(-x + 0.0, y) for x, y in pts} == pts
    return {'view': view, 'image': cams[view], 'position': KNN_POSITION,
            'goal_pose': [float(v) for v in goal[:3]], 'mirror': mirror,
            'angle_scale': bc_policy.ANGLE_SCALE_PX}


def _train_knn(dataset: Path, out: Path, task: Any, cfg: BCConfig,
               say: Callable[[str], None], force: bool) -> BCResult:
    """Nearest-neighbour cloning: every frame's object-frame features (the pose tool run on
    its full-size camera frame) and its next ``horizon`` actions, as offsets from the agent in
    the object's frame, plus their mirror images where the object is symmetric."""
    from enpire_agent_bridge.core.policy_tools import TaskTools

    knn = knn_layout(task)
    t0 = time.monotonic()
    tools = TaskTools(task)
    view = knn['view']

    def pose_of(_view: str, frame: np.ndarray) -> np.ndarray:
        meta, arrays = tools('estimate_pose', {'view': view}, {'image': frame})
        pose = arrays.get('pose')
        if not meta.get('found') or pose is None or len(pose) < 3:
            return np.full(3, np.nan)
        return np.asarray(pose[:3], dtype=np.float64)

    say(f'loading {dataset} and estimating the object pose in every {view} frame')
    data = load_training_data(
        dataset, image_size=1, views=[view], progress=say, per_frame=pose_of,
        episode_filter=(lambda e: bool(e.get('success'))) if cfg.only_success else None,
        max_episodes=cfg.max_episodes)
    if data.action.shape[1] != 2:
        raise DatasetError(f'{dataset}: actions of {data.action.shape[1]} values; '
                           f'{task.name} takes 2')
    poses = data.images.pop(view)
    observations = policy_observations(task, data)
    chunks = _chunk_index(data.episode, cfg.horizon)
    seen = np.all(np.isfinite(poses), axis=1)
    features, offsets = [], []
    for i in np.flatnonzero(seen):
        position = np.asarray(observations[i][knn['position']], dtype=np.float64)[:2]
        f, rot = bc_policy.object_frame(position, poses[i], knn['goal_pose'],
                                        knn['angle_scale'])
        features.append(f)
        offsets.append((data.action[chunks[i]].astype(np.float64) - position) @ rot)
    if not features:
        raise DatasetError(f'{dataset}: the pose tool found the object in none of its '
                           f'{data.n} {view} frames')
    feats, offs = np.stack(features), np.stack(offsets)
    if knn['mirror']:
        mf, mo = bc_policy.mirrored(feats, offs)
        feats, offs = np.concatenate([feats, mf]), np.concatenate([offs, mo])
    say(f'{data.n} frames of {len(data.episodes)} episodes, the object seen in '
        f'{int(seen.sum())}; {len(feats)} memory entries'
        f"{' (with mirror images)' if knn['mirror'] else ''} in {time.monotonic() - t0:.1f} s")
    model_cfg = {'arch': 'knn', 'horizon': cfg.horizon, 'action_dim': 2,
                 'entries': int(len(feats))}

    def write(directory: Path) -> None:
        with open(directory / bc_policy.MEMORY, 'wb') as fh:
            np.savez(fh, features=feats.astype(np.float32), offsets=offs.astype(np.float32))

    params = {'knn': knn, 'model': model_cfg, 'n_action_steps': cfg.n_action_steps}
    history = [{'frames': data.n, 'seen': int(seen.sum()), 'entries': int(len(feats))}]
    _write_policy_dir(out, write, params, f"{view} pose + {knn['position']}", cfg, task.name,
                      data, history, force)
    return BCResult(out=out, epochs=0, final_loss=0.0, val_loss=None, frames=data.n,
                    episodes=len(data.episodes), resumed_from=0,
                    train_s=round(time.monotonic() - t0, 1))


def _build_critic(model_cfg: dict[str, Any]) -> Any:
    """IQL's critic: its own encoders (a BCNet body) with two Q heads over (features, first
    action) and a V head over the features."""
    from torch import nn

    body = bc_policy.build_model({**model_cfg, 'horizon': 1})
    width, act = int(model_cfg['width']), int(model_cfg['action_dim'])

    def mlp(n_in: int) -> Any:
        return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width),
                             nn.ReLU(), nn.Linear(width, 1))

    class Critic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body
            self.q1, self.q2 = mlp(body.feature_dim + act), mlp(body.feature_dim + act)
            self.v = mlp(body.feature_dim)

    return Critic()


def _random_shift(imgs: Any, pad: int) -> Any:
    """Each image of (B, V, S, S, 3) uint8 shifted by up to ``pad`` px (edge padding)."""
    import torch

    b, v, s, _s, c = imgs.shape
    x = imgs.permute(0, 1, 4, 2, 3).reshape(b, v * c, s, s).float()
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode='replicate')
    dx = torch.randint(0, 2 * pad + 1, (b,))
    dy = torch.randint(0, 2 * pad + 1, (b,))
    out = torch.stack([x[i, :, dy[i]:dy[i] + s, dx[i]:dx[i] + s] for i in range(b)])
    return out.reshape(b, v, c, s, s).permute(0, 1, 3, 4, 2)


def _write_policy_dir(out: Path, write: Callable[[Path], None], params: dict[str, Any],
                      inputs: str, cfg: BCConfig, task_name: str, data: TrainingData,
                      history: list[dict[str, Any]], force: bool) -> None:
    """Assemble the policy directory under a temporary name (``write`` adds its weights) and
    rename it into place: ``out`` is either the old directory or the whole new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
        shutil.copyfile(bc_policy.__file__, tmp / 'policy.py')
        write(tmp)
        outcomes = [e.get('outcome') for e in data.episodes]
        how = ('Cloning' if cfg.objective == 'bc' else
               'Offline RL (IQL, advantage-weighted) on the verifier rewards of')
        manifest = {
            'name': out.name, 'task': task_name, 'version': 1,
            'regime': REGIME_OF[cfg.objective],
            'hypothesis': (f'{how} {len(data.episodes)} episodes of {data.root.name} '
                           f'({outcomes.count("success")} successes) with a {cfg.arch} '
                           f'policy over {inputs} reproduces what worked in them.'),
            'parent': '',
            'params': params}
        (tmp / 'policy.yaml').write_text(yaml.safe_dump(manifest, sort_keys=False))
        revisions = sorted({str(e.get('revision_id', '')) for e in data.episodes} - {''})
        (tmp / TRAIN_JSON).write_text(json.dumps({
            'dataset': str(data.root), 'episodes': len(data.episodes), 'frames': data.n,
            'teacher_revisions': revisions, 'config': asdict(cfg), 'history': history},
            indent=1) + '\n')
        for path in tmp.iterdir():
            fsync_path(path)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
