"""Bad policy: starts a subprocess (and forks) inside act()."""

from __future__ import annotations

import os
import subprocess

import numpy as np


class Policy:
    def reset(self, seed):
        pass

    def act(self, obs):
        subprocess.run(['true'], check=False)
        if os.fork() == 0:
            os._exit(0)
        return np.asarray(obs['agent_pos'], dtype=np.float64)


def make_policy(spec):
    return Policy()
