"""Camera frames in trial bags: raw Image vs PNG vs JPEG CompressedImage (bag_images).

The same N Push-T frames (the sim cell's render through its camera sensor model, default
``default``: noise, blur, exposure and a JPEG q90 pass, what the recorder receives live from
a sim cell; ``--sensor none`` for exact renders) go through the recorder's bag path
(``write_image``: parse, encode, bag write with the default zstd chunk compression) once per
``bag_images`` mode, in this process. The MP4 (the same in every mode) is left out so the bag
path is what is timed.
Prints per mode: bag MB per frame, encode ms per frame (the codec alone), bag path ms per
frame, read-back ms per frame (BagReader + decode), the mean absolute pixel error of the
frames read back, and size and time ratios against raw.
Run: python benchmarks/bag_images.py [--frames N] [--quality Q] [--sensor default|none]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from enpire_common.clock import FakeClock
from enpire_common.images import compressed_from_rgb
from enpire_common.tasks import load_task
from enpire_rollout.core.bag import serialize, typestore
from enpire_rollout.core.bag_reader import BagReader
from enpire_rollout.core.config import BAG_IMAGES, RecorderConfig
from enpire_rollout.core.episodes import image_connections
from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta, bag_image_rgb
from enpire_sim.core.push_t import PushTSim
from enpire_tasks.sensor import SENSORS, SensorStream, sensor_named

TOPIC = '/cell_0/camera/top/image_raw'


class _BagOnly(EpisodeRecorder):
    """The recorder without its MP4 (identical in every mode): the bag path alone is timed."""

    def write_frame(self, view: str, stamp_ns: int, frame: np.ndarray) -> None:
        pass


def push_t_frames(n: int, sensor_name: str = 'default', seed: int = 3) -> list[np.ndarray]:
    """``n`` frames of a Push-T episode: the pusher circles the block, pushing it."""
    sim = PushTSim(load_task('push_t'))
    sensor = SensorStream(sensor_named(sensor_name), seed=seed, view='top')
    sim.reset(seed=seed)
    frames = []
    for i in range(n):
        frames.append(sensor.apply(sim.render(), i, seed))
        x, y, _theta = sim.object_pose()
        a = 2 * math.pi * i / 40
        target = np.clip([x + 40 * math.cos(a), y + 40 * math.sin(a)], sim.low, sim.high)
        sim.step(target)
    sim.close()
    return frames


def image_cdrs(frames: list[np.ndarray]) -> list[bytes]:
    h, w = frames[0].shape[:2]
    return [bytes(serialize('sensor_msgs/msg/Image', {
        'header': {'stamp': {'sec': 10 + i // 10, 'nanosec': (i % 10) * 100_000_000},
                   'frame_id': 'top_camera'},
        'height': h, 'width': w, 'encoding': 'rgb8', 'step': w * 3, 'data': f.tobytes()}))
        for i, f in enumerate(frames)]


def run(mode: str, frames: list[np.ndarray], cdrs: list[bytes], quality: int,
        tmp: Path) -> dict[str, float]:
    n = len(frames)
    encode_s = 0.0
    if mode != 'raw':
        start = time.perf_counter()
        for f in frames:
            compressed_from_rgb(f, mode, quality)
        encode_s = time.perf_counter() - start
    clock = FakeClock(10.0)
    rec = _BagOnly(RecorderConfig(bag_images=mode, jpeg_quality=quality), clock=clock,
                   wall_clock=FakeClock(1.7e9))
    trial = tmp / mode
    rec.open(trial, TrialMeta('bench', mode))
    start = time.perf_counter()
    for cdr in cdrs:
        rec.write_image(TOPIC, 'top', int(round(clock.now_s() * 1e9)), cdr)
        clock.advance(0.1)
    rec.close('success', steps=n)
    write_s = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (trial / 'episode').iterdir() if p.is_file())
    store = typestore()
    errors = []
    start = time.perf_counter()
    with BagReader(trial) as reader:
        for i, (conn, _ns, raw) in enumerate(reader.messages(image_connections(
                reader.connections))):
            rgb = bag_image_rgb(conn.msgtype, store.deserialize_cdr(raw, conn.msgtype))
            errors.append(float(np.abs(rgb.astype(np.int16) - frames[i]).mean()))
    read_s = time.perf_counter() - start
    return {'mb': size / 1e6 / n, 'encode_ms': encode_s * 1e3 / n,
            'write_ms': write_s * 1e3 / n, 'read_ms': read_s * 1e3 / n,
            'error': float(np.mean(errors))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, default=115,
                        help='frames per mode (default 115: a typical Push-T trial)')
    parser.add_argument('--quality', type=int, default=RecorderConfig().jpeg_quality,
                        help='JPEG quality (default: RecorderConfig.jpeg_quality)')
    parser.add_argument('--sensor', choices=sorted(SENSORS), default='default',
                        help="the sim camera's sensor model (default: the cell's default)")
    args = parser.parse_args()
    start = time.perf_counter()
    frames = push_t_frames(args.frames, args.sensor)
    cdrs = image_cdrs(frames)
    h, w = frames[0].shape[:2]
    print(f'{args.frames} Push-T frames {w}x{h} rgb8 ({len(cdrs[0]) / 1e3:.0f} KB each raw, '
          f'sensor {args.sensor}), rendered in {time.perf_counter() - start:.1f} s; bags zstd '
          'chunk-compressed')
    with tempfile.TemporaryDirectory() as tmp:
        results = {mode: run(mode, frames, cdrs, args.quality, Path(tmp))
                   for mode in ('raw', *(m for m in BAG_IMAGES if m != 'raw'))}
    raw = results['raw']
    print(f"{'mode':<10}{'MB/frame':>10}{'encode ms':>11}{'bag ms':>9}{'read ms':>9}"
          f"{'abs err':>9}{'size/raw':>10}{'bag ms/raw':>12}")
    for mode, r in results.items():
        name = f'jpeg q{args.quality}' if mode == 'jpeg' else mode
        print(f"{name:<10}{r['mb']:>10.4f}{r['encode_ms']:>11.2f}{r['write_ms']:>9.2f}"
              f"{r['read_ms']:>9.2f}{r['error']:>9.2f}{r['mb'] / raw['mb']:>10.3f}"
              f"{r['write_ms'] / raw['write_ms']:>12.2f}")
    print(f'total {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
