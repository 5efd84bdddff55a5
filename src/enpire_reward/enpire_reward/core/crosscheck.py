"""Cross-check a verifier against simulator ground truth (sim-only; never in the verifier path).

Samples Push-T states (gym-pusht seeded starts, random pushes from them, and near-goal poses),
renders the top camera exactly as the sim cell does, and compares the verifier's score with
gym-pusht's coverage. The simulator is imported here only, never by the verifier itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from enpire_common.tasks import TaskSpec
from enpire_reward.core import geometry
from enpire_reward.core.ports import Verifier


@dataclass(frozen=True)
class CrossCheckReport:
    """Agreement between vision scores and ground-truth coverage.

    Rates: ``false_positive_rate`` = FP / ground-truth negatives, ``false_negative_rate`` =
    FN / ground-truth positives.
    """

    states: int
    positives: int
    score_mae: float
    score_max_error: float
    label_agreement: float
    false_positive_rate: float
    false_negative_rate: float
    false_positives: int
    false_negatives: int
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    backend: str

    def to_dict(self) -> dict:
        return asdict(self)

    def meets_targets(self, agreement: float = 0.99, fpr: float = 0.005,
                      mae: float = 0.02) -> bool:
        return (self.label_agreement >= agreement and self.false_positive_rate <= fpr
                and self.score_mae <= mae)


def _make_sim(task: TaskSpec):
    from enpire_sim.core.push_t import PushTSim

    return PushTSim(task)


def _far_from_block(rng: np.random.Generator, pose: tuple[float, float, float]
                    ) -> tuple[float, float]:
    # The pusher cannot overlap the block in a real scene; place it clear of the T.
    polys = geometry.t_polygons(pose)
    for _ in range(100):
        p = rng.uniform(40.0, 470.0, size=2)
        d = min(float(np.min(np.hypot(*(poly - p).T))) for poly in polys)
        inside = any(_inside(poly, p) for poly in polys)
        if d > 25.0 and not inside:
            return float(p[0]), float(p[1])
    return 40.0, 40.0


def _inside(poly: np.ndarray, p: np.ndarray) -> bool:
    import cv2

    return cv2.pointPolygonTest(poly.astype(np.float32), (float(p[0]), float(p[1])),
                                False) >= 0


def sample_states(task: TaskSpec, n: int, seed: int = 0, near_goal_frac: float = 0.5,
                  progress: Callable[[int, int], None] | None = None):
    """Yield ``(image, ground_truth)`` for ``n`` sampled states.

    Half (``near_goal_frac``) are near the goal: goal pose plus noise (1.5 px, 0.02 rad
    standard deviation), the pusher clear of the block. The rest are gym-pusht seeded starts
    followed by 0-20 random pushes toward the block.
    """
    rng = np.random.default_rng(seed)
    sim = _make_sim(task)
    goal = task.goal_pose
    try:
        for i in range(n):
            if rng.random() < near_goal_frac:
                pose = (goal[0] + rng.normal(0, 1.5), goal[1] + rng.normal(0, 1.5),
                        goal[2] + rng.normal(0, 0.02))
                sim.reset(seed=int(seed * 100003 + i), object_pose=pose,
                          agent_pos=_far_from_block(rng, pose))
            else:
                sim.reset(seed=int(seed * 100003 + i))
                for _ in range(int(rng.integers(0, 21))):
                    block = np.array(sim.object_pose()[:2])
                    target = np.clip(block + rng.normal(0, 60.0, size=2),
                                     sim.low, sim.high)
                    sim.step(target)
            if progress:
                progress(i + 1, n)
            yield sim.render(), sim.ground_truth()
    finally:
        sim.close()


def crosscheck(verifier: Verifier, task: TaskSpec, n: int, seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> CrossCheckReport:
    """Verify ``n`` sampled states and compare with ground truth."""
    view = verifier.views[0]
    errors, lat = [], []
    fp = fn = pos = neg = agree = 0
    for image, gt in sample_states(task, n, seed, progress=progress):
        res = verifier.verify({view: image})
        v = res.verdicts[0]
        errors.append(abs(v.score - gt.coverage))
        lat.append(v.latency_s)
        pos += gt.success
        neg += not gt.success
        agree += v.success == gt.success
        fp += v.success and not gt.success
        fn += gt.success and not v.success
    errs = np.asarray(errors)
    lats = np.asarray(lat)
    return CrossCheckReport(
        states=n, positives=pos, score_mae=float(errs.mean()),
        score_max_error=float(errs.max()), label_agreement=agree / n,
        false_positive_rate=fp / neg if neg else 0.0,
        false_negative_rate=fn / pos if pos else 0.0, false_positives=fp,
        false_negatives=fn, latency_p50_s=float(np.percentile(lats, 50)),
        latency_p95_s=float(np.percentile(lats, 95)),
        latency_p99_s=float(np.percentile(lats, 99)), backend=verifier.backend_id)


__all__ = ['CrossCheckReport', 'crosscheck', 'sample_states']
