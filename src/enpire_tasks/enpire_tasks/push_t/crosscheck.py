"""Push-T crosscheck states: where the verifier is compared with simulator ground truth.

Sim-side only: :func:`sample_states` drives a simulated Push-T cell (``PushTSim``, made by
:func:`enpire_tasks.registry.make_sim_cell` from the ``enpire.sim_cells`` entry point, so this
plugin never imports the simulator) through gym-pusht seeded starts, random pushes from them
and near-goal poses with a ``'wide'`` or ``'tight'`` spread (:data:`NEAR_GOAL_NOISE`), and
yields the cell's own camera image with its ground truth. The generic comparison
(:func:`enpire_reward.core.crosscheck.crosscheck`) feeds the images to a verifier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from enpire_common.errors import UnknownNameError
from enpire_common.tasks import TaskSpec
from enpire_tasks.push_t import geometry

#: Near-goal pose noise of :func:`sample_states`: (px, rad, mixture). The standard deviation
#: is (px, rad), times ``u ~ U(0, 1)`` per state when ``mixture`` is true.
#: ``'wide'`` (default) is the spread of a policy's last pushes, from nearly exact to a few
#: px / degrees off: about 21% of all states are solved, 90% of the near-goal coverages lie
#: in 0.85-1.0 (quartiles 0.90 / 0.94 / 0.97) and about 4% of all states within +-0.005 of
#: the 0.95 threshold. ``'tight'`` (the original fixed 1.5 px / 0.02 rad) piles the
#: near-goal states at the threshold (about 8% of all states within +-0.005 of it): a stress
#: test of the label boundary, where the renderer's whole-pixel rounding of the T's corners
#: alone limits agreement to about 99%.
NEAR_GOAL_NOISE: dict[str, tuple[float, float, bool]] = {
    'wide': (4.0, 0.05, True), 'tight': (1.5, 0.02, False)}


def _inside(poly: np.ndarray, p: np.ndarray) -> bool:
    return cv2.pointPolygonTest(poly.astype(np.float32), (float(p[0]), float(p[1])),
                                False) >= 0


def far_from_block(rng: np.random.Generator, pose: tuple[float, float, float]
                   ) -> tuple[float, float]:
    """A pusher position clear of the T at ``pose`` (it cannot overlap the block)."""
    polys = geometry.t_polygons(pose)
    for _ in range(100):
        p = rng.uniform(40.0, 470.0, size=2)
        d = min(float(np.min(np.hypot(*(poly - p).T))) for poly in polys)
        inside = any(_inside(poly, p) for poly in polys)
        if d > 25.0 and not inside:
            return float(p[0]), float(p[1])
    return 40.0, 40.0


def near_goal_start(rng: np.random.Generator, goal: tuple[float, ...], noise: str
                    ) -> tuple[tuple[float, float, float], tuple[float, float]]:
    """A block pose near ``goal`` (``NEAR_GOAL_NOISE[noise]``) and a pusher clear of it.

    Raises:
        UnknownNameError: ``noise`` is not a key of ``NEAR_GOAL_NOISE``.
    """
    if noise not in NEAR_GOAL_NOISE:
        raise UnknownNameError('near-goal noise', noise, NEAR_GOAL_NOISE)
    sd_px, sd_rad, mixture = NEAR_GOAL_NOISE[noise]
    u = rng.uniform(0.0, 1.0) if mixture else 1.0
    pose = (goal[0] + rng.normal(0, sd_px * u), goal[1] + rng.normal(0, sd_px * u),
            goal[2] + rng.normal(0, sd_rad * u))
    return pose, far_from_block(rng, pose)


def sample_states(task: TaskSpec, cell: Any, n: int, seed: int = 0, *,
                  near_goal_frac: float = 0.5,
                  progress: Callable[[int, int], None] | None = None,
                  near_goal_noise: str = 'wide') -> Iterator[tuple[np.ndarray, Any]]:
    """Yield ``(image, ground_truth)`` for ``n`` states drawn in the simulated ``cell``.

    Half (``near_goal_frac``) are near the goal: the goal pose plus Gaussian noise
    (``NEAR_GOAL_NOISE[near_goal_noise]``: ``'wide'`` draws the standard deviation per state
    uniformly in 0..4 px / 0..0.05 rad; ``'tight'`` uses a fixed 1.5 px / 0.02 rad), the
    pusher clear of the block. The rest are gym-pusht seeded starts followed by 0-20 random
    pushes toward the block. Images come from the cell's own render path (its
    ``camera.renderer``); the states do not depend on it. The caller closes the cell.

    Raises:
        UnknownNameError: ``near_goal_noise`` is not a key of ``NEAR_GOAL_NOISE``.
    """
    if near_goal_noise not in NEAR_GOAL_NOISE:
        raise UnknownNameError('near-goal noise', near_goal_noise, NEAR_GOAL_NOISE)
    rng = np.random.default_rng(seed)
    goal = task.goal_pose
    for i in range(n):
        if rng.random() < near_goal_frac:
            pose, agent = near_goal_start(rng, goal, near_goal_noise)
            cell.reset(seed=int(seed * 100003 + i), object_pose=pose, agent_pos=agent)
        else:
            cell.reset(seed=int(seed * 100003 + i))
            for _ in range(int(rng.integers(0, 21))):
                block = np.array(cell.object_pose()[:2])
                target = np.clip(block + rng.normal(0, 60.0, size=2), cell.low, cell.high)
                cell.step(target)
        if progress:
            progress(i + 1, n)
        yield cell.render(), cell.ground_truth()


def ideal_verdict(task: TaskSpec, ground_truth: Any, samples: int = 256) -> bool:
    """The Bayes-optimal success call for the gym-pusht renderer's image of a state.

    Sim-side only, and for ``renderer='gym-pusht'`` only. The image is a function of the T's
    corners rounded to whole pixels; under a flat prior every pose of that corner set's cell
    is equally likely, so the best possible call is whether most of the cell covers the goal
    by more than the threshold. Only states within 0.01 of the threshold can have a cell that
    straddles it (cells span ~0.005 of coverage): elsewhere the ideal call is the truth.
    """
    threshold = float(task.success_threshold)
    if abs(ground_truth.coverage - threshold) >= 0.01:
        return bool(ground_truth.success)
    return pose_ideal_verdict(ground_truth.object_pose, task.goal_pose, threshold, samples)


def pose_ideal_verdict(pose: tuple[float, float, float], goal: tuple[float, ...],
                       threshold: float, samples: int = 256) -> bool:
    """:func:`ideal_verdict` of the block at ``pose`` (whatever its coverage)."""
    from enpire_tasks.push_t.camera_model import round_half_even, t_corners
    from enpire_tasks.push_t.synthesis import corner_cell

    corners = round_half_even(t_corners(np.asarray([pose], dtype=np.float64)))[0]
    cell = corner_cell(corners, float(pose[2]))
    if cell is None:  # cannot happen for a real pose; judge the pose itself
        return geometry.coverage(pose, goal) > threshold
    rng = np.random.default_rng(0)
    cov = [geometry.coverage(q, goal) for q in cell.sample(samples, rng)]
    return float(np.mean(np.asarray(cov) > threshold)) > 0.5


__all__ = ['NEAR_GOAL_NOISE', 'far_from_block', 'ideal_verdict', 'near_goal_start',
           'pose_ideal_verdict', 'sample_states']
