"""Random: a seeded random walk of the pusher target (params.step_px per tick)."""

from __future__ import annotations

import numpy as np


class RandomPolicy:
    def __init__(self, spec):
        self.low, self.high = spec.low, spec.high
        self.step_px = float(spec.params.get('step_px', 40.0))
        self.rng = np.random.default_rng(0)

    def reset(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, obs):
        pos = np.asarray(obs['agent_pos'], dtype=np.float64)
        target = pos + self.rng.uniform(-self.step_px, self.step_px, size=pos.shape)
        return np.clip(target, self.low, self.high)


def make_policy(spec):
    return RandomPolicy(spec)
