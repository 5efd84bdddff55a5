"""Cross-check a verifier against simulator ground truth (sim-only; never in the verifier path).

Samples Push-T states (gym-pusht seeded starts, random pushes from them, and near-goal poses
with a ``'wide'`` or ``'tight'`` spread, see :data:`NEAR_GOAL_NOISE`),
renders the top camera exactly as the sim cell does (its own render path, with the cell's
``camera.renderer``: ``area`` by default, or ``gym-pusht``), and compares the verifier's score
with gym-pusht's coverage. The simulator (its physics and state) is used here only; the
verifier sees images alone (its ``pusht-area-v1`` camera model draws with the sim's renderer,
a pure function of a hypothesised pose).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from enpire_common.errors import UnknownNameError
from enpire_common.tasks import TaskSpec
from enpire_reward.core import geometry
from enpire_reward.core.ports import Verifier


@dataclass(frozen=True)
class CrossCheckReport:
    """Agreement between vision scores and ground-truth coverage.

    Rates: ``false_positive_rate`` = FP / ground-truth negatives, ``false_negative_rate`` =
    FN / ground-truth positives.

    ``ideal_*``: what an ideal image-only verifier would score on the same states (see
    :func:`ideal_verdict`), for the ``gym-pusht`` renderer only: it draws the T from its
    corners rounded to whole pixels, so every pose that rounds to the same corners gives the
    same image, and where those poses straddle the threshold no verifier can tell them
    apart. ``nan`` / -1 when not computed: the ``area`` renderer (the cell's default) has no
    such ambiguity worth reporting (an image pins the pose to ~0.001 px: the poses with the
    same image span ~1e-5 of coverage), so its ideal is the ground truth itself.
    ``renderer``: the sim cell renderer that drew the images.
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
    ideal_label_agreement: float = float('nan')
    ideal_false_positives: int = -1
    ideal_false_negatives: int = -1
    renderer: str = ''

    def to_dict(self) -> dict:
        return asdict(self)

    def meets_targets(self, agreement: float = 0.99, fpr: float = 0.005,
                      mae: float = 0.02) -> bool:
        return (self.label_agreement >= agreement and self.false_positive_rate <= fpr
                and self.score_mae <= mae)


def cell_renderer(renderer: str | None = None) -> str:
    """``renderer``, or the sim cell's default ``camera.renderer`` when None."""
    if renderer is not None:
        return renderer
    from enpire_sim.core.config import CameraConfig

    return CameraConfig().renderer


def _make_sim(task: TaskSpec, renderer: str | None = None):
    from enpire_sim.core.push_t import PushTSim

    return PushTSim(task, renderer=cell_renderer(renderer))


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


def sample_states(task: TaskSpec, n: int, seed: int = 0, near_goal_frac: float = 0.5,
                  progress: Callable[[int, int], None] | None = None,
                  near_goal_noise: str = 'wide', renderer: str | None = None):
    """Yield ``(image, ground_truth)`` for ``n`` sampled states.

    Half (``near_goal_frac``) are near the goal: the goal pose plus Gaussian noise
    (``NEAR_GOAL_NOISE[near_goal_noise]``: ``'wide'`` draws the standard deviation per state
    uniformly in 0..4 px / 0..0.05 rad; ``'tight'`` uses a fixed 1.5 px / 0.02 rad), the
    pusher clear of the block. The rest are gym-pusht seeded starts
    followed by 0-20 random pushes toward the block. Images come from the sim cell's own
    render path with ``renderer`` (None: the cell's default ``camera.renderer``); the
    states do not depend on it.

    Raises:
        UnknownNameError: ``near_goal_noise`` is not a key of ``NEAR_GOAL_NOISE``, or
            ``renderer`` is not a sim renderer.
    """
    if near_goal_noise not in NEAR_GOAL_NOISE:
        raise UnknownNameError('near-goal noise', near_goal_noise, NEAR_GOAL_NOISE)
    sd_px, sd_rad, mixture = NEAR_GOAL_NOISE[near_goal_noise]
    rng = np.random.default_rng(seed)
    sim = _make_sim(task, renderer)
    goal = task.goal_pose
    try:
        for i in range(n):
            if rng.random() < near_goal_frac:
                u = rng.uniform(0.0, 1.0) if mixture else 1.0
                pose = (goal[0] + rng.normal(0, sd_px * u), goal[1] + rng.normal(0, sd_px * u),
                        goal[2] + rng.normal(0, sd_rad * u))
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


def ideal_verdict(pose: tuple[float, float, float], goal: tuple[float, ...],
                  threshold: float, samples: int = 256) -> bool:
    """The Bayes-optimal success call for the gym-pusht renderer's image of ``pose``.

    Sim-side only, and for ``renderer='gym-pusht'`` only.

    The image is a function of the T's corners rounded to whole pixels; under a flat prior
    every pose of that corner set's cell is equally likely, so the best possible call is
    whether most of the cell covers the goal by more than ``threshold``.
    """
    from enpire_reward.core.camera_model import round_half_even, t_corners
    from enpire_reward.core.synthesis import corner_cell

    corners = round_half_even(t_corners(np.asarray([pose], dtype=np.float64)))[0]
    cell = corner_cell(corners, float(pose[2]))
    if cell is None:  # cannot happen for a real pose; judge the pose itself
        return geometry.coverage(pose, goal) > threshold
    rng = np.random.default_rng(0)
    cov = [geometry.coverage(q, goal) for q in cell.sample(samples, rng)]
    return float(np.mean(np.asarray(cov) > threshold)) > 0.5


def crosscheck(verifier: Verifier, task: TaskSpec, n: int, seed: int = 0,
               progress: Callable[[int, int], None] | None = None,
               near_goal_noise: str = 'wide', renderer: str | None = None
               ) -> CrossCheckReport:
    """Verify ``n`` sampled states (:func:`sample_states`) and compare with ground truth.

    ``renderer``: the sim cell renderer (None: the cell's default); the verifier must be
    built for it (the view's ``camera_model``, see
    :func:`enpire_reward.core.camera_model.camera_model_for_renderer`).
    """
    from enpire_sim.core.render import RENDERER_GYM_PUSHT

    renderer = cell_renderer(renderer)
    ideal_applies = renderer == RENDERER_GYM_PUSHT
    view = verifier.views[0]
    errors, lat = [], []
    fp = fn = pos = neg = agree = 0
    ideal_fp = ideal_fn = 0
    threshold = float(task.success_threshold)
    for image, gt in sample_states(task, n, seed, progress=progress,
                                   near_goal_noise=near_goal_noise, renderer=renderer):
        res = verifier.verify({view: image})
        v = res.verdicts[0]
        errors.append(abs(v.score - gt.coverage))
        lat.append(v.latency_s)
        pos += gt.success
        neg += not gt.success
        agree += v.success == gt.success
        fp += v.success and not gt.success
        fn += gt.success and not v.success
        # Only states near the threshold can have a cell that straddles it (cells span
        # ~0.005 of coverage); elsewhere the ideal call is the truth.
        if ideal_applies and abs(gt.coverage - threshold) < 0.01:
            ideal = ideal_verdict(gt.object_pose, task.goal_pose, threshold)
            ideal_fp += ideal and not gt.success
            ideal_fn += gt.success and not ideal
    errs = np.asarray(errors)
    lats = np.asarray(lat)
    return CrossCheckReport(
        states=n, positives=pos, score_mae=float(errs.mean()),
        score_max_error=float(errs.max()), label_agreement=agree / n,
        false_positive_rate=fp / neg if neg else 0.0,
        false_negative_rate=fn / pos if pos else 0.0, false_positives=fp,
        false_negatives=fn, latency_p50_s=float(np.percentile(lats, 50)),
        latency_p95_s=float(np.percentile(lats, 95)),
        latency_p99_s=float(np.percentile(lats, 99)), backend=verifier.backend_id,
        ideal_label_agreement=(1.0 - (ideal_fp + ideal_fn) / n if ideal_applies
                               else float('nan')),
        ideal_false_positives=ideal_fp if ideal_applies else -1,
        ideal_false_negatives=ideal_fn if ideal_applies else -1, renderer=renderer)


__all__ = ['NEAR_GOAL_NOISE', 'CrossCheckReport', 'cell_renderer', 'crosscheck',
           'ideal_verdict', 'sample_states']
