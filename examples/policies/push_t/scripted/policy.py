"""Scripted Push-T baseline: see the T in the top image, pick a contact, approach, push.

Perception: pixels of the T's colour (LightSlateGray) -> centroid + principal axis; the
T's mass is skewed towards its stem, so the sign of the third moment along the axis resolves
the 180-degree ambiguity. Control: every tick, score contact points on the T's outline by how
well pushing there (inwards) produces the wanted twist (translation towards the goal and
rotation towards the goal angle); approach the best one around the block, then push.
Every tunable number is in policy.yaml ``params`` (spec.params).
"""

from __future__ import annotations

import math

import numpy as np

T_COLOR = (119, 136, 153)
# The T's outline in body coordinates (px): gym-pusht's bar 120x30 on top of a 30x90 stem,
# body origin at the middle of the bar's top edge, stem along +y.
OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30),
                    (-60, 30)], dtype=np.float64)
# Area centroid of the T along +y: (3600 * 15 + 2700 * 75) / 6300.
CENTROID_Y = (3600 * 15 + 2700 * 75) / 6300
PUSHER_RADIUS_PX = 15.0
# Image coordinate of a pixel's centre relative to its index: the top camera's pixel (u, v)
# is centred on image coordinates (u, v) (OpenCV's convention; the sim cell's area camera),
# where workspace_to_pixel maps workspace px.
PIXEL_CENTRE_PX = 0.0

DEFAULTS = {
    'color_tol': 40,            # max abs difference per channel to count as the T
    'angle_weight_px': 60.0,    # px of translation error worth one radian of angle error
    'lever_px': 50.0,           # normalises the torque of a push
    'contact_spacing_px': 8.0,  # spacing of candidate contact points along the outline
    'approach_clearance_px': 6.0,
    'approach_tol_px': 8.0,     # how close to the approach point before pushing
    'max_step_px': 20.0,        # largest target jump per tick while travelling
    'push_gain': 0.3,           # push depth per px of (weighted) error
    'push_min_px': 2.0,
    'push_max_px': 22.0,
    'switch_margin': 0.15,      # hysteresis before abandoning the current contact
    'orbit_margin_px': 25.0,    # clearance when travelling around the block
    'done_pos_px': 2.0,         # stop pushing inside these tolerances
    'done_angle_rad': 0.03,
}


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def estimate_pose(image: np.ndarray, ws_to_px: np.ndarray, tol: int) -> tuple | None:
    """T pose (x_px, y_px, theta_rad) of the body origin in workspace px, or None if unseen."""
    diff = np.abs(image.astype(np.int16) - np.array(T_COLOR, dtype=np.int16)).max(axis=2)
    vs, us = np.nonzero(diff <= tol)
    if len(us) < 200:
        return None
    scale = np.array([ws_to_px[0, 0], ws_to_px[1, 1]])
    offset = np.array([ws_to_px[0, 2], ws_to_px[1, 2]])
    pts = (np.stack([us, vs], axis=1) + PIXEL_CENTRE_PX - offset) / scale
    c = pts.mean(axis=0)
    d = pts - c
    cov = d.T @ d / len(d)
    w, v = np.linalg.eigh(cov)
    axis = v[:, np.argmax(w)]
    proj = d @ axis
    if np.mean(proj ** 3) < 0:  # the stem side has the long tail
        axis = -axis
    theta = math.atan2(-axis[0], axis[1])  # body +y rotated by theta is the stem axis
    origin = c - CENTROID_Y * axis
    return float(origin[0]), float(origin[1]), theta


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class ScriptedPushT:
    def __init__(self, spec) -> None:
        self.p = {**DEFAULTS, **dict(spec.params)}
        self.low, self.high = spec.low, spec.high
        info = spec.task_info
        self.goal = np.asarray(info.get('goal_pose', (256.0, 256.0, math.pi / 4)), dtype=float)
        views = info.get('views', {})
        a = views.get('top', {}).get('workspace_to_pixel', [[480 / 512, 0, 0], [0, 480 / 512, 0]])
        self.ws_to_px = np.asarray(a, dtype=float)
        self.contacts = self._contacts(float(self.p['contact_spacing_px']))
        self.current: int | None = None

    @staticmethod
    def _contacts(spacing: float) -> tuple[np.ndarray, np.ndarray]:
        pts, normals = [], []
        n = len(OUTLINE)
        for i in range(n):
            a, b = OUTLINE[i], OUTLINE[(i + 1) % n]
            edge = b - a
            length = float(np.linalg.norm(edge))
            tangent = edge / length
            normal = np.array([tangent[1], -tangent[0]])  # outward for this winding
            k = max(1, int(length // spacing))
            for j in range(k):
                t = (j + 0.5) / k
                pts.append(a + t * edge)
                normals.append(normal)
        return np.array(pts), np.array(normals)

    def reset(self, seed) -> None:
        self.current = None

    def act(self, obs) -> np.ndarray:
        pos = np.asarray(obs['agent_pos'], dtype=float)
        pose = estimate_pose(obs['image_top'], self.ws_to_px, int(self.p['color_tol']))
        if pose is None:
            return np.clip(pos, self.low, self.high)
        x, y, th = pose
        rot = _rot(th)
        centroid_b = np.array([0.0, CENTROID_Y])
        c = np.array([x, y]) + rot @ centroid_b
        goal_c = self.goal[:2] + _rot(self.goal[2]) @ centroid_b
        e = goal_c - c
        dth = _wrap(self.goal[2] - th)
        if np.linalg.norm(e) < self.p['done_pos_px'] and abs(dth) < self.p['done_angle_rad']:
            self.current = None
            return self._toward(pos, self._retreat(pos, c))
        pts_b, normals_b = self.contacts
        pts = (rot @ pts_b.T).T + np.array([x, y])
        normals = (rot @ normals_b.T).T
        push = -normals
        r = pts - c
        torque = (r[:, 0] * push[:, 1] - r[:, 1] * push[:, 0]) / self.p['lever_px']
        wanted = np.array([e[0], e[1], self.p['angle_weight_px'] * dth])
        produced = np.concatenate([push, torque[:, None]], axis=1)
        produced /= np.linalg.norm(produced, axis=1, keepdims=True)
        score = produced @ (wanted / (np.linalg.norm(wanted) + 1e-9))
        approach = pts + normals * (PUSHER_RADIUS_PX + self.p['approach_clearance_px'])
        # Contacts whose approach point leaves the table cannot be reached.
        outside = np.any((approach < 12.0) | (approach > 500.0), axis=1)
        score = np.where(outside, -2.0, score)
        best = int(np.argmax(score))
        if (self.current is None or score[self.current] < score[best] - self.p['switch_margin']
                or score[self.current] <= 0.0):
            self.current = best
        i = self.current
        err = math.hypot(float(np.linalg.norm(e)), self.p['angle_weight_px'] * dth)
        if np.linalg.norm(pos - approach[i]) <= self.p['approach_tol_px'] or \
                np.linalg.norm(pos - pts[i]) <= PUSHER_RADIUS_PX + self.p['approach_tol_px']:
            depth = float(np.clip(self.p['push_gain'] * err, self.p['push_min_px'],
                                  self.p['push_max_px']))
            target = pts[i] + push[i] * depth
            return np.clip(target, self.low, self.high)
        return self._travel(pos, approach[i], c)

    def _toward(self, pos: np.ndarray, target: np.ndarray) -> np.ndarray:
        step = target - pos
        n = float(np.linalg.norm(step))
        if n > self.p['max_step_px']:
            step *= self.p['max_step_px'] / n
        return np.clip(pos + step, self.low, self.high)

    def _retreat(self, pos: np.ndarray, c: np.ndarray) -> np.ndarray:
        away = pos - c
        n = float(np.linalg.norm(away)) + 1e-9
        return c + away / n * max(n, 110.0)

    def _travel(self, pos: np.ndarray, goal: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Go to ``goal``, orbiting the block when the straight path would hit it."""
        radius = 80.0 + PUSHER_RADIUS_PX + self.p['orbit_margin_px'] * 0.5
        seg = goal - pos
        seg_len2 = float(seg @ seg) + 1e-9
        t = float(np.clip((c - pos) @ seg / seg_len2, 0.0, 1.0))
        closest = pos + t * seg
        blocked = np.linalg.norm(closest - c) < radius - 20.0 and 0.0 < t < 1.0
        if not blocked:
            return self._toward(pos, goal)
        a_pos = math.atan2(pos[1] - c[1], pos[0] - c[0])
        a_goal = math.atan2(goal[1] - c[1], goal[0] - c[0])
        da = _wrap(a_goal - a_pos)
        a_next = a_pos + math.copysign(min(abs(da), 0.6), da)
        orbit = c + radius * np.array([math.cos(a_next), math.sin(a_next)])
        return self._toward(pos, orbit)


def make_policy(spec):
    return ScriptedPushT(spec)
