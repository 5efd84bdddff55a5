"""Bad policy: act() sleeps for 10 s, far past any per-step deadline."""

from __future__ import annotations

import time

import numpy as np


class Policy:
    def reset(self, seed):
        pass

    def act(self, obs):
        time.sleep(10.0)
        return np.asarray(obs['agent_pos'], dtype=np.float64)


def make_policy(spec):
    return Policy()
