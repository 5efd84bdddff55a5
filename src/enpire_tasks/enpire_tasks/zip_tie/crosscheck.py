"""Zip tie crosscheck states: where the verifier is compared with simulator truth.

Sim-side only: :func:`sample_states` drives the arm cell (made by
:func:`enpire_tasks.registry.make_sim_cell`, so this plugin never imports the simulator).
The strap's shape is set by its joints (:mod:`.shapes`), the head's pose by teleport, and the
state is rendered as set (a held tie: no settling under gravity). Near the goal
(``near_goal_frac``): the head held up as the contract judges it (level, its passage along
x within 20 degrees, the loop hanging below) with
a loop whose tip stands ``N(0, 15 mm)`` ('wide'; 'tight': 4 mm) round the success protrusion
(through, short of the exit, inside the passage, below its entry). Elsewhere, the hard
negatives and the common case: the loop's tail beside the head (passing its -x face, or
swung sideways out of the passage and clear of its walls), and the tie lying on the table,
straight or curved.
Ground truth: the cell's, from the strap's centre line (:func:`.geometry.threading`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from enpire_common.errors import UnknownNameError
from enpire_common.tasks import TaskSpec
from enpire_tasks.zip_tie import shapes
from enpire_tasks.zip_tie.geometry import parts

#: A tail swung out of the passage passes the head's wall by at least this (m).
CLEAR_M = 0.0005
#: The spread of near-goal tips round the success protrusion (m).
NEAR_GOAL_NOISE = {'wide': 0.015, 'tight': 0.004}


#: The presentation the contract judges: the head level, its passage along x within this
#: yaw (rad), the strap's root (and so the loop) hanging down.
PRESENT_YAW = math.radians(20.0)


def head_quat(rng: np.random.Generator) -> np.ndarray:
    """A shown head's orientation: a quarter turn about y (passage along +x, root down),
    then a yaw within :data:`PRESENT_YAW`, either way round (passage along -x)."""
    yaw = rng.uniform(-PRESENT_YAW, PRESENT_YAW) + float(rng.choice([0.0, math.pi]))
    qz = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
    qy = np.array([math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0])
    return shapes.qmul(qz, qy)


def _swung_clear(pitches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Yaws that swing a loop's tail sideways out of the passage and clear of the head's
    walls: a tail whose centre line crossed the passage's plane less than the head's half
    width plus the strap's from its middle would run through the head's solid wall (a state
    no physical tie reaches, whose truth no camera can see), so it is drawn again."""
    p = parts()
    clear = p.head_half[1] + p.strap_width / 2 + CLEAR_M
    while True:
        yaws = np.zeros(shapes.SEGMENTS)
        yaws[int(rng.integers(8, shapes.SEGMENTS - 4))] = \
            rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.4)
        pts = shapes.chain(pitches, yaws)
        ys = [a[1] + (b[1] - a[1]) * (-a[2] / (b[2] - a[2]))
              for a, b in zip(pts[:-1], pts[1:], strict=True) if a[2] < 0.0 <= b[2]]
        if all(abs(y) >= clear for y in ys):
            return yaws


def sample_states(task: TaskSpec, cell: Any, n: int, seed: int = 0, *,
                  near_goal_frac: float = 0.5,
                  progress: Callable[[int, int], None] | None = None,
                  near_goal_noise: str = 'wide') -> Iterator[tuple[dict, Any]]:
    if near_goal_noise not in NEAR_GOAL_NOISE:
        raise UnknownNameError('near-goal noise', near_goal_noise, NEAR_GOAL_NOISE)
    p = parts()
    rng = np.random.default_rng(seed)
    views = task.section('success').get('views') or list(task.views)
    spread = NEAR_GOAL_NOISE[near_goal_noise]
    for i in range(n):
        cell.place(int(rng.integers(0, 1 << 30)))
        kind = rng.uniform()
        rest = (1.0 - near_goal_frac) / 2
        if kind < near_goal_frac + rest:
            held = (rng.uniform(-0.08, 0.08), rng.uniform(0.46, 0.56), rng.uniform(0.08, 0.15))
            cell.set_object(held, head_quat(rng), settle_ticks=0)
            if kind < near_goal_frac:
                pitches = shapes.loop(p.protrusion + rng.normal(0.0, spread))
                yaws = None
            else:                                                  # a tail beside the head
                pitches = shapes.loop(rng.uniform(0.0, 0.03), lane_x=float(rng.choice(
                    [shapes.LANE_X, -0.009, -0.012])))
                yaws = np.zeros(shapes.SEGMENTS)
                if abs(shapes.chain(pitches)[-3, 0] - shapes.LANE_X) < 1e-4:
                    yaws = _swung_clear(pitches, rng)
            gt = cell.set_joints(shapes.joint_qpos(pitches, yaws))
        else:                                                      # lying on the table
            yaws = rng.normal(0.0, 0.12, shapes.SEGMENTS)
            gt = cell.set_joints(shapes.joint_qpos(np.zeros(shapes.SEGMENTS), yaws))
        images = {v: cell.render(v) for v in views}
        if progress is not None:
            progress(i + 1, n)
        yield images, gt


__all__ = ['NEAR_GOAL_NOISE', 'PRESENT_YAW', 'head_quat', 'sample_states']
