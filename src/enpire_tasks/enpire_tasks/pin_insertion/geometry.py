"""Pin insertion geometry: the task score and the pin's outline, from the contract's parts.

A pin pose is its tip position ``[x, y, z]`` (m). A component a camera cannot measure is NaN
(the top camera sees x and y, the side camera y and z); the score uses what is there:

- lateral: the tip's distance from the hole's axis over the known x / y;
- depth: how far the tip is below the hole's top, as a fraction of the hole's depth.

``score = depth fraction`` when the tip is within ``success.max_lateral_error`` of the axis
(1 when depth is unknown: that view judges alignment only, of the head, within
``success.max_head_offset``), else 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from enpire_common.tasks import load_task

TASK = 'pin_insertion'


@dataclass(frozen=True)
class Parts:
    """The contract's numbers the geometry needs (task.yaml ``parts`` / ``success``)."""

    hole_xy: tuple[float, float]
    hole_top_z: float
    hole_depth: float
    max_lateral_error: float
    max_head_offset: float
    head_radius: float
    head_height: float
    shaft_length: float
    colour_rgb: tuple[int, int, int]
    slots: tuple[tuple[float, float], ...]
    slot_floor_z: float
    shaft_radius: float

    @property
    def pin_length(self) -> float:
        """Tip to the head's top (m)."""
        return self.shaft_length + self.head_height


@functools.cache
def parts() -> Parts:
    """The pin insertion contract's parts (read once per process)."""
    raw = load_task(TASK).raw
    p, succ = raw['parts'], raw.get('success') or {}
    hole, pin, rack = p['hole'], p['pin'], p['rack']
    return Parts(
        hole_xy=(float(hole['position'][0]), float(hole['position'][1])),
        hole_top_z=float(hole['position'][2]), hole_depth=float(hole['depth']),
        max_lateral_error=float(succ.get('max_lateral_error', 0.0015)),
        max_head_offset=float(succ.get('max_head_offset', 0.003)),
        head_radius=float(pin['head_diameter']) / 2.0, head_height=float(pin['head_height']),
        shaft_length=float(pin['shaft_length']),
        colour_rgb=tuple(int(c) for c in pin['colour_rgb']),
        slots=tuple((float(x), float(y)) for x, y in rack['slots']),
        slot_floor_z=float(rack['floor_z']), shaft_radius=float(pin['shaft_diameter']) / 2)


def lateral_error(pose: Sequence[float], goal: Sequence[float]) -> float:
    """The tip's distance from the hole's axis over the components the pose has (m); inf when
    it has neither x nor y."""
    d = [float(pose[i]) - float(goal[i]) for i in (0, 1) if math.isfinite(float(pose[i]))]
    return math.hypot(*d) if d else math.inf


def depth_fraction(pose: Sequence[float]) -> float:
    """How deep the tip is in the hole, as a fraction of its depth (NaN: unknown)."""
    z = float(pose[2])
    if not math.isfinite(z):
        return math.nan
    p = parts()
    return min(1.0, max(0.0, (p.hole_top_z - z) / p.hole_depth))


def score(pose: Sequence[float], goal: Sequence[float]) -> float:
    """The insertion depth fraction of a tip pose in [0, 1] (see the module doc)."""
    if len(pose) < 3:
        return 0.0
    depth = depth_fraction(pose)
    # Without a depth the pose comes from a view that sees the head from above: a seated pin
    # tilts in its clearance, so its head may sit up to max_head_offset off the axis.
    tol = parts().max_head_offset if math.isnan(depth) else parts().max_lateral_error
    if lateral_error(pose, goal) > tol:
        return 0.0
    return 1.0 if math.isnan(depth) else depth


def outline(pose: Sequence[float]) -> list[np.ndarray]:
    """The pin head's circle around the tip's (x, y), in table coordinates (m)."""
    x, y = float(pose[0]), float(pose[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        return []
    t = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    r = parts().head_radius
    return [np.stack([x + r * np.cos(t), y + r * np.sin(t)], axis=1)]


#: The pre-insertion stage: the tip this far above the hole's top (m).
PRE_INSERTION_CLEARANCE = 0.010


def start_pose(seed: int, stage: str = 'start') -> tuple[float, float, float]:
    """The tip pose a seed starts from: standing in rack slot ``seed % len(slots)``; at
    ``pre_insertion``, held over the hole's axis, 10 mm above its top."""
    p = parts()
    if stage == 'pre_insertion':
        return (p.hole_xy[0], p.hole_xy[1], p.hole_top_z + PRE_INSERTION_CLEARANCE)
    x, y = p.slots[int(seed) % len(p.slots)]
    return (x, y, p.slot_floor_z)


__all__ = ['Parts', 'depth_fraction', 'lateral_error', 'outline', 'parts', 'score',
           'start_pose']
