"""The arm cell's lockstep tick rate: vs real time and vs a bare MuJoCo loop on the same scene.

Run: python benchmarks/arm_cell.py [--ticks N] [--rounds R] [--task pin_insertion|zip_tie|...]
                                   [--size 240x320]

A tick is what the cell does per 30 Hz policy step. ``cell tick``: the arm cell of the task
contract (``ArmCell``) takes an end-effector action for both arms (mink IK, warm-started),
ramps the servo setpoints through the scene's physics steps (17 at 2 ms), checks the safety
envelope, builds the state vector and renders every camera view: the lockstep policy tick
with all cameras on. ``sim tick``: the core alone (``ArmSim``: joint targets, physics,
renders). Both are timed against a bare loop of ``mj_step(nstep) + update_scene + render`` on
the same model, views and render flags, in alternating rounds in this process. Prints ticks
per second, the ratio to real time
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
    p.add_argument('--scene', '--task', dest='scene', default='pin_insertion',
                   help='an arm task (its scene) or a scene .xml')
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

    def core(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            sim.step(targets)
            sim.render_all()
        return n / (time.perf_counter() - t)

    from enpire_common.tasks import load_task
    from enpire_sim.core.arm.cell import ArmCell
    from enpire_tasks.arm import home_action

    task = load_task(a.scene)
    arm_cell = ArmCell(task, width=w, height=h)
    home = home_action(task)
    phase = [0.0]

    def cell(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            phase[0] += 0.05          # both grippers circle slowly: IK works every tick
            act = home.copy()
            act[[0, 7]] += 0.03 * np.sin(phase[0])
            act[[1, 8]] += 0.03 * np.cos(phase[0])
            arm_cell.step(act)
            arm_cell.agent_state()
            arm_cell.render_all()
        return n / (time.perf_counter() - t)

    cell(5), core(5), bare(5, True)  # warm up
    rates: dict[str, list[float]] = {'cell': [], 'core': [], 'bare': [], 'bare_default': []}
    for _ in range(a.rounds):
        rates['cell'].append(cell(a.ticks))
        rates['core'].append(core(a.ticks))
        rates['bare'].append(bare(a.ticks, True))
    rates['bare_default'].append(bare(max(10, a.ticks // 3), False))
    med = {k: statistics.median(v) for k, v in rates.items()}
    hz = sim.config.control_hz
    print(f'arm cell {a.scene}: {len(views)} views {views} at {h}x{w}, {sim.substeps} physics '
          f'steps per {hz:g} Hz tick; GL {backend} ({why})')
    print(f'  cell tick        {med["cell"]:7.1f} ticks/s = {med["cell"] / hz:.2f}x real time '
          '(ee action + IK, envelope, state, every camera)')
    print(f'  sim tick         {med["core"]:7.1f} ticks/s = {med["core"] / hz:.2f}x real time')
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
