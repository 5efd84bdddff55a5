"""Verifier latency per 480 x 480 view (opencv-v1) vs plain cv2.inRange on the same image.

Run: ``python benchmarks/verifier.py [--frames N] [--seed S]``. Prints p50/p95 of the full
verifier (analysis by synthesis on near-threshold states, see
:mod:`enpire_reward.core.synthesis`), of the analytic fit alone (synthesis off) and of the
baseline, all measured interleaved in the same process, plus how many calls ran the synthesis
and what those cost, plus the process CPU time per call (all threads): on a loaded machine
wall time includes waiting for a core, CPU time approximates a calm machine's latency.
Ratios to the baseline are what to compare across (loaded) machines.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--frames', type=int, default=100)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--seed', type=int, default=7)
    ap.add_argument('--synthesis-band', type=float, default=None,
                    help='override OpenCvConfig.synthesis_band of the full verifier')
    args = ap.parse_args()
    task = load_task('push_t')
    verifier = make_verifier('opencv-v1', task)
    if args.synthesis_band is not None:
        verifier.estimator.config = dataclasses.replace(verifier.estimator.config,
                                                        synthesis_band=args.synthesis_band)
    fit_only = make_verifier('opencv-v1', task)
    fit_only.estimator.config = dataclasses.replace(fit_only.estimator.config,
                                                    synthesis_band=0.0)
    refiner = verifier.estimator._refiners.get('top')
    refined: set[int] = set()
    if refiner is not None:  # count which frames run the synthesis
        orig = refiner.refine
        state = {'frame': 0}

        def counting(*a, **k):
            refined.add(state['frame'])
            return orig(*a, **k)

        refiner.refine = counting
    images = [img for img, _ in sample_states(task, args.frames, seed=args.seed)]
    lat, fit, base, lat_syn, cpu, cpu_fit = [], [], [], [], [], []
    for _ in range(args.repeats):
        for i, img in enumerate(images):
            if refiner is not None:
                state['frame'] = i
            t0, c0 = time.perf_counter(), time.process_time()
            verifier.verify({'top': img})
            dt = time.perf_counter() - t0
            cpu.append(time.process_time() - c0)
            lat.append(dt)
            if i in refined:
                lat_syn.append(dt)
            t0, c0 = time.perf_counter(), time.process_time()
            fit_only.verify({'top': img})
            fit.append(time.perf_counter() - t0)
            cpu_fit.append(time.process_time() - c0)
            t0 = time.perf_counter()
            cv2.inRange(img, (97, 114, 131), (165, 185, 206))
            base.append(time.perf_counter() - t0)
    lat_ms, fit_ms, base_ms = (np.asarray(v) * 1e3 for v in (lat, fit, base))
    p50, p95 = np.percentile(lat_ms, [50, 95])
    f50, f95 = np.percentile(fit_ms, [50, 95])
    b50, b95 = np.percentile(base_ms, [50, 95])
    print(f'opencv-v1 verify : p50 {p50:.2f} ms  p95 {p95:.2f} ms  ({len(lat)} calls)')
    print(f'  fit only       : p50 {f50:.2f} ms  p95 {f95:.2f} ms  (synthesis_band 0)')
    if lat_syn:
        s50, s95 = np.percentile(np.asarray(lat_syn) * 1e3, [50, 95])
        print(f'  synthesis ran on {len(refined)}/{len(images)} frames: those p50 {s50:.2f} ms '
              f' p95 {s95:.2f} ms')
    c50, c95 = np.percentile(np.asarray(cpu) * 1e3, [50, 95])
    g50, g95 = np.percentile(np.asarray(cpu_fit) * 1e3, [50, 95])
    print(f'  CPU time (all threads; what a calm machine would take): verify p50 {c50:.2f} '
          f'ms p95 {c95:.2f} ms, fit only p50 {g50:.2f} ms p95 {g95:.2f} ms')
    print(f'cv2.inRange      : p50 {b50:.3f} ms  p95 {b95:.3f} ms')
    print(f'ratio p50 {p50 / b50:.1f}x  p95 {p95 / b95:.1f}x  (fit only: p50 {f50 / b50:.1f}x '
          f' p95 {f95 / b95:.1f}x)')


if __name__ == '__main__':
    main()
