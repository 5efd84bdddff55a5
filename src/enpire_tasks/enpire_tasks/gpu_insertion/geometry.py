"""GPU insertion geometry: the task score and the card's outline, from the contract's parts.

A card pose is its edge connector's bottom-edge centre ``[x, y, z]`` (m). A component a camera
cannot measure is NaN (the top camera sees x and y, the side camera x and z); the score uses
what is there:

- lateral: the edge's distance from the slot's centre over the known x / y;
- depth: how far the bottom edge is below the slot's top, as a fraction of the slot's depth.

``score = depth fraction`` when the edge is within ``success.max_lateral_error`` of the slot's
centre (1 when depth is unknown: that view judges alignment only, of the cooler seen from
above, within ``success.max_top_offset``), else 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from enpire_common.tasks import load_task

TASK = 'gpu_insertion'


@dataclass(frozen=True)
class Parts:
    """The contract's numbers the geometry needs (task.yaml ``parts`` / ``success``)."""

    slot_xy: tuple[float, float]
    slot_top_z: float
    slot_depth: float
    slot_width: float
    slot_length: float
    max_lateral_error: float
    max_top_offset: float
    card_length: float
    connector_length: float
    cooler_size: tuple[float, float, float]
    cooler_center: tuple[float, float, float]     # in the card's frame
    colour_rgb: tuple[int, int, int]
    pcb_rgb: tuple[int, int, int]
    fingers_rgb: tuple[int, int, int]
    holders: tuple[tuple[float, float], ...]
    holder_floor_z: float
    holder_depth: float
    latch_press: tuple[float, float, float]
    latch_press_depth: float

    @property
    def cooler_top(self) -> float:
        """The cooler's top above the bottom edge (m)."""
        return self.cooler_center[2] + self.cooler_size[2] / 2

    @property
    def pcb_half_thickness(self) -> float:
        return 0.000785

    @property
    def fingers_center_x(self) -> float:
        """The gold fingers' centre along the card from its edge's centre (m; scene.xml)."""
        return 0.001

    @property
    def fingers_half_length(self) -> float:
        """Half the gold fingers' strip along the card (m; scene.xml)."""
        return 0.011

    @property
    def fingers_bottom(self) -> float:
        """The gold fingers' lower end above the bottom edge (m; scene.xml)."""
        return 0.0005

    @property
    def slot_floor_z(self) -> float:
        return self.slot_top_z - self.slot_depth


@functools.cache
def parts() -> Parts:
    """The GPU insertion contract's parts (read once per process)."""
    raw = load_task(TASK).raw
    p, succ = raw['parts'], raw.get('success') or {}
    card, slot, latch, caddy = p['card'], p['slot'], p['latch'], p['caddy']
    cooler = card['cooler']
    return Parts(
        slot_xy=(float(slot['position'][0]), float(slot['position'][1])),
        slot_top_z=float(slot['position'][2]), slot_depth=float(slot['depth']),
        slot_width=float(slot['width']), slot_length=float(slot['length']),
        max_lateral_error=float(succ.get('max_lateral_error', 0.0015)),
        max_top_offset=float(succ.get('max_top_offset', 0.004)),
        card_length=float(card['length']), connector_length=float(card['connector_length']),
        cooler_size=tuple(float(v) for v in cooler['size']),
        cooler_center=tuple(float(v) for v in cooler['center']),
        colour_rgb=tuple(int(c) for c in cooler['colour_rgb']),
        pcb_rgb=tuple(int(c) for c in card['pcb_colour_rgb']),
        fingers_rgb=tuple(int(c) for c in card.get('fingers_colour_rgb', (212, 176, 56))),
        holders=tuple((float(x), float(y)) for x, y in caddy['slots']),
        holder_floor_z=float(caddy['floor_z']), holder_depth=float(caddy['depth']),
        latch_press=tuple(float(v) for v in latch['press_point']),
        latch_press_depth=float(latch['press_depth']))


def lateral_error(pose: Sequence[float], goal: Sequence[float]) -> float:
    """The edge's distance from the slot's centre over the components the pose has (m); inf
    when it has neither x nor y."""
    d = [float(pose[i]) - float(goal[i]) for i in (0, 1) if math.isfinite(float(pose[i]))]
    return math.hypot(*d) if d else math.inf


def depth_fraction(pose: Sequence[float]) -> float:
    """How deep the bottom edge is in the slot, as a fraction of its depth (NaN: unknown)."""
    z = float(pose[2])
    if not math.isfinite(z):
        return math.nan
    p = parts()
    return min(1.0, max(0.0, (p.slot_top_z - z) / p.slot_depth))


def score(pose: Sequence[float], goal: Sequence[float]) -> float:
    """The insertion depth fraction of an edge pose in [0, 1] (see the module doc)."""
    if len(pose) < 3:
        return 0.0
    depth = depth_fraction(pose)
    # Without a depth the pose comes from the top view, which sees the cooler: a seated card
    # leans in its clearance, so the cooler may sit up to max_top_offset off the slot.
    tol = parts().max_top_offset if math.isnan(depth) else parts().max_lateral_error
    if lateral_error(pose, goal) > tol:
        return 0.0
    return 1.0 if math.isnan(depth) else depth


def outline(pose: Sequence[float]) -> list[np.ndarray]:
    """The cooler's footprint (a rectangle) over the edge's (x, y), in table coordinates (m)."""
    x, y = float(pose[0]), float(pose[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        return []
    p = parts()
    cx, hx, hy = x + p.cooler_center[0], p.cooler_size[0] / 2, p.cooler_size[1] / 2
    return [np.array([[cx - hx, y - hy], [cx + hx, y - hy], [cx + hx, y + hy],
                      [cx - hx, y + hy]])]


#: The pre-insertion stage: the bottom edge this far above the slot's top (m).
PRE_INSERTION_CLEARANCE = 0.010


def start_pose(seed: int, stage: str = 'start') -> tuple[float, float, float]:
    """The edge pose a seed starts from: standing in caddy slot ``seed % len(slots)``; at
    ``pre_insertion``, held over the slot, its bottom edge 10 mm above the slot's top."""
    p = parts()
    if stage == 'pre_insertion':
        return (p.slot_xy[0], p.slot_xy[1], p.slot_top_z + PRE_INSERTION_CLEARANCE)
    x, y = p.holders[int(seed) % len(p.holders)]
    return (x, y, p.holder_floor_z)


__all__ = ['PRE_INSERTION_CLEARANCE', 'Parts', 'depth_fraction', 'lateral_error', 'outline',
           'parts', 'score', 'start_pose']
