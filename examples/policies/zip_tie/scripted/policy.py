"""Scripted zip tie baseline: see the head and the tail, pinch both from above, lift.

Perception (the top image, calibration from ``spec.task_info``): the head is the blob of its
colour; the strap is its own colour's; its far end is the strap pixel farthest
from the head. The head's centre is on the plane of its top face, the tail's on the rest's
top (``parts.tail_rest``), where its last 20 mm overhang.
Control, end-effector targets in the contract's convention, both grippers pointing down
(pitch pi/2); the left one's fingers close along x, on the head's faces either side of its
rail, the right one's along y, across the strap's width:

  locate -> above (both) -> descend -> close (tail, then head) -> lift -> present

Presenting carries the tie, both ends held, to where both cameras see it (the side camera's
centre line, ``present_y`` / ``present_z``): the stages are judged from the cameras, and a
head held over its start rail at the near end is out of the side camera's view. This
completes the task's first two stages (grasp head, grasp tail); aligning the tail under the
head, inserting and pulling are left to the agent. Every tunable number is in
policy.yaml ``params`` (spec.params).
"""

from __future__ import annotations

import numpy as np

DEFAULTS = {
    'hue_tol': 15.0,          # degrees of hue from the head's colour
    'above_dz': 0.05,         # m above a grasp before descending
    'head_grasp_dz': 0.010,   # m: fingertip centre over the head's rail (its centre: 0.003)
    'tail_back': 0.012,       # m from the tail's tip towards the head: where to pinch it
    'tail_grasp_dz': 0.008,   # m: fingertip centre above the strap (the pads reach below)
    'lift_z': 0.10,           # m
    'present_y': 0.52,        # m: where the held tie is shown to the cameras
    'present_z': 0.12,        # m (the side camera's height)
    'present_x': 0.10,        # m: each gripper this far either side of the middle
    'speed': 0.008,           # m per tick while travelling
    'descend_speed': 0.004,   # m per tick while descending
    'close_ticks': 15,
}
DOWN = np.array([0.0, np.pi / 2, 0.0])
#: The left gripper's yaw once over the head: pointing down and turned a quarter about its
#: axis, fingers close along x, on the head's x faces either side of its 5 mm rail (turned
#: gradually: the per-tick IK does not find the turn from the home posture in one step).
ACROSS_YAW, YAW_STEP = np.pi / 2, 0.08


class Camera:
    """The contract's pinhole calibration (OpenCV convention)."""

    def __init__(self, c) -> None:
        self.fx, self.fy, self.cx, self.cy = (float(c[k]) for k in ('fx', 'fy', 'cx', 'cy'))
        self.pos = np.asarray(c['position'], dtype=np.float64)
        self.rot = np.asarray(c['rotation'], dtype=np.float64)

    def on_plane_z(self, u: float, v: float, z: float) -> np.ndarray:
        d = self.rot @ np.array([(u - self.cx) / self.fx, (v - self.cy) / self.fy, 1.0])
        return self.pos + (z - self.pos[2]) / d[2] * d


def hue_mask(image: np.ndarray, rgb, hue_tol: float) -> np.ndarray:
    img = image.astype(np.float32) / 255.0
    mx, mn = img.max(axis=-1), img.min(axis=-1)
    chroma = np.maximum(mx - mn, 1e-6)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    hue = np.where(mx == r, ((g - b) / chroma) % 6.0,
                   np.where(mx == g, (b - r) / chroma + 2.0, (r - g) / chroma + 4.0)) * 60.0
    t = np.asarray(rgb, dtype=np.float32) / 255.0
    tc = max(float(t.max() - t.min()), 1e-6)
    if t.max() == t[0]:
        th = ((t[1] - t[2]) / tc) % 6.0
    elif t.max() == t[1]:
        th = (t[2] - t[0]) / tc + 2.0
    else:
        th = (t[0] - t[1]) / tc + 4.0
    th *= 60.0
    dh = np.abs((hue - th + 180.0) % 360.0 - 180.0)
    return (dh <= hue_tol) & ((mx - mn) / np.maximum(mx, 1e-6) >= 0.35) & (mx >= 0.2)




class ScriptedZipTie:
    def __init__(self, spec) -> None:
        self.p = {**DEFAULTS, **dict(spec.params)}
        info = spec.task_info
        self.low = np.asarray(spec.action_low, dtype=np.float64)
        self.high = np.asarray(spec.action_high, dtype=np.float64)
        self.home = np.asarray(info['home'], dtype=np.float64)
        parts = info['parts']
        self.head_rgb = parts['head']['colour_rgb']
        self.strap_rgb = parts['strap']['colour_rgb']
        self.head_top = float(parts['rails']['top_z']) + float(parts['head']['size'][2])
        self.rest_z = float(parts['rails']['top_z'])     # the strap's underside at the start
        self.top = Camera(info['views']['task_top']['camera'])
        self.reset(None)

    def reset(self, seed) -> None:
        self.phase, self.ticks = 'locate', 0
        self.cmd = None              # fingertip targets, left then right (2 x 3)
        self.goal = None
        self.grip = np.ones(2)
        self.yaw = 0.0               # the left gripper's

    def _locate(self, image: np.ndarray):
        head = hue_mask(image, self.head_rgb, self.p['hue_tol'])
        if head.sum() < 6:
            return None
        rows, cols = np.nonzero(head)
        hu, hv = float(cols.mean()), float(rows.mean())
        srows, scols = np.nonzero(hue_mask(image, self.strap_rgb, self.p['hue_tol']))
        if srows.size < 20:
            return None
        d2 = (scols - hu) ** 2 + (srows - hv) ** 2
        far = int(np.argmax(d2))
        head_xy = self.top.on_plane_z(hu, hv, self.head_top)[:2]
        tip_xy = self.top.on_plane_z(float(scols[far]), float(srows[far]), self.rest_z)[:2]
        back = (head_xy - tip_xy) / max(float(np.linalg.norm(head_xy - tip_xy)), 1e-6)
        # the strap's centre line there: the mean of its pixels as far from the head as the
        # grasp point (a band across the strap), not the far corner
        g = self.top.on_plane_z(float(scols[far]), float(srows[far]), self.rest_z)
        reach = float(np.sqrt(d2[far])) * (1.0 - self.p['tail_back'] /
                                           max(float(np.linalg.norm(head_xy - tip_xy)), 1e-6))
        band = np.abs(np.sqrt(d2) - reach) <= 2.0
        if band.sum() >= 2:
            g = self.top.on_plane_z(float(scols[band].mean()), float(srows[band].mean()),
                                    self.rest_z)
            return head_xy, g[:2]
        return head_xy, tip_xy + self.p['tail_back'] * back

    def _toward(self, target: np.ndarray, speed: float) -> bool:
        d = target - self.cmd
        n = np.linalg.norm(d, axis=1, keepdims=True)
        self.cmd = np.where(n <= speed, target, self.cmd + d * (speed / np.maximum(n, 1e-9)))
        return bool(np.all(n <= speed))

    def _action(self) -> np.ndarray:
        a = self.home.copy()
        a[0:3], a[3:6], a[6] = self.cmd[0], DOWN + [0.0, 0.0, self.yaw], self.grip[0]
        a[7:10], a[10:13], a[13] = self.cmd[1], DOWN, self.grip[1]
        return np.clip(a, self.low, self.high)

    def _go(self, phase: str) -> None:
        self.phase, self.ticks = phase, 0

    def act(self, obs) -> np.ndarray:
        p = self.p
        ee = np.asarray(obs['ee_pose'], dtype=np.float64)
        if self.cmd is None:
            self.cmd = np.stack([ee[0:3], ee[7:10]])
        self.ticks += 1
        if self.phase == 'locate':
            found = self._locate(np.asarray(obs['image_top']))
            if found is None:
                return self._action()
            head_xy, tail_xy = found
            self.goal = np.array([[*head_xy, self.rest_z + p['head_grasp_dz']],
                                  [*tail_xy, self.rest_z + p['tail_grasp_dz']]])
            self._go('above')
        elif self.phase == 'above':
            there = self._toward(self.goal + [0.0, 0.0, p['above_dz']], p['speed'])
            if there:
                self.yaw = min(ACROSS_YAW, self.yaw + YAW_STEP)
            if there and self.yaw >= ACROSS_YAW:
                self._go('descend')
        elif self.phase == 'descend':
            if self._toward(self.goal, p['descend_speed']) and self.ticks > 3:
                self._go('close')
        elif self.phase == 'close':
            # The tail first: the fingers closing on the head push its strap, which slid a
            # tail not yet held out from between the other gripper's fingers.
            self.grip[1] = 0.0
            if self.ticks >= p['close_ticks']:
                self.grip[0] = 0.0
            if self.ticks >= 2 * p['close_ticks']:
                self._go('lift')
        elif self.phase == 'lift':
            up = self.cmd.copy()
            up[:, 2] = p['lift_z']
            if self._toward(up, p['descend_speed']):
                self._go('present')
        elif self.phase == 'present':
            shown = np.array([[-p['present_x'], p['present_y'], p['present_z']],
                              [p['present_x'], p['present_y'], p['present_z']]])
            self._toward(shown, p['descend_speed'])
        return self._action()


def make_policy(spec):
    return ScriptedZipTie(spec)


__all__ = ['make_policy']
