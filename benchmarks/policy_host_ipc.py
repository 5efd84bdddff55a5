"""Round trip of PolicyHost.act for a 480x480x3 observation vs an in-process call.

Run: python benchmarks/policy_host_ipc.py [n]. Prints medians/p99 and the ratio to calling
the same policy in this process (the baseline, measured here too).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from enpire_agent_bridge.core.contract import PolicySpec
from enpire_agent_bridge.core.host import PolicyHost

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    spec = PolicySpec.from_task_contract(
        yaml.safe_load((ROOT / 'config/tasks/push_t/task.yaml').read_text()))
    hold = ROOT / 'examples/policies/push_t/hold'
    obs = spec.example_observation(agent_pos=np.array([10.0, 20.0]))
    obs['image_top'] = np.random.default_rng(0).integers(0, 255, (480, 480, 3), dtype=np.uint8)
    mod_spec = importlib.util.spec_from_file_location('hold', hold / 'policy.py')
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    local = mod.make_policy(spec)
    base = []
    for _ in range(n):
        t0 = time.perf_counter()
        local.act(obs)
        base.append(time.perf_counter() - t0)
    with PolicyHost(hold, spec) as host:
        host.act(obs, deadline_s=5.0)
        rt = []
        for _ in range(n):
            t0 = time.perf_counter()
            host.act(obs, deadline_s=1.0)
            rt.append(time.perf_counter() - t0)
    base_ms, rt_ms = np.array(base) * 1e3, np.array(rt) * 1e3
    print(f'in-process act: median {np.median(base_ms):.4f} ms')
    print(f'PolicyHost.act 480x480x3: median {np.median(rt_ms):.3f} ms, '
          f'p99 {np.percentile(rt_ms, 99):.3f} ms, max {rt_ms.max():.3f} ms '
          f'(ratio {np.median(rt_ms) / np.median(base_ms):.0f}x the in-process call)')


if __name__ == '__main__':
    main()
