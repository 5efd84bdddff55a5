"""Bad policy: tries to allocate and touch 8 GiB inside act()."""

from __future__ import annotations

import numpy as np


class Policy:
    def reset(self, seed):
        pass

    def act(self, obs):
        block = np.ones(8 << 30, dtype=np.uint8)
        return np.array([float(block[0]), 1.0])


def make_policy(spec):
    return Policy()
