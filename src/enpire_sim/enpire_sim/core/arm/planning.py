"""The motion-planning port of the arm cells (issue 10, first slice): collision-free joint plans.

One interface, :class:`MotionPlanner` (``plan(arm, start, goal, timeout_s) -> waypoints``),
two implementations:

* :class:`MoveItPlanner` wraps ``moveit_py`` where it is importable (real robot cells have it);
* :class:`OmplPlanner` runs OMPL's RRTConnect (the ``ompl`` wheel) in one arm's six joint
  dimensions, with MuJoCo as the collision checker: a configuration is valid when none of
  that arm's bodies is in contact with anything but itself and every link stays above the
  table.

:func:`make_planner` picks MoveIt when present, else OMPL. Errors use the house codes: a
start or goal in collision or outside the joint limits is a ``ConfigError`` (100), no plan
within the time limit an ``EnpireTimeoutError`` (301).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from enpire_common.errors import ConfigError, EnpireTimeoutError
from enpire_sim.core.arm.sim import ARM_JOINTS, ARMS, ArmSim

#: Links lower than this above the table (m) count as a collision with it.
TABLE_CLEARANCE_M = 0.005


#: OMPL's random seed: plans repeat from run to run (a reset, a benchmark, a test).
PLAN_SEED = 1
_seeded = False


def _seed_ompl(ou: Any) -> None:
    """Seed OMPL's generator once per process, before its first sampler exists (later
    calls would not take effect)."""
    global _seeded
    if not _seeded:
        ou.RNG.setSeed(PLAN_SEED)
        _seeded = True


class MotionPlanner(Protocol):
    name: str

    def plan(self, arm: str, start: np.ndarray, goal: np.ndarray, *,
             timeout_s: float = 2.0) -> np.ndarray:
        """Waypoints (N x 6 joint positions of ``arm``) from ``start`` to ``goal``."""
        ...


class OmplPlanner:
    """RRTConnect in joint space, MuJoCo collision checks (see the module doc)."""

    name = 'ompl'

    def __init__(self, sim: ArmSim, waypoints: int = 30,
                 workspace: tuple[float, np.ndarray, np.ndarray] | None = None) -> None:
        """``workspace``: (tcp offset along the gripper (m), low, high): the fingertip centre
        must stay in the box (the safety envelope's workspace) all along a plan."""
        self.sim = sim
        self.waypoints = waypoints
        self.workspace = workspace
        self.mj = sim.mj
        self.data = sim.mj.MjData(sim.model)

    def _arm(self, arm: str) -> tuple[list[int], list[int], set[int]]:
        if arm not in ARMS:
            raise ConfigError(f"arm '{arm}' is unknown (arms: {ARMS})")
        m = self.sim.model
        joints = [m.joint(f'vx300s_{arm}/{j}').id for j in ARM_JOINTS]
        adr = [int(m.jnt_qposadr[j]) for j in joints]
        bodies = {b for b in range(m.nbody) if m.body(b).name.startswith(f'vx300s_{arm}/')}
        return joints, adr, bodies

    def valid(self, arm: str, q: np.ndarray, attached: tuple[str, ...] = ()) -> bool:
        """Whether ``arm`` at joint positions ``q`` (others as now) touches nothing.

        ``attached``: bodies the arm holds (a part in its gripper). They move with the arm
        (held where they are relative to its gripper) and count as part of it: the arm may
        touch them, they may touch nothing else."""
        m, d = self.sim.model, self.data
        joints, adr, bodies = self._arm(arm)
        d.qpos[:] = self.sim.data.qpos
        d.qpos[adr] = q
        held = [m.body(name).id for name in attached]
        if held:
            self._carry(arm, held, d)
        self.mj.mj_kinematics(m, d)
        self.mj.mj_collision(m, d)
        part = bodies | set(held)
        for i in range(d.ncon):
            b1, b2 = m.geom_bodyid[d.contact[i].geom1], m.geom_bodyid[d.contact[i].geom2]
            if (b1 in part) != (b2 in part):
                return False
        if self.workspace is not None:
            offset, lo, hi = self.workspace
            g = m.body(f'vx300s_{arm}/gripper_link').id
            tcp = d.xpos[g] + d.xmat[g].reshape(3, 3) @ np.array([offset, 0.0, 0.0])
            if np.any(tcp < lo) or np.any(tcp > hi):
                return False
        return all(d.xpos[b][2] > TABLE_CLEARANCE_M for b in bodies
                   if not m.body(b).name.endswith(('camera_focus',)))

    def _carry(self, arm: str, held: list[int], d: Any) -> None:
        """Move the free bodies ``held`` in ``d`` (arm joints set, kinematics not yet run)
        with ``arm``'s gripper: the same pose relative to it as in the live simulation."""
        m, live = self.sim.model, self.sim.data
        g = m.body(f'vx300s_{arm}/gripper_link').id
        self.mj.mj_kinematics(m, d)
        r0, p0 = live.xmat[g].reshape(3, 3), live.xpos[g]
        r1, p1 = d.xmat[g].reshape(3, 3), d.xpos[g]
        for b in held:
            jnt = m.body_jntadr[b]
            if jnt < 0 or m.jnt_type[jnt] != 0:      # only free bodies are carried
                continue
            a = int(m.jnt_qposadr[jnt])
            rb = live.xmat[b].reshape(3, 3)
            pos = p1 + r1 @ (r0.T @ (live.xpos[b] - p0))
            quat = np.zeros(4)
            self.mj.mju_mat2Quat(quat, (r1 @ r0.T @ rb).reshape(-1))
            d.qpos[a:a + 3] = pos
            d.qpos[a + 3:a + 7] = quat

    def plan(self, arm: str, start: np.ndarray, goal: np.ndarray, *,
             timeout_s: float = 2.0, attached: tuple[str, ...] = ()) -> np.ndarray:
        from ompl import base as ob
        from ompl import geometric as og
        from ompl import util as ou

        ou.setLogLevel(ou.LOG_WARN)
        _seed_ompl(ou)
        joints, _adr, _ = self._arm(arm)
        m = self.sim.model
        lo = np.array([m.jnt_range[j][0] for j in joints])
        hi = np.array([m.jnt_range[j][1] for j in joints])
        for what, q in (('start', start), ('goal', goal)):
            q = np.asarray(q, dtype=np.float64)
            if q.shape != (6,) or not np.all(np.isfinite(q)):
                raise ConfigError(f'{what} {q!r} is not 6 finite joint positions')
            if np.any(q < lo) or np.any(q > hi):
                raise ConfigError(f'{what} {np.round(q, 3).tolist()} is outside the joint '
                                  'limits')
            if not self.valid(arm, q, attached):
                raise ConfigError(f'{what} {np.round(q, 3).tolist()} is in collision')
        space = ob.RealVectorStateSpace(6)
        bounds = ob.RealVectorBounds(6)
        for i in range(6):
            bounds.setLow(i, float(lo[i]))
            bounds.setHigh(i, float(hi[i]))
        space.setBounds(bounds)
        ss = og.SimpleSetup(space)
        ss.setStateValidityChecker(
            lambda s: self.valid(arm, np.array([s[i] for i in range(6)]), attached))
        a, b = space.allocState(), space.allocState()
        for i in range(6):
            a[i], b[i] = float(start[i]), float(goal[i])
        ss.setStartAndGoalStates(a, b)
        ss.setPlanner(og.RRTConnect(ss.getSpaceInformation()))
        solved = ss.solve(float(timeout_s))
        if not solved or 'Exact' not in str(solved):
            raise EnpireTimeoutError(f'no collision-free plan for the {arm} arm within '
                                     f'{timeout_s:g} s')
        ss.simplifySolution()
        path = ss.getSolutionPath()
        path.interpolate(self.waypoints)
        return np.array([[path.getState(k)[i] for i in range(6)]
                         for k in range(path.getStateCount())])


class MoveItPlanner:
    """``moveit_py``'s planning component per arm group (real cells). Not importable here."""

    name = 'moveit'

    def __init__(self, node_name: str = 'enpire_planner', groups: dict[str, str] | None = None
                 ) -> None:
        try:
            from moveit.planning import MoveItPy
        except ImportError:
            raise ConfigError('moveit_py is not importable here; use the OMPL planner') from None
        self.robot: Any = MoveItPy(node_name=node_name)
        self.groups = groups or {'left': 'left_arm', 'right': 'right_arm'}

    def plan(self, arm: str, start: np.ndarray, goal: np.ndarray, *,
             timeout_s: float = 2.0) -> np.ndarray:
        from moveit.core.robot_state import RobotState

        component = self.robot.get_planning_component(self.groups[arm])
        model = self.robot.get_robot_model()
        s, g = RobotState(model), RobotState(model)
        s.set_joint_group_positions(self.groups[arm], np.asarray(start, dtype=float))
        g.set_joint_group_positions(self.groups[arm], np.asarray(goal, dtype=float))
        component.set_start_state(robot_state=s)
        component.set_goal_state(robot_state=g)
        result = component.plan()
        if not result:
            raise EnpireTimeoutError(f'MoveIt found no plan for the {arm} arm')
        traj = result.trajectory
        return np.array([traj.get_waypoint(i).get_joint_group_positions(self.groups[arm])
                         for i in range(traj.get_waypoint_count())])


def make_planner(sim: ArmSim) -> MotionPlanner:
    """MoveIt where ``moveit_py`` is importable, else OMPL against the cell's MuJoCo model."""
    try:
        import moveit.planning  # noqa: F401
    except ImportError:
        return OmplPlanner(sim)
    return MoveItPlanner()
