"""Scripted GPU insertion baseline: see the card's cooler, grasp it from the side, align the
card over the slot by eye, push it in (its edge cams the latch open), release.

Perception: the cooler's colour in the top image (its lit top face, seen from above) -> the
ray through the face's centroid meets the plane of the cooler's top (calibration and part
sizes from ``spec.task_info``). Control (the right arm; the left one stays home), end-effector
targets in the contract's convention (``rpy = 0``: gripper level, pointing -x, fingers closing
along y):

  locate -> pregrasp (beside the cooler) -> approach -> close -> lift -> transfer (over the
  slot) -> align (closed loop on the top image until the card is over the slot) -> near
  (down until the edge is just over the slot's chamfers) -> align again -> insert (slow
  descent, pressing past the latch) -> (seated? release -> retreat : back up to ``near``,
  align and insert again, up to ``max_tries`` times, the card kept in hand).

Seated or not is felt: pressing towards below the seated height, the measured fingertips
stop at the seated height plus what the fingers give, or millimetres higher when the edge
sits on the housing's lip or the latch; and the top view has the card over the slot (a card
that slipped in the fingers can go down beside the housing). A card let go part-way in
(resting on the latch, a corner in the slot) topples off the connector; one kept in hand is
the next try's, or the reset's to take.

The second alignment, just over the slot: the card drifts in the grasp and the arm's
tracking changes with height (1-2 mm in y over the 15 mm descent), more than the slot's
lead-in (1 mm chamfers) takes. The cooler's plane for the top view is from the measured
fingertip height (the command sags a few mm under gravity: 3 mm of height is 1 mm of y
through the top camera's ray here).

Every tunable number is in policy.yaml ``params`` (spec.params).
"""

from __future__ import annotations

import numpy as np

DEFAULTS = {
    'hue_tol': 15.0,           # degrees of hue from the cooler's colour
    'pregrasp_dx': 0.07,       # m beside the cooler (+x) before approaching
    'grasp_dx': 0.006,         # m: fingertip centre from the edge's centre along +x
    'lift_z': 0.15,            # m: fingertip height while carrying
    'above_slot_dz': 0.015,    # m: edge clearance over the slot before inserting
    'near_slot_dz': 0.003,     # m: edge clearance over the slot for the second alignment
    'speed': 0.008,            # m per tick while travelling
    'insert_speed': 0.0012,    # m per tick while inserting
    'press_dz': 0.001,         # m below the seated height, to press home
    'block_dz': 0.005,         # m: the command at most this far below the measured fingertips
    'align_gain': 0.8,         # fraction of the seen error corrected per align step
    'align_tol': 0.0005,       # m: aligned when the card is this close over the slot
    'align_steps': 6,          # at most this many corrections
    'lost_m': 0.015,           # m: a cooler seen this far off the slot is not the one in hand
    'seat_tol': 0.003,         # m: the measured fingertips this close to the seated height
    'seat_xy_tol': 0.002,      # m: and the card (top view) this close over the slot
    'max_tries': 6,            # insertions before holding the card where it is
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


def lit_face_centroid(image: np.ndarray, rgb, hue_tol: float):
    """(u, v) of the lit top face of the cooler-coloured blob (its brightest pixels), or
    None. Pixels of the cooler's hue (shading keeps hue), saturated and not dark; of those the
    brightest are the top face, lit from above."""
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


class ScriptedGpu:
    def __init__(self, spec) -> None:
        self.p = {**DEFAULTS, **dict(spec.params)}
        info = spec.task_info
        self.low = np.asarray(spec.action_low, dtype=np.float64)
        self.high = np.asarray(spec.action_high, dtype=np.float64)
        self.home = np.asarray(info['home'], dtype=np.float64)
        parts = info['parts']
        card, slot = parts['card'], parts['slot']
        cooler = card['cooler']
        self.rgb = cooler['colour_rgb']
        self.cooler_c = np.asarray(cooler['center'], dtype=np.float64)     # edge -> centre
        self.cooler_top = float(cooler['center'][2]) + float(cooler['size'][2]) / 2
        self.slot = np.asarray(slot['position'], dtype=np.float64)         # top centre
        self.slot_depth = float(slot['depth'])
        self.floor_z = float(parts['caddy']['floor_z'])
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
        self.near = False           # the second alignment (just over the slot) is on
        self.tries = 0              # insertions that did not seat
        self.zs = []                # the measured fingertip heights at the insertion's end

    # --- helpers ----------------------------------------------------------------------------
    def _edge_xy(self, image: np.ndarray, cooler_top_z: float):
        c = lit_face_centroid(image, self.rgb, self.p['hue_tol'])
        if c is None:
            return None
        return self.top.on_plane_z(c[0], c[1], cooler_top_z)[:2] - self.cooler_c[:2]

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
        dz = self.cooler_c[2]                      # the edge -> the fingertip centre
        if self.phase == 'locate':
            xy = self._edge_xy(image, self.floor_z + self.cooler_top)
            if xy is not None:
                self.goal = np.array([xy[0] + p['grasp_dx'], xy[1], self.floor_z + dz])
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
            z = self.slot[2] + p['above_slot_dz'] + dz
            above = np.array([self.slot[0] + p['grasp_dx'] + self.offset[0],
                              self.slot[1] + self.offset[1], z])
            if self._toward(above, p['speed']) and self.ticks > p['settle_ticks']:
                self._go('align')
        elif self.phase == 'align':
            if self.ticks % p['settle_ticks'] == 0:
                xy = self._edge_xy(image, float(ee[9]) - dz + self.cooler_top)
                if xy is not None:
                    err = xy - self.slot[:2]
                    if float(np.hypot(*err)) > p['lost_m']:
                        self._go('lost')    # not the card in hand: it fell
                    elif float(np.hypot(*err)) < p['align_tol'] or \
                            self.aligned >= p['align_steps']:
                        self.aligned = 0
                        self._go('insert' if self.near else 'near')
                    else:
                        self.offset -= p['align_gain'] * err
                        self.cmd[:2] = self.slot[:2] + [p['grasp_dx'], 0.0] + self.offset
                        self.aligned += 1
                elif self.ticks > 8 * p['settle_ticks']:
                    self._go('insert' if self.near else 'near')
        elif self.phase == 'near':
            z = self.slot[2] + p['near_slot_dz'] + dz
            if self._toward(np.array([*self.cmd[:2], z]), p['insert_speed']) and \
                    self.ticks > p['settle_ticks']:
                self.near = True
                self._go('align')
        elif self.phase == 'insert':
            seated = self.slot[2] - self.slot_depth + dz
            reached = self._toward(np.array([*self.cmd[:2], seated - p['press_dz']]),
                                   p['insert_speed'])
            # never command more than block_dz below the measured fingertips: a blocked card
            # is pressed with a few N, not pushed up through the fingers (or past 60 N)
            if self.cmd[2] < float(ee[9]) - p['block_dz']:
                self.cmd[2] = float(ee[9]) - p['block_dz']
                reached = self.ticks > 4 * p['settle_ticks'] or reached
            if reached and self.ticks > 2:
                self.zs.append(float(ee[9]))
                if len(self.zs) >= p['settle_ticks']:
                    xy = self._edge_xy(image, float(ee[9]) - dz + self.cooler_top)
                    over = xy is not None and \
                        float(np.hypot(*(xy - self.slot[:2]))) < p['seat_xy_tol']
                    if over and float(np.median(self.zs)) <= seated + p['seat_tol']:
                        self._go('release')
                    elif self.tries < p['max_tries']:
                        self.tries += 1
                        self.near, self.aligned, self.zs = False, 0, []
                        self._go('near')
                    else:
                        self._go('hold')
        elif self.phase == 'hold':       # out of tries: keep the card, over the slot
            self._toward(np.array([*self.cmd[:2], self.slot[2] + p['above_slot_dz'] + dz]),
                         p['insert_speed'])
        elif self.phase == 'lost':       # let go of nothing and go up, out of the way
            self.grip = 1.0
            self._toward(np.array([*self.cmd[:2], p['lift_z']]), p['speed'])
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
    return ScriptedGpu(spec)


__all__ = ['make_policy']
