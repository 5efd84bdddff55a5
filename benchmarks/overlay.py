"""What the verifier's evidence overlay costs a cell, per verify call, against the tick budget.

Run: ``python benchmarks/overlay.py [--task push_t] [--calls N]``. One verifier node in
process (a private ROS context), fed the task's sampled frames, answers ``verify_success``
N times in each of three ways, interleaved:

- ``baseline``: the node with its overlay publishers removed (what it cost before them);
- ``idle``: overlay publishers present, nobody subscribed (the normal case: the node asks
  each publisher for its subscriber count and draws nothing); interleaved with baseline;
- ``watched``: then a subscriber on every view's overlay (drawn and published each call).

Prints JSON: p50 / mean per call (ms) of each, ``idle`` minus ``baseline`` as a fraction of
the task's tick budget (1 / action rate; the issue's goal: < 2%), and the ratios to the
baseline. The verifier runs once per verdict, not per tick; a fraction of the tick budget is
the stricter measure.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--task', default='push_t')
    ap.add_argument('--calls', type=int, default=200)
    args = ap.parse_args()

    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from enpire_common.ros import LATEST_QOS
    from enpire_common.tasks import load_task
    from enpire_common.testing import RosHarness
    from enpire_interfaces.srv import VerifySuccess
    from enpire_reward.ros.verifier_node import VerifierNode
    from enpire_tasks import registry

    task = load_task(args.task)
    reading = registry.get(task.name).sample_readings(task, 1, 0)[0]
    budget_s = 1.0 / float(task.section('action')['rate_hz'])
    with RosHarness() as ros:
        node = ros.add(VerifierNode(context=ros.context, namespace='/bench_overlay',
                                    parameter_overrides=[Parameter('task', value=task.name)]))
        from rclpy.serialization import serialize_message

        for topic, image in reading.images.items():
            view = topic.split('/')[1]
            msg = Image(height=image.shape[0], width=image.shape[1], encoding='rgb8',
                        step=image.shape[1] * 3)
            msg.data = np.ascontiguousarray(image).tobytes()
            msg.header.stamp = node.get_clock().now().to_msg()
            node._on_image(view, serialize_message(msg))
        pubs = dict(node.overlay_pubs)
        watcher = ros.node('watcher', namespace='/bench_overlay')

        def call() -> float:
            node._frames = {v: (d, node.get_clock().now().nanoseconds * 1e-9)
                            for v, (d, _t) in node._frames.items()}
            req = VerifySuccess.Request(goal=VerifySuccess.Request.GOAL_SUCCESS)
            t0 = time.perf_counter()
            res = node._on_verify(req, VerifySuccess.Response())
            dt = time.perf_counter() - t0
            assert res.error_code == 0, res.error_msg
            return dt

        times: dict[str, list[float]] = {'baseline': [], 'idle': [], 'watched': []}
        call()                                        # warm-up
        for i in range(args.calls * 2):               # baseline and idle, interleaved
            mode = ('baseline', 'idle')[i % 2]
            node.overlay_pubs = {} if mode == 'baseline' else pubs
            times[mode].append(call())
        node.overlay_pubs = pubs
        for v in pubs:
            watcher.create_subscription(Image, f'verifier/overlay/{v}', lambda _m: None,
                                        LATEST_QOS)
        end = time.monotonic() + 5.0
        while any(p.get_subscription_count() == 0 for p in pubs.values()) \
                and time.monotonic() < end:
            time.sleep(0.01)
        call()
        for _ in range(args.calls):
            times['watched'].append(call())
    stats = {m: {'p50_ms': round(float(np.median(v)) * 1e3, 3),
                 'mean_ms': round(float(np.mean(v)) * 1e3, 3)} for m, v in times.items()}
    base, idle = np.median(times['baseline']), np.median(times['idle'])
    out = {'task': task.name, 'calls': args.calls, 'tick_budget_ms': budget_s * 1e3,
           'views': sorted(pubs), **stats,
           'idle_cost_of_tick_budget': round(float(idle - base) / budget_s, 5),
           'idle_vs_baseline': round(float(idle / base), 3),
           'watched_vs_baseline': round(float(np.median(times['watched']) / base), 3),
           'goal': 'idle_cost_of_tick_budget < 0.02'}
    print(json.dumps(out, indent=2))


if __name__ == '__main__':
    main()
