"""RosController's handling of a policy host that never says ready."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
from rclpy.callback_groups import ReentrantCallbackGroup

from enpire_common.errors import EnpireTimeoutError

pytestmark = pytest.mark.ros


def test_a_host_that_never_says_ready_is_killed_and_not_reused(ros, tmp_path, monkeypatch):
    """A host stuck in start-up used to stay loaded: every later trial of the run then
    waited on the same silent process. Now it is killed, and the next trial starts anew."""
    from enpire_rollout.ros import ports

    pids = tmp_path / 'pids'
    exe = tmp_path / 'silent_host'
    exe.write_text(f'#!{sys.executable}\n'
                   'import os, time\n'
                   f'open({str(pids)!r}, "a").write(f"{{os.getpid()}}\\n")\n'
                   'time.sleep(600)\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(ports, '_policy_host_executable', lambda: str(exe))
    node = ros.node('rollout', namespace='/cell_p')
    controller = ports.RosController(node, ReentrantCallbackGroup(), task='push_t',
                                     log_dir=tmp_path / 'logs', start_timeout_s=1.0)
    with pytest.raises(EnpireTimeoutError, match='last status heard: none.*killed'):
        controller.load('rev0123456789abcdef', str(tmp_path))
    first = int(pids.read_text().split()[0])
    # where the silent host waited, for whoever reads its log (py-spy is a test dependency):
    # line 4 is its time.sleep. (Not the word 'sleep': that came from the traceback the host
    # prints when SIGINTed, which a loaded machine may not get to before the SIGKILL.)
    log = (tmp_path / 'logs' / 'policy_host-rev0123456789abc.log').read_text()
    assert 'py-spy dump of the policy host' in log and '<module> (silent_host:4)' in log
    assert not Path(f'/proc/{first}').exists() or _zombie(first)
    # the next trial's episode start spawns a new host instead of waiting on the dead one
    with pytest.raises(EnpireTimeoutError, match='policy host start'):
        controller.start_episode(seed=1)
    assert len(pids.read_text().split()) == 2
    controller.close()


def _zombie(pid: int) -> bool:
    try:
        return Path(f'/proc/{pid}/stat').read_text().split()[2] == 'Z'
    except OSError:
        return True
