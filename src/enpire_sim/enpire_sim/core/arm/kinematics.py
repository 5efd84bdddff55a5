"""The arm cell's link tree from its MuJoCo model: TF transforms and a URDF.

Every body of the scene is a link (``world`` is the root); a body's transform to its parent
is static when no joint moves it. :func:`relative_poses` gives the parent -> child transforms
of the current state (for ``tf`` / ``tf_static``), :func:`urdf` the ``robot_description``:
links with the scene's meshes as visuals (absolute ``file://`` paths; gym-aloha ships them)
and joints with the MuJoCo joints' axes and limits (hinge -> revolute, slide -> prismatic,
free -> floating, none -> fixed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

_JOINT_TYPES = {0: 'floating', 2: 'prismatic', 3: 'revolute'}   # mjtJoint free/slide/hinge


@dataclass(frozen=True)
class Link:
    name: str
    parent: str
    dynamic: bool       # a joint moves it relative to its parent


def links(model) -> list[Link]:  # noqa: ANN001 - an MjModel
    """Every body but the world, with its parent and whether it moves."""
    out = []
    for b in range(1, model.nbody):
        out.append(Link(model.body(b).name or f'body{b}',
                        model.body(model.body_parentid[b]).name or 'world',
                        bool(model.body_jntnum[b] > 0)))
    return out


def _quat_conj(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                     w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def relative_poses(model, data, which: str = 'dynamic'  # noqa: ANN001 - MjModel/MjData
                   ) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(parent, child, position, quaternion wxyz) of each link relative to its parent;
    ``which``: ``dynamic`` (moved by a joint), ``static`` or ``all``."""
    out = []
    for b in range(1, model.nbody):
        dynamic = model.body_jntnum[b] > 0
        if (which == 'dynamic' and not dynamic) or (which == 'static' and dynamic):
            continue
        p = int(model.body_parentid[b])
        rp = data.xmat[p].reshape(3, 3)
        pos = rp.T @ (data.xpos[b] - data.xpos[p])
        quat = _quat_mul(_quat_conj(data.xquat[p]), data.xquat[b])
        out.append((model.body(p).name or 'world', model.body(b).name or f'body{b}', pos,
                    quat / np.linalg.norm(quat)))
    return out


def _rpy(quat: np.ndarray) -> tuple[float, float, float]:
    w, x, y, z = quat
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return float(roll), float(pitch), float(yaw)


def _origin(pos, quat) -> str:  # noqa: ANN001
    r, p, y = _rpy(np.asarray(quat, dtype=float))
    return (f'<origin xyz="{pos[0]:.6f} {pos[1]:.6f} {pos[2]:.6f}" '
            f'rpy="{r:.6f} {p:.6f} {y:.6f}"/>')


def urdf(model, name: str, mesh_dir: Path | None = None) -> str:  # noqa: ANN001 - MjModel
    """The URDF of the scene's link tree (body frames at the model's reference pose)."""
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)   # qpos0: the reference pose the URDF origins describe
    parts = [f'<?xml version="1.0"?>\n<robot name={quoteattr(name)}>', '  <link name="world"/>']
    for b in range(1, model.nbody):
        link = model.body(b).name or f'body{b}'
        visuals = []
        for g in range(model.body_geomadr[b], model.body_geomadr[b] + model.body_geomnum[b]):
            if model.geom_type[g] != mujoco.mjtGeom.mjGEOM_MESH or mesh_dir is None:
                continue
            mesh = model.mesh(model.geom_dataid[g]).name
            path = mesh_dir / f'{mesh}.stl'
            if not path.is_file():
                continue
            visuals.append(f'    <visual>{_origin(model.geom_pos[g], model.geom_quat[g])}'
                           f'<geometry><mesh filename={quoteattr("file://" + str(path))} '
                           'scale="0.001 0.001 0.001"/></geometry></visual>')
        parts.append(f'  <link name={quoteattr(link)}>' + ('\n' + '\n'.join(visuals) + '\n  '
                                                            if visuals else '') + '</link>')
    for pose in relative_poses(model, data, 'all'):
        parent, child, pos, quat = pose
        b = model.body(child).id
        jtype, axis, limit = 'fixed', '', ''
        if model.body_jntnum[b] > 0:
            j = int(model.body_jntadr[b])
            jtype = _JOINT_TYPES.get(int(model.jnt_type[j]), 'fixed')
            if jtype in ('revolute', 'prismatic'):
                ax = model.jnt_axis[j]
                axis = f'<axis xyz="{ax[0]:.6f} {ax[1]:.6f} {ax[2]:.6f}"/>'
                lo, hi = model.jnt_range[j] if model.jnt_limited[j] else (-np.pi, np.pi)
                limit = (f'<limit lower="{lo:.6f}" upper="{hi:.6f}" effort="100" '
                         'velocity="3.0"/>')
        parts.append(f'  <joint name={quoteattr(child + "_joint")} type="{jtype}">'
                     f'<parent link={quoteattr(parent)}/><child link={quoteattr(child)}/>'
                     f'{_origin(pos, quat)}{axis}{limit}</joint>')
    parts.append('</robot>\n')
    return '\n'.join(parts)


__all__ = ['Link', 'links', 'relative_poses', 'urdf']
