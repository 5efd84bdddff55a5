"""Robot-executed resets of the arm tasks: verified success rate, time, failure causes.

Each round: a trial's worth of disturbance (the task's scripted baseline runs for up to
``--episode-steps`` ticks, by default the contract's episode length, with seeded noise of
``--jitter-m`` on its gripper positions, so the part ends where real trials leave it: in the
hole, jammed part-way, in the gripper, dropped, leaning on the fixture), then one
robot-executed reset to the round's seed (the task's reset skill, from the cameras), then
the camera verifier's reset check against the seed's start. No ROS: the arm cell core in one
process, as the cell node runs it.

Reports (JSON on stdout, progress on stderr): verified success rate (AutoEval's deployment
gate is >= 95%), reset time p50 / p95 (simulated and wall seconds), and failure causes.
Every failure is one of: the skill gave up (its reason), the envelope tripped, or the start
it left did not verify (the verifier's reason).

    python benchmarks/resets.py --task pin_insertion --resets 200
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _policy(task, name: str = 'scripted'):  # noqa: ANN001, ANN202
    import yaml

    from enpire_agent_bridge.core.contract import PolicySpec

    pdir = ROOT / 'examples' / 'policies' / task.name / name
    params = (yaml.safe_load((pdir / 'policy.yaml').read_text()) or {}).get('params') or {}
    spec = importlib.util.spec_from_file_location(f'bench_{name}', pdir / 'policy.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_policy(PolicySpec.from_task_contract(task.raw, params=params))


def _observe(cell, task, tick: int):  # noqa: ANN001, ANN202
    from enpire_tasks import arm
    from enpire_tasks.plugin import CellReading

    sources = {f.source for f in task.observation.values() if f.source.startswith('camera/')}
    images = {s: cell.render(s.split('/')[1]) for s in sources}
    state = dict(zip(arm.STATE_NAMES, cell.agent_state().tolist(), strict=True))
    return cell.plugin.build_observation(task, CellReading(images=images, state=state,
                                                           tick=tick))


def _cause_class(cause: str) -> str:
    """A failure's class for the tally: its text without the numbers and the parentheses
    that say them (every cause stays in full on stderr)."""
    import re

    text = re.sub(r'\([^)]*\)', '', cause.split(': POSE')[0] + (': POSE' if ': POSE' in cause
                                                                    else ''))
    return re.sub(r'\s+', ' ', re.sub(r'-?\d[\d.]*', 'N', text)).strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--task', default='pin_insertion')
    ap.add_argument('--resets', type=int, default=200)
    ap.add_argument('--episode-steps', type=int, default=None,
                    help='ticks of the baseline before each reset (default: the contract\'s '
                         'episode.max_steps, as a trial runs; 0: reset from a reset)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--jitter-m', type=float, default=0.002,
                    help='sigma of noise on the baseline\'s gripper positions (m), seeded per '
                         'round, so that the trials end in varied states (0: as scripted)')
    args = ap.parse_args(argv)

    from enpire_sim.core.arm.sim import gl_backend

    gl_backend()
    from enpire_common.errors import EnpireError
    from enpire_common.tasks import load_task
    from enpire_reward.core.registry import make_verifier
    from enpire_sim.core.arm.cell import ArmCell

    task = load_task(args.task)
    if args.episode_steps is None:
        args.episode_steps = int(task.max_steps)
    cell = ArmCell(task)
    verifier = make_verifier('', task)
    policy = _policy(task) if args.episode_steps else None
    rate = task.action.rate_hz
    outcomes: collections.Counter[str] = collections.Counter()
    sim_s, wall_s = [], []
    ok = 0
    cell.place(args.seed)
    for i in range(args.resets):
        seed = args.seed + i + 1
        if policy is not None:                   # a trial's worth of disturbance
            policy.reset(seed)
            rng = np.random.default_rng(seed)
            arm_xyz = np.r_[0:3, 7:10]
            for tick in range(args.episode_steps):
                try:
                    action = np.asarray(policy.act(_observe(cell, task, tick)), dtype=float)
                    action[arm_xyz] += rng.normal(0.0, args.jitter_m, arm_xyz.size)
                    cell.step(np.clip(action, task.action.low, task.action.high))
                    violations = cell.violations
                except EnpireError:
                    cell.hold()
                    violations = []
                if violations:
                    break
        t0, s0 = time.perf_counter(), cell.time_s
        try:
            cell.robot_place(seed, 'start')
            res = verifier.verify({v: cell.render(v) for v in task.views}, 'reset',
                                  cell.plugin.start_pose(seed, 'start'))
            cause = 'verified' if res.success else \
                f'not verified: {res.verdicts[0].detail.split(" (")[0][:60]}'
        except EnpireError as exc:
            cause = str(exc).split(': ', 1)[-1][:70]
        wall_s.append(time.perf_counter() - t0)
        sim_s.append(cell.time_s - s0)
        ok += cause == 'verified'
        outcomes[_cause_class(cause)] += 1
        if cause != 'verified':          # the next round starts from a known start
            cell.place(seed)
        print(f'[{i + 1}/{args.resets}] seed {seed}: {cause} ({sim_s[-1]:.1f} s sim, '
              f'{wall_s[-1]:.1f} s wall) | verified {ok}/{i + 1}', file=sys.stderr)
    cell.close()
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 2)  # noqa: E731
    out = {'task': task.name, 'resets': args.resets, 'verified': ok,
           'success_rate': round(ok / max(1, args.resets), 4),
           'gate_95_percent': ok / max(1, args.resets) >= 0.95,
           'reset_sim_s': {'p50': pct(sim_s, 50), 'p95': pct(sim_s, 95)},
           'reset_wall_s': {'p50': pct(wall_s, 50), 'p95': pct(wall_s, 95)},
           'causes': dict(outcomes.most_common()), 'control_rate_hz': rate,
           'episode_steps_before_each': args.episode_steps, 'jitter_m': args.jitter_m}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
