"""Verifier latency per 480 x 480 view (opencv-v1) vs plain cv2.inRange on the same image.

Run: ``python benchmarks/verifier.py [--frames N] [--seed S]``. Judges the same sampled
states (:func:`enpire_reward.core.crosscheck.sample_states`) as drawn by both sim cell
renderers, interleaved in one process:

- ``area`` (the cell's default camera, ``camera_model: pusht-area-v1``): colour unmixing
  against the known background + exact-coverage least squares;
- ``gym-pusht`` (``camera_model: gym-pusht-pygame``): the analytic fit plus analysis by
  synthesis on near-threshold states (:mod:`enpire_reward.core.synthesis`); also with the
  synthesis off (``fit only``);

plus the baseline (``cv2.inRange`` of the block colours) and the process CPU time per call
(all threads): on a loaded machine wall time includes waiting for a core, CPU time
approximates a calm machine's latency. Ratios to the baseline are what to compare across
(loaded) machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import cv2
import numpy as np

from enpire_common.tasks import load_task
from enpire_reward.core import make_verifier
from enpire_reward.core.crosscheck import sample_states
from enpire_tasks.camera_models import with_camera_model


def _pct(values: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(values) * 1e3, [50, 95])
    return float(p50), float(p95)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--frames', type=int, default=100)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--seed', type=int, default=7)
    ap.add_argument('--synthesis-band', type=float, default=None,
                    help='override OpenCvConfig.synthesis_band of the gym-pusht verifier')
    args = ap.parse_args()
    task = load_task('push_t')
    pygame_task = with_camera_model(task, 'top', 'gym-pusht-pygame')
    area = make_verifier('opencv-v1', with_camera_model(task, 'top', 'pusht-area-v1'))
    pygame = make_verifier('opencv-v1', pygame_task)
    if args.synthesis_band is not None:
        pygame.estimator.config = dataclasses.replace(pygame.estimator.config,
                                                      synthesis_band=args.synthesis_band)
    fit_only = make_verifier('opencv-v1', pygame_task)
    fit_only.estimator.config = dataclasses.replace(fit_only.estimator.config,
                                                    synthesis_band=0.0)
    refiner = pygame.estimator._refiners.get('top')
    refined: set[int] = set()
    state = {'frame': 0}
    if refiner is not None:  # count which frames run the synthesis
        orig = refiner.refine

        def counting(*a, **k):
            refined.add(state['frame'])
            return orig(*a, **k)

        refiner.refine = counting
    area_imgs = [img for img, _ in sample_states(task, args.frames, seed=args.seed,
                                                 renderer='area')]
    pg_imgs = [img for img, _ in sample_states(task, args.frames, seed=args.seed,
                                               renderer='gym-pusht')]
    runs = {'area': [], 'area_cpu': [], 'gym': [], 'gym_cpu': [], 'fit': [], 'base': [],
            'syn': []}

    def timed(verifier, img) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        verifier.verify({'top': img})
        return time.perf_counter() - t0, time.process_time() - c0

    for _ in range(args.repeats):
        for i, (a_img, g_img) in enumerate(zip(area_imgs, pg_imgs, strict=True)):
            dt, cpu = timed(area, a_img)
            runs['area'].append(dt)
            runs['area_cpu'].append(cpu)
            state['frame'] = i
            dt, cpu = timed(pygame, g_img)
            runs['gym'].append(dt)
            runs['gym_cpu'].append(cpu)
            if i in refined:
                runs['syn'].append(dt)
            runs['fit'].append(timed(fit_only, g_img)[0])
            t0 = time.perf_counter()
            cv2.inRange(a_img, (97, 114, 131), (165, 185, 206))
            runs['base'].append(time.perf_counter() - t0)
    b50, b95 = _pct(runs['base'])
    for key, label in (('area', 'area camera (pusht-area-v1)'),
                       ('gym', 'gym-pusht camera (+ synthesis)'),
                       ('fit', 'gym-pusht camera, fit only')):
        p50, p95 = _pct(runs[key])
        print(f'{label:<32}: p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  '
              f'(ratio to inRange p50 {p50 / b50:5.1f}x  p95 {p95 / b95:5.1f}x)')
    if runs['syn']:
        s50, s95 = _pct(runs['syn'])
        print(f'  gym-pusht synthesis ran on {len(refined)}/{len(pg_imgs)} frames: those p50 '
              f'{s50:.2f} ms  p95 {s95:.2f} ms')
    c50, c95 = _pct(runs['area_cpu'])
    g50, g95 = _pct(runs['gym_cpu'])
    print(f'  CPU time (all threads; what a calm machine would take): area p50 {c50:.2f} ms '
          f'p95 {c95:.2f} ms, gym-pusht p50 {g50:.2f} ms p95 {g95:.2f} ms')
    print(f'cv2.inRange baseline            : p50 {b50:.3f} ms  p95 {b95:.3f} ms '
          f'({len(runs["base"])} calls each)')


if __name__ == '__main__':
    main()
