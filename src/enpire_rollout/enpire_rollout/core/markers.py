"""What a cell shows in rviz / Foxglove 3D: markers built from the task contract and the cell's
measured streams (no ROS here; :mod:`enpire_rollout.ros.markers_node` publishes them).

Namespaces (one MarkerArray, frame ``<cell>/world``, metres; a task in pixels is drawn at
1 px = 1 mm):

- ``goal``: the task's goal pose, the object's outline there (green);
- ``envelope``: the safety envelope's workspace box (orange);
- ``agent``: the pusher / each gripper where the state vector says it is (grey);
- ``target``: the last command's target position(s) (cyan);
- ``estimate``: the verifier's estimated object pose, each view's outline (blue);
- ``verdict``: each view's verdict as text over the goal (green success, red failure,
  yellow invalid);
- ``reset_start``: the start pose the last reset placed (dashed purple outline).

Nothing here reads simulator state: the object is drawn where the verifier saw it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NAMESPACES = ('goal', 'envelope', 'agent', 'target', 'estimate', 'verdict', 'reset_start')

GREEN = (0.1, 0.75, 0.2, 0.9)
ORANGE = (1.0, 0.55, 0.0, 0.8)
GREY = (0.45, 0.45, 0.5, 0.9)
CYAN = (0.0, 0.8, 0.9, 0.9)
BLUE = (0.15, 0.35, 1.0, 0.9)
RED = (0.9, 0.1, 0.1, 1.0)
YELLOW = (0.95, 0.8, 0.1, 1.0)
PURPLE = (0.6, 0.2, 0.8, 0.8)


@dataclass(frozen=True)
class MarkerSpec:
    """One marker. ``kind``: line_strip | line_list | sphere | text."""

    ns: str
    id: int
    kind: str
    color: tuple[float, float, float, float]
    points: tuple[tuple[float, float, float], ...] = ()
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (0.002, 0.002, 0.002)
    text: str = ''


@dataclass
class TaskDrawing:
    """How a task's poses and vectors map into metres."""

    task: Any
    plugin: Any
    unit: float = field(init=False)        # metres per position unit

    def __post_init__(self) -> None:
        self.unit = 0.001 if self.plugin.position_unit == 'px' else 1.0

    # -- geometry --------------------------------------------------------------------------
    def _z(self, pose: Sequence[float]) -> float:
        names = self.plugin.pose_names
        if len(pose) > 2 and len(names) > 2 and names[2].endswith('_z_m') \
                and math.isfinite(float(pose[2])):
            return float(pose[2])
        return 0.0

    def outline(self, ns: str, pose: Sequence[float] | None, color: tuple, base_id: int = 0,
                width: float = 0.002) -> list[MarkerSpec]:
        """The object's outline polygons at ``pose`` as closed line strips."""
        if not pose or not all(math.isfinite(float(v)) for v in list(pose)[:2]):
            return []
        z = self._z(pose)
        out = []
        for i, poly in enumerate(self.plugin.outline(tuple(float(v) for v in pose))):
            pts = [(float(x) * self.unit, float(y) * self.unit, z) for x, y in np.asarray(poly)]
            if pts:
                pts.append(pts[0])
                out.append(MarkerSpec(ns, base_id + i, 'line_strip', color, tuple(pts),
                                      scale=(width, width, width)))
        return out

    def goal(self) -> list[MarkerSpec]:
        return self.outline('goal', getattr(self.task, 'goal_pose', None), GREEN, width=0.003)

    def envelope(self) -> list[MarkerSpec]:
        ws = self.task.section('workspace')
        low, high = list(ws.get('low') or []), list(ws.get('high') or [])
        if len(low) not in (2, 3) or len(high) != len(low):
            return []
        lo = [v * self.unit for v in low] + ([0.0] if len(low) == 2 else [])
        hi = [v * self.unit for v in high] + ([0.0] if len(high) == 2 else [])
        corners = [(x, y, z) for z in (lo[2], hi[2]) for y in (lo[1], hi[1])
                   for x in (lo[0], hi[0])]
        edges = [(0, 1), (2, 3), (0, 2), (1, 3)]
        if hi[2] > lo[2]:
            edges += [(4, 5), (6, 7), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]
        pts = tuple(p for a, b in edges for p in (corners[a], corners[b]))
        return [MarkerSpec('envelope', 0, 'line_list', ORANGE, pts, scale=(0.002,) * 3)]

    def agent(self, names: Sequence[str], values: Sequence[float]) -> list[MarkerSpec]:
        by = dict(zip(names, values, strict=False))
        out = []
        radius = float(self.task.section('parts').get('pusher', {}).get('radius_px', 0.0)) \
            * self.unit or 0.02
        for i, (prefix, dims) in enumerate(groups_of(list(names))):
            p = [float(by[f'{prefix}{a}']) * self.unit for a in 'xyz'[:dims]]
            pos = (p[0], p[1], p[2] if dims == 3 else 0.0)
            out.append(MarkerSpec('agent', i, 'sphere', GREY, position=pos,
                                  scale=(2 * radius,) * 3))
        return out

    def target(self, action: Sequence[float]) -> list[MarkerSpec]:
        """Where the command sends the pusher / each gripper: the action's slices whose
        bounds are the workspace's (absolute positions, as the contract's bounds say)."""
        a = self.task.section('action')
        low, high = list(a.get('low') or []), list(a.get('high') or [])
        ws = self.task.section('workspace')
        wl, wh = list(ws.get('low') or []), list(ws.get('high') or [])
        d = len(wl)
        out: list[MarkerSpec] = []
        i = 0
        while d and i + d <= min(len(action), len(low)):
            if low[i:i + d] == wl and high[i:i + d] == wh:
                p = [float(v) * self.unit for v in action[i:i + d]]
                pos = (p[0], p[1], p[2] if d == 3 else 0.0)
                out.append(MarkerSpec('target', len(out), 'sphere', CYAN, position=pos,
                                      scale=(0.012,) * 3))
                i += d
            else:
                i += 1
        return out

    def estimate(self, verdicts: Mapping[str, Mapping[str, Any]]) -> list[MarkerSpec]:
        out: list[MarkerSpec] = []
        for view, v in sorted(verdicts.items()):
            if view == 'fused':
                continue
            out += self.outline('estimate', v.get('object_pose'), BLUE, base_id=10 * len(out))
        return out

    def verdict(self, verdicts: Mapping[str, Mapping[str, Any]]) -> list[MarkerSpec]:
        goal = getattr(self.task, 'goal_pose', None) or (0.0, 0.0)
        x, y = float(goal[0]) * self.unit, float(goal[1]) * self.unit
        out = []
        for i, (view, v) in enumerate(sorted(verdicts.items(), key=lambda kv: kv[0] == 'fused')):
            said = 'INVALID' if v.get('invalid') else 'OK' if v.get('success') else 'FAIL'
            color = YELLOW if v.get('invalid') else GREEN if v.get('success') else RED
            out.append(MarkerSpec('verdict', i, 'text', color,
                                  position=(x, y, 0.10 + 0.03 * i), scale=(0.0, 0.0, 0.025),
                                  text=f"{view}: {said} {float(v.get('score', 0.0)):.2f}"))
        return out

    def reset_start(self, pose: Sequence[float] | None) -> list[MarkerSpec]:
        return self.outline('reset_start', pose, PURPLE)


def groups_of(names: Sequence[str]) -> list[tuple[str, int]]:
    """Position groups in a state vector's names: ``x, y`` -> ('', 2); ``left_x, left_y,
    left_z`` -> ('left_', 3). Order of first appearance."""
    have = set(names)
    out: list[tuple[str, int]] = []
    for n in names:
        if not n.endswith('x'):
            continue
        prefix = n[:-1]
        if prefix and not prefix.endswith('_'):     # vx, vy: a velocity, not a position
            continue
        if f'{prefix}y' in have and (prefix, 3) not in out and (prefix, 2) not in out:
            out.append((prefix, 3 if f'{prefix}z' in have else 2))
    return out
