"""Robot-executed resets of the arm tasks: verified success rate, time, failure causes.

Each round: a trial's worth of disturbance (the task's scripted baseline runs for up to
``--episode-steps`` ticks, by default the contract's episode length, with seeded noise of
``--jitter-m`` on its gripper positions, so the part ends where real trials leave it: in the
hole, jammed part-way, in the gripper, dropped, leaning on the fixture), then one reset to
the round's seed as the cell's reset server runs it: enpire_reset's ``ResetProcedure`` with
the contract's ``reset`` section (the ``robot`` strategy: the task's reset skill, from the
cameras; ``max_attempts`` tries, each judged by the camera verifier against the seed's
start). The contract's ``sim_place`` fallback is left out: a round that would need it is a
failed robot reset. No ROS: the arm cell core and the verifier in one process, on sim time.

Reports (JSON on stdout, progress on stderr): verified success rate over the robot's
attempts (AutoEval's deployment gate is >= 95%), the first attempt's success rate, the
attempts used, reset time p50 / p95 (simulated and wall seconds), and failure causes (each
failed round's last attempt: the skill gave up with its reason, the envelope tripped, or the
start it left did not verify, with the verifier's reason).

    python benchmarks/resets.py --task pin_insertion --resets 200
    python benchmarks/resets.py --task pin_insertion --resets 200 --save-failed fails/
    python benchmarks/resets.py --task pin_insertion --replay fails/     # a fix, on those

``--replay DIR`` runs one reset (the same procedure) from each state saved by
``--save-failed`` instead of after a baseline trial: a fix checked on exactly the trial ends
that failed, in seconds, before the full run.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import json
import re
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


class _CellPort:
    """The reset server's cell port (the ``place`` service) over the in-process cell."""

    def __init__(self, cell) -> None:  # noqa: ANN001
        self.cell = cell

    def place(self, seed: int, timeout_s: float, method: str = '', stage: str = ''):  # noqa: ANN201
        from enpire_reset.core.ports import Placement

        if method == 'robot':
            self.cell.robot_place(seed, stage or 'start')
        else:
            self.cell.place(seed)
        pose = self.cell.plugin.start_pose(seed, stage or 'start')
        return Placement(tuple(float(v) for v in pose), seed=seed, method=method or 'sim_place')


class _VerifierPort:
    """The ``verify_success`` service (goal ``reset``) over the in-process verifier."""

    def __init__(self, cell, verifier) -> None:  # noqa: ANN001
        self.cell, self.verifier = cell, verifier

    def verify_reset(self, expected_pose, timeout_s: float, views=()):  # noqa: ANN001, ANN201
        from enpire_reset.core.ports import ResetVerdict

        images = {v: self.cell.render(v) for v in self.cell.task.views}
        res = self.verifier.verify(images, 'reset', expected_pose, views=views or None)
        pose = next((tuple(float(x) for x in v.object_pose)
                     for v in (res.fused, *res.verdicts) if len(v.object_pose)), ())
        return ResetVerdict(bool(res.success), float(res.score), pose, 0, res.fused.detail,
                            res.fused)


class _SimClock:
    """The procedure's clock on sim time: waiting holds the arms and steps the cell."""

    def __init__(self, cell) -> None:  # noqa: ANN001
        self.cell = cell

    def now_s(self) -> float:
        return float(self.cell.time_s)

    def sleep_s(self, duration_s: float) -> None:
        for _ in range(round(max(0.0, duration_s) * self.cell.task.action.rate_hz)):
            self.cell.hold()


def _cause_class(cause: str) -> str:
    """A failure's class for the tally: its text without the numbers and the parentheses
    that say them (every cause stays in full on stderr)."""
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
    ap.add_argument('--save-failed', type=Path, default=None, metavar='DIR',
                    help='save the simulator state each failed reset started from, as '
                         'DIR/seed_<seed>.npy (MuJoCo integration state), to replay it with '
                         'ArmCell.set_sim_state')
    ap.add_argument('--replay', type=Path, default=None, metavar='DIR',
                    help='reset from each DIR/seed_<seed>.npy saved by --save-failed (no '
                         'baseline trials; --resets, --seed and --episode-steps unused)')
    ap.add_argument('--jitter-m', type=float, default=0.002,
                    help='sigma of noise on the baseline\'s gripper positions (m), seeded per '
                         'round, so that the trials end in varied states (0: as scripted)')
    args = ap.parse_args(argv)

    from enpire_sim.core.arm.sim import gl_backend

    gl_backend()
    from enpire_common.errors import EnpireError
    from enpire_common.tasks import load_task
    from enpire_reset.core.config import ResetConfig
    from enpire_reset.core.procedure import ResetNotVerifiedError, ResetProcedure
    from enpire_reset.core.strategies import make_strategy
    from enpire_reset.ros.reset_server_node import stage_views
    from enpire_reward.core.registry import make_verifier
    from enpire_sim.core.arm.cell import ArmCell

    task = load_task(args.task)
    saved: list[tuple[int, Path]] = []
    if args.replay is not None:
        saved = sorted((int(f.stem.split('_', 1)[1]), f) for f in args.replay.glob('seed_*.npy')
                       if f.stem.split('_', 1)[1].isdigit())
        if not saved:
            print(f'resets.py: no seed_<seed>.npy states in {args.replay}', file=sys.stderr)
            return 2
        args.resets, args.episode_steps = len(saved), 0
    if args.episode_steps is None:
        args.episode_steps = int(task.max_steps)
    cell = ArmCell(task)
    verifier = make_verifier('', task)
    policy = _policy(task) if args.episode_steps else None
    rate = task.action.rate_hz
    outcomes: collections.Counter[str] = collections.Counter()
    sim_s, wall_s = [], []
    ok = first = 0
    used: collections.Counter[int] = collections.Counter()
    cfg = dataclasses.replace(ResetConfig.from_task(task), strategy='robot')
    plugin = cell.plugin
    procedure = ResetProcedure(
        make_strategy('robot', _CellPort(cell), task.name), _VerifierPort(cell, verifier), cfg,
        _SimClock(cell), pose_error=plugin.pose_error, position_unit=plugin.position_unit,
        stage_views=stage_views(task))
    cell.place(args.seed)
    for i in range(args.resets):
        seed = args.seed + i + 1
        if saved:                                # a saved trial end
            seed = saved[i][0]
            try:
                cell.set_sim_state(np.load(saved[i][1]))
            except (OSError, ValueError, EnpireError) as exc:
                print(f'[{i + 1}/{args.resets}] {saved[i][1]}: not a state of this scene '
                      f'({exc})', file=sys.stderr)
                outcomes['unreadable saved state'] += 1
                used[0] += 1
                continue
        elif policy is not None:                 # a trial's worth of disturbance
            policy.reset(seed)
            rng = np.random.default_rng(seed)
            arm_xyz = np.r_[0:3, 7:10]
            for tick in range(args.episode_steps):
                try:
                    action = np.asarray(policy.act(cell.observe(tick)), dtype=float)
                    action[arm_xyz] += rng.normal(0.0, args.jitter_m, arm_xyz.size)
                    cell.step(np.clip(action, task.action.low, task.action.high))
                    violations = cell.violations
                except EnpireError:
                    cell.hold()
                    violations = []
                if violations:
                    break
        t0, s0 = time.perf_counter(), cell.time_s
        before = None
        if args.save_failed:
            # restored at once: the reset then starts from exactly what is saved (after a
            # tick MuJoCo's derived data, the poses the cameras and ee readings use, lag
            # the state by a substep, and resets are sensitive enough for that to show)
            before = cell.sim_state()
            cell.set_sim_state(before)
        try:
            outcome = procedure.run(seed, stage='start')
            cause, attempts = 'verified', outcome.attempts
        except ResetNotVerifiedError as exc:
            attempts = exc.outcome.attempts
            for reason in exc.outcome.reasons:
                print(f'    {reason}', file=sys.stderr)
            last = (exc.outcome.reasons or ('?',))[-1].split(': ', 1)[-1]
            cause = re.sub(r'^placing failed: robot reset of seed \d+ failed: ', '', last)[:80]
        except EnpireError as exc:
            cause, attempts = str(exc).split(': ', 1)[-1][:90], cfg.max_attempts
        wall_s.append(time.perf_counter() - t0)
        sim_s.append(cell.time_s - s0)
        ok += cause == 'verified'
        first += cause == 'verified' and attempts == 1
        used[attempts] += 1
        outcomes[_cause_class(cause)] += 1
        if cause != 'verified':          # the next round starts from a known start
            if before is not None:
                args.save_failed.mkdir(parents=True, exist_ok=True)
                np.save(args.save_failed / f'seed_{seed}.npy', before)
            cell.place(seed)
        print(f'[{i + 1}/{args.resets}] seed {seed}: {cause} (attempt {attempts}, '
              f'{sim_s[-1]:.1f} s sim, {wall_s[-1]:.1f} s wall) | verified {ok}/{i + 1}',
              file=sys.stderr)
    cell.close()
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 2) if xs else None  # noqa: E731
    out = {'task': task.name, 'resets': args.resets, 'verified': ok,
           'success_rate': round(ok / max(1, args.resets), 4),
           'first_attempt_rate': round(first / max(1, args.resets), 4),
           'max_attempts': cfg.max_attempts, 'attempts_used': dict(sorted(used.items())),
           'gate_95_percent': ok / max(1, args.resets) >= 0.95,
           'reset_sim_s': {'p50': pct(sim_s, 50), 'p95': pct(sim_s, 95)},
           'reset_wall_s': {'p50': pct(wall_s, 50), 'p95': pct(wall_s, 95)},
           'causes': dict(outcomes.most_common()), 'control_rate_hz': rate,
           'episode_steps_before_each': args.episode_steps, 'jitter_m': args.jitter_m}
    if saved:
        out['replayed_from'] = str(args.replay)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
