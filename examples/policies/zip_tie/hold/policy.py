"""Hold: command the arms' measured end-effector poses (nothing moves)."""

from __future__ import annotations

import numpy as np


class HoldPolicy:
    def __init__(self, spec):
        self.low, self.high = spec.low, spec.high

    def reset(self, seed):
        pass

    def act(self, obs):
        return np.clip(np.asarray(obs['ee_pose'], dtype=np.float64), self.low, self.high)


def make_policy(spec):
    return HoldPolicy(spec)
