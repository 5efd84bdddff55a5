"""Hold: command the pusher's current position (the pusher stays where it is)."""

from __future__ import annotations

import numpy as np


class HoldPolicy:
    def __init__(self, spec):
        self.low, self.high = spec.low, spec.high

    def reset(self, seed):
        pass

    def act(self, obs):
        return np.clip(np.asarray(obs['agent_pos'], dtype=np.float64), self.low, self.high)


def make_policy(spec):
    return HoldPolicy(spec)
