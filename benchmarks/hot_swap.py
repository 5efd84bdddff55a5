"""Hot swap under a running real-time cell: switch latency, missed ticks, stale commands.

Over 500 lines on purpose: one self-contained benchmark (launch, drive, measure, report) that
runs without the test tree.

Starts a real-time ``push_t_cell`` (default 30 Hz; a copy of the push_t task with
``action.rate_hz`` changed, under ``ENPIRE_TASKS_DIR``), the ``safety_supervisor`` and the
``agent_bridge`` as separate processes in a private namespace, submits two trivially different
cheap revisions (hold + 1 px and hold - 1 px, so the pusher does not drift) to a temporary
revision store and swaps between them ``--swaps`` times through ``switch_policy``, at random
phases of the control period. Every state tick and every command on ``policy/command`` (bridge)
and ``command`` (supervisor) is recorded with its tick and revision_id.

A real-time cell steps with the latest command it holds, so the bridge switches at the
*current* tick: the new revision's action for the newest observation replaces the old one's
before the cell's next step (see ``enpire_agent_bridge.core.switching``).

Prints, per the issue's "done when":
* p50/p95/max of switch request -> first command of the new revision (client-side receive
  time, and the bridge's own ``switch_latency_s``), and the same for the first new command
  the cell actually steps with (a replacement that arrives after the next tick is superseded
  by the next tick's command, which then counts), and its p95 as a ratio of one period;
* missed / duplicated ticks (from the first activation on, every tick gets one command on
  each topic, or two at a switch tick: the old revision's, then the new one's replacing it);
* commands of the old revision after the switch (the last command of every tick from the
  switch tick on, and anything received after the new revision's first command; must be 0);
and the baseline measured in the same run: the steady-state tick -> command latency.

    . scripts/env.sh && ROS_DOMAIN_ID=40 python benchmarks/hot_swap.py [--swaps 100]
        [--rate-hz 30] [--camera-px 96] [--no-supervisor] [--json]

The camera defaults to 96x96: 480x480 rgb frames at 30 Hz (~20 MB/s through DDS into two
subscribers) do not keep up on a loaded 2-core machine; the image reaches the policies either
way. ``--deadline-margin-s`` (default 0.005 s -> a 28 ms act deadline at 30 Hz) replaces the
contract's 20 ms margin (13 ms deadline), which a loaded shared machine occasionally misses.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
NS = f'/bench_swap_{os.getpid()}'

POLICY = '''
import numpy as np


class Offset:
    """Hold plus a constant offset: as cheap as a policy gets."""

    def __init__(self, spec):
        self.low, self.high = spec.low, spec.high
        self.offset = np.asarray(spec.params['offset_px'], dtype=np.float64)

    def reset(self, seed):
        pass

    def act(self, obs):
        return np.clip(np.asarray(obs['agent_pos'], dtype=np.float64) + self.offset,
                       self.low, self.high)


def make_policy(spec):
    return Offset(spec)
'''


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float('nan')
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[k]


def make_task(tmp: Path, rate_hz: float, camera_px: int) -> Path:
    src = ROOT / 'config' / 'tasks' / 'push_t'
    dst = tmp / 'tasks' / 'push_t'
    shutil.copytree(src, dst)
    task = yaml.safe_load((dst / 'task.yaml').read_text())
    task['action']['rate_hz'] = float(rate_hz)
    task['views']['top']['width_px'] = task['views']['top']['height_px'] = camera_px
    task['observation']['image_top']['shape'] = [camera_px, camera_px, 3]
    scale = camera_px / 512.0
    task['views']['top']['workspace_to_pixel'] = [[scale, 0.0, 0.0], [0.0, scale, 0.0]]
    (dst / 'task.yaml').write_text(yaml.safe_dump(task, sort_keys=False))
    return dst


def make_revisions(tmp: Path, home: Path) -> tuple[str, str]:
    from enpire_agent_bridge.core.revisions import RevisionStore

    store = RevisionStore(home / 'revisions')
    ids = []
    for name, offset in (('plus', 1.0), ('minus', -1.0)):
        d = tmp / 'policies' / name
        d.mkdir(parents=True)
        (d / 'policy.py').write_text(POLICY)
        (d / 'policy.yaml').write_text(yaml.safe_dump({
            'name': name, 'task': 'push_t', 'version': 1, 'regime': 'heuristic',
            'hypothesis': 'hot-swap benchmark', 'parent': '',
            'params': {'offset_px': [offset, offset]}}))
        rev, _ = store.submit(d)
        ids.append(rev.id)
    return ids[0], ids[1]


class Procs:
    """The cell's processes, each in its own session so the whole group can be stopped."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.procs = env, log_dir, []

    def start(self, name: str, module: str, *params: str) -> None:
        args = [sys.executable, '-m', module, '--ros-args', '-r', f'__ns:={NS}']
        for p in params:
            args += ['-p', p]
        log = open(self.log_dir / f'{name}.log', 'wb')  # noqa: SIM115 - lives with the proc
        self.procs.append((name, subprocess.Popen(args, env=self.env, stdout=log,
                                                  stderr=subprocess.STDOUT,
                                                  start_new_session=True), log))

    def check(self) -> None:
        for name, p, _ in self.procs:
            if p.poll() is not None:
                tail = (self.log_dir / f'{name}.log').read_text(errors='replace')[-2000:]
                raise RuntimeError(f'{name} exited with {p.returncode}:\n{tail}')

    def stop(self) -> None:
        for _, p, _ in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for _, p, log in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            log.close()


class Recorder:
    """Client node: records ticks and commands with receive times; calls switch_policy."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from enpire_common.ros import LATEST_QOS
        from enpire_interfaces.msg import Command, StateVector
        from enpire_interfaces.srv import SwitchPolicy

        rclpy.init()
        self.node = rclpy.create_node('hot_swap_bench', namespace=NS)
        self.lock = threading.Lock()
        self.state_t: dict[int, float] = {}
        self.cmds: dict[str, list[tuple[int, str, float]]] = {'policy/command': [],
                                                              'command': []}
        self.node.create_subscription(StateVector, 'state', self._on_state, LATEST_QOS)
        for topic in self.cmds:
            self.node.create_subscription(
                Command, topic, lambda m, t=topic: self._on_cmd(t, m), 1000)
        self.client = self.node.create_client(SwitchPolicy, 'switch_policy')
        self.status: dict[str, Any] = {}
        self.switch_log: list[dict[str, Any]] = []   # the bridge's own timing per switch
        self.stamp_lag: list[float] = []    # command receive - its state's stamp (cell clock)
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        every = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(String, 'bridge/status', self._on_status, every)
        self.SwitchPolicy = SwitchPolicy
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.1)

    def _on_state(self, msg: Any) -> None:
        with self.lock:
            self.state_t.setdefault(int(msg.tick), time.monotonic())

    def _on_status(self, msg: Any) -> None:
        with self.lock:
            self.status = json.loads(msg.data)
            if self.status.get('event') == 'switched':
                self.switch_log.append(self.status['last_switch'])

    def _on_cmd(self, topic: str, msg: Any) -> None:
        if topic == 'policy/command':
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            self.stamp_lag.append(time.time() - stamp)
        with self.lock:
            self.cmds[topic].append((int(msg.tick), msg.revision_id, time.monotonic()))

    def switch(self, revision: str, timeout_s: float = 30.0) -> Any:
        from enpire_common.ros import wait_future

        req = self.SwitchPolicy.Request(revision_id=revision, revision_dir='',
                                        strictness=self.SwitchPolicy.Request.STRICT,
                                        timeout_s=timeout_s)
        return wait_future(self.client.call_async(req), timeout_s + 10.0, 'switch_policy')

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


def analyse(rec: Recorder, swaps: list[dict[str, Any]], start_tick: int, end_tick: int,
            topics: list[str]) -> tuple[dict[str, Any], list[int]]:
    """Per topic: missed ticks, duplicates, replacements, old-revision commands after a switch.

    A real-time cell steps with the latest command it holds, so the tick a switch lands on
    may carry two commands: the old revision's, then the new one's *replacing* it (counted as
    ``replaced``, not as a duplicate). The command a tick is stepped with is its last one.
    ``stale_after_switch`` counts (a) ticks at or after a switch tick whose last command is
    not the new revision's and (b) commands of any other revision received after the new
    revision's first command (until the next request).

    Returns ``(per-topic counts, ticks at which the active revision fell back to hold)``.
    """
    out: dict[str, Any] = {}
    # A failed (STRICT) switch leaves the old revision active: it moves no boundary, and
    # it has no switch tick or first command (its failure is reported apart).
    for s in swaps:
        s['switch_tick'], s['t_first'] = None, None
    swaps = [s for s in swaps if s.get('ok', True)]
    # Switch tick of swap i = the first tick commanded by its target after its request.
    bridge = rec.cmds['policy/command']
    for s in swaps:
        new = [(t, rt) for t, r, rt in bridge if r == s['target'] and rt >= s['t_request']]
        s['switch_tick'], s['t_first'] = min(new) if new else (None, None)
    bounds = sorted((s['switch_tick'], s['target']) for s in swaps
                    if s['switch_tick'] is not None)
    # A fault of the active revision falls back to the built-in hold at that tick (the
    # bridge's rule): a boundary too, counted apart (a loaded machine can make an act miss
    # its deadline).
    fallbacks = []
    prev = ''
    for t, r, _ in sorted(bridge, key=lambda c: (c[0], c[2])):   # tick, then arrival
        if r == 'hold' and prev not in ('', 'hold'):
            fallbacks.append(t)
        prev = r
    bounds = sorted(bounds + [(t, 'hold') for t in fallbacks])
    target_at = dict(bounds)        # switch tick -> the revision that takes it over
    for topic in topics:
        cmds = [(t, r, rt) for t, r, rt in rec.cmds[topic] if start_tick <= t <= end_tick]
        per_tick: dict[int, list[str]] = {}
        for t, r, _ in cmds:
            per_tick.setdefault(t, []).append(r)
        missed = [t for t in range(start_tick, end_tick + 1) if t not in per_tick]
        dup, replaced = [], 0
        for t, revs in per_tick.items():
            if len(revs) == 2 and revs[0] != revs[1] and revs[1] == target_at.get(t):
                replaced += 1
            elif len(revs) > 1:
                dup.append(t)
        stale = 0
        for t, revs in per_tick.items():
            expected = None
            for st, target in bounds:
                if st <= t:
                    expected = target
            if expected is not None and revs[-1] != expected:
                stale += 1
        for i, s in enumerate(swaps):
            first = next((rt for t, r, rt in cmds if r == s['target']
                          and rt >= s['t_request']), None)
            if first is None:
                continue
            until = swaps[i + 1]['t_request'] if i + 1 < len(swaps) else float('inf')
            # (hold after a fault is not an old revision: the fallback boundaries cover it)
            stale += sum(1 for _, r, rt in cmds if first < rt < until
                         and r not in (s['target'], 'hold'))
        out[topic] = {'ticks': end_tick - start_tick + 1, 'missed': len(missed),
                      'duplicated': len(dup), 'replaced': replaced,
                      'stale_after_switch': stale, 'missed_ticks': missed[:10],
                      'duplicated_ticks': {t: [r[:8] for r in per_tick[t]] for t in dup[:5]}}
    return out, fallbacks


def run(args: argparse.Namespace) -> dict[str, Any]:
    period_s = 1.0 / args.rate_hz
    tmp = Path(tempfile.mkdtemp(prefix='enpire-hot-swap-'))
    home = tmp / 'home'
    task_dir = make_task(tmp, args.rate_hz, args.camera_px)
    rev_a, rev_b = make_revisions(tmp, home)
    env = {**os.environ, 'ENPIRE_HOME': str(home), 'ENPIRE_TASKS_DIR': str(tmp / 'tasks'),
           'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    os.environ.update({k: env[k] for k in ('ENPIRE_HOME', 'ENPIRE_TASKS_DIR',
                                           'ROS_AUTOMATIC_DISCOVERY_RANGE')})
    procs = Procs(env, tmp)
    rec = None
    try:
        procs.start('cell', 'enpire_sim.ros.push_t_cell_node', 'clock.mode:=realtime',
                    f'control_rate_hz:={args.rate_hz}', f'camera.width_px:={args.camera_px}',
                    f'camera.height_px:={args.camera_px}')
        if not args.no_supervisor:
            procs.start('supervisor', 'enpire_rollout.ros.safety_supervisor_node', 'task:=push_t')
        procs.start('bridge', 'enpire_agent_bridge.ros.agent_bridge_node',
                    f'task_file:={task_dir / "task.yaml"}',
                    f'deadline_margin_s:={args.deadline_margin_s}')
        rec = Recorder()
        end = time.monotonic() + 60.0
        while not rec.client.wait_for_service(timeout_sec=0.5):
            procs.check()
            if time.monotonic() > end:
                raise RuntimeError('switch_policy did not appear within 60 s')
        res = rec.switch(rev_a)
        if not res.ok:
            raise RuntimeError(f'first activation failed: {res.error_msg}')
        # Counting starts at the first tick seen on every topic: the client's own subscription
        # to the supervisor's output may match a moment after the bridge's (DDS discovery).
        topics = ['policy/command'] + ([] if args.no_supervisor else ['command'])
        end = time.monotonic() + 30.0
        while not all(rec.cmds[t] for t in topics) and time.monotonic() < end:
            time.sleep(period_s)
        with rec.lock:
            start_tick = max(min((t for t, r, _ in rec.cmds[topic] if r == rev_a),
                                 default=1 << 30) for topic in topics)
        # Cold start of the second revision (process start): reported, not in the statistics.
        t0 = time.monotonic()
        res = rec.switch(rev_b)
        cold_s = time.monotonic() - t0
        if not res.ok:
            raise RuntimeError(f'cold switch failed: {res.error_msg}')
        rng = random.Random(0)
        swaps: list[dict[str, Any]] = []
        failures: list[str] = []
        target = rev_a
        for _ in range(args.swaps):
            # Random phase within the period, and a few ticks of steady state between swaps.
            time.sleep(args.gap_ticks * period_s + rng.uniform(0.0, period_s))
            t_req = time.monotonic()
            res = rec.switch(target)
            t_resp = time.monotonic()
            if not res.ok:
                failures.append(res.error_msg)
            swaps.append({'target': target, 't_request': t_req, 't_response': t_resp,
                          'server_latency_s': res.switch_latency_s, 'ok': res.ok})
            target = rev_b if target == rev_a else rev_a
        time.sleep(5 * period_s)
        procs.check()
        with rec.lock:
            end_tick = max(rec.state_t) - 2     # the last ones may still be in flight
            # The cold switch is checked like the others (ticks, stale), timed apart.
            cold = {'target': rev_b, 't_request': t0}
            result, fallbacks = analyse(rec, [cold, *swaps], start_tick, end_tick, topics)
            state_t = dict(rec.state_t)
            bridge = list(rec.cmds['policy/command'])
            status = dict(rec.status)
            by_request = {round(e['request_mono_s'], 6): e for e in rec.switch_log}
            stamp_lag = list(rec.stamp_lag)
            if args.dump:
                Path(args.dump).write_text(json.dumps({
                    'swaps': swaps, 'cold': cold, 'state_t': state_t, 'cmds': rec.cmds,
                    'switch_log': rec.switch_log}, default=str))
    finally:
        if rec is not None:
            rec.close()
        procs.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    # Baseline: steady-state latency of the bridge, state received -> its command received.
    first_cmd: dict[int, float] = {}
    for t, _, rt in bridge:
        first_cmd.setdefault(t, rt)
    steady = [first_cmd[t] - state_t[t] for t in first_cmd if t in state_t]
    lat = [s['t_first'] - s['t_request'] for s in swaps if s['t_first'] is not None]
    # What the cell steps with: the first new command counts only if it arrived before the
    # next tick (seen from here: before the next state message); else the next one does.
    effective, late = [], 0
    for s in swaps:
        if s['t_first'] is None:
            continue
        nxt = state_t.get(s['switch_tick'] + 1)
        if nxt is None or s['t_first'] <= nxt:
            effective.append(s['t_first'] - s['t_request'])
            continue
        late += 1
        follow = min((rt for t, r, rt in bridge if r == s['target']
                      and t == s['switch_tick'] + 1), default=None)
        if follow is not None:
            effective.append(follow - s['t_request'])
    wait_boundary = [state_t[s['switch_tick']] - s['t_request'] for s in swaps
                     if s['switch_tick'] in state_t]
    boundary_cmd = [s['t_first'] - state_t[s['switch_tick']] for s in swaps
                    if s['switch_tick'] in state_t]
    server = [s['server_latency_s'] for s in swaps if s['ok']]
    # Client request -> the bridge's service callback, and the bridge's warm-up (reset + act).
    delivery, warmup = [], []
    for s in swaps:
        e = next((e for k, e in by_request.items()
                  if s['t_request'] <= k <= s['t_response']), None)
        if e is not None:
            delivery.append(e['request_mono_s'] - s['t_request'])
            if e.get('warmup_s') is not None:
                warmup.append(e['warmup_s'])
    ticks_late = [s['switch_tick'] - max((t for t, v in state_t.items()
                                          if v <= s['t_request']), default=s['switch_tick'])
                  for s in swaps if s['switch_tick'] is not None]
    ms = 1000.0
    return {
        'rate_hz': args.rate_hz, 'period_ms': period_s * ms, 'camera_px': args.camera_px,
        'swaps': len(swaps), 'failed': len(failures), 'failures': failures[:3],
        'cold_switch_s': round(cold_s, 3),
        'latency_ms': {'p50': percentile(lat, 50) * ms, 'p95': percentile(lat, 95) * ms,
                       'max': max(lat, default=float('nan')) * ms},
        'effective_latency_ms': {'p50': percentile(effective, 50) * ms,
                                 'p95': percentile(effective, 95) * ms,
                                 'max': max(effective, default=float('nan')) * ms},
        'replacements_after_next_tick': late,
        'server_latency_ms': {'p50': percentile(server, 50) * ms,
                              'p95': percentile(server, 95) * ms},
        'service_delivery_ms': {'p50': percentile(delivery, 50) * ms,
                                'p95': percentile(delivery, 95) * ms},
        'warmup_ms': {'p50': percentile(warmup, 50) * ms, 'p95': percentile(warmup, 95) * ms},
        'wait_for_boundary_ms': {'p50': percentile(wait_boundary, 50) * ms,
                                 'p95': percentile(wait_boundary, 95) * ms},
        'boundary_to_command_ms': {'p50': percentile(boundary_cmd, 50) * ms,
                                   'p95': percentile(boundary_cmd, 95) * ms},
        'baseline_tick_to_command_ms': {'p50': percentile(steady, 50) * ms,
                                        'p95': percentile(steady, 95) * ms},
        'cell_stamp_to_command_ms': {'p50': percentile(stamp_lag, 50) * ms,
                                     'p95': percentile(stamp_lag, 95) * ms},
        'bridge_skipped_ticks': status.get('skipped_ticks'),
        'p95_over_period': percentile(effective, 95) / period_s,
        'ticks_after_request': dict(Counter(ticks_late)),
        'fallbacks_to_hold': fallbacks,
        'topics': result,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--swaps', type=int, default=100)
    ap.add_argument('--rate-hz', type=float, default=30.0)
    ap.add_argument('--camera-px', type=int, default=96)
    ap.add_argument('--gap-ticks', type=int, default=3, help='steady ticks between swaps')
    ap.add_argument('--deadline-margin-s', type=float, default=0.005)
    ap.add_argument('--no-supervisor', action='store_true')
    ap.add_argument('--keep', action='store_true', help='keep the temp dir (logs)')
    ap.add_argument('--json', action='store_true', help='print one JSON object')
    ap.add_argument('--dump', default='', help='write the raw swaps, ticks and commands here')
    args = ap.parse_args(argv)
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f'{r["swaps"]} swaps ({r["failed"]} failed) on a real-time cell at {r["rate_hz"]:g} Hz '
          f'(period {r["period_ms"]:.1f} ms), camera {r["camera_px"]} px; cold switch '
          f'(process start) {r["cold_switch_s"]:.2f} s')
    lat, base = r['latency_ms'], r['baseline_tick_to_command_ms']
    eff = r['effective_latency_ms']
    print(f'request -> first new command : p50 {lat["p50"]:6.1f}  p95 {lat["p95"]:6.1f}  '
          f'max {lat["max"]:6.1f} ms')
    print(f'  ... that the cell steps with: p50 {eff["p50"]:6.1f}  p95 {eff["p95"]:6.1f}  '
          f'max {eff["max"]:6.1f} ms   p95/period {r["p95_over_period"]:.2f} '
          f'({r["replacements_after_next_tick"]} replacements came after the next tick)')
    print(f'  bridge switch_latency_s    : p50 {r["server_latency_ms"]["p50"]:6.1f}  '
          f'p95 {r["server_latency_ms"]["p95"]:6.1f} ms')
    print(f'  request -> bridge callback : p50 {r["service_delivery_ms"]["p50"]:6.1f}  '
          f'p95 {r["service_delivery_ms"]["p95"]:6.1f} ms')
    print(f'  warm-up (reset + act)      : p50 {r["warmup_ms"]["p50"]:6.1f}  '
          f'p95 {r["warmup_ms"]["p95"]:6.1f} ms')
    print(f'  wait for the tick boundary : p50 {r["wait_for_boundary_ms"]["p50"]:6.1f}  '
          f'p95 {r["wait_for_boundary_ms"]["p95"]:6.1f} ms')
    print(f'  boundary -> new command    : p50 {r["boundary_to_command_ms"]["p50"]:6.1f}  '
          f'p95 {r["boundary_to_command_ms"]["p95"]:6.1f} ms')
    print(f'baseline tick -> command     : p50 {base["p50"]:6.1f}  p95 {base["p95"]:6.1f} ms  '
          f'(switch p95 / baseline p95 = {lat["p95"] / base["p95"]:.1f})')
    lag = r['cell_stamp_to_command_ms']
    print(f'cell stamp -> command        : p50 {lag["p50"]:6.1f}  p95 {lag["p95"]:6.1f} ms; '
          f'ticks that never reached the bridge: {r["bridge_skipped_ticks"]}')
    print(f'switch tick - tick at request: {r["ticks_after_request"]}')
    for failure in r['failures']:
        print(f'failed switch: {failure}')
    if r['fallbacks_to_hold']:
        print(f"active revision faulted -> hold at ticks {r['fallbacks_to_hold']}")
    for topic, t in r['topics'].items():
        print(f'{topic:15s}: {t["ticks"]} ticks, missed {t["missed"]}, duplicated '
              f'{t["duplicated"]}, replaced at the switch tick {t["replaced"]}, '
              f'old-revision commands after the switch {t["stale_after_switch"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
