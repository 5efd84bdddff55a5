"""Test policy of the tool-calling regime (tests/..., not an example to improve).

mode pose: estimate the T's pose with the task tool and target it (a ToolError, as on the
bridge's blank warm-up frame, holds a corner). mode unknown: call a tool the task does not
offer and let the ToolError escape. mode catch: call it, catch the ToolError and hold.
mode in_make: call a tool from make_policy. mode twice: two calls per act. mode raw: an
unguarded call first.
"""

import numpy as np


class ToolPolicy:
    def __init__(self, spec):
        self.spec = spec
        self.mode = spec.params.get('mode', 'pose')
        if self.mode == 'in_make':
            spec.tools.estimate_pose(view='top', image=np.zeros((480, 480, 3), np.uint8))

    def reset(self, seed):
        pass

    def act(self, obs):
        tools = self.spec.tools
        if self.mode in ('unknown', 'catch'):
            try:
                tools.call('teleport_block', x=1.0)
            except Exception as exc:  # noqa: BLE001
                if self.mode == 'unknown':
                    raise
                assert type(exc).__name__ == 'ToolError', exc
                return np.array([256.0, 256.0])
        if self.mode == 'raw':                       # no guard: a ToolError escapes
            tools.estimate_pose(view='top', image=obs['image_top'])
        try:
            est = tools.estimate_pose(view='top', image=obs['image_top'])
        except Exception:  # noqa: BLE001 - ToolError: e.g. a blank warm-up image
            return np.array([1.0, 1.0])
        if self.mode == 'twice':
            tools.verifier_score(view='top', image=obs['image_top'])
        if not est['found']:
            return np.array([1.0, 1.0])
        x, y = est['pose'][:2]
        return np.clip(np.array([x, y]), self.spec.low, self.spec.high)


def make_policy(spec):
    return ToolPolicy(spec)
