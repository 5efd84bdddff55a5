"""Online residual RL: a learned correction on top of a base revision, improved from trials.

The actor is a policy directory (regime ``online_rl``): the base revision's files with its
``policy.py`` kept as ``policy_base.py``, and a wrapper that adds a bounded residual to each
base action::

    a = clip(a_base + scale * tanh(W @ phi(obs)))

``phi`` is the state (normalised by the workspace) plus, where the task offers its
``estimate_pose`` tool, the estimated object pose (x, y, cos, sin). The learner is evolution
strategies with antithetic sampling: in round k every trial runs ``W_k + sigma * s * eps``,
where ``eps`` is drawn from (noise_seed, round, seed // 2) and ``s`` is +1 for even seeds and
-1 for odd ones, so the actor needs only its seed (``reset(seed)``) to know its perturbation
and the learner only the trials' returns (score + success) from the trial stream. After the
round, ``W_{k+1} = W_k + lr * sum(R_i * s_i * eps_i) / (n * sigma)`` (returns centred), and the
new weights are published as the next revision, which the cell's bridge hot-swaps before the
next episode. Each round is an ``rl_round`` event (successes, mean return, weights norm) and
its trials belong to its revision, so ``enpire report`` draws the learning curve (success vs
episodes).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from enpire_common.errors import ConfigError

RL_ROUND = 'rl_round'
RESIDUAL_FILE = 'residual.json'

WRAPPER = '''"""Residual RL actor over {name} (written by enpire's residual RL learner).

a = clip(a_base + scale * tanh(W @ phi(obs))); the weights and this round's exploration are
in residual.json; policy_base.py is the base policy, unchanged.
"""

import json
import os

import numpy as np

import policy_base as base

HERE = os.path.dirname(os.path.abspath(__file__))


def perturbation(noise_seed, round_index, seed, shape):
    """The antithetic exploration direction of a trial seed (the learner draws the same)."""
    rng = np.random.default_rng([int(noise_seed), int(round_index), int(seed) // 2])
    sign = 1.0 if int(seed) % 2 == 0 else -1.0
    return sign, rng.standard_normal(shape)


class Residual:
    def __init__(self, spec):
        with open(os.path.join(HERE, 'residual.json'), encoding='utf-8') as f:
            self.r = json.load(f)
        self.base = base.make_policy(spec)
        self.spec = spec
        self.W = np.asarray(self.r['W'], dtype=np.float64)
        self.Wk = self.W
        self.low, self.high = spec.low, spec.high
        self.span = np.maximum(self.high - self.low, 1e-9)
        self.mid = (self.high + self.low) / 2.0

    def reset(self, seed):
        self.base.reset(seed)
        self.Wk = self.W
        if self.r.get('explore') and seed is not None:
            sign, eps = perturbation(self.r['noise_seed'], self.r['round'], seed,
                                     self.W.shape)
            self.Wk = self.W + float(self.r['sigma']) * sign * eps

    def features(self, obs):
        parts = []
        for name in self.r['state']:
            v = np.atleast_1d(np.asarray(obs[name], dtype=np.float64)).reshape(-1)
            parts.append(v / float(self.r['state_scale']))
        tools = getattr(self.spec, 'tools', None)
        pose = np.zeros(4)
        if self.r.get('pose_view') and tools is not None and getattr(tools, 'active', False):
            try:
                est = tools.estimate_pose(view=self.r['pose_view'],
                                          image=obs[self.r['pose_image']])
                if est.get('found') and len(est.get('pose', ())) >= 3:
                    x, y, th = (float(v) for v in est['pose'][:3])
                    pose = np.array([(x - self.mid[0]) / self.span[0],
                                     (y - self.mid[1]) / self.span[1],
                                     np.cos(th), np.sin(th)])
            except Exception:  # noqa: BLE001 - a ToolError: no pose features this tick
                pass
        parts.append(pose)
        parts.append(np.ones(1))
        return np.concatenate(parts)

    def act(self, obs):
        a = np.asarray(self.base.act(obs), dtype=np.float64)
        r = float(self.r['scale']) * np.tanh(self.Wk @ self.features(obs)) * self.span
        return np.clip(a + r.reshape(a.shape), self.low, self.high)


def make_policy(spec):
    return Residual(spec)
'''


@dataclass
class ResidualConfig:
    rounds: int = 10
    episodes: int = 8                  # trials per round (even: antithetic pairs)
    sigma: float = 0.3                 # exploration std of the weights
    lr: float = 0.1
    scale: float = 0.05                # residual bound, as a fraction of the action range
    noise_seed: int = 0
    success_bonus: float = 1.0         # return = score + bonus * success

    def check(self) -> None:
        if self.rounds < 1 or self.episodes < 2 or self.episodes % 2:
            raise ConfigError('--rounds must be >= 1 and --episodes an even number >= 2 '
                              '(antithetic pairs)')
        if not (self.sigma > 0 and self.lr > 0 and 0 < self.scale <= 1):
            raise ConfigError('--sigma and --lr must be > 0, --scale in (0, 1]')


def perturbation(noise_seed: int, round_index: int, seed: int, shape: tuple[int, ...]
                 ) -> tuple[float, np.ndarray]:
    """What the actor draws (WRAPPER's function of the same name): (sign, eps)."""
    rng = np.random.default_rng([int(noise_seed), int(round_index), int(seed) // 2])
    sign = 1.0 if int(seed) % 2 == 0 else -1.0
    return sign, rng.standard_normal(shape)


def feature_layout(task: Any) -> dict[str, Any]:
    """The actor's feature inputs for ``task``: its state observations and, where the task
    offers ``estimate_pose``, the pose of the object in its first success view."""
    from enpire_tasks.observation import CAMERA_PREFIX, source_view

    state = [n for n, f in task.observation.items()
             if f.source == 'state' and tuple(f.shape) != ()]
    dim = sum(int(np.prod(task.observation[n].shape)) for n in state)
    pose_view, pose_image = '', ''
    if 'estimate_pose' in (task.raw.get('tools') or []):
        views = task.section('success').get('views') or list(task.views)
        for name, f in task.observation.items():
            if f.source.startswith(CAMERA_PREFIX) and source_view(f.source) == views[0]:
                pose_view, pose_image = views[0], name
                break
    span = max(float(np.max(np.asarray(task.workspace_high) - np.asarray(task.workspace_low))),
               1.0)
    return {'state': state, 'state_scale': span, 'pose_view': pose_view,
            'pose_image': pose_image, 'n_features': dim + 4 + 1}


def residual_spec(layout: Mapping[str, Any], weights: np.ndarray, cfg: ResidualConfig,
                  round_index: int, explore: bool) -> dict[str, Any]:
    """The actor's ``residual.json``: its feature layout, weights and exploration."""
    return {**{key: layout[key] for key in ('state', 'state_scale', 'pose_view', 'pose_image')},
            'W': np.asarray(weights).tolist(), 'sigma': cfg.sigma, 'scale': cfg.scale,
            'noise_seed': cfg.noise_seed, 'round': int(round_index), 'explore': bool(explore)}


def write_actor(base_dir: Path, out: Path, residual: Mapping[str, Any], *, parent: str,
                hypothesis: str) -> None:
    """Write the actor policy directory (atomically: a temporary name renamed into place)."""
    manifest = yaml.safe_load((base_dir / 'policy.yaml').read_text(encoding='utf-8'))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
        for child in base_dir.iterdir():
            if child.name in ('__pycache__', '.git'):
                continue
            if child.name == 'policy_base.py':
                raise ConfigError(f'{base_dir}: already a wrapped policy (policy_base.py); '
                                  'give the residual its own base revision')
            target = tmp / ('policy_base.py' if child.name == 'policy.py' else child.name)
            (shutil.copytree if child.is_dir() else shutil.copyfile)(child, target)
        (tmp / 'policy.py').write_text(WRAPPER.format(name=manifest.get('name', 'policy')))
        (tmp / RESIDUAL_FILE).write_text(json.dumps(residual, indent=1) + '\n')
        manifest.update(regime='online_rl', parent=parent, hypothesis=hypothesis,
                        version=int(manifest.get('version') or 0) + 1)
        (tmp / 'policy.yaml').write_text(yaml.safe_dump(manifest, sort_keys=False))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass
class RoundResult:
    round: int
    revision: str
    successes: int
    n: int
    mean_return: float
    weights_norm: float


class ResidualRL:
    """Runs the rounds (see the module docstring) through a trials port into the store.

    Args:
        task: the task contract; base_dir: the base revision's policy directory.
        store, revisions, trials: the experiment store, the revision store, the trials port.
        experiment: the experiment the rounds are recorded in.
        seed_start: the first tuning seed; round k uses seeds seed_start + k * episodes ...
    """

    def __init__(self, task: Any, base_dir: Path, config: ResidualConfig, *, store: Any,
                 revisions: Any, trials: Any, experiment: str, home: Path,
                 seed_start: int | None = None, log: Callable[[str], None] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        config.check()
        self.task, self.base_dir, self.cfg = task, Path(base_dir), config
        self.store, self.revisions, self.trials = store, revisions, trials
        self.exp, self.home, self.wall = experiment, Path(home), wall
        self.log = log or (lambda _line: None)
        self.layout = feature_layout(task)
        self.action_dim = int(np.prod(task.action.shape))
        #: The weights after the last finished round's update (zeros before the first).
        self.weights = np.zeros((self.action_dim, self.layout['n_features']))
        lo = task.tuning_seeds[0] if seed_start is None else int(seed_start)
        self.seed_start = lo
        need = config.rounds * config.episodes
        if lo + need - 1 > task.tuning_seeds[1]:
            raise ConfigError(f'{need} tuning seeds from {lo} pass the tuning range '
                              f'{task.tuning_seeds}')

    def run(self) -> list[RoundResult]:
        from enpire_evolution.core.store import Revision

        cfg = self.cfg
        self.store.create_experiment(self.exp, self.task.name, self.wall(), {
            'agent': 'residual_rl', 'config': asdict(cfg), 'base': str(self.base_dir)})
        self.store.set_experiment_status(self.exp, 'running')
        self.store.add_agent(self.exp, 'residual_rl', 'residual_rl')
        self.store.add_branch(self.exp, 'rl', agent='residual_rl', created_at=self.wall())
        weights = self.weights
        parent = ''
        results = []
        for k in range(cfg.rounds):
            residual = residual_spec(self.layout, weights, cfg, k, explore=True)
            out = self.home / 'rl' / self.exp / f'round-{k:03d}'
            write_actor(self.base_dir, out, residual, parent=parent, hypothesis=(
                f'Round {k} of residual RL (ES, sigma {cfg.sigma}, lr {cfg.lr}) over '
                f'{self.base_dir.name}: a bounded correction of its actions raises success.'))
            rev, _ = self.revisions.submit(out, parent=parent, now_s=self.wall())
            self.store.add_revision(Revision(
                self.exp, rev.id, 'rl', parent or None, '', f'residual RL round {k}',
                'online_rl', self.wall(), {'round': k}, status='running'))
            seeds = list(range(self.seed_start + k * cfg.episodes,
                               self.seed_start + (k + 1) * cfg.episodes))
            outcomes = self.trials.run(experiment_id=self.exp, revision_id=rev.id,
                                       revision_dir=Path(rev.path), seeds=seeds)
            by_seed = {int(o.seed): o for o in outcomes}
            returns, directions = [], []
            for seed in seeds:
                o = by_seed.get(seed)
                if o is None:
                    continue
                ret = float(o.score or 0.0) + cfg.success_bonus * float(bool(o.success))
                sign, eps = perturbation(cfg.noise_seed, k, seed, weights.shape)
                returns.append(ret)
                directions.append(sign * eps)
            if len(returns) >= 2:
                r = np.asarray(returns)
                r = (r - r.mean()) / (r.std() + 1e-8)
                grad = np.tensordot(r, np.asarray(directions), axes=1) / (len(r) * cfg.sigma)
                weights = weights + cfg.lr * grad
            wins = sum(bool(by_seed[s].success) for s in seeds if s in by_seed)
            res = RoundResult(k, rev.id, wins, len(returns),
                              float(np.mean(returns)) if returns else 0.0,
                              float(np.linalg.norm(weights)))
            self.store.add_event(self.exp, RL_ROUND, self.wall(), asdict(res))
            self.store.set_revision_status(self.exp, rev.id, 'kept')
            self.log(f'round {k}: {wins}/{len(returns)} successes, mean return '
                     f'{res.mean_return:.3f}, |weights| {res.weights_norm:.3f} ({rev.id[:12]})')
            results.append(res)
            self.weights = weights
            parent = rev.id
        self.store.set_experiment_status(self.exp, 'done')
        return results
