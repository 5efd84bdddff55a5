"""What the realistic camera and the learned verifier cost per frame, against baselines run in
the same process.

Run: ``python benchmarks/camera_costs.py [--frames N] [--device cuda]``.

- **Sensor**: the sim cell's camera (:class:`enpire_tasks.sensor.SensorStream`, the default
  sensor) against the reference :class:`~enpire_tasks.sensor.SensorModel` (per-frame noise
  draws) on the same 480 x 480 Push-T renders. The cell pays the stream's cost per published
  frame and view.
- **Segmenter**: one YOLO-seg forward pass (``predict``, mask at the image's size) of ENPIRE's
  narrow network (``enpire_reward/models/enpire-seg.yaml``) against Ultralytics'
  ``yolov8n-seg.yaml``, both built from their yaml (random weights: the cost of a pass does
  not depend on them), at 320 and 256 px. Each pass is timed until its masks are on the host
  (as the verifier reads them). ``--device cuda`` adds ENPIRE's network on the GPU, in the
  same process: issue 11's GPU latency (goal < 10 ms per view).

Ratios are what to compare across (loaded) machines; the wall times are this machine's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from enpire_common.tasks import load_task
from enpire_reward.core.crosscheck import sample_states
from enpire_tasks.sensor import DEFAULT_SENSOR, SensorStream, frame_rng


def _p50_p95(times: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(times) * 1e3, [50, 95])
    return float(p50), float(p95)


def _time(fn, items, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        for i, item in enumerate(items):
            t0 = time.perf_counter()
            fn(i, item)
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--frames', type=int, default=30)
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--device', default='cpu',
                    help="also time ENPIRE's network on this device (cuda, cuda:N)")
    args = ap.parse_args()
    task = load_task('push_t')
    images = [img for img, _ in sample_states(task, args.frames, seed=5)]

    stream = SensorStream(DEFAULT_SENSOR, seed=1, view='top')
    base = _time(lambda i, im: DEFAULT_SENSOR.apply(im, frame_rng(1, i, 'all', 'top')),
                 images, args.repeats)
    new = _time(lambda i, im: stream.apply(im, i, 3), images, args.repeats)
    b50, b95 = _p50_p95(base)
    n50, n95 = _p50_p95(new)
    print(f'sensor, {len(images)} frames 480x480 x {args.repeats}')
    print(f'  SensorModel.apply (baseline)  p50 {b50:6.2f} ms  p95 {b95:6.2f} ms')
    print(f'  SensorStream.apply            p50 {n50:6.2f} ms  p95 {n95:6.2f} ms  '
          f'ratio {n50 / b50:.2f}')

    from enpire_reward.core.yolo import DEFAULT_MODEL, _ultralytics

    _ultralytics()
    from ultralytics import YOLO

    nets = {'yolov8n-seg (baseline)': (YOLO('yolov8n-seg.yaml', task='segment'), 'cpu'),
            'enpire-seg': (YOLO(DEFAULT_MODEL, task='segment'), 'cpu')}
    if args.device != 'cpu':
        nets[f'enpire-seg on {args.device}'] = (YOLO(DEFAULT_MODEL, task='segment'),
                                                args.device)
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]

    def forward(net, im, imgsz: int, device: str) -> None:  # noqa: ANN001
        res = net.predict(im, imgsz=imgsz, conf=0.25, retina_masks=True, device=device,
                          verbose=False)[0]
        if res.masks is not None:
            res.masks.data.cpu()            # the verifier reads the masks on the host

    print(f'segmenter forward pass, {len(images)} frames x {args.repeats}')
    for imgsz in (320, 256):
        results = {}
        for name, (net, device) in nets.items():
            for im in bgr[:3]:          # warm-up
                forward(net, im, imgsz, device)
            times = _time(lambda _i, im, net=net, imgsz=imgsz, device=device: forward(
                net, im, imgsz, device), bgr, args.repeats)
            results[name] = _p50_p95(times)
        ref = results['yolov8n-seg (baseline)'][0]
        for name, (p50, p95) in results.items():
            params = sum(p.numel() for p in nets[name][0].model.parameters())
            print(f'  {imgsz} px {name:<24} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  '
                  f'ratio {p50 / ref:.2f}  ({params / 1e6:.2f} M parameters)')


if __name__ == '__main__':
    main()
