"""Act latency of a confined policy worker vs the same worker unconfined (target: within 5%).

Run: python benchmarks/sandbox_confinement.py [--acts N] [--rounds R] [--policy DIR]

The scripted Push-T policy acts on real sim frames (a fixed set of area-camera renders,
cycled) in two PolicyHosts started by this process: one with ``confinement: none`` (the
baseline, as every trial ran before issue 07) and one with the best confinement here
(Landlock, else bubblewrap). Both keep the seccomp filter. Rounds alternate the two hosts so
that machine load drifts hit both alike. Prints the median and p95 of the round trip and of
the worker's own act time, and their ratios confined / unconfined.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from enpire_agent_bridge.core.config import SandboxConfig
from enpire_agent_bridge.core.confinement import detect
from enpire_agent_bridge.core.contract import spec_for_revision
from enpire_agent_bridge.core.host import PolicyHost
from enpire_common.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]


def frames(n: int) -> list[np.ndarray]:
    """``n`` top-camera frames of the sim cell at random seeded states."""
    from enpire_sim.core.push_t import PushTSim

    sim = PushTSim(load_task('push_t'))
    out = []
    for seed in range(n):
        sim.reset(seed)
        out.append(sim.render().copy())
    return out


def run(host: PolicyHost, obs_list: list[dict], n: int) -> tuple[list[float], list[float]]:
    rt, act = [], []
    for i in range(n):
        obs = obs_list[i % len(obs_list)]
        t0 = time.perf_counter()
        host.act(obs, deadline_s=1.0)
        rt.append(time.perf_counter() - t0)
        act.append(host.last_act_s)
    return rt, act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--acts', type=int, default=400, help='acts per round and host')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--policy', default=str(ROOT / 'examples/policies/push_t/scripted'))
    args = parser.parse_args()
    confined = detect()
    if not confined.confined:
        raise SystemExit(f'no confinement here ({confined.detail}): nothing to compare')
    spec = spec_for_revision(load_task('push_t').raw, Path(args.policy))
    base_obs = spec.example_observation()
    obs_list = [{**base_obs, 'image_top': img, 'step': i} for i, img in enumerate(frames(16))]
    configs = {'unconfined': SandboxConfig(confinement='none', allow_unconfined=True),
               confined.mode: SandboxConfig(confinement=confined.mode)}
    hosts = {name: PolicyHost(args.policy, spec, config=cfg) for name, cfg in configs.items()}
    stats: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in hosts}
    try:
        for host in hosts.values():
            host.start()
            host.reset(0)
            run(host, obs_list, 50)  # warm-up
        for _ in range(args.rounds):
            for name, host in hosts.items():
                rt, act = run(host, obs_list, args.acts)
                stats[name][0].extend(rt)
                stats[name][1].extend(act)
    finally:
        for host in hosts.values():
            host.close()
    print(f'confinement: {confined.detail}; {args.rounds} x {args.acts} acts per host')
    summary = {}
    for name, (rt, act) in stats.items():
        rt_ms, act_ms = np.array(rt) * 1e3, np.array(act) * 1e3
        summary[name] = (np.median(rt_ms), np.percentile(rt_ms, 95), np.median(act_ms),
                         np.percentile(act_ms, 95))
        print(f'{name:>11}: round trip median {summary[name][0]:.3f} ms, p95 '
              f'{summary[name][1]:.3f} ms | act median {summary[name][2]:.3f} ms, p95 '
              f'{summary[name][3]:.3f} ms')
    base, conf = summary['unconfined'], summary[confined.mode]
    print(f'ratio {confined.mode}/unconfined: round trip median {conf[0] / base[0]:.3f}, '
          f'p95 {conf[1] / base[1]:.3f} | act median {conf[2] / base[2]:.3f}, '
          f'p95 {conf[3] / base[3]:.3f} (target <= 1.05)')


if __name__ == '__main__':
    main()
