"""Recorder throughput: 300 480x480 rgb8 frames + states, with vs without recording.

Baseline: the same loop building the messages (what a cell must do anyway) without writing.
Prints MB/s and frames/s of both and the ratio (recording cost), measured in this process.
Run: python benchmarks/recorder.py [--frames N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from enpire_common.clock import FakeClock
from enpire_rollout.core.bag import serialize
from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta

SIZE = 480


def loop(frames: int, recorder: EpisodeRecorder | None, clock: FakeClock) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    nbytes = 0
    start = time.perf_counter()
    for i in range(frames):
        frame = np.roll(base, i, axis=1)  # changing content, as a real camera's
        ns = int(clock.now_s() * 1e9)
        image = serialize('sensor_msgs/msg/Image', {
            'header': {'stamp': {'sec': ns // 10**9, 'nanosec': ns % 10**9}},
            'height': SIZE, 'width': SIZE, 'encoding': 'rgb8', 'step': SIZE * 3,
            'data': frame.tobytes()})
        state = serialize('enpire_interfaces/msg/StateVector',
                          {'tick': i, 'names': ['x_px', 'y_px', 'vx_px_s', 'vy_px_s'],
                           'values': [1.0, 2.0, 3.0, 4.0]})
        nbytes += len(image) + len(state)
        if recorder is not None:
            recorder.write('camera/top/image_raw', 'sensor_msgs/msg/Image', ns, image)
            recorder.write_frame('top', ns, frame)
            recorder.write('state', 'enpire_interfaces/msg/StateVector', ns, state)
        clock.advance(0.1)
    if recorder is not None:
        recorder.close('success', steps=frames)
    return time.perf_counter() - start, nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--frames', type=int, default=300)
    args = parser.parse_args()
    base_s, nbytes = loop(args.frames, None, FakeClock())
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock()
        recorder = EpisodeRecorder(clock=clock)
        recorder.open(Path(tmp) / 't', TrialMeta('bench', 't'))
        rec_s, _ = loop(args.frames, recorder, clock)
        sizes = {p.name: p.stat().st_size for p in Path(tmp, 't').rglob('*') if p.is_file()}
    mb = nbytes / 1e6
    print(f'{args.frames} frames {SIZE}x{SIZE} rgb8 + states, {mb:.1f} MB of messages')
    print(f'without recording: {base_s:6.2f} s  {mb / base_s:8.1f} MB/s  '
          f'{args.frames / base_s:7.1f} frames/s')
    print(f'with recording:    {rec_s:6.2f} s  {mb / rec_s:8.1f} MB/s  '
          f'{args.frames / rec_s:7.1f} frames/s  (bag + MP4 + hashes + trial.json)')
    print(f'ratio recording/baseline time: {rec_s / base_s:.2f}x; '
          f'files: ' + ', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in sorted(sizes.items())))


if __name__ == '__main__':
    main()
