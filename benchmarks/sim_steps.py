"""Push-T sim throughput: PushTSim and the lockstep push_t_cell node vs bare gym-pusht.

Prints steps/s and the ratio to a bare ``gym-pusht`` step loop rendering 480x480 pixels,
measured in the same process. Two bare loops: gym-pusht's own (``obs_type='pixels'``, its
pygame render inside ``step``) and gym-pusht's physics + the area-sampled camera
(:class:`enpire_tasks.push_t.render.AreaRenderer`, what the cell draws by default). Each
PushTSim / cell figure is divided by the bare loop that renders the same way, so the ratio
measures the wrapper / the ROS pipeline, not the renderer:

    . scripts/env.sh && ROS_DOMAIN_ID=12 python benchmarks/sim_steps.py [--steps 200] [--no-ros]

ROS part: the cell runs in its own process (``python -m enpire_sim.ros.push_t_cell_node``,
lockstep); a driver node here publishes one command and waits for that tick's image + state
(the round trip a lockstep policy host pays each step).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np


def targets(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(60.0, 450.0, size=(n, 2))


def gym_env(obs_type: str, size: int):
    """gym-pusht's own env, reset with seed 0."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        from gym_pusht.envs import PushTEnv
    env = PushTEnv(obs_type=obs_type, render_mode='rgb_array', observation_width=size,
                   observation_height=size)
    env.reset(seed=0)
    return env


def bare_gym(n: int, size: int) -> float:
    env = gym_env('pixels', size)
    acts = targets(n)
    t0 = time.perf_counter()
    for a in acts:
        env.step(a)   # obs_type=pixels renders the frame inside step
    return n / (time.perf_counter() - t0)


def bare_gym_area(n: int, size: int) -> float:
    """gym-pusht's step (no render) + the area-sampled camera, straight from the env."""
    from enpire_tasks.push_t.render import AreaRenderer

    env = gym_env('state', size)
    s = size / 512.0
    cam = AreaRenderer(size, size, ((s, 0.0, 0.0), (0.0, s, 0.0)), env.goal_pose)
    acts = targets(n)
    t0 = time.perf_counter()
    for a in acts:
        env.step(a)
        b, p = env.block, env.agent.position
        cam.render((b.position.x, b.position.y, b.angle), (p.x, p.y))
    return n / (time.perf_counter() - t0)


def push_t_sim(n: int, size: int, renderer: str = 'area') -> float:
    from enpire_common.tasks import load_task
    from enpire_sim.core.push_t import PushTSim

    sim = PushTSim(load_task('push_t'), size, size, renderer=renderer)
    sim.reset(seed=0)
    acts = targets(n)
    t0 = time.perf_counter()
    for a in acts:
        sim.step(a)
        sim.render()
    return n / (time.perf_counter() - t0)


def ros_lockstep(n: int, size: int, timeout_s: float = 60.0) -> float:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from enpire_common.ros import LATEST_QOS
    from enpire_interfaces.msg import Command, StateVector

    ns = f'/bench_{os.getpid()}'
    cell = subprocess.Popen(
        [sys.executable, '-m', 'enpire_sim.ros.push_t_cell_node', '--ros-args', '-r',
         f'__ns:={ns}', '-p', 'clock.mode:=lockstep', '-p', f'camera.width_px:={size}',
         '-p', f'camera.height_px:={size}'], stdout=subprocess.DEVNULL)
    rclpy.init()
    node = rclpy.create_node('bench_driver', namespace=ns)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    got = {'image': -1, 'state': -1}
    stamps: dict[str, object] = {}

    def on_state(msg: StateVector) -> None:
        got['state'] = msg.tick
        stamps['state'] = msg.header.stamp

    def on_image(msg: Image) -> None:
        stamps['image'] = msg.header.stamp
        got['image'] = got['state'] if stamps.get('state') == msg.header.stamp else -2

    node.create_subscription(StateVector, 'state', on_state, LATEST_QOS)
    node.create_subscription(Image, 'camera/top/image_raw', on_image, LATEST_QOS)
    pub = node.create_publisher(Command, 'command', 10)

    def wait(pred, what: str) -> None:
        end = time.monotonic() + timeout_s
        while not pred():
            if time.monotonic() > end:
                raise TimeoutError(f'lockstep cell: no {what} within {timeout_s} s')
            executor.spin_once(timeout_sec=0.1)

    try:
        wait(lambda: pub.get_subscription_count() > 0 and got['state'] >= 0, 'start')
        acts = targets(n + 1)
        tick = got['state']

        def one(a) -> None:
            nonlocal tick
            # A command answers the state of its tick; the cell then shows tick + 1.
            pub.publish(Command(tick=tick, action=[float(a[0]), float(a[1])]))
            tick += 1
            # state and image of a tick share a stamp; wait for both
            wait(lambda: got['state'] >= tick and stamps.get('image') == stamps.get('state'),
                 f'tick {tick}')

        one(acts[0])   # warm-up
        t0 = time.perf_counter()
        for a in acts[1:]:
            one(a)
        return n / (time.perf_counter() - t0)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        cell.terminate()
        try:
            cell.wait(5)
        except subprocess.TimeoutExpired:
            cell.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=200)
    ap.add_argument('--size', type=int, default=480)
    ap.add_argument('--no-ros', action='store_true')
    args = ap.parse_args(argv)
    base = bare_gym(args.steps, args.size)
    print(f'bare gym-pusht step + {args.size}px pygame render : {base:8.1f} steps/s '
          '(baseline of the gym-pusht renderer)')
    area = bare_gym_area(args.steps, args.size)
    print(f'bare gym-pusht step + {args.size}px area render   : {area:8.1f} steps/s '
          f'(baseline of the area renderer; {area / base:.2f}x the pygame loop)')
    sim = push_t_sim(args.steps, args.size, 'gym-pusht')
    print(f'PushTSim step + render, gym-pusht     : {sim:8.1f} steps/s  ratio {sim / base:.2f}')
    sim = push_t_sim(args.steps, args.size, 'area')
    print(f'PushTSim step + render, area          : {sim:8.1f} steps/s  ratio {sim / area:.2f}')
    if not args.no_ros:
        ros = ros_lockstep(args.steps, args.size)
        print(f'lockstep push_t_cell via ROS (2 procs, area camera): {ros:8.1f} steps/s  '
              f'ratio {ros / area:.2f} (vs the area loop), {ros / base:.2f} (vs pygame)')
        base2 = bare_gym(args.steps, args.size)
        area2 = bare_gym_area(args.steps, args.size)
        print(f'bare loops again (load drift)         : {base2:8.1f} / {area2:8.1f} steps/s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
