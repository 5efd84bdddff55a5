"""PolicyHost contains every misbehaving policy and keeps serving good ones."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

from enpire_agent_bridge.core.config import SandboxConfig
from enpire_agent_bridge.core.contract import PolicySpec
from enpire_agent_bridge.core.host import PolicyHost
from enpire_common.errors import PolicyDeadlineError, PolicyFaultError

ROOT = Path(__file__).resolve().parents[3]
HOLD = ROOT / 'examples' / 'policies' / 'push_t' / 'hold'
BAD = ROOT / 'tests' / 'data' / 'bad_policies'
# Generous for a loaded 2-core CI box; the hang cases use their own short deadline.
ACT_DEADLINE_S = 2.0


@pytest.fixture(scope='module')
def spec() -> PolicySpec:
    task = yaml.safe_load((ROOT / 'config' / 'tasks' / 'push_t' / 'task.yaml').read_text())
    return PolicySpec.from_task_contract(task)


@pytest.fixture(scope='module')
def good_host(spec):
    with PolicyHost(HOLD, spec) as host:
        yield host


# policy, error class, pinned reason, act deadline
BAD_CASES = [
    ('raise_on_import', PolicyFaultError,
     r'RuntimeError in importing policy\.py: deliberate import failure', ACT_DEADLINE_S),
    ('raise_in_act', PolicyFaultError,
     r'ValueError in act\(obs\): deliberate failure in act', ACT_DEADLINE_S),
    ('infinite_loop', PolicyDeadlineError, r'act did not return within 200 ms', 0.2),
    ('sleep_past_deadline', PolicyDeadlineError, r'act did not return within 200 ms', 0.2),
    ('returns_nan', PolicyFaultError, r'non-finite action \[nan, 1\.0\]', ACT_DEADLINE_S),
    ('wrong_shape', PolicyFaultError, r'shape \[3\], expected \[2\]', ACT_DEADLINE_S),
    ('out_of_bounds', PolicyFaultError,
     r'\[600\.0, -5\.0\], outside the action bounds', ACT_DEADLINE_S),
    ('allocate_8gb', PolicyFaultError,
     r'MemoryError in act\(obs\).*memory limit of 2048 MiB', ACT_DEADLINE_S),
    ('fork', PolicyFaultError, r'may not start processes or threads', ACT_DEADLINE_S),
]


@pytest.mark.parametrize(('name', 'error', 'reason', 'deadline_s'), BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])
def test_bad_policy_is_contained_with_its_reason(spec, good_host, name, error, reason,
                                                 deadline_s):
    host = PolicyHost(BAD / name, spec)
    try:
        with pytest.raises(error, match=reason):
            host.start()
            host.reset(0)
            host.act(spec.example_observation(agent_pos=np.array([100.0, 200.0])),
                     deadline_s=deadline_s)
        assert not host.alive
        assert host.fault_reason is not None and host.fault_reason
        # The whole process group is gone and reaped: no zombie, no orphan.
        assert not psutil.pid_exists(host.pid) or \
            psutil.Process(host.pid).status() != psutil.STATUS_ZOMBIE
        with pytest.raises(PolicyFaultError, match='not running'):
            host.act(spec.example_observation(), deadline_s=deadline_s)
    finally:
        host.close()
    # Containment left the other host untouched.
    action = good_host.act(spec.example_observation(agent_pos=np.array([7.0, 9.0])),
                           deadline_s=ACT_DEADLINE_S)
    np.testing.assert_array_equal(action, [7.0, 9.0])


def test_hold_policy_returns_the_agent_position_as_float64(good_host, spec):
    action = good_host.act(spec.example_observation(agent_pos=np.array([12.5, 300.0])),
                           deadline_s=ACT_DEADLINE_S)
    assert action.dtype == np.float64 and action.shape == (2,)
    np.testing.assert_array_equal(action, [12.5, 300.0])


def test_random_policy_is_reproducible_for_a_seed(spec):
    obs = spec.example_observation(agent_pos=np.array([256.0, 256.0]))
    runs = []
    for _ in range(2):
        with PolicyHost(ROOT / 'examples' / 'policies' / 'push_t' / 'random',
                        spec.with_params({'step_px': 30.0})) as host:
            host.reset(5)
            runs.append([host.act(obs, deadline_s=ACT_DEADLINE_S) for _ in range(3)])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.all(np.abs(np.asarray(runs[0]) - 256.0) <= 30.0)


def test_host_runs_in_its_own_session_with_scrubbed_env_and_limits(spec, tmp_path):
    probe = tmp_path / 'probe'
    probe.mkdir()
    (probe / 'policy.py').write_text(
        'import os, resource\n'
        'import numpy as np\n'
        'class P:\n'
        '    def reset(self, seed):\n'
        '        pass\n'
        '    def act(self, obs):\n'
        '        return np.array([float(len(os.environ)), 1.0])\n'
        'def make_policy(spec):\n'
        '    info = {"env": sorted(os.environ), "cwd": os.getcwd(), "home": os.environ["HOME"],\n'
        '            "as": resource.getrlimit(resource.RLIMIT_AS)[0],\n'
        '            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],\n'
        '            "sid": os.getsid(0) == os.getpid(), "uid": os.getuid()}\n'
        '    print(repr(info), flush=True)\n'
        '    return P()\n')
    os.environ['ENPIRE_TEST_SECRET'] = 'must-not-leak'
    try:
        with PolicyHost(probe, spec, config=SandboxConfig(memory_limit_mb=1024),
                        log_dir=tmp_path / 'logs') as host:
            host.act(spec.example_observation(), deadline_s=ACT_DEADLINE_S)
            dropped = host.privileges_dropped
    finally:
        del os.environ['ENPIRE_TEST_SECRET']
    info = eval((tmp_path / 'logs' / 'stdout.log').read_text().strip())  # noqa: S307 - our probe
    assert 'ENPIRE_TEST_SECRET' not in info['env']
    assert set(info['env']) <= {'PATH', 'PYTHONPATH', 'LD_LIBRARY_PATH', 'HOME', 'TMPDIR',
                                'OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
                                'NUMEXPR_NUM_THREADS', 'PYTHONDONTWRITEBYTECODE',
                                'PYTHONNOUSERSITE', '_ROS_WHEELS_BOOTSTRAP_COMPLETE',
                                'LC_CTYPE', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_'}
    assert info['cwd'] == info['home'] and info['cwd'].startswith(str(Path(info['cwd']).parent))
    assert info['as'] == 1024 << 20 and info['nofile'] == 64
    assert info['sid'] is True
    if dropped:
        assert info['uid'] == 65534


def test_closing_a_host_reaps_the_process_and_removes_its_workdir(spec):
    host = PolicyHost(HOLD, spec)
    host.start()
    pid, workdir = host.pid, host._workdir
    host.close()
    assert not host.alive
    assert not psutil.pid_exists(pid)
    assert workdir is not None and not Path(workdir).exists()


def test_policy_edits_after_start_do_not_reach_the_running_host(spec, tmp_path):
    src = tmp_path / 'p'
    src.mkdir()
    (src / 'policy.py').write_text((HOLD / 'policy.py').read_text())
    with PolicyHost(src, spec) as host:
        (src / 'policy.py').write_text('raise SystemExit(1)\n')
        host.reset(1)
        assert host.act(spec.example_observation(), deadline_s=ACT_DEADLINE_S).shape == (2,)


def _write_policy(d: Path, act_body: str) -> Path:
    d.mkdir()
    (d / 'policy.yaml').write_text('name: t\ntask: push_t\nversion: 1\nregime: heuristic\n')
    (d / 'policy.py').write_text(
        'import time\nimport numpy as np\n\n\nclass P:\n    def reset(self, seed):\n'
        '        pass\n\n    def act(self, obs):\n' + act_body +
        "        return np.asarray(obs['agent_pos'], dtype=np.float64)\n\n\n"
        'def make_policy(spec):\n    return P()\n')
    return d


def test_a_slow_round_trip_is_late_but_only_cpu_time_over_the_deadline_faults(spec, tmp_path):
    obs = spec.example_observation()
    # Waiting (not computing) 60 ms against a 30 ms deadline: late, not a fault, below the
    # hard limit, like a policy delayed by a loaded machine.
    with PolicyHost(_write_policy(tmp_path / 'waits', '        time.sleep(0.06)\n'),
                    spec) as host:
        host.reset(0)
        host.act(obs, deadline_s=0.03, hard_deadline_s=0.5)
        assert host.last_late and host.alive
    # Computing 60 ms of CPU against a 30 ms deadline is too slow: killed with the reason.
    busy = ('        end = time.thread_time() + 0.06\n'
            '        while time.thread_time() < end:\n            pass\n')
    with PolicyHost(_write_policy(tmp_path / 'computes', busy), spec) as host:
        host.reset(0)
        with pytest.raises(PolicyDeadlineError, match=r'ms of CPU time, over the 30 ms'):
            host.act(obs, deadline_s=0.03, hard_deadline_s=0.5)
        assert not host.alive


def test_a_killed_owners_workdir_is_swept_by_the_next_host(spec, tmp_path):
    """A SIGKILLed node never runs its finalizers: its policy copy stays behind. The next
    host in the same work root removes it, and leaves a live owner's alone."""
    import signal
    import subprocess
    import sys

    tmp_path.chmod(0o755)
    script = ('import sys, time, yaml\n'
              'from enpire_agent_bridge.core.config import SandboxConfig\n'
              'from enpire_agent_bridge.core.contract import PolicySpec\n'
              'from enpire_agent_bridge.core.host import PolicyHost\n'
              f'task = yaml.safe_load(open({str(ROOT / "config/tasks/push_t/task.yaml")!r}))\n'
              f'host = PolicyHost({str(HOLD)!r}, PolicySpec.from_task_contract(task),\n'
              f'                  SandboxConfig(work_root={str(tmp_path)!r}))\n'
              'host.start()\n'
              'print(host._workdir, flush=True)\n'
              'time.sleep(600)\n')
    owner = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    try:
        killed = Path(owner.stdout.readline().strip())
        assert killed.is_dir() and killed.name.startswith(f'enpire-policy-{owner.pid}-')
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    live = tmp_path / "enpire-policy-1-keep"            # pid 1 runs
    live.mkdir()
    assert killed.is_dir()                              # left behind by the kill
    with PolicyHost(HOLD, spec, SandboxConfig(work_root=str(tmp_path))) as host:
        assert host.alive
        mine = Path(host._workdir)
        assert mine.is_dir()
    assert not killed.exists()
    assert live.is_dir()
