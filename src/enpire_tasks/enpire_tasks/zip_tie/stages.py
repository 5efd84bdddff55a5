"""The zip tie's stages, judged from the cameras: grasp head, grasp tail, align, insert, pull.

A partial success is measured by how far up this ladder a trial got (the contract's
``stages``; the trial runner keeps a stage once a verdict shows it). Each view's
``zip-classic-v1`` estimate carries what it measured (:func:`features`); :func:`stage_rule`
fuses the two views:

- **grasp_head**: the head is off its rail, at least :data:`LIFT_M` above where it lies
  (nothing but a gripper lifts it). Its height comes from the two views' rays through its
  centre (triangulated, when both see it and the rays meet within :data:`MEET_M`); a head
  that one view alone sees is placed at the depth its apparent area gives, which a finger
  hiding part of it makes farther and so lower: a lift can be missed, not invented.
- **grasp_tail**: the strap's far end (its pixel farthest from the head, in each view) is
  off the rest by :data:`LIFT_M` (:func:`far_end`: triangulated from both views, or the side
  view's at the head's depth); or the tail is aligned with a lifted head (it is up in the
  air with it).
- **align**: the tail is brought to the head: the side view shows two or more pieces of
  strap within :data:`ALIGN_REACH_M` of the head (the root and the tail's end; from above
  the two merge into the loop). In the simulator's truth: the tail's last 30 mm within that
  of the head's faces.
- **insert**: the success rule of both views for a tip just out of the exit
  (:data:`INSERT_PROTRUSION_M` instead of the contract's protrusion): a tail inside the
  head is hidden by its walls, so this is the first sight of it in the passage.
- **pull**: the success rule (through and out past the exit, both views).

A later stage of the threading implies the earlier ones (a tail pulled through was inserted;
an inserted tail was aligned); the two grasps are judged on their own.

:func:`stage_truth` is the simulator's answer to the same questions, for tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_tasks.arm import PinholeCamera
from enpire_tasks.zip_tie.geometry import (
    HEAD_BODY,
    TAIL_SITE,
    Threading,
    parts,
    strap_chain,
    threading,
)

STAGES = ('grasp_head', 'grasp_tail', 'align', 'insert', 'pull')
#: A part counts as lifted this far above where it lies at the start (m).
LIFT_M = 0.03
#: Two views' rays through the same part meet within this (m), else they are not one point.
MEET_M = 0.012
#: Pieces of strap this near the head (m): the tail brought to it.
ALIGN_REACH_M = 0.015
#: A tail inserted: its tip at least this far past the exit (m; inside the head, the head's
#: walls hide it).
INSERT_PROTRUSION_M = 0.001
#: The head's area a camera sees (m^2) at most, for the depth from an apparent area: from
#: above its 9 x 8.2 mm top and, off the view's axis, its sides (1.45 x the top: a head
#: lying at the view's edge); from the side its 8.2 x 6 mm face and its top or bottom. An
#: over-estimate puts the head deeper, so lower: a lift is missed, never invented.
HEAD_TOP_M2, HEAD_SIDE_M2 = 1.45 * 74e-6, 1.45 * 49e-6
VIEWS = ('task_top', 'side')


def features(head_uv: tuple[float, float], head_area: int, strap: np.ndarray,
             pieces_align: int, inserted: bool) -> dict[str, Any]:
    """What one view measured for :func:`stage_rule`: the head's centre (px) and area, the
    strap's far end (its pixel farthest from the head, px; None without strap), the count of
    strap pieces within :data:`ALIGN_REACH_M` of the head, and whether the view's through
    rule holds for a tip just past the exit (:data:`INSERT_PROTRUSION_M`)."""
    rows, cols = np.nonzero(strap)
    far = None
    if rows.size:
        d2 = (cols - head_uv[0]) ** 2 + (rows - head_uv[1]) ** 2
        i = int(np.argmax(d2))
        far = (float(cols[i]), float(rows[i]))
    return {'head_uv': (float(head_uv[0]), float(head_uv[1])), 'head_area': int(head_area),
            'far_uv': far, 'pieces_align': int(pieces_align), 'inserted': bool(inserted)}


def _meet(cams: Mapping[str, PinholeCamera], uv: Mapping[str, tuple[float, float]]
          ) -> np.ndarray | None:
    """The point nearest both views' rays through ``uv`` (None: they miss by > MEET_M or
    run parallel, or either lies behind a camera)."""
    (a, ua), (b, ub) = ((cams[v], uv[v]) for v in VIEWS)
    da, db = a.ray(*ua), b.ray(*ub)
    w = a.position - b.position
    aa, bb, ab = da @ da, db @ db, da @ db
    den = aa * bb - ab * ab
    if den < 1e-9:
        return None
    s = (ab * (db @ w) - bb * (da @ w)) / den
    t = (aa * (db @ w) - ab * (da @ w)) / den
    if s <= 0 or t <= 0:
        return None
    pa, pb = a.position + s * da, b.position + t * db
    if float(np.linalg.norm(pa - pb)) > MEET_M:
        return None
    return (pa + pb) / 2.0


def at_depth(cam: PinholeCamera, uv: tuple[float, float], depth: float) -> np.ndarray | None:
    """The point on the ray through ``uv`` at ``depth`` along the camera's optical axis
    (None: behind the camera)."""
    d = cam.ray(*uv)
    along = float(d @ (cam.rotation @ np.array([0.0, 0.0, 1.0])))   # depth per unit of ray
    if depth <= 0 or along <= 1e-6:
        return None
    return cam.position + d * (depth / along)


def depth_of(cam: PinholeCamera, point: np.ndarray) -> float:
    """``point``'s depth along the camera's optical axis."""
    return float((np.asarray(point) - cam.position) @ (cam.rotation @ np.array([0.0, 0.0, 1.0])))


def _from_area(cam: PinholeCamera, uv: tuple[float, float], area_px: int, face_m2: float
               ) -> np.ndarray | None:
    """The head's centre along its ray at the depth its apparent area gives."""
    return at_depth(cam, uv, cam.fx * math.sqrt(face_m2 / max(area_px, 1)))


def head_position(task: TaskSpec, feats: Mapping[str, Mapping[str, Any]]
                  ) -> np.ndarray | None:
    """The head's centre (world, m) from the views that found it (None: neither did)."""
    cams = _cameras(task)
    seen = [v for v in VIEWS if feats.get(v)]
    if len(seen) == 2:
        p = _meet(cams, {v: feats[v]['head_uv'] for v in VIEWS})
        if p is not None:
            return p
    # One view (or rays that do not meet: the lower of the two single-view guesses).
    guesses = [g for v in seen if (g := _from_area(
        cams[v], feats[v]['head_uv'], feats[v]['head_area'],
        HEAD_TOP_M2 if v == 'task_top' else HEAD_SIDE_M2)) is not None]
    return min(guesses, key=lambda p: p[2]) if guesses else None


def far_end(task: TaskSpec, feats: Mapping[str, Mapping[str, Any]],
            head: np.ndarray | None) -> np.ndarray | None:
    """The strap's far end (world, m): triangulated from both views; else, where the top
    view cannot see it (a tail held out past its frame), the side view's at the head's depth
    (a tie held up across the side camera's view; None: neither)."""
    cams = _cameras(task)
    far = {v: feats[v]['far_uv'] for v in VIEWS if feats.get(v, {}).get('far_uv') is not None}
    if len(far) == 2:
        p = _meet(cams, far)
        if p is not None:
            return p
    if 'side' in far and head is not None:
        return at_depth(cams['side'], far['side'], depth_of(cams['side'], head))
    return None


def stage_rule(task: TaskSpec, estimates: Mapping[str, Any]) -> dict[str, bool]:
    """The plugin's ``stage_rule``: {stage: reached} from the views' estimates (module
    doc)."""
    p = parts()
    feats = {v: dict(e.features) for v in VIEWS
             if (e := estimates.get(v)) is not None and e.found and e.features}
    out = dict.fromkeys(STAGES, False)
    head = head_position(task, feats)
    if head is not None:
        out['grasp_head'] = bool(head[2] >= p.rail_top_z + p.head_half[2] + LIFT_M)
    tail = far_end(task, feats, head)
    if tail is not None:
        out['grasp_tail'] = bool(tail[2] >= p.rail_top_z + LIFT_M)
    out['pull'] = all(v in estimates and estimates[v].found and estimates[v].pose
                      and float(estimates[v].pose[2]) >= 0.5 for v in VIEWS)
    out['insert'] = out['pull'] or (len(feats) == 2 and all(feats[v]['inserted']
                                                            for v in VIEWS))
    out['align'] = out['insert'] or feats.get('side', {}).get('pieces_align', 0) >= 2
    # A tail at a lifted head is up in the air with it: something brought it there.
    out['grasp_tail'] = out['grasp_tail'] or (out['align'] and out['grasp_head'])
    return out


def stage_truth(model: Any, data: Any, th: Threading | None = None) -> dict[str, bool]:
    """The simulator's answer to the stages (tests and crosschecks, never policies);
    ``th``: the scene's :func:`.geometry.threading` when the caller has it."""
    p = parts()
    head = np.array(data.body(HEAD_BODY).xpos)
    tip = np.array(data.site(TAIL_SITE).xpos)
    th = th or threading(model, data)
    inserted = th.crossing and th.protrusion_m >= INSERT_PROTRUSION_M
    # the tail's last 30 mm (its last three segments' starts and its tip) near the head
    tail = strap_chain(model, data)[-4:]
    near = float(np.min(np.linalg.norm(tail - head, axis=1))) <= (ALIGN_REACH_M
                                                                  + max(p.head_half))
    return {'grasp_head': bool(head[2] >= p.rail_top_z + p.head_half[2] + LIFT_M),
            'grasp_tail': bool(tip[2] >= p.rail_top_z + LIFT_M),
            'align': bool(th.through or inserted or near),
            'insert': bool(th.through or inserted), 'pull': bool(th.through)}


def _cameras(task: TaskSpec) -> dict[str, PinholeCamera]:
    return {v: PinholeCamera.of(task.views[v]) for v in VIEWS}


__all__ = ['ALIGN_REACH_M', 'INSERT_PROTRUSION_M', 'LIFT_M', 'STAGES', 'at_depth', 'depth_of',
           'far_end', 'features',
           'head_position', 'stage_rule', 'stage_truth']
