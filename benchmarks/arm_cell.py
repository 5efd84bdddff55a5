"""The arm cell's lockstep tick rate: vs real time and vs a bare MuJoCo loop on the same scene.

Run: python benchmarks/arm_cell.py [--ticks N] [--rounds R] [--scene pin_insertion]
                                   [--size 240x320]

A tick is what the cell does per 30 Hz policy step: hold joint targets for the scene's
physics steps (17 at 2 ms), then render every camera view. ``ArmSim`` (the cell's core, with
its target checks, IK-ready state and fast render flags) is timed against a bare loop of
``mj_step(nstep) + update_scene + render`` on the same model, views and render flags, in
alternating rounds in this process. Prints ticks per second, the ratio to real time
(goals: >= 1.0x on 2 cores) and the ratio to the bare loop (goal: >= 0.8x); and, for the
record, the bare loop with the default render settings (shadows, reflections, skybox on).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    from enpire_sim.core.arm.sim import ArmSim, ArmSimConfig, gl_backend

    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--ticks', type=int, default=60)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--scene', default='pin_insertion')
    p.add_argument('--size', default='240x320', help='HxW of every view')
    a = p.parse_args()
    h, w = (int(x) for x in a.size.split('x'))
    backend, why = gl_backend()
    sim = ArmSim(ArmSimConfig(scene=a.scene, width=w, height=h))
    mj = sim.mj
    model, views = sim.model, sim.config.views
    bare_data = mj.MjData(model)
    mj.mj_resetDataKeyframe(model, bare_data, 0)
    renderer = mj.Renderer(model, h, w)
    targets = sim.targets()
    flags = (mj.mjtRndFlag.mjRND_SHADOW, mj.mjtRndFlag.mjRND_REFLECTION,
             mj.mjtRndFlag.mjRND_SKYBOX)

    def bare(n: int, fast: bool) -> float:
        bare_data.ctrl[:] = targets
        t = time.perf_counter()
        for _ in range(n):
            mj.mj_step(model, bare_data, nstep=sim.substeps)
            for v in views:
                renderer.update_scene(bare_data, v)
                if fast:
                    for f in flags:
                        renderer.scene.flags[f] = 0
                renderer.render()
        return n / (time.perf_counter() - t)

    def cell(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            sim.step(targets)
            sim.render_all()
        return n / (time.perf_counter() - t)

    cell(5), bare(5, True)  # warm up both
    rates: dict[str, list[float]] = {'cell': [], 'bare': [], 'bare_default': []}
    for _ in range(a.rounds):
        rates['cell'].append(cell(a.ticks))
        rates['bare'].append(bare(a.ticks, True))
    rates['bare_default'].append(bare(max(10, a.ticks // 3), False))
    med = {k: statistics.median(v) for k, v in rates.items()}
    hz = sim.config.control_hz
    print(f'arm cell {a.scene}: {len(views)} views {views} at {h}x{w}, {sim.substeps} physics '
          f'steps per {hz:g} Hz tick; GL {backend} ({why})')
    print(f'  cell tick        {med["cell"]:7.1f} ticks/s = {med["cell"] / hz:.2f}x real time')
    print(f'  bare loop        {med["bare"]:7.1f} ticks/s = {med["bare"] / hz:.2f}x real time')
    print(f'  bare, default render settings {med["bare_default"]:7.1f} ticks/s = '
          f'{med["bare_default"] / hz:.2f}x real time')
    print(f'  ratio cell / bare = {med["cell"] / med["bare"]:.2f} (goal >= 0.80); '
          f'real-time ratio {med["cell"] / hz:.2f} (goal >= 1.00); rounds '
          f'{np.round(rates["cell"], 1).tolist()}')
    renderer.close()
    sim.close()


if __name__ == '__main__':
    main()
