"""Planar pushing with a free-body contact model, the object pose from the task's pose tool.

Written by the built-in agent's idea ``planar_push`` (enpire_evolution.ideas). The agent
copies this file as ``policy.py``; everything task-specific comes from the contract:
``parts.block.outline_px`` (the pushed object's outline in its body frame),
``parts.pusher.radius_px``, ``goal_pose`` and the ``estimate_pose`` tool.

Model. With no ground friction to speak of (the block stops when the push stops) a point
push of impulse ``J`` at ``r`` from the centre of mass moves the block with the twist
``(v, w) = (J / m, (r x J) / I)``. Every tick the policy scores each reachable contact on
the outline and each push direction inside the friction cone by how well that twist points
along the wanted one ``(goal - centre, rho * angle error)``, then:

- in contact at a good point: push from there, moving the pusher with the contact point's
  velocity ``v + w x r``, a step proportional to the remaining error;
- otherwise: travel to the best contact (score minus a travel cost), around the block when
  the straight path would hit it, then close in;
- where success is a coverage of the goal region (``success.metric: coverage``), stop and
  step back once the coverage the estimated pose implies clears the threshold: the scene is
  solved, and pushing on could only undo it before the verifier has seen it hold.

The centre of mass and the inertia start from a uniform-density outline
(``cog_scale``/``inertia_scale`` = 1); the agent's parameter search tunes them, and every
other number, in ``policy.yaml`` ``params``.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULTS = {
    'rho': 55.0,            # px of position error worth one radian of angle error
    'cog_scale': 1.0,       # x the uniform-density centre of mass (along the body frame)
    'inertia_scale': 1.0,   # x the uniform-density moment of inertia (mass 1)
    'spacing_px': 6.0,      # spacing of candidate contacts along the outline
    'cone_deg': 35.0,       # push directions searched within +- this of the inward normal
    'n_dirs': 5,
    'clearance_px': 8.0,    # stand-off of the approach point from the outline
    'approach_tol_px': 6.0,
    'contact_tol_px': 3.0,  # pusher within radius + this of the outline: in contact
    'max_step_px': 60.0,    # largest target jump per tick while travelling
    'gain': 0.5,            # push step per px of (weighted) error
    'step_min_px': 1.0,
    'step_max_px': 30.0,
    'press_px': 2.0,        # extra push into the outline, to keep contact
    'min_score': 0.3,       # push from the current contact only above this score
    'switch_margin': 0.1,   # hysteresis before going to another contact
    'travel_cost': 0.002,   # score per px of travel to a contact
    'orbit_margin_px': 18.0,
    'done_pos_px': 1.0,     # stop inside these tolerances
    'done_angle_rad': 0.01,
    'stop_margin': 0.005,   # coverage tasks: stop once the coverage the pose implies is
                            # above the success threshold by this much (a solved scene stays)
    'backoff_px': 3.0,      # step away from the block when stopping
}


def _rot(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s], [s, c]])


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def _poly_dist(p: np.ndarray, poly: np.ndarray) -> float:
    return min(_seg_dist(p, poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly)))


def _inside(p: np.ndarray, poly: np.ndarray) -> bool:
    x, y = float(p[0]), float(p[1])
    hit = False
    for i in range(len(poly)):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % len(poly)]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            hit = not hit
    return hit


def _area(poly: np.ndarray) -> float:
    """Signed area (shoelace)."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum() / 2.0)


def _triangles(poly: np.ndarray) -> list[np.ndarray]:
    """Ear-clipping triangulation of a simple polygon, each triangle counter-clockwise in
    the shoelace sense (positive area)."""
    pts = [np.asarray(p, dtype=np.float64) for p in (poly if _area(poly) > 0 else poly[::-1])]
    out = []
    while len(pts) > 3:
        for i in range(len(pts)):
            a, b, c = pts[i - 1], pts[i], pts[(i + 1) % len(pts)]
            tri = np.array([a, b, c])
            if _area(tri) <= 1e-12:
                continue
            others = [p for j, p in enumerate(pts) if j not in (i - 1 if i else len(pts) - 1, i,
                                                                 (i + 1) % len(pts))]
            if any(_in_triangle(p, tri) for p in others):
                continue
            out.append(tri)
            del pts[i]
            break
        else:                       # degenerate input: stop rather than loop
            break
    out.append(np.array(pts))
    return out


def _in_triangle(p: np.ndarray, tri: np.ndarray) -> bool:
    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))
    return (cross(tri[0], tri[1], p) > 1e-12 and cross(tri[1], tri[2], p) > 1e-12
            and cross(tri[2], tri[0], p) > 1e-12)


def _clip(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: ``subject`` clipped by the convex, positive-area ``clip``."""
    out = list(subject)
    for i in range(len(clip)):
        if not out:
            break
        a, b = clip[i - 1], clip[i]
        edge = b - a
        inp, out = out, []
        for j in range(len(inp)):
            p, q = inp[j - 1], inp[j]
            sp = edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0])
            sq = edge[0] * (q[1] - a[1]) - edge[1] * (q[0] - a[0])
            if sq >= 0:
                if sp < 0:
                    out.append(p + (q - p) * (sp / (sp - sq)))
                out.append(q)
            elif sp >= 0:
                out.append(p + (q - p) * (sp / (sp - sq)))
    return np.array(out)


def overlap_area(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Area of the intersection of two triangulated polygons (exact)."""
    return sum(_area(_clip(ta, tb)) for ta in a for tb in b)


def mass_properties(outline: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of mass and polar moment of inertia about it of a uniform polygon of mass 1."""
    x, y = outline[:, 0], outline[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2.0
    cx = ((x + xn) * cross).sum() / (6.0 * area)
    cy = ((y + yn) * cross).sum() / (6.0 * area)
    iz = ((x * x + x * xn + xn * xn + y * y + y * yn + yn * yn) * cross).sum() / (12.0 * area)
    return np.array([cx, cy]), float(iz - (cx * cx + cy * cy))


def _oriented(outline: np.ndarray) -> np.ndarray:
    """The outline wound so that (ty, -tx) of each edge points outwards."""
    x, y = outline[:, 0], outline[:, 1]
    area = (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() / 2.0
    # In image coordinates (y down) a clockwise-on-screen winding has positive area here.
    return outline if area > 0 else outline[::-1].copy()


class PlanarPush:
    def __init__(self, spec) -> None:
        self.p = {**DEFAULTS, **dict(spec.params)}
        info = spec.task_info
        parts = info.get('parts') or {}
        self.outline = _oriented(np.asarray(parts['block']['outline_px'], dtype=np.float64))
        self.radius = float(parts['pusher']['radius_px'])
        self.goal = np.asarray(info['goal_pose'], dtype=np.float64)[:3]
        views = (info.get('success') or {}).get('views') or list(info.get('views') or {})
        self.view = str(views[0])
        self.tools = spec.tools
        # The pusher's centre stays a radius inside the workspace (safety envelopes are
        # tighter than the action bounds; the table's walls stop it there anyway).
        self.low = np.asarray(spec.low, dtype=np.float64) + self.radius
        self.high = np.asarray(spec.high, dtype=np.float64) - self.radius
        cog, inertia = mass_properties(self.outline)
        self.cog = cog * float(self.p['cog_scale'])
        self.inertia = inertia * float(self.p['inertia_scale'])
        self.pts, self.normals = self._contacts(float(self.p['spacing_px']))
        success = info.get('success') or {}
        self.stop_coverage = (float(success.get('threshold', 1.0)) + float(self.p['stop_margin'])
                              if success.get('metric') == 'coverage' else math.inf)
        self.body_triangles = _triangles(self.outline)
        self.goal_triangles = self._placed(tuple(self.goal))
        self.goal_area = sum(_area(t) for t in self.goal_triangles)
        cone = math.radians(float(self.p['cone_deg']))
        k = max(1, int(self.p['n_dirs']))
        self.angles = np.linspace(-cone, cone, k) if k > 1 else np.zeros(1)
        self.current: int | None = None

    def _contacts(self, spacing: float) -> tuple[np.ndarray, np.ndarray]:
        """Outline points a pusher can touch (its centre clear of the block) and their
        outward normals, in the body frame."""
        pts, normals = [], []
        poly = self.outline
        for i in range(len(poly)):
            a, b = poly[i], poly[(i + 1) % len(poly)]
            edge = b - a
            length = float(np.linalg.norm(edge))
            tangent = edge / length
            normal = np.array([tangent[1], -tangent[0]])
            k = max(1, int(length // spacing))
            for j in range(k):
                p = a + (j + 0.5) / k * edge
                centre = p + normal * self.radius
                if (_poly_dist(centre, poly) >= self.radius - 0.5
                        and not _inside(centre, poly)):
                    pts.append(p)
                    normals.append(normal)
        return np.array(pts), np.array(normals)

    def reset(self, seed) -> None:
        self.current = None

    def pose(self, obs) -> tuple[float, float, float] | None:
        """The block pose from the task's pose tool; None when unseen or unavailable."""
        tools = self.tools
        if tools is None or not getattr(tools, 'active', False):
            return None
        image = obs.get(f'image_{self.view}')
        if image is None:
            return None
        try:
            est = tools.estimate_pose(view=self.view, image=image)
        except Exception:  # noqa: BLE001 - a ToolError: no pose this tick, hold
            return None
        pose = est.get('pose')
        if not est.get('found') or pose is None or len(pose) < 3:
            return None
        return float(pose[0]), float(pose[1]), float(pose[2])

    def act(self, obs) -> np.ndarray:
        pos = np.asarray(obs['agent_pos'], dtype=np.float64)
        pose = self.pose(obs)
        if pose is None:
            return np.clip(pos, self.low, self.high)
        return self.control(pos, pose)

    def coverage(self, pose: tuple[float, float, float]) -> float:
        """The fraction of the goal region the block covers at ``pose`` (sampled)."""
        if not math.isfinite(self.stop_coverage):
            return 0.0
        return overlap_area(self._placed(pose), self.goal_triangles) / self.goal_area

    def _placed(self, pose: tuple[float, float, float]) -> list[np.ndarray]:
        rot, at = _rot(pose[2]), np.array(pose[:2], dtype=np.float64)
        return [(rot @ t.T).T + at for t in self.body_triangles]

    def _scores(self, r: np.ndarray, nin: np.ndarray, want: np.ndarray) -> np.ndarray:
        out = np.empty((len(r), len(self.angles)))
        for j, a in enumerate(self.angles):
            ca, sa = math.cos(a), math.sin(a)
            impulse = np.stack([ca * nin[:, 0] - sa * nin[:, 1],
                                sa * nin[:, 0] + ca * nin[:, 1]], axis=1)
            w = (r[:, 0] * impulse[:, 1] - r[:, 1] * impulse[:, 0]) / self.inertia
            twist = np.concatenate([impulse, self.p['rho'] * w[:, None]], axis=1)
            twist /= np.linalg.norm(twist, axis=1, keepdims=True)
            out[:, j] = twist @ want
        return out

    def _push_direction(self, r: np.ndarray, nin: np.ndarray, a: float) -> np.ndarray:
        ca, sa = math.cos(a), math.sin(a)
        impulse = np.array([ca * nin[0] - sa * nin[1], sa * nin[0] + ca * nin[1]])
        w = (r[0] * impulse[1] - r[1] * impulse[0]) / self.inertia
        u = impulse + w * np.array([-r[1], r[0]])   # velocity of the contact point
        return u / (np.linalg.norm(u) + 1e-9)

    def control(self, pos: np.ndarray, pose: tuple[float, float, float]) -> np.ndarray:
        p = self.p
        x, y, th = pose
        rot = _rot(th)
        centre = np.array([x, y]) + rot @ self.cog
        goal_centre = self.goal[:2] + _rot(self.goal[2]) @ self.cog
        e = goal_centre - centre
        dth = _wrap(self.goal[2] - th)
        err = math.hypot(float(np.linalg.norm(e)), p['rho'] * dth)
        if ((np.linalg.norm(e) < p['done_pos_px'] and abs(dth) < p['done_angle_rad'])
                or self.coverage(pose) >= self.stop_coverage):
            self.current = None
            away = pos - centre
            away *= p['backoff_px'] / (float(np.linalg.norm(away)) + 1e-9)
            return np.clip(pos + away, self.low, self.high)
        want = np.array([e[0], e[1], p['rho'] * dth]) / (err + 1e-9)
        pts = (rot @ self.pts.T).T + [x, y]
        nin = -(rot @ self.normals.T).T
        scores = self._scores(pts - centre, nin, want)
        approach = pts - nin * (self.radius + p['clearance_px'])
        unreachable = np.any((approach < self.low) | (approach > self.high), axis=1)
        scores[unreachable] = -9.0
        step = float(np.clip(p['gain'] * err, p['step_min_px'], p['step_max_px']))
        local = (pos - [x, y]) @ rot            # the pusher in the body frame
        if (_poly_dist(local, self.outline) <= self.radius + p['contact_tol_px']
                and not _inside(local, self.outline)):
            k = int(np.argmin(np.linalg.norm(pts - nin * self.radius - pos, axis=1)))
            here = float(scores[k].max())
            if here > p['min_score'] and here >= float(scores.max()) - p['switch_margin']:
                self.current = k
                u = self._push_direction(pts[k] - centre, nin[k],
                                         float(self.angles[int(np.argmax(scores[k]))]))
                return np.clip(pos + u * step + nin[k] * p['press_px'], self.low, self.high)
        value = scores.max(axis=1) - p['travel_cost'] * np.linalg.norm(approach - pos, axis=1)
        best = int(np.argmax(value))
        if self.current is None or value[self.current] < value[best] - p['switch_margin']:
            self.current = best
        i = self.current
        touching = pts[i] - nin[i] * self.radius
        if (np.linalg.norm(pos - approach[i]) <= p['approach_tol_px']
                or np.linalg.norm(pos - touching) <= p['clearance_px'] + p['approach_tol_px']):
            return np.clip(touching + nin[i] * p['press_px'], self.low, self.high)
        return self._travel(pos, approach[i], centre)

    def _toward(self, pos: np.ndarray, target: np.ndarray) -> np.ndarray:
        step = target - pos
        n = float(np.linalg.norm(step))
        if n > self.p['max_step_px']:
            step *= self.p['max_step_px'] / n
        return np.clip(pos + step, self.low, self.high)

    def _travel(self, pos: np.ndarray, goal: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Go to ``goal``, orbiting the block when the straight path would hit it."""
        reach = float(np.max(np.linalg.norm(self.outline - self.cog, axis=1)))
        radius = reach + self.radius + self.p['orbit_margin_px']
        seg = goal - pos
        t = float(np.clip((centre - pos) @ seg / (seg @ seg + 1e-9), 0.0, 1.0))
        closest = pos + t * seg
        if not (np.linalg.norm(closest - centre) < radius - 25.0 and 0.0 < t < 1.0):
            return self._toward(pos, goal)
        a0 = math.atan2(pos[1] - centre[1], pos[0] - centre[0])
        a1 = math.atan2(goal[1] - centre[1], goal[0] - centre[0])
        da = _wrap(a1 - a0)
        an = a0 + math.copysign(min(abs(da), 0.5), da)
        r = max(radius, float(np.linalg.norm(pos - centre)))
        return self._toward(pos, centre + r * np.array([math.cos(an), math.sin(an)]))


def make_policy(spec):
    return PlanarPush(spec)
