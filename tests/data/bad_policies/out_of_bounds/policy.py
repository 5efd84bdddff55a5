"""Bad policy: returns a target outside the action bounds."""

from __future__ import annotations

import numpy as np


class Policy:
    def reset(self, seed):
        pass

    def act(self, obs):
        return np.array([600.0, -5.0])


def make_policy(spec):
    return Policy()
