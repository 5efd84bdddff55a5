"""Bad policy: raises inside act()."""

from __future__ import annotations


class Policy:
    def reset(self, seed):
        pass

    def act(self, obs):
        raise ValueError('deliberate failure in act')


def make_policy(spec):
    return Policy()
