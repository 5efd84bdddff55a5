"""Zip tie geometry: the task score, the head's outline, the seeded start, and the
simulator's ground truth of "the tail is through the head", all from the contract's parts.

A zip tie pose is ``[head_x, head_y, through]``: the head's position (m, world; a view that
cannot measure it gives NaN) and whether the tail is through the head and out past it (1)
or not (0). ``score = through``.

Through, by geometry (the simulator's truth, :func:`threading`): in the head's frame (its
passage along z, entered from below), the strap's centre line crosses the passage's
mid-plane ``z = 0`` upwards inside the passage's cross-section, and the tail's tip is at
least ``success.protrusion`` past the exit (``z = head height / 2``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from enpire_common.tasks import load_task
from enpire_tasks.arm import finite_pose_error

TASK = 'zip_tie'
#: The scene's names (config/tasks/zip_tie/gen_scene.py).
HEAD_BODY = 'zip_head'
TAIL_SITE = 'zip_tail_tip'
STRAP_BODY = 'strap_{}'


@dataclass(frozen=True)
class Parts:
    """The contract's numbers the geometry needs (task.yaml ``parts`` / ``success``)."""

    head_size: tuple[float, float, float]        # x, y, z (m)
    passage: tuple[float, float]                 # x, y (m)
    head_rgb: tuple[int, int, int]
    strap_length: float
    strap_width: float
    strap_thickness: float
    strap_rgb: tuple[int, int, int]
    protrusion: float
    starts: tuple[tuple[float, float], ...]
    rail_top_z: float                            # the start fixture's rails (m)

    @property
    def head_half(self) -> np.ndarray:
        return np.asarray(self.head_size) / 2.0


@functools.cache
def parts() -> Parts:
    """The zip tie contract's parts (read once per process)."""
    raw = load_task(TASK).raw
    p, succ = raw['parts'], raw.get('success') or {}
    head, strap = p['head'], p['strap']
    return Parts(
        head_size=tuple(float(v) for v in head['size']),
        passage=tuple(float(v) for v in head['passage']),
        head_rgb=tuple(int(c) for c in head['colour_rgb']),
        strap_length=float(strap['length']), strap_width=float(strap['width']),
        strap_thickness=float(strap['thickness']),
        strap_rgb=tuple(int(c) for c in strap['colour_rgb']),
        protrusion=float(succ.get('protrusion', 0.005)),
        starts=tuple((float(x), float(y)) for x, y in p['start_head_xy']),
        rail_top_z=float(p['rails']['top_z']))


def score(pose: Sequence[float], goal: Sequence[float]) -> float:
    """1 when the pose says the tail is through the head, else 0 (NaN: 0)."""
    if len(pose) < 3 or not math.isfinite(float(pose[2])):
        return 0.0
    return 1.0 if float(pose[2]) >= 0.5 else 0.0


def outline(pose: Sequence[float]) -> list[np.ndarray]:
    """The head's footprint (lying flat) round its (x, y), in table coordinates (m)."""
    x, y = float(pose[0]), float(pose[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        return []
    hx, hy, _ = parts().head_half
    return [np.array([[x - hx, y - hy], [x + hx, y - hy], [x + hx, y + hy], [x - hx, y + hy]])]


def start_pose(seed: int, stage: str = 'start') -> tuple[float, float, float]:
    """The pose a seed starts from: the head on its rail at start ``seed % n``, the strap
    straight across the tail rest, not through."""
    x, y = parts().starts[int(seed) % len(parts().starts)]
    return (x, y, 0.0)


def pose_error(expected: Sequence[float], observed: Sequence[float]) -> tuple[float, float]:
    """(The head's xy distance over the components both have, 0): ``through`` is the reset's
    not-solved check, not a position."""
    return finite_pose_error(expected[:2], observed[:2])


@dataclass(frozen=True)
class Threading:
    """The simulator's truth about the strap and the head (:func:`threading`)."""

    crossing: bool          # the centre line goes up through the passage
    protrusion_m: float     # the tip past the exit plane (m; negative: below it)
    through: bool           # crossing and protrusion >= success.protrusion

    def as_dict(self) -> dict[str, Any]:
        return {'crossing': self.crossing, 'protrusion_m': round(self.protrusion_m, 5),
                'through': self.through}


def threading_of(head_pos: np.ndarray, head_rot: np.ndarray, chain: np.ndarray) -> Threading:
    """:class:`Threading` from the head's pose (world position, 3x3 world-from-head rotation)
    and the strap's centre line ``chain`` ((n, 3) world points from the root to the tip)."""
    p = parts()
    local = (np.asarray(chain, dtype=np.float64) - head_pos) @ np.asarray(head_rot)
    px, py = p.passage[0] / 2.0, p.passage[1] / 2.0
    crossing = False
    for a, b in zip(local[:-1], local[1:], strict=True):
        if a[2] < 0.0 <= b[2]:
            c = a + (b - a) * (-a[2] / (b[2] - a[2]))
            if abs(c[0]) < px and abs(c[1]) < py:
                crossing = True
                break
    protrusion = float(local[-1, 2] - p.head_half[2])
    return Threading(crossing, protrusion, crossing and protrusion >= p.protrusion)


def strap_chain(model: Any, data: Any) -> np.ndarray:
    """The strap's centre line in a MuJoCo model/data of the task's scene: each segment's
    start (its body's origin), then the tail's tip."""
    pts = []
    i = 0
    while True:
        try:
            pts.append(np.array(data.body(STRAP_BODY.format(i)).xpos))
        except KeyError:
            break
        i += 1
    pts.append(np.array(data.site(TAIL_SITE).xpos))
    return np.asarray(pts)


def threading(model: Any, data: Any) -> Threading:
    """:class:`Threading` of the simulated scene (MuJoCo model and data)."""
    head = data.body(HEAD_BODY)
    return threading_of(np.array(head.xpos), np.array(head.xmat).reshape(3, 3),
                        strap_chain(model, data))


def sim_pose(model: Any, data: Any) -> tuple[float, float, float]:
    """The ground-truth pose of the simulated scene: the head's (x, y) and through."""
    head = data.body(HEAD_BODY).xpos
    return (float(head[0]), float(head[1]), 1.0 if threading(model, data).through else 0.0)


__all__ = ['HEAD_BODY', 'Parts', 'TAIL_SITE', 'Threading', 'outline', 'parts', 'pose_error',
           'score', 'sim_pose', 'start_pose', 'strap_chain', 'threading', 'threading_of']
