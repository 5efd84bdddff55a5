"""Pin insertion crosscheck states: where the verifier is compared with simulator truth.

Sim-side only: :func:`sample_states` drives the arm cell (made by
:func:`enpire_tasks.registry.make_sim_cell`, so this plugin never imports the simulator).
Near the goal, the pin is dropped upright from 10 mm over the hole with a lateral offset
(``'wide'``: |N(0, 1.5 mm)|, ``'tight'``: |N(0, 0.4 mm)|, a random direction): within the
clearance it drops in, beyond it it rests on the rim, tilts or falls. Elsewhere: standing in a
rack slot, lying on the table, lying across the fixture. Each state yields every verifier
view's image (the fused verdict is compared) and the cell's ground truth after it settled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from enpire_common.errors import UnknownNameError
from enpire_common.tasks import TaskSpec
from enpire_tasks.pin_insertion.geometry import parts

#: Lateral offset of near-goal drops: the standard deviation (m) of |N(0, s)|.
NEAR_GOAL_NOISE = {'wide': 0.0015, 'tight': 0.0004}


def _quat_lying(phi: float) -> tuple[float, float, float, float]:
    """The pin's body z axis horizontal at angle ``phi`` (yaw, then a quarter turn)."""
    qz = (math.cos(phi / 2), 0.0, 0.0, math.sin(phi / 2))
    qy = (math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0)
    w1, x1, y1, z1 = qz
    w2, x2, y2, z2 = qy
    return (w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2)


def sample_states(task: TaskSpec, cell: Any, n: int, seed: int = 0, *,
                  near_goal_frac: float = 0.5,
                  progress: Callable[[int, int], None] | None = None,
                  near_goal_noise: str = 'wide') -> Iterator[tuple[dict, Any]]:
    if near_goal_noise not in NEAR_GOAL_NOISE:
        raise UnknownNameError('near-goal noise', near_goal_noise, NEAR_GOAL_NOISE)
    p = parts()
    rng = np.random.default_rng(seed)
    views = task.section('success').get('views') or list(task.views)
    shaft_half = p.shaft_length / 2      # body origin: the shaft's middle
    for i in range(n):
        cell.place(int(rng.integers(0, 1 << 30)))
        kind = rng.uniform()
        if kind < near_goal_frac:
            r = abs(rng.normal(0.0, NEAR_GOAL_NOISE[near_goal_noise]))
            a = rng.uniform(0.0, 2.0 * math.pi)
            xy = np.array(p.hole_xy) + r * np.array([math.cos(a), math.sin(a)])
            gt = cell.set_object((xy[0], xy[1], p.hole_top_z + 0.010 + shaft_half))
        elif kind < near_goal_frac + (1 - near_goal_frac) / 3:
            gt = cell.ground_truth()                                  # standing in a slot
        elif kind < near_goal_frac + 2 * (1 - near_goal_frac) / 3:
            xy = (rng.uniform(-0.10, 0.10), rng.uniform(0.60, 0.72))   # lying on the table
            if abs(xy[0]) < 0.05 and abs(xy[1] - p.hole_xy[1]) < 0.05:
                xy = (xy[0] + 0.1 * np.sign(xy[0] or 1.0), xy[1])
            gt = cell.set_object((xy[0], xy[1], 0.0025),
                                 _quat_lying(rng.uniform(-math.pi, math.pi)))
        else:                                                         # across the fixture
            gt = cell.set_object((p.hole_xy[0] + rng.uniform(-0.01, 0.01),
                                  p.hole_xy[1] + rng.uniform(-0.01, 0.01),
                                  p.hole_top_z + 0.0025),
                                 _quat_lying(rng.uniform(-math.pi, math.pi)))
        images = {v: cell.render(v) for v in views}
        if progress is not None:
            progress(i + 1, n)
        yield images, gt


__all__ = ['NEAR_GOAL_NOISE', 'sample_states']
