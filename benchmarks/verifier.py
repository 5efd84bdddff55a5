"""Verifier latency per 480 x 480 view (opencv-v1) vs plain cv2.inRange on the same image.

Run: ``python benchmarks/verifier.py [--frames N]``. Prints p50/p95 and the ratio to the
baseline measured in the same process.
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args()
    task = load_task('push_t')
    verifier = make_verifier('opencv-v1', task)
    images = [img for img, _ in sample_states(task, args.frames, seed=7)]
    lat, base = [], []
    for _ in range(args.repeats):
        for img in images:
            t0 = time.perf_counter()
            verifier.verify({'top': img})
            lat.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cv2.inRange(img, (97, 114, 131), (165, 185, 206))
            base.append(time.perf_counter() - t0)
    lat_ms, base_ms = np.asarray(lat) * 1e3, np.asarray(base) * 1e3
    p50, p95 = np.percentile(lat_ms, [50, 95])
    b50, b95 = np.percentile(base_ms, [50, 95])
    print(f'opencv-v1 verify: p50 {p50:.2f} ms  p95 {p95:.2f} ms  ({len(lat)} calls)')
    print(f'cv2.inRange     : p50 {b50:.3f} ms  p95 {b95:.3f} ms')
    print(f'ratio p50 {p50 / b50:.1f}x  p95 {p95 / b95:.1f}x')


if __name__ == '__main__':
    main()
