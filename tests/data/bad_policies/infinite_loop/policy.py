"""Bad policy: act() never returns (a pure-Python busy loop)."""

from __future__ import annotations


class Policy:
    def reset(self, seed):
        pass

    def act(self, obs):
        while True:
            pass


def make_policy(spec):
    return Policy()
