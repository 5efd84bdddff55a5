"""Online residual RL: evolution strategies over a residual on the base revision, its rounds
published as revisions, judged from the trial stream alone, and drawn as a learning curve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from enpire_agent_bridge.core.revisions import RevisionStore
from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError
from enpire_common.tasks import load_task
from enpire_evolution.core.fakes import FAKE_START_S, make_trial
from enpire_evolution.core.residual_rl import (
    RL_ROUND,
    ResidualConfig,
    ResidualRL,
    feature_layout,
    perturbation,
    write_actor,
)
from enpire_evolution.core.store import ExperimentStore
from enpire_evolution.core.trials_port import TrialOutcome, seed_difficulty

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
TASK = load_task('push_t')


class ResidualWorld:
    """A trials port where a trial's score falls with the distance of its perturbed residual
    weights (as the actor draws them from its seed) to a hidden optimum."""

    def __init__(self, store: ExperimentStore, target: np.ndarray) -> None:
        self.store, self.target, self.clock, self.n = store, target, FakeClock(), 0

    def run(self, *, experiment_id, revision_id, revision_dir, seeds, max_wall_time_s=0.0,
            on_trial=None):
        r = json.loads((Path(revision_dir) / 'residual.json').read_text())
        w = np.asarray(r['W'])
        out = []
        for seed in seeds:
            sign, eps = perturbation(r['noise_seed'], r['round'], seed, w.shape)
            wk = w + r['sigma'] * sign * eps
            score = float(np.exp(-np.sum((wk - self.target) ** 2) / 20.0))
            success = seed_difficulty(seed) < score
            self.n += 1
            t = make_trial(experiment_id, revision_id, 'rl', self.n, success, seed=seed,
                           score=score, started_at=FAKE_START_S + self.n * 10.0)
            self.store.record_trial(t)
            out.append(TrialOutcome(t.trial_id, seed, t.outcome, success, score, t.steps,
                                    t.duration_s, t.reason))
        return out


def test_the_learner_improves_the_residual_round_by_round_from_returns_alone(tmp_path):
    store = ExperimentStore.open(tmp_path / 'home')
    try:
        layout = feature_layout(TASK)
        target = np.random.default_rng(1).normal(0, 1.0, (2, layout['n_features']))
        world = ResidualWorld(store, target)
        rl = ResidualRL(TASK, BASE, ResidualConfig(rounds=14, episodes=10),
                        store=store, revisions=RevisionStore(tmp_path / 'home' / 'revisions'),
                        trials=world, experiment='rl-test', home=tmp_path / 'home',
                        wall=lambda: FAKE_START_S + world.n * 10.0)
        rounds = rl.run()
        assert len(rounds) == 14 and all(r.n == 10 for r in rounds)
        first = np.mean([r.mean_return for r in rounds[:3]])
        last = np.mean([r.mean_return for r in rounds[-3:]])
        assert last > first + 0.1, [round(r.mean_return, 3) for r in rounds]
        events = [e.data for e in store.events('rl-test', RL_ROUND)]
        assert [e['round'] for e in events] == list(range(14))
        # Each round is a revision of the rl branch, regime online_rl, parent the previous.
        revs = [store.revision('rl-test', r.revision) for r in rounds]
        assert all(v.regime == 'online_rl' for v in revs)
        assert [v.parent for v in revs[1:]] == [r.revision for r in rounds[:-1]]
        from enpire_evolution.core.report import build_report

        curve = build_report(store, 'rl-test')['rl_rounds']
        assert [c['episodes'] for c in curve] == [10 * (k + 1) for k in range(14)]
    finally:
        store.close()


def test_the_actor_wraps_the_base_and_acts_in_the_sandbox(tmp_path):
    from enpire_agent_bridge.core.contract import spec_for_revision
    from enpire_agent_bridge.core.host import PolicyHost

    layout = feature_layout(TASK)
    assert layout['state'] == ['agent_pos', 'agent_vel'] and layout['pose_view'] == 'top'
    w = np.full((2, layout['n_features']), 0.3)
    residual = {**{k: layout[k] for k in ('state', 'state_scale', 'pose_view', 'pose_image')},
                'W': w.tolist(), 'sigma': 0.5, 'scale': 0.05, 'noise_seed': 0, 'round': 0,
                'explore': True}
    out = tmp_path / 'actor'
    write_actor(BASE, out, residual, parent='abc', hypothesis='h')
    assert (out / 'policy_base.py').read_text() == (BASE / 'policy.py').read_text()
    manifest = yaml.safe_load((out / 'policy.yaml').read_text())
    assert manifest['regime'] == 'online_rl' and manifest['parent'] == 'abc'
    spec = spec_for_revision(TASK.raw, out).with_deadline(2.0)
    from enpire_tasks import registry

    reading = registry.get(TASK).sample_readings(TASK, 1, 5)[0]
    obs = spec.example_observation(image_top=reading.images['camera/top/image_raw'],
                                   agent_pos=np.array([200.0, 300.0]))
    with PolicyHost(out, spec) as host:
        host.reset(4)
        a = host.act(obs)
    assert a.shape == (2,) and np.all(a >= 0) and np.all(a <= 512)
    with pytest.raises(ConfigError, match='already a wrapped policy'):
        write_actor(out, tmp_path / 'again', residual, parent='', hypothesis='h')
    with pytest.raises(ConfigError, match='even number'):
        ResidualConfig(episodes=3).check()
