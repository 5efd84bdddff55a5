"""Strap shapes by forward kinematics: the quaternions of the strap's joints for a loop
through the head, near misses of it, and curves on the table.

The strap is a chain of ``n`` segments of length ``L`` (config/tasks/zip_tie/gen_scene.py):
segment 0 starts at the head's +x face, 0.6 mm over its bottom, pointing +x; each joint turns
its segment relative to the one before. In the head's frame a planar shape is one pitch angle
per joint (about the head's y axis; positive bends the strap down, -z), and a joint's yaw
(about its z) swings what follows sideways.

:func:`loop` solves the pitches (Gauss-Newton, numpy only) that take the strap out along +x,
down and round under the head and up through its passage, with the last segments straight
so the tip stands ``protrusion`` past the exit; negative protrusions give a tail that stops
short inside or below the passage. Used by the crosscheck (:mod:`.crosscheck`) and tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from enpire_tasks.zip_tie.geometry import parts

#: The strap's discretisation and root, as the scene generator builds it.
SEGMENTS, SEGMENT_M = 20, 0.010
#: The lane of the passage a tail goes up (x in the head frame, between the -x wall at
#: -1.5 mm and the pawl's tip at rest at -0.6 mm: the strap's 1.2 mm thickness spans it).
LANE_X = -0.0009


def root() -> np.ndarray:
    p = parts()
    return np.array([p.head_half[0], 0.0, -p.head_half[2] + p.strap_thickness / 2])


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The quaternion product ``a b`` (w, x, y, z)."""
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def quat(pitch: float, yaw: float = 0.0) -> np.ndarray:
    """A joint's quaternion (w, x, y, z): yaw about z, then pitch about y."""
    return qmul(np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]),
                np.array([math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0]))


def _rot(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def chain(pitches: Sequence[float], yaws: Sequence[float] | None = None) -> np.ndarray:
    """The centre line in the head's frame ((n + 1, 3): each segment's start, then the tip)
    of the joint angles."""
    yaws = np.zeros(len(pitches)) if yaws is None else yaws
    rot = np.eye(3)
    p = root()
    pts = [p]
    for ph, ya in zip(pitches, yaws, strict=True):
        rot = rot @ _rot(quat(ph, ya))
        p = p + rot @ np.array([SEGMENT_M, 0.0, 0.0])
        pts.append(p)
    return np.asarray(pts)


def joint_qpos(pitches: Sequence[float], yaws: Sequence[float] | None = None
               ) -> dict[str, np.ndarray]:
    """The scene's joint positions (``strap_<i>`` -> quaternion) of the joint angles."""
    yaws = np.zeros(len(pitches)) if yaws is None else yaws
    return {f'strap_{i}': quat(ph, ya) for i, (ph, ya) in enumerate(zip(pitches, yaws,
                                                                           strict=True))}


def loop(protrusion: float, lane_x: float = LANE_X, smooth: float = 0.02
         ) -> np.ndarray:
    """The pitches of a loop through the passage whose tip stands ``protrusion`` past the
    exit (m; negative: short of it). The tail's last ``k`` segments point straight up, with
    ``k`` as few as the protrusion allows; the rest bends as smoothly as it can."""
    p = parts()
    exit_z = p.head_half[2]
    k = 2
    tip_z = exit_z + protrusion
    # The straight part ends at the tip; its start (the last bent joint) sits k segments lower.
    start_z = tip_z - k * SEGMENT_M
    free = SEGMENTS - k
    target = np.array([lane_x, start_z, 1.5 * math.pi])

    def residual(x: np.ndarray) -> np.ndarray:
        pts = chain(np.concatenate([x, np.zeros(k)]))
        heading = float(np.sum(x))
        r = [(pts[free, 0] - target[0]) * 1000.0, (pts[free, 2] - target[1]) * 1000.0,
             (heading - target[2]) * 10.0]
        return np.concatenate([r, smooth * 10.0 * np.diff(np.concatenate([[0.0], x])),
                               smooth * 3.0 * x])

    x = np.full(free, 1.5 * math.pi / free)
    for _ in range(60):
        r = residual(x)
        jac = np.empty((r.size, x.size))
        for j in range(x.size):
            dx = np.zeros(x.size)
            dx[j] = 1e-6
            jac[:, j] = (residual(x + dx) - r) / 1e-6
        step = np.linalg.lstsq(jac, -r, rcond=None)[0]
        x = x + step
        if np.linalg.norm(step) < 1e-9:
            break
    return np.concatenate([x, np.zeros(k)])


__all__ = ['LANE_X', 'SEGMENTS', 'SEGMENT_M', 'chain', 'joint_qpos', 'loop', 'qmul', 'quat',
           'root']
