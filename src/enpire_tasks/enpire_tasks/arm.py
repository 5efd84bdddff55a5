"""What every bimanual arm task shares (pin insertion, GPU insertion): the action and state
conventions of the arm cells, calibrated pinhole cameras, colour blobs, and the plugin parts
built on them. Plain numpy: no ROS, no simulator.

**End-effector convention** (a task's ``action.space: ee``): per arm, left then right, the
fingertip centre ``[x, y, z]`` (m, world), the orientation ``[roll, pitch, yaw]`` (rad)
relative to the arm's *neutral* orientation, and the gripper opening (0 closed, 1 open)::

    R_world = R_neutral(arm) @ Rz(yaw) @ Ry(pitch) @ Rx(roll)

The neutral orientation is level, the gripper pointing from its base across the table: +x for
the left arm, -x for the right (its gripper frame's x axis; the fingers close along its y
axis). Angles relative to it stay far from the +-pi wrap for every pose the tasks need.

**State vector** of an arm cell: :data:`EE_NAMES` (the measured end-effector pose in the
action's terms, so that ``state[:14]`` is the hold target the safety supervisor needs), then
:data:`JOINT_NAMES` (6 joints in rad and the finger opening in m, per arm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks.observation import TICK, build_from_sources, camera_sources
from enpire_tasks.plugin import CellReading, LabelSpec

ARMS = ('left', 'right')
EE_FIELDS = ('x', 'y', 'z', 'roll', 'pitch', 'yaw', 'gripper')
JOINTS = ('waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate',
          'finger')
EE_NAMES = tuple(f'{arm}_{f}' for arm in ARMS for f in EE_FIELDS)
JOINT_NAMES = tuple(f'{arm}_{j}' for arm in ARMS for j in JOINTS)
STATE_NAMES = EE_NAMES + JOINT_NAMES
#: ``state``-sourced observation entries of the arm tasks -> state names (or the tick).
STATE_FIELDS: dict[str, tuple[str, ...] | str] = {
    'ee_pose': EE_NAMES, 'joints': JOINT_NAMES, 'step': TICK}


# --- rotations ----------------------------------------------------------------------------
def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


#: Each arm's neutral gripper orientation in the world (columns: the gripper frame's axes).
NEUTRAL = {'left': np.eye(3), 'right': rot_z(np.pi)}


def rpy_to_matrix(arm: str, rpy: Sequence[float]) -> np.ndarray:
    """The world orientation of ``arm``'s gripper for ``[roll, pitch, yaw]``."""
    roll, pitch, yaw = (float(v) for v in rpy)
    return NEUTRAL[arm] @ rot_z(yaw) @ rot_y(pitch) @ rot_x(roll)


def matrix_to_rpy(arm: str, rot: np.ndarray) -> np.ndarray:
    """``[roll, pitch, yaw]`` of a world orientation of ``arm``'s gripper (ZYX)."""
    r = NEUTRAL[arm].T @ np.asarray(rot, dtype=np.float64)
    pitch = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    if abs(r[2, 0]) < 1.0 - 1e-9:
        roll = float(np.arctan2(r[2, 1], r[2, 2]))
        yaw = float(np.arctan2(r[1, 0], r[0, 0]))
    else:   # gimbal lock: put it all in yaw
        roll, yaw = 0.0, float(np.arctan2(-r[0, 1], r[1, 1]))
    return np.array([roll, pitch, yaw])


@dataclass(frozen=True)
class ArmTarget:
    """One arm's part of an ee action."""

    position: np.ndarray    # (3,) m
    rotation: np.ndarray    # (3, 3) world
    gripper: float          # 0 closed .. 1 open


def split_action(action: Sequence[float]) -> dict[str, ArmTarget]:
    """An ee action (14 numbers) -> the target of each arm.

    Raises:
        ConfigError: not 14 finite numbers.
    """
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape != (7 * len(ARMS),) or not np.all(np.isfinite(a)):
        raise ConfigError(f'an ee action is {7 * len(ARMS)} finite numbers (per arm: x y z '
                          f'roll pitch yaw gripper), got shape {a.shape}')
    out = {}
    for i, arm in enumerate(ARMS):
        v = a[7 * i:7 * i + 7]
        out[arm] = ArmTarget(v[:3].copy(), rpy_to_matrix(arm, v[3:6]), float(v[6]))
    return out


def join_action(targets: Mapping[str, ArmTarget]) -> np.ndarray:
    """The inverse of :func:`split_action`."""
    parts = []
    for arm in ARMS:
        t = targets[arm]
        parts += [*t.position, *matrix_to_rpy(arm, t.rotation), t.gripper]
    return np.asarray(parts, dtype=np.float64)


# --- cameras ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PinholeCamera:
    """A calibrated camera of a task view (OpenCV convention: x right, y down, z forward).

    ``position`` / ``rotation`` (world from camera) are None for a camera on a moving mount.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    position: np.ndarray | None = None
    rotation: np.ndarray | None = None

    @classmethod
    def of(cls, view: ViewSpec) -> PinholeCamera:
        c = view.camera
        if not c:
            raise ConfigError(f"view '{view.name}' has no camera calibration in the contract")
        try:
            pos = None if c.get('position') is None else np.asarray(c['position'], float)
            rot = None if c.get('rotation') is None else np.asarray(c['rotation'], float)
            cam = cls(float(c['fx']), float(c['fy']), float(c['cx']), float(c['cy']),
                      view.width_px, view.height_px, pos, rot)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"view '{view.name}': camera calibration is invalid ({exc}); it "
                              'needs fx, fy, cx, cy and, for a fixed mount, position (3) and '
                              'rotation (3 x 3)') from None
        if (pos is not None and pos.shape != (3,)) or (rot is not None and rot.shape != (3, 3)):
            raise ConfigError(f"view '{view.name}': camera position must be 3 numbers and "
                              'rotation a 3 x 3 matrix')
        return cam

    @property
    def fixed(self) -> bool:
        return self.position is not None and self.rotation is not None

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixels (..., 2) (u right, v down); NaN behind the
        camera."""
        if not self.fixed:
            raise ConfigError('a camera on a moving mount has no fixed projection')
        p = (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation
        z = p[..., 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            u = np.where(z > 1e-9, self.fx * p[..., 0] / z + self.cx, np.nan)
            v = np.where(z > 1e-9, self.fy * p[..., 1] / z + self.cy, np.nan)
        return np.stack([u, v], axis=-1)

    def ray(self, u: float, v: float) -> np.ndarray:
        """The unit direction (world) through pixel (u, v)."""
        d = np.array([(u - self.cx) / self.fx, (v - self.cy) / self.fy, 1.0])
        w = self.rotation @ d
        return w / np.linalg.norm(w)

    def on_plane_z(self, u: float, v: float, z: float) -> np.ndarray:
        """Where the ray through (u, v) meets the horizontal plane at height ``z``."""
        r = self.ray(u, v)
        if abs(r[2]) < 1e-9:
            return np.full(3, np.nan)
        t = (z - self.position[2]) / r[2]
        return self.position + t * r

    def on_plane_x(self, u: float, v: float, x: float) -> np.ndarray:
        """Where the ray through (u, v) meets the vertical plane ``X = x``."""
        r = self.ray(u, v)
        if abs(r[0]) < 1e-9:
            return np.full(3, np.nan)
        t = (x - self.position[0]) / r[0]
        return self.position + t * r


# --- colour blobs -------------------------------------------------------------------------
@dataclass(frozen=True)
class Blob:
    """The pixels of one colour in an image: mask, area and extent."""

    mask: np.ndarray        # (H, W) bool
    area: int
    centroid: tuple[float, float]   # (u, v)
    top: int                # smallest row
    bottom: int             # largest row
    left: int
    right: int


def hue_mask(image: np.ndarray, rgb: Sequence[int], hue_tol_deg: float = 15.0,
             min_saturation: float = 0.35, min_value: float = 0.2) -> np.ndarray:
    """Pixels whose hue is within ``hue_tol_deg`` of ``rgb``'s, saturated and bright enough.

    Hue survives what lighting does to a coloured part (shading, a top face washed towards
    white, a dark side), which an RGB distance does not; the grey table, the white rack and
    the robot have no saturation.
    """
    img = np.asarray(image, dtype=np.float32) / 255.0
    mx, mn = img.max(axis=-1), img.min(axis=-1)
    chroma = mx - mn
    sat = np.where(mx > 0, chroma / np.maximum(mx, 1e-6), 0.0)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(mx == r, ((g - b) / safe) % 6.0,
                   np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) * 60.0
    t = np.asarray(rgb, dtype=np.float32) / 255.0
    tmx, tmn = t.max(), t.min()
    tc = max(float(tmx - tmn), 1e-6)
    if tmx == t[0]:
        th = ((t[1] - t[2]) / tc) % 6.0
    elif tmx == t[1]:
        th = (t[2] - t[0]) / tc + 2.0
    else:
        th = (t[0] - t[1]) / tc + 4.0
    dh = np.abs((hue - th * 60.0 + 180.0) % 360.0 - 180.0)
    return (dh <= hue_tol_deg) & (sat >= min_saturation) & (mx >= min_value)


def lit_pixels(image: np.ndarray, mask: np.ndarray, frac: float = 0.92
               ) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, cols) of the brightest pixels of ``mask`` (value >= ``frac`` of its
    brightest): an upward face under ceiling light, e.g. a part's top seen from above, whose
    height is known, without the side walls that perspective adds off the optical axis.
    Empty where ``mask`` has no lit pixel."""
    value = np.asarray(image, dtype=np.float32).max(axis=-1)
    v = np.where(mask, value, 0.0)
    peak = float(v.max())
    if peak <= 0.0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.nonzero(v >= frac * peak)


def lit_centroid(image: np.ndarray, mask: np.ndarray, frac: float = 0.92
                 ) -> tuple[float, float] | None:
    """The centroid (u, v) of :func:`lit_pixels`; None when there are none."""
    rows, cols = lit_pixels(image, mask, frac)
    if rows.size == 0:
        return None
    return float(cols.mean()), float(rows.mean())


def lit_face_pixels(image: np.ndarray, mask: np.ndarray, min_contrast: float = 0.08
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, cols) of the brighter class of ``mask``'s pixels by the sum of their
    channels, split at Otsu's threshold: the upward face of a part under ceiling light
    against its side walls, however the exposure moves.

    Unlike :func:`lit_pixels` this survives a clipped channel. A red part's top is already
    clipped at R = 255 in the sim's light; under +15% gain its walls clip too, and "within
    92% of the brightest channel" takes them in (a learned mask holds more wall than the hue
    mask). The channels that do not clip keep the face above the walls, and the split
    adapts to the exposure. A mask whose sums spread less than ``min_contrast`` of their
    peak is one face: all of it.
    """
    m = np.asarray(mask, dtype=bool)
    rows, cols = np.nonzero(m)
    if rows.size == 0:
        return rows, cols
    value = np.asarray(image, dtype=np.float32)[rows, cols].reshape(rows.size, -1).sum(axis=1)
    lo, hi = float(value.min()), float(value.max())
    if hi - lo <= min_contrast * hi:
        return rows, cols
    hist, edges = np.histogram(value, bins=64, range=(lo, hi))
    w0 = np.cumsum(hist)[:-1].astype(np.float64)
    w1 = float(rows.size) - w0
    centres = 0.5 * (edges[:-1] + edges[1:])
    s0 = np.cumsum(hist * centres)[:-1]
    m0 = s0 / np.maximum(w0, 1.0)
    m1 = (float((hist * centres).sum()) - s0) / np.maximum(w1, 1.0)
    split = edges[1:-1][int(np.argmax(w0 * w1 * (m0 - m1) ** 2))]
    keep = value >= split
    return rows[keep], cols[keep]


def strip_pixels(mask: np.ndarray, min_per_row: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, cols) of ``mask`` in rows with at least ``min_per_row`` of them: a colour
    strip's pixels without stray ones."""
    rows, cols = np.nonzero(mask)
    keep = np.bincount(rows, minlength=mask.shape[0])[rows] >= min_per_row
    return rows[keep], cols[keep]


def principal_axis(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centroid of ``points`` (N, 2) and the unit direction of their largest spread
    (sign arbitrary)."""
    pts = np.asarray(points, dtype=np.float64)
    c = pts.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov((pts - c).T))
    return c, vecs[:, -1]


def colour_blob(image: np.ndarray, rgb: Sequence[int], hue_tol_deg: float = 15.0,
                min_area: int = 4) -> Blob | None:
    """The pixels of ``rgb``'s hue (:func:`hue_mask`); None when fewer than ``min_area``."""
    return blob_from_mask(hue_mask(image, rgb, hue_tol_deg), min_area=min_area)


def blob_from_mask(mask: np.ndarray | None, level: float = 0.5, min_area: int = 4
                   ) -> Blob | None:
    """The :class:`Blob` of a (soft) mask's pixels at or over ``level``: what a learned
    segmenter's mask gives the colour rules in place of :func:`colour_blob`; None when
    fewer than ``min_area``."""
    if mask is None:
        return None
    m = np.asarray(mask) >= level
    area = int(m.sum())
    if area < min_area:
        return None
    rows, cols = np.nonzero(m)
    return Blob(m, area, (float(cols.mean()), float(rows.mean())), int(rows.min()),
                int(rows.max()), int(cols.min()), int(cols.max()))


#: How far past a learned mask's edge the part's own pixels are looked for.
MASK_REACH_PX = 2


class PartFinder:
    """A part's pixels in an image: its colour blob (:func:`colour_blob`), or the mask of
    class ``cls`` from a learned ``segmenter`` (:func:`blob_from_mask`).

    A learned mask says where the part is; its edge is good to a pixel or two either way. It
    takes in some of what is round it (table, a fixture's rim), which the rules' lit-face
    and top-row measurements cannot tell from the part, and it can stop a row short (a pin's
    last row above the hole's rim decides whether its tip shows). So the blob is the part's
    hue within ``MASK_REACH_PX`` of the mask (the mask says where, the colour says which
    pixels); a mask with none near it (a part whose colour the light has changed) is taken
    as it is.
    """

    def __init__(self, rgb: Sequence[int], segmenter: Any = None, cls: str = '') -> None:
        from enpire_tasks.estimation import require_class

        if segmenter is not None:
            require_class(segmenter, cls)
        self.rgb, self.segmenter, self.cls = tuple(rgb), segmenter, cls

    def find(self, image: np.ndarray, view: ViewSpec) -> Blob | None:
        if self.segmenter is None:
            return colour_blob(image, self.rgb)
        inst = self.segmenter.masks(image, view).get(self.cls)
        if inst is None:
            return None
        import cv2

        mask = np.asarray(inst.mask) >= 0.5
        k = 2 * MASK_REACH_PX + 1
        near = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        hued = near & hue_mask(image, self.rgb)
        return blob_from_mask(hued if int(hued.sum()) >= 4 else mask)

    def missing(self, part: str) -> str:
        """Why :meth:`find` found nothing, in the finder's own terms."""
        if self.segmenter is None:
            return f'no {part}-coloured pixels'
        return (f'{getattr(self.segmenter, "backend_id", "the segmenter")} found no '
                f'{self.cls} instance')


# --- plugin parts -------------------------------------------------------------------------
def build_observation(task: TaskSpec, reading: CellReading) -> dict[str, Any]:
    """The policy's observation of one tick (names and types of the contract's spec)."""
    return build_from_sources(task, reading, STATE_FIELDS)


def hold_action(task: TaskSpec, state: Mapping[str, float]) -> np.ndarray:
    """Hold: command the measured end-effector poses (``state[:14]``), within the bounds."""
    pose = np.asarray([state[n] for n in EE_NAMES], dtype=np.float64)
    return np.clip(pose, np.asarray(task.action.low, dtype=np.float64),
                   np.asarray(task.action.high, dtype=np.float64))


def home_action(task: TaskSpec) -> np.ndarray:
    """The contract's ``home`` (14 numbers) as an action."""
    home = task.raw.get('home')
    if not isinstance(home, list) or len(home) != 7 * len(ARMS):
        raise ConfigError(f"task '{task.name}': home must be {7 * len(ARMS)} numbers")
    return np.asarray(home, dtype=np.float64)


def sample_readings(task: TaskSpec, n: int = 4, seed: int = 0,
                    part_rgb: Sequence[int] = (230, 51, 26)) -> list[CellReading]:
    """``n`` seeded, simulator-free readings: grey table images with a part-coloured disc
    somewhere, arms near home (policy validation only; no physics)."""
    rng = np.random.default_rng(seed)
    home = home_action(task)
    out = []
    for i in range(n):
        images = {}
        for name, source in camera_sources(task).items():
            h, w = task.observation[name].shape[:2]
            img = np.full((h, w, 3), 90, dtype=np.uint8)
            cu, cv = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
            yy, xx = np.ogrid[:h, :w]
            img[(xx - cu) ** 2 + (yy - cv) ** 2 <= (0.02 * w) ** 2] = part_rgb
            images[source] = img
        ee = home + rng.normal(0.0, 0.01, size=home.shape) * (i % 2)
        joints = rng.normal(0.0, 0.2, size=len(JOINT_NAMES))
        state = dict(zip(EE_NAMES, ee.tolist(), strict=True))
        state.update(zip(JOINT_NAMES, joints.tolist(), strict=True))
        out.append(CellReading(images=images, state=state, tick=i % 3,
                               rollout={'retry_index': 0}))
    return out


def part_labels(parts: Mapping[str, str]) -> LabelSpec:
    """The :class:`LabelSpec` of an arm task whose classes are scene parts (``{class: geom or
    body name}``): the arm cell's segmentation render (``ArmCell.instance_masks``) labels
    them."""
    classes = tuple(parts)

    def instance_masks(task: TaskSpec, cell: Any, view: str, ground_truth: Any
                       ) -> Mapping[str, np.ndarray]:
        return cell.instance_masks(view, parts)

    return LabelSpec(classes=classes, instance_masks=instance_masks)


def finite_pose_error(expected: Sequence[float], observed: Sequence[float]
                      ) -> tuple[float, float]:
    """(Euclidean position error over the components both poses have (NaN: a view could not
    measure it), 0): for parts whose pose is a position."""
    e = np.asarray(expected, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    n = min(len(e), len(o))
    ok = np.isfinite(e[:n]) & np.isfinite(o[:n])
    if not ok.any():
        return float('inf'), 0.0
    return float(np.linalg.norm((e[:n] - o[:n])[ok])), 0.0


__all__ = ['ARMS', 'EE_NAMES', 'JOINT_NAMES', 'NEUTRAL', 'STATE_FIELDS', 'STATE_NAMES',
           'ArmTarget', 'Blob', 'PinholeCamera', 'build_observation', 'colour_blob',
           'finite_pose_error', 'hold_action', 'home_action', 'hue_mask', 'join_action',
           'lit_centroid', 'lit_face_pixels', 'lit_pixels', 'matrix_to_rpy', 'principal_axis',
           'rpy_to_matrix', 'sample_readings', 'split_action', 'strip_pixels']
