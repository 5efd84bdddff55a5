"""Pipeline throughput and real-time jitter vs a bare gym-pusht loop (prints ratios).

1. Bare loop: the scripted policy (imported directly) drives
   ``gym.make('gym_pusht/PushT-v0', obs_type='pixels_agent_pos', 480x480)`` in this process.
   It runs before AND after the pipeline and the ratios use the mean of the two: on a
   machine shared with other work the load drifts, and a single-process loop and a
   multi-process pipeline suffer differently from it, so both ends are bracketed.
2. Full pipeline in lockstep (``enpire up`` sim cell + run_trials: reset, policy host
   process, safety supervisor, verifier polls, recorder), recording on and off; same seeds,
   same 300-step limit. Also the CPU time of every process of the cell (launch tree: nodes,
   policy host, sandbox) per step, against the bare loop's CPU per step: a ratio that load
   hardly moves.
3. Real-time tick jitter: inter-arrival of ``state`` from a realtime ``push_t_cell`` at the
   task's 10 Hz, and at 30 Hz from a copy of the task contract with ``action.rate_hz: 30``
   (``ENPIRE_TASKS_DIR``; the cell pins its rate to the task's).

Usage: ``python benchmarks/pipeline.py [--episodes 4] [--jitter-s 10]``. Uses its own
ROS_DOMAIN_ID (default 77; set ROS_DOMAIN_ID to override) and a temporary ENPIRE_HOME.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
MAX_STEPS = 300


def load_scripted():
    from enpire_agent_bridge.core.contract import PolicySpec, load_policy_manifest
    from enpire_common.tasks import load_task

    spec = PolicySpec.from_task_contract(load_task('push_t').raw,
                                         params=load_policy_manifest(SCRIPTED).params)
    mod_spec = importlib.util.spec_from_file_location('scripted_policy', SCRIPTED / 'policy.py')
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.make_policy(spec)


def bare_loop(seeds: list[int]) -> dict[str, float]:
    import gym_pusht  # noqa: F401 - registers the env
    import gymnasium as gym

    env = gym.make('gym_pusht/PushT-v0', obs_type='pixels_agent_pos', render_mode='rgb_array',
                   observation_width=480, observation_height=480)
    policy = load_scripted()
    steps = successes = 0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for seed in seeds:
        obs, _info = env.reset(seed=seed)
        policy.reset(seed)
        for step in range(MAX_STEPS):
            agent = env.unwrapped.agent
            action = policy.act({'image_top': obs['pixels'], 'agent_pos': obs['agent_pos'],
                                 'agent_vel': np.array([agent.velocity.x, agent.velocity.y]),
                                 'step': step, 'retry_index': 0})
            obs, _r, terminated, truncated, info = env.step(action)
            steps += 1
            if terminated or truncated:
                successes += bool(info.get('is_success'))
                break
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    env.close()
    return {'episodes': len(seeds), 'steps': steps, 'successes': successes, 'wall_s': wall,
            'episodes_per_s': len(seeds) / wall, 'steps_per_s': steps / wall,
            'cpu_ms_per_step': cpu / max(1, steps) * 1e3}


def tree_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a process and its live descendants, by program name."""
    import psutil

    out: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for proc in procs:
        try:
            t = proc.cpu_times()
            args = proc.cmdline()
        except psutil.NoSuchProcess:
            continue
        # install/lib/<pkg>/<exe>, or python -m <module>
        name = next((a.rsplit('/', 1)[-1] for a in args if '/lib/enpire_' in a),
                    args[args.index('-m') + 1].rsplit('.', 1)[-1] if '-m' in args else
                    proc.name())
        out[name] = out.get(name, 0.0) + t.user + t.system
    return out


def pipeline(session, seeds: list[int], record: bool, tag: str) -> dict[str, float]:
    root = session.stack.proc.pid if session.stack is not None else None
    cpu0 = tree_cpu_s(root) if root else {}
    t0 = time.perf_counter()
    result = session.client.run_trials(count=len(seeds), policy_dir=str(SCRIPTED), seeds=seeds,
                                       experiment_id=f'bench-{tag}', max_episode_steps=MAX_STEPS,
                                       max_consecutive_faults=0, record=record)
    wall = time.perf_counter() - t0
    cpu1 = tree_cpu_s(root) if root else {}
    by_name = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
    cpu = sum(by_name.values()) if root else float('nan')
    steps = sum(int(t.steps) for t in result.trials)
    outcomes = [t.outcome if t.outcome in ('success', 'failure') else
                f'{t.outcome} ({t.reason[:80]})' for t in result.trials]
    return {'episodes': len(seeds), 'steps': steps, 'successes': int(result.n_success),
            'wall_s': wall, 'episodes_per_s': len(seeds) / wall, 'steps_per_s': steps / wall,
            'cpu_ms_per_step': cpu / max(1, steps) * 1e3, 'outcomes': outcomes,
            'cpu_ms_per_step_by_process': {k: round(v / max(1, steps) * 1e3, 2) for k, v in
                                           sorted(by_name.items(), key=lambda kv: -kv[1])}}


def _cell_exe() -> str:
    from ament_index_python.packages import get_package_prefix

    return str(Path(get_package_prefix('enpire_sim')) / 'lib' / 'enpire_sim' / 'push_t_cell')


def jitter(rate_hz: float, seconds: float, tasks_dir: Path | None) -> dict[str, float]:
    """Inter-arrival of ``state`` from a realtime cell (a private namespace)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from enpire_interfaces.msg import StateVector

    ns = f'/bench_rt_{int(rate_hz)}'
    env = dict(os.environ)
    if tasks_dir is not None:
        env['ENPIRE_TASKS_DIR'] = str(tasks_dir)
    cmd = [_cell_exe(), '--ros-args', '-r', f'__ns:={ns}', '-p', 'clock.mode:=realtime',
           '-p', f'control_rate_hz:={rate_hz}', '-p', 'task:=push_t']
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    arrivals: list[float] = []
    done = threading.Event()
    context = Context()
    rclpy.init(context=context)
    node = Node('bench_jitter', namespace=ns, context=context)

    def on_state(_msg: StateVector) -> None:
        arrivals.append(time.perf_counter())

    node.create_subscription(StateVector, 'state', on_state, QoSProfile(
        depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spin = threading.Thread(target=lambda: [executor.spin_once(0.1) for _ in iter(
        done.is_set, True)], daemon=True)
    spin.start()
    try:
        end = time.perf_counter() + 60.0
        while len(arrivals) < 5 and time.perf_counter() < end and proc.poll() is None:
            time.sleep(0.05)  # cell start-up (process + discovery); not a measurement
        arrivals.clear()
        time.sleep(seconds)
    finally:
        done.set()
        spin.join(2.0)
        proc.terminate()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    if len(arrivals) < 3:
        err = proc.stderr.read().decode()[-500:] if proc.stderr else ''
        return {'rate_hz': rate_hz, 'error': f'too few state messages ({len(arrivals)}): {err}'}
    gaps = np.diff(np.array(arrivals)) * 1e3
    period = 1e3 / rate_hz
    dev = np.abs(gaps - period)
    return {'rate_hz': rate_hz, 'samples': len(gaps), 'period_ms': period,
            'mean_gap_ms': float(gaps.mean()), 'jitter_p50_ms': float(np.percentile(dev, 50)),
            'jitter_p99_ms': float(np.percentile(dev, 99)), 'max_gap_ms': float(gaps.max())}


def task_copy_at(rate_hz: float, into: Path) -> Path:
    import yaml

    src = ROOT / 'config' / 'tasks' / 'push_t'
    dst = into / 'push_t'
    shutil.copytree(src, dst)
    raw = yaml.safe_load((dst / 'task.yaml').read_text())
    raw['action']['rate_hz'] = float(rate_hz)
    (dst / 'task.yaml').write_text(yaml.safe_dump(raw, sort_keys=False))
    return into


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--episodes', type=int, default=4)
    ap.add_argument('--seed-start', type=int, default=5)
    ap.add_argument('--jitter-s', type=float, default=10.0)
    ap.add_argument('--skip', nargs='*', default=[], choices=['pipeline', 'jitter'])
    args = ap.parse_args(argv)
    os.environ.setdefault('ROS_DOMAIN_ID', '77')
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    print(f'seeds {seeds}, step limit {MAX_STEPS}, ROS_DOMAIN_ID {os.environ["ROS_DOMAIN_ID"]}')

    def show_bare(tag: str, b: dict[str, float]) -> None:
        print(f"bare gym-pusht loop ({tag}): {b['episodes_per_s']:.3f} episodes/s  "
              f"{b['steps_per_s']:7.1f} steps/s  ({b['steps']} steps, {b['successes']} "
              f"successes, {b['wall_s']:.1f} s, {b['cpu_ms_per_step']:.1f} ms CPU/step)")

    before = bare_loop(seeds)
    show_bare('before', before)
    runs: list[tuple[bool, dict[str, float]]] = []
    tmp = Path(tempfile.mkdtemp(prefix='enpire_bench_'))
    try:
        if 'pipeline' not in args.skip:
            from enpire_evolution.ros.trials_port import TrialsSession

            home = tmp / 'home'
            os.environ['ENPIRE_HOME'] = str(home)
            session = TrialsSession(home=home, cell='cell_0', probe_s=1.0)
            try:
                # Warm-up: the policy host process start is not part of throughput.
                session.client.run_trials(count=1, policy_dir=str(SCRIPTED), seeds=[seeds[0]],
                                          experiment_id='bench-warmup', max_episode_steps=5,
                                          record=False)
                for record in (True, False):
                    r = pipeline(session, seeds, record, 'rec' if record else 'norec')
                    runs.append((record, r))
                    print(f"pipeline record={record!s:<5}:  {r['episodes_per_s']:.3f} "
                          f"episodes/s  {r['steps_per_s']:7.1f} steps/s  ({r['steps']} steps,"
                          f" {r['successes']} successes, {r['wall_s']:.1f} s, "
                          f"{r['cpu_ms_per_step']:.1f} ms CPU/step)  {r['outcomes']}")
                    print('  CPU ms/step by process: ' + ', '.join(
                        f'{k} {v:.1f}' for k, v in r['cpu_ms_per_step_by_process'].items()))
            finally:
                session.close()
            after = bare_loop(seeds)
            show_bare('after', after)
            bare_eps = 0.5 * (before['episodes_per_s'] + after['episodes_per_s'])
            bare_sps = 0.5 * (before['steps_per_s'] + after['steps_per_s'])
            bare_cpu = 0.5 * (before['cpu_ms_per_step'] + after['cpu_ms_per_step'])
            for record, r in runs:
                print(f"ratio record={record!s:<5} vs bare (mean of before/after): episodes/s "
                      f"{r['episodes_per_s'] / bare_eps:.2f}x, steps/s "
                      f"{r['steps_per_s'] / bare_sps:.2f}x, CPU per step "
                      f"{r['cpu_ms_per_step'] / bare_cpu:.2f}x the bare loop's")
        if 'jitter' not in args.skip:
            for rate in (10.0, 30.0):
                tasks = None if rate == 10.0 else task_copy_at(rate, tmp / f'tasks{int(rate)}')
                j = jitter(rate, args.jitter_s, tasks)
                if 'error' in j:
                    print(f"realtime {rate:g} Hz: {j['error']}")
                    continue
                print(f"realtime {rate:g} Hz: {j['samples']} ticks, mean gap "
                      f"{j['mean_gap_ms']:.2f} ms (period {j['period_ms']:.2f}), jitter p50 "
                      f"{j['jitter_p50_ms']:.2f} ms p99 {j['jitter_p99_ms']:.2f} ms (ratio "
                      f"p99/period {j['jitter_p99_ms'] / j['period_ms']:.3f}), max gap "
                      f"{j['max_gap_ms']:.1f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
