"""Bad policy: returns an action of the wrong shape."""

from __future__ import annotations

import numpy as np


class Policy:
    def reset(self, seed):
        pass

    def act(self, obs):
        return np.array([1.0, 2.0, 3.0])


def make_policy(spec):
    return Policy()
