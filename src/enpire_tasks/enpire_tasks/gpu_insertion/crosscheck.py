"""GPU insertion crosscheck states: where the verifier is compared with simulator truth.

Sim-side only: :func:`sample_states` drives the arm cell (made by
:func:`enpire_tasks.registry.make_sim_cell`, so this plugin never imports the simulator).
Near the goal: the card seated with a lateral offset inside the slot's clearance (a positive,
unless it lands badly), or let down upright from 6 mm over the slot with a lateral offset
(``'wide'``: |N(0, 1.5 mm)|, ``'tight'``: |N(0, 0.4 mm)|, a random direction): it rests on
the latch's hook, on a chamfer, or part way in. Elsewhere: standing in a caddy slot, lying on
the table, lying across the connector. Each state yields every verifier view's image (the
fused verdict is compared) and the cell's ground truth after it settled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from enpire_common.errors import UnknownNameError
from enpire_common.tasks import TaskSpec
from enpire_tasks.gpu_insertion.geometry import parts

#: Lateral offset of near-goal drops: the standard deviation (m) of |N(0, s)|.
NEAR_GOAL_NOISE = {'wide': 0.0015, 'tight': 0.0004}


def _quat_lying(phi: float) -> tuple[float, float, float, float]:
    """The card flat on the table (its y axis vertical) at yaw ``phi``."""
    qz = (math.cos(phi / 2), 0.0, 0.0, math.sin(phi / 2))
    qx = (math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0)
    w1, x1, y1, z1 = qz
    w2, x2, y2, z2 = qx
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
    clearance = (p.slot_width - 0.00157) / 2
    for i in range(n):
        cell.place(int(rng.integers(0, 1 << 30)))
        kind = rng.uniform()
        if kind < near_goal_frac / 2:                                 # seated
            off = rng.uniform(-clearance, clearance, size=2) * (0.1, 0.9)
            gt = cell.set_object((p.slot_xy[0] + off[0], p.slot_xy[1] + off[1],
                                  p.slot_floor_z + 0.0002))
        elif kind < near_goal_frac:                                   # let down over the slot
            r = abs(rng.normal(0.0, NEAR_GOAL_NOISE[near_goal_noise]))
            a = rng.uniform(0.0, 2.0 * math.pi)
            xy = np.array(p.slot_xy) + r * np.array([math.cos(a), math.sin(a)])
            gt = cell.set_object((xy[0], xy[1], p.slot_top_z + 0.006), settle_ticks=25)
        elif kind < near_goal_frac + (1 - near_goal_frac) / 3:
            gt = cell.ground_truth()                                  # standing in the caddy
        elif kind < near_goal_frac + 2 * (1 - near_goal_frac) / 3:
            xy = (rng.uniform(-0.12, 0.02), rng.uniform(0.45, 0.62))  # lying on the table
            gt = cell.set_object((xy[0], xy[1], 0.008),
                                 _quat_lying(rng.uniform(-math.pi, math.pi)))
        else:                                                         # across the connector
            gt = cell.set_object((p.slot_xy[0] + rng.uniform(-0.015, 0.0),
                                  p.slot_xy[1] + rng.uniform(0.0, 0.02),
                                  p.slot_top_z + 0.003),
                                 _quat_lying(rng.uniform(-0.4, 0.4)))
        images = {v: cell.render(v) for v in views}
        if progress is not None:
            progress(i + 1, n)
        yield images, gt


__all__ = ['NEAR_GOAL_NOISE', 'sample_states']
