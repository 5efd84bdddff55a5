"""Cross-check a verifier against simulator ground truth (sim-only; never in the verifier path).

The task plugin's crosscheck sampler (:class:`enpire_tasks.plugin.CrossCheck`; Push-T: seeded
starts, random pushes and near-goal poses) draws states in a simulated cell of the task
(:func:`enpire_tasks.registry.make_sim_cell`: found through an entry point, so this package
never imports the simulator) and yields the cell's own camera images with ground truth; the
verifier sees the images alone and its scores and labels are compared with the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.tasks import TaskSpec
from enpire_reward.core.ports import Verifier
from enpire_tasks import registry as tasks
from enpire_tasks.plugin import CrossCheck


@dataclass(frozen=True)
class CrossCheckReport:
    """Agreement between vision scores and ground-truth coverage.

    Rates: ``false_positive_rate`` = FP / ground-truth negatives, ``false_negative_rate`` =
    FN / ground-truth positives.

    ``ideal_*``: what an ideal image-only verifier would score on the same states (the
    sampler's ``ideal_verdict``), for the renderers whose images cannot tell some poses
    apart (Push-T: ``gym-pusht`` draws the T from its corners rounded to whole pixels, see
    its plugin's ``crosscheck.ideal_verdict``). ``nan`` / -1 when not computed:
    for the other renderers (Push-T's default ``area``) the ideal is the ground truth itself.
    ``renderer``: the sim cell renderer that drew the images; ``perturbation``: what a
    camera did to them before the verifier saw them (:data:`enpire_tasks.sensor.PERTURBATIONS`).
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
    perturbation: str = 'clean'

    def to_dict(self) -> dict:
        return asdict(self)

    def meets_targets(self, agreement: float = 0.99, fpr: float = 0.005,
                      mae: float = 0.02) -> bool:
        return (self.label_agreement >= agreement and self.false_positive_rate <= fpr
                and self.score_mae <= mae)


def cell_renderer(renderer: str | None = None, task: TaskSpec | str | None = None) -> str:
    """``renderer``, or the default ``camera.renderer`` of the task's simulated cell.

    Without a task: the default that every registered task with a simulated cell shares.

    Raises:
        ConfigError: no task plugin has a simulated cell, or (without ``task``) they differ.
    """
    if renderer is not None:
        return renderer
    if task is not None and not tasks.get(task).sim_renderers:
        return ''       # a cell with one way to render (MuJoCo arm cells)
    plugins = [tasks.get(task)] if task is not None else list(tasks.available().values())
    defaults = {p.default_renderer for p in plugins if p.default_renderer}
    if len(defaults) != 1:
        raise ConfigError(
            f'no single default sim renderer ({", ".join(sorted(defaults)) or "none"}); '
            f'name the task or the renderer')
    return defaults.pop()


def _sampler(task: TaskSpec) -> CrossCheck:
    plugin = tasks.get(task)
    if plugin.crosscheck is None:
        raise ConfigError(f"task '{task.name}' has no crosscheck sampler (no simulated cell)")
    return plugin.crosscheck


def sample_states(task: TaskSpec, n: int, seed: int = 0, near_goal_frac: float = 0.5,
                  progress: Callable[[int, int], None] | None = None,
                  near_goal_noise: str = 'wide', renderer: str | None = None):
    """Yield ``(image, ground_truth)`` for ``n`` states of the task's crosscheck sampler.

    The states are drawn by the task plugin's sampler in a simulated cell
    (:func:`enpire_tasks.registry.make_sim_cell`) whose camera runs ``renderer`` (None: the
    cell's default ``camera.renderer``); the states do not depend on it.

    Raises:
        UnknownNameError: ``near_goal_noise`` is not one of the sampler's noise levels, or
            ``renderer`` is not a sim renderer.
        ConfigError: the task has no crosscheck sampler or no simulated cell is installed.
    """
    sampler = _sampler(task)
    cell = tasks.make_sim_cell(task, renderer=cell_renderer(renderer, task))
    try:
        yield from sampler.sample_states(task, cell, n, seed, near_goal_frac=near_goal_frac,
                                         progress=progress, near_goal_noise=near_goal_noise)
    finally:
        cell.close()


class _Tally:
    """The running counts of one (backend, perturbation) cell of a crosscheck."""

    def __init__(self, ideal_applies: bool) -> None:
        self.ideal_applies = ideal_applies
        self.errors: list[float] = []
        self.lat: list[float] = []
        self.n = self.fp = self.fn = self.pos = self.neg = self.agree = 0
        self.ideal_fp = self.ideal_fn = 0

    def add(self, verifier: Verifier, images: dict, fused: bool, gt: Any,
            ideal: bool | None) -> None:
        res = verifier.verify(images)
        # one view's image: its verdict; every view's: the fused verdict, and the latency
        # is the slowest view's
        v = res.verdicts[-1] if fused else res.verdicts[0]
        self.n += 1
        self.errors.append(abs(v.score - gt.coverage))
        self.lat.append(max(x.latency_s for x in res.verdicts[:-1]))
        self.pos += gt.success
        self.neg += not gt.success
        self.agree += v.success == gt.success
        self.fp += v.success and not gt.success
        self.fn += gt.success and not v.success
        if ideal is not None:
            self.ideal_fp += ideal and not gt.success
            self.ideal_fn += gt.success and not ideal

    def report(self, backend: str, renderer: str, perturbation: str) -> CrossCheckReport:
        n = self.n
        errs, lats = np.asarray(self.errors), np.asarray(self.lat)
        return CrossCheckReport(
            states=n, positives=self.pos, score_mae=float(errs.mean()),
            score_max_error=float(errs.max()), label_agreement=self.agree / n,
            false_positive_rate=self.fp / self.neg if self.neg else 0.0,
            false_negative_rate=self.fn / self.pos if self.pos else 0.0,
            false_positives=self.fp, false_negatives=self.fn,
            latency_p50_s=float(np.percentile(lats, 50)),
            latency_p95_s=float(np.percentile(lats, 95)),
            latency_p99_s=float(np.percentile(lats, 99)), backend=backend,
            ideal_label_agreement=(1.0 - (self.ideal_fp + self.ideal_fn) / n
                                   if self.ideal_applies else float('nan')),
            ideal_false_positives=self.ideal_fp if self.ideal_applies else -1,
            ideal_false_negatives=self.ideal_fn if self.ideal_applies else -1,
            renderer=renderer, perturbation=perturbation)


def crosscheck_matrix(verifiers: Sequence[Verifier], task: TaskSpec, n: int, seed: int = 0,
                      perturbations: Sequence[str] = ('clean',),
                      progress: Callable[[int, int], None] | None = None,
                      near_goal_noise: str = 'wide', renderer: str | None = None
                      ) -> dict[str, dict[str, CrossCheckReport]]:
    """Every verifier on every perturbation of the same ``n`` sampled states:
    ``{backend: {perturbation: report}}``.

    Each state is drawn once (:func:`sample_states`); each perturbation kind
    (:data:`enpire_tasks.sensor.PERTURBATIONS`) turns its images into what a camera would
    deliver, seeded per (``seed``, state, kind, view), and every verifier judges the same
    perturbed images, so that backends compare side by side on identical inputs.

    Raises:
        UnknownNameError: a perturbation kind is not known.
        ConfigError: no verifiers, or two with one backend id.
    """
    from enpire_tasks.sensor import frame_rng, perturbation

    if not verifiers:
        raise ConfigError('crosscheck: no verifier to check')
    ids = [v.backend_id for v in verifiers]
    if len(set(ids)) != len(ids):
        raise ConfigError(f'crosscheck: a backend is named twice ({", ".join(ids)})')
    models = {k: perturbation(k) for k in perturbations}
    sampler = _sampler(task)
    renderer = cell_renderer(renderer, task)
    ideal_applies = sampler.ideal_verdict is not None and renderer in sampler.ideal_renderers
    tallies = {b: {k: _Tally(ideal_applies) for k in models} for b in ids}
    for i, (image, gt) in enumerate(sample_states(task, n, seed, progress=progress,
                                                  near_goal_noise=near_goal_noise,
                                                  renderer=renderer)):
        ideal = sampler.ideal_verdict(task, gt) if ideal_applies else None
        for kind, model in models.items():
            for verifier in verifiers:
                fused = isinstance(image, dict)
                images = image if fused else {verifier.views[0]: image}
                seen = {view: model.apply(img, frame_rng(seed, i, kind, view))
                        for view, img in images.items()}
                tallies[verifier.backend_id][kind].add(verifier, seen, fused, gt, ideal)
    return {b: {k: t.report(b, renderer, k) for k, t in kinds.items()}
            for b, kinds in tallies.items()}


def crosscheck(verifier: Verifier, task: TaskSpec, n: int, seed: int = 0,
               progress: Callable[[int, int], None] | None = None,
               near_goal_noise: str = 'wide', renderer: str | None = None,
               perturbation: str = 'clean') -> CrossCheckReport:
    """Verify ``n`` sampled states (:func:`sample_states`) and compare with ground truth.

    ``renderer``: the sim cell renderer (None: the cell's default); the verifier must be
    built for it (the view's ``camera_model``, see
    :func:`enpire_tasks.camera_models.camera_model_for_renderer`). ``perturbation``: what a
    camera does to the images first (:data:`enpire_tasks.sensor.PERTURBATIONS`).
    """
    out = crosscheck_matrix([verifier], task, n, seed, (perturbation,), progress=progress,
                            near_goal_noise=near_goal_noise, renderer=renderer)
    return out[verifier.backend_id][perturbation]


__all__ = ['CrossCheckReport', 'cell_renderer', 'crosscheck', 'crosscheck_matrix',
           'sample_states']
