"""VisionVerifier: goal logic, fusion, evidence and timing around a pose-estimating backend."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import UnknownNameError, VerificationError, ViewUnavailableError
from enpire_common.tasks import TaskSpec
from enpire_reward.core.evidence import overlay, write_png_atomic
from enpire_reward.core.fusion import FUSION_RULES, fuse
from enpire_reward.core.images import validate_image
from enpire_reward.core.ports import (
    GOAL_RESET,
    GOAL_SUCCESS,
    GOALS,
    Estimate,
    PoseEstimator,
    Verdict,
    VerifyResult,
)
from enpire_tasks import registry as tasks


class VisionVerifier:
    """Judges a task's goals from images with a :class:`PoseEstimator` backend.

    ``success`` goal: a view succeeds iff its score (the task plugin's ``score`` of the
    estimated pose against the goal pose; Push-T: goal coverage) is strictly greater than the
    task threshold (Push-T: gym-pusht's ``coverage > 0.95``) plus the
    backend's calibrated ``success_margin`` (0 when it has none), which keeps false
    positives down where the score's error straddles the threshold.
    ``reset`` goal: a view succeeds iff the estimated pose is within
    ``reset.pose_tolerance_px`` / ``pose_tolerance_rad`` of ``expected_pose`` AND the score is
    below ``reset.not_solved_max_score`` (the start is not already solved).
    A view is ``invalid`` (never a success, for either goal) when the backend found no
    object in it (occluded, out of view, unreadable) or its confidence is under
    ``success.min_confidence`` (default 0: only a missing object); the fusion rule says
    what an invalid view does to the fused decision (:mod:`enpire_reward.core.fusion`).

    Implements :class:`enpire_reward.core.ports.Verifier`.

    Args:
        task: the task contract (goal pose, threshold, views, reset tolerances).
        estimator: the backend.
        views: views to judge by default (default: the task's success views).
        fusion: ``all`` | ``any`` | ``mean`` (default: the task's success.fusion).
        clock: time source for latencies.
    """

    def __init__(self, task: TaskSpec, estimator: PoseEstimator,
                 views: Sequence[str] | None = None, fusion: str | None = None,
                 clock: Clock | None = None) -> None:
        self.task = task
        self.plugin = tasks.get(task)   # the task's score and outline
        self.estimator = estimator
        self.backend_id = estimator.backend_id
        default_views = task.section('success').get('views') or list(task.views)
        reset_section_views = task.section('reset').get('views')
        if isinstance(reset_section_views, dict):     # per stage: the start's are the default
            reset_section_views = reset_section_views.get('start')
        self.views = tuple(views or default_views)
        for v in self.views:
            if v not in task.views:
                raise UnknownNameError('view', v, task.views)
        # A reset is judged on the task's reset views (a view that sees only the goal, such
        # as an arm cell's fixture camera, has nothing to say about a start); default: all.
        self.reset_views = tuple(v for v in (reset_section_views or self.views)
                                 if v in self.views) or self.views
        self.fusion = fusion or task.success_fusion
        if self.fusion not in FUSION_RULES:
            raise UnknownNameError('fusion rule', self.fusion, FUSION_RULES)
        self.threshold = float(task.success_threshold)
        self.metric = str(task.section('success').get('metric', 'score'))
        self.goal_pose = tuple(float(g) for g in task.goal_pose)
        reset = task.section('reset')
        self.pose_tolerance_px = float(reset.get('pose_tolerance',
                                                 reset.get('pose_tolerance_px', 6.0)))
        self.pose_tolerance_rad = float(reset.get('pose_tolerance_rad', 0.12))
        self.not_solved_max_score = float(reset.get('not_solved_max_score', self.threshold))
        self.success_margin = float(getattr(estimator, 'success_margin', 0.0))
        self.min_confidence = float(task.section('success').get('min_confidence', 0.0))
        self.clock = clock or SystemClock()

    def verify(self, images: Mapping[str, np.ndarray], goal: str = GOAL_SUCCESS,
               expected_pose: Sequence[float] | None = None, *,
               write_evidence: bool = False, evidence_dir: str | None = None,
               views: Sequence[str] | None = None,
               overlays: Sequence[str] = ()) -> VerifyResult:
        """Judge ``goal`` on every view in ``images`` (restricted to the configured views).

        ``overlays``: the views whose evidence overlay to return in the result (drawn only
        for those: a live viewer's, nothing when nobody looks).

        Raises:
            UnknownNameError: unknown goal.
            ViewUnavailableError: a configured view has no image.
            BadImageError: an image is unusable, or a reset goal lacks ``expected_pose``.
        """
        goal = goal or GOAL_SUCCESS
        if goal not in GOALS:
            raise UnknownNameError('verify goal', goal, GOALS)
        names = self.plugin.pose_names
        if goal == GOAL_RESET and (expected_pose is None or len(expected_pose) != len(names)
                                   or not all(math.isfinite(float(v)) for v in expected_pose)):
            raise VerificationError(
                f"goal reset needs expected_pose = [{', '.join(names)}], got "
                f'{None if expected_pose is None else list(expected_pose)}')
        judged = tuple(views) if views else (self.reset_views if goal == GOAL_RESET
                                             else self.views)
        views = [v for v in judged if v in images] if images else []
        missing = [v for v in judged if v not in images]
        if missing or not views:
            raise ViewUnavailableError(
                f"no image for view(s) {', '.join(missing) or '(none)'}; the verifier judges "
                f"{', '.join(judged)}: is the camera publishing?")
        drawn: dict[str, np.ndarray] = {}
        judged_views = [self._judge(v, images[v], goal, expected_pose, write_evidence,
                                    evidence_dir, drawn if v in overlays else None)
                        for v in views]
        verdicts = [v for v, _ in judged_views]
        margin = self.success_margin if goal == GOAL_SUCCESS else 0.0
        fused = fuse(verdicts, self.fusion, verdicts[0].threshold + margin)
        stages = (self._stages({v.view: est for v, est in judged_views})
                  if goal == GOAL_SUCCESS else ())
        return VerifyResult(success=fused.success, score=fused.score, fusion=self.fusion,
                            goal=goal, verdicts=(*verdicts, fused), stages=stages,
                            overlays=drawn)

    def _stages(self, estimates: Mapping[str, Estimate]) -> tuple[str, ...]:
        """The contract's stages the task's ``stage_rule`` says the views show now."""
        rule = self.plugin.stage_rule
        if rule is None or not self.task.stages:
            return ()
        said = rule(self.task, estimates)
        unknown = sorted(set(said) - set(self.task.stages))
        if unknown:
            raise VerificationError(
                f"the {self.task.name} stage rule named stage(s) {', '.join(unknown)} that the "
                f"contract does not list ({', '.join(self.task.stages)})")
        return tuple(s for s in self.task.stages if said.get(s))

    def _judge(self, view_name: str, image: np.ndarray, goal: str,
               expected_pose: Sequence[float] | None, write_evidence: bool,
               evidence_dir: str | None, drawn: dict[str, np.ndarray] | None = None
               ) -> tuple[Verdict, Estimate]:
        t0 = self.clock.now_s()
        view = self.task.views[view_name]
        image = validate_image(image, view)
        est = self.estimator.estimate(image, view)
        score = (self.plugin.score(est.pose, self.goal_pose) if est.found and est.pose
                 else 0.0)
        if goal == GOAL_SUCCESS:
            success, threshold, detail = self._success(est, score)
        else:
            success, threshold, detail = self._reset(est, score, expected_pose)
        invalid = not est.found or est.confidence < self.min_confidence
        if invalid:
            success = False
            detail = (f'INVALID: {est.detail or "no object found"}' if not est.found else
                      f'INVALID: confidence {est.confidence:.3f} < {self.min_confidence:g} '
                      f'({detail})')
        path = ''
        if write_evidence or drawn is not None:
            said = 'INVALID' if invalid else 'OK' if success else 'FAIL'
            caption = f'{view_name} {goal}: {said} score {score:.3f}'
            img = overlay(image, view, self.goal_pose, est.pose, est.segmentation, caption,
                          outline=self.plugin.outline)
            if drawn is not None:
                drawn[view_name] = img
            if write_evidence:
                stamp = f'{int(self.clock.now_s() * 1e6):d}'
                base = Path(evidence_dir) if evidence_dir else Path('.')
                path = str(write_png_atomic(base / f'{goal}_{view_name}_{stamp}.png', img))
        return Verdict(view=view_name, backend=self.backend_id, success=success,
                       score=float(score), threshold=threshold,
                       confidence=float(est.confidence) if est.found else 0.0,
                       object_pose=tuple(est.pose) if est.pose else (),
                       latency_s=max(0.0, self.clock.now_s() - t0), evidence_path=path,
                       detail=detail, invalid=invalid), est

    def _success(self, est: Estimate, score: float) -> tuple[bool, float, str]:
        if not est.found:
            return False, self.threshold, est.detail
        m = self.success_margin if est.success_margin is None else est.success_margin
        ok = score > self.threshold + m
        rel = '>' if ok else '<='
        margin = f' + margin {m:g}' if m else ''
        if est.success_margin is not None:  # the backend says why this estimate's margin
            margin += f' ({est.detail})'
        return ok, self.threshold, f'{self.metric} {score:.4f} {rel} {self.threshold:.2f}{margin}'

    def _reset(self, est: Estimate, score: float, expected: Sequence[float] | None
               ) -> tuple[bool, float, str]:
        thr = self.not_solved_max_score
        if not est.found or est.pose is None or expected is None:
            return False, thr, f'POSE: {est.detail}'
        d_px, d_rad = self.plugin.pose_error(tuple(float(x) for x in expected),
                                             tuple(est.pose))
        unit = self.plugin.position_unit
        problems = []
        if d_px > self.pose_tolerance_px or d_rad > self.pose_tolerance_rad:
            problems.append(f'POSE: off by {d_px:.4g} {unit} / {d_rad:.3f} rad (tolerance '
                            f'{self.pose_tolerance_px:g} {unit} / '
                            f'{self.pose_tolerance_rad:g} rad)')
        if score >= thr:
            problems.append(f'SOLVED: score {score:.4f} >= {thr:.2f}, start already solved')
        if problems:
            return False, thr, '; '.join(problems)
        return True, thr, (f'pose within {d_px:.4g} {unit} / {d_rad:.3f} rad, '
                           f'not solved (score {score:.4f} < {thr:.2f})')

