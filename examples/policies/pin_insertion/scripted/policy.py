"""Scripted pin insertion baseline: see the pin, grasp it from the side, align over the hole
by eye, insert, release.

Perception: the pin's colour in the top image (its head, seen from above) -> the ray through
the blob's centroid meets the plane of the head's top (calibration from ``spec.task_info``).
Control (the right arm; the left one stays home), end-effector targets in the contract's
convention (``rpy = 0``: gripper level, pointing -x, fingers closing along y):

  locate -> pregrasp (beside the head) -> approach -> close -> lift -> transfer (over the
  hole) -> align (closed loop on the top image until the head is over the hole) -> insert
  (slow descent) -> release -> retreat.

Every tunable number is in policy.yaml ``params`` (spec.params).
"""

from __future__ import annotations

import numpy as np

DEFAULTS = {
    'hue_tol': 15.0,           # degrees of hue from the pin's colour
    'pregrasp_dx': 0.07,       # m beside the head (+x) before approaching
    'grasp_dz': 0.0,           # m: fingertip centre relative to the head's centre
    'lift_z': 0.12,            # m: fingertip height while carrying
    'above_hole_dz': 0.02,     # m: tip clearance over the hole before inserting
    'speed': 0.008,            # m per tick while travelling
    'insert_speed': 0.0015,    # m per tick while inserting
    'press_dz': 0.002,         # m below the seated height, to press home
    'align_gain': 0.8,         # fraction of the seen error corrected per align step
    'align_tol': 0.0006,       # m: aligned when the head is this close over the hole
    'align_steps': 6,          # at most this many corrections
    'close_ticks': 12,
    'release_ticks': 10,
    'settle_ticks': 6,
}


class Camera:
    """The contract's pinhole calibration (OpenCV convention)."""

    def __init__(self, c) -> None:
        self.fx, self.fy, self.cx, self.cy = (float(c[k]) for k in ('fx', 'fy', 'cx', 'cy'))
        self.pos = np.asarray(c['position'], dtype=np.float64)
        self.rot = np.asarray(c['rotation'], dtype=np.float64)

    def on_plane_z(self, u: float, v: float, z: float) -> np.ndarray:
        d = self.rot @ np.array([(u - self.cx) / self.fx, (v - self.cy) / self.fy, 1.0])
        return self.pos + (z - self.pos[2]) / d[2] * d


def head_centroid(image: np.ndarray, rgb, hue_tol: float):
    """(u, v) of the lit top face of the pin-coloured blob (its brightest pixels), or None.

    Pixels of the pin's hue (shading keeps hue), saturated and not dark; of those the
    brightest are the head's top face, lit from above (its side wall, which perspective adds,
    would bias the centroid)."""
    img = image.astype(np.float32) / 255.0
    mx, mn = img.max(axis=-1), img.min(axis=-1)
    chroma = np.maximum(mx - mn, 1e-6)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    hue = np.where(mx == r, ((g - b) / chroma) % 6.0,
                   np.where(mx == g, (b - r) / chroma + 2.0, (r - g) / chroma + 4.0)) * 60.0
    t = np.asarray(rgb, dtype=np.float32) / 255.0
    th = (((t[1] - t[2]) / max(t.max() - t.min(), 1e-6)) % 6.0) * 60.0   # a red-ish part
    dh = np.abs((hue - th + 180.0) % 360.0 - 180.0)
    mask = (dh <= hue_tol) & ((mx - mn) / np.maximum(mx, 1e-6) >= 0.35) & (mx >= 0.2)
    if mask.sum() < 6:
        return None
    v = np.where(mask, mx, 0.0)
    rows, cols = np.nonzero(v >= 0.92 * v.max())
    return float(cols.mean()), float(rows.mean())


class ScriptedPin:
    def __init__(self, spec) -> None:
        self.p = {**DEFAULTS, **dict(spec.params)}
        info = spec.task_info
        self.low = np.asarray(spec.action_low, dtype=np.float64)
        self.high = np.asarray(spec.action_high, dtype=np.float64)
        self.home = np.asarray(info['home'], dtype=np.float64)
        parts = info['parts']
        pin, hole = parts['pin'], parts['hole']
        self.rgb = pin['colour_rgb']
        self.head_h = float(pin['head_height'])
        self.pin_len = float(pin['shaft_length']) + self.head_h
        self.hole = np.asarray(hole['position'], dtype=np.float64)       # top centre
        self.hole_depth = float(hole['depth'])
        self.floor_z = float(parts['rack']['floor_z'])
        self.top = Camera(info['views']['task_top']['camera'])
        self.reset(None)

    def reset(self, seed) -> None:
        self.phase = 'locate'
        self.ticks = 0
        self.cmd = None             # the right arm's commanded fingertip position
        self.grip = 1.0
        self.goal = None
        self.offset = np.zeros(2)   # align correction (m)
        self.aligned = 0

    # --- helpers ----------------------------------------------------------------------------
    def _head_xy(self, image: np.ndarray, head_top_z: float):
        c = head_centroid(image, self.rgb, self.p['hue_tol'])
        if c is None:
            return None
        return self.top.on_plane_z(c[0], c[1], head_top_z)[:2]

    def _action(self) -> np.ndarray:
        a = self.home.copy()
        a[7:10] = self.cmd
        a[10:13] = 0.0
        a[13] = self.grip
        return np.clip(a, self.low, self.high)

    def _toward(self, target: np.ndarray, speed: float) -> bool:
        d = target - self.cmd
        n = float(np.linalg.norm(d))
        if n <= speed:
            self.cmd = target.copy()
            return True
        self.cmd = self.cmd + d * (speed / n)
        return False

    def _go(self, phase: str) -> None:
        self.phase, self.ticks = phase, 0

    # --- the policy ------------------------------------------------------------------------
    def act(self, obs) -> np.ndarray:
        p = self.p
        ee = np.asarray(obs['ee_pose'], dtype=np.float64)
        if self.cmd is None:
            self.cmd = ee[7:10].copy()
        self.ticks += 1
        image = obs['image_top']
        if self.phase == 'locate':
            xy = self._head_xy(image, self.floor_z + self.pin_len)
            if xy is not None:
                head_c = self.floor_z + self.pin_len - self.head_h / 2
                self.goal = np.array([xy[0], xy[1], head_c + p['grasp_dz']])
                self._go('pregrasp')
            else:
                self._toward(self.home[7:10], p['speed'])
        elif self.phase == 'pregrasp':
            if self._toward(self.goal + [p['pregrasp_dx'], 0.0, 0.0], p['speed']):
                self._go('approach')
        elif self.phase == 'approach':
            if self._toward(self.goal, p['speed'] / 2) and self.ticks > p['settle_ticks']:
                self._go('close')
        elif self.phase == 'close':
            self.grip = 0.0
            if self.ticks >= p['close_ticks']:
                self._go('lift')
        elif self.phase == 'lift':
            if self._toward(np.array([*self.cmd[:2], p['lift_z']]), p['speed']):
                self._go('transfer')
        elif self.phase == 'transfer':
            # fingertip centre = head centre; the tip is pin_len - head_h / 2 below it
            z = self.hole[2] + p['above_hole_dz'] + self.pin_len - self.head_h / 2
            above = np.array([self.hole[0] + self.offset[0], self.hole[1] + self.offset[1], z])
            if self._toward(above, p['speed']) and self.ticks > p['settle_ticks']:
                self._go('align')
        elif self.phase == 'align':
            if self.ticks % p['settle_ticks'] == 0:
                head_top = self.cmd[2] + self.head_h / 2
                xy = self._head_xy(image, head_top)
                if xy is not None:
                    err = xy - self.hole[:2]
                    if float(np.hypot(*err)) < p['align_tol'] or self.aligned >= p['align_steps']:
                        self._go('insert')
                    else:
                        self.offset -= p['align_gain'] * err
                        self.cmd[:2] = self.hole[:2] + self.offset
                        self.aligned += 1
                elif self.ticks > 8 * p['settle_ticks']:
                    self._go('insert')
        elif self.phase == 'insert':
            seated = self.hole[2] - self.hole_depth + self.pin_len - self.head_h / 2
            if self._toward(np.array([*self.cmd[:2], seated - p['press_dz']]),
                            p['insert_speed']) and self.ticks > 2:
                self._go('release')
        elif self.phase == 'release':
            self.grip = 1.0
            if self.ticks >= p['release_ticks']:
                self._go('retreat')
        elif self.phase == 'retreat':     # straight back out of the fingers' way, then up
            if self.goal is None or self.ticks == 1:
                self.goal = self.cmd + [p['pregrasp_dx'] / 2, 0.0, 0.0]
            if self._toward(self.goal, p['speed'] / 2):
                self._go('up')
        elif self.phase == 'up':
            self._toward(np.array([*self.goal[:2], p['lift_z']]), p['speed'])
        return self._action()


def make_policy(spec):
    return ScriptedPin(spec)


__all__ = ['make_policy']
