"""Bad policy: returns a NaN action."""

from __future__ import annotations

import numpy as np


class Policy:
    def reset(self, seed):
        pass

    def act(self, obs):
        return np.array([np.nan, 1.0])


def make_policy(spec):
    return Policy()
