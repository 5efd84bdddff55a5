"""The arm cell's safety envelope in task space (issue 10, first slice): pure checks on the
simulator's state after a tick.

Violations: an end effector outside the workspace box (``BOUNDS``), a joint faster than its
limit (``JOINT_VELOCITY``), a contact force above the limit (``FORCE``: MuJoCo contact normal
forces), a gripper touching the table (``COLLISION``). Joint position limits are enforced
before a tick (``ArmSim.step`` refuses out-of-range targets). The cell node turns a violation
into a truncation plus hold with a SafetyEvent, as for Push-T (to be wired with the node).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from enpire_sim.core.arm.sim import ARMS, ArmSim


@dataclass(frozen=True)
class ArmEnvelope:
    """Limits of one arm cell (a task's ``safety.yaml`` will fill these)."""

    workspace_low: tuple[float, float, float] = (-0.55, 0.15, 0.0)
    workspace_high: tuple[float, float, float] = (0.55, 1.0, 0.6)
    max_joint_velocity: float = 3.0       # rad/s (m/s for the fingers)
    max_contact_force: float = 60.0       # N
    table_geom: str = 'table'
    tcp_offset: float = 0.0               # m along the gripper's x: the point kept in the box


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str
    bodies: tuple[str, ...] = ()          # a contact's two bodies (FORCE, COLLISION)

    @property
    def robot_free(self) -> bool:
        """A contact between two bodies of which neither is the robot's (a part wedged in
        a fixture): a real cell feels nothing of it."""
        return bool(self.bodies) and not any(is_robot_body(b) for b in self.bodies)


def is_robot_body(name: str) -> bool:
    """Whether ``name`` is a body of one of the arms (links, gripper, fingers)."""
    return any(name.startswith(f'vx300s_{arm}/') for arm in ARMS)


def check(sim: ArmSim, env: ArmEnvelope) -> list[Violation]:
    """Every envelope violation of the current state (empty: safe)."""
    out: list[Violation] = []
    lo, hi = np.asarray(env.workspace_low), np.asarray(env.workspace_high)
    for arm in ARMS:
        b = sim.data.body(f'vx300s_{arm}/gripper_link')
        p = b.xpos + b.xmat.reshape(3, 3) @ np.array([env.tcp_offset, 0.0, 0.0])
        if np.any(p < lo) or np.any(p > hi):
            out.append(Violation('BOUNDS', f'{arm} gripper at {np.round(p, 3).tolist()} is '
                                           f'outside the workspace {lo.tolist()}..'
                                           f'{hi.tolist()}'))
    m, d = sim.model, sim.data
    for i in range(m.nu):
        jid = m.actuator(i).trnid[0]
        v = float(d.qvel[m.jnt_dofadr[jid]])
        if abs(v) > env.max_joint_velocity:
            out.append(Violation('JOINT_VELOCITY', f'{m.joint(jid).name} moves at {v:.2f} '
                                                   f'(limit {env.max_joint_velocity:g})'))
    for c in sim.contacts():
        if c.force > env.max_contact_force:
            out.append(Violation('FORCE', f'{c.force:.1f} N between {c.bodies[0]} and '
                                          f'{c.bodies[1]} (limit {env.max_contact_force:g} N)',
                                 c.bodies))
        if env.table_geom in c.geoms and any('finger' in b or 'gripper' in b
                                             for b in c.bodies):
            out.append(Violation('COLLISION', f'the gripper touches the table ({c.bodies})',
                                 c.bodies))
    return out
