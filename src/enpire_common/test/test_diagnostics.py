"""enpire_common.diagnostics: a live process answers SIGUSR1 with its stacks and SIGUSR2 with
a memory report, and goes on running."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from enpire_common import diagnostics

pytestmark = pytest.mark.skipif(sys.platform != 'linux', reason='signals and /proc: Linux')

CHILD = r'''
import sys, time
from enpire_common import diagnostics
assert diagnostics.install()
class Hoarded: pass
hoard = [Hoarded() for _ in range(20000)]           # line 6: the site tracemalloc must name
print('ready', flush=True)
while True:
    time.sleep(0.05)
'''


def _child(env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    proc = subprocess.Popen([sys.executable, '-c', CHILD], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == 'ready'
    return proc


def _wait_for(proc: subprocess.Popen, sig: int, text: str, timeout_s: float = 60.0) -> str:
    """Send ``sig`` once and read stderr until it holds ``text`` (a report ends with it);
    the process must still run then. Stops the process; returns what it wrote."""
    os.kill(proc.pid, sig)
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if text in line:
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        done.wait(timeout_s)
        assert proc.poll() is None, 'the signal must not end the process:\n' + ''.join(lines)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    err = ''.join(lines)
    assert text in err, err
    return err


def test_sigusr2_writes_a_memory_report_and_the_process_lives_on():
    proc = _child({'PYTHONTRACEMALLOC': '5'})
    err = _wait_for(proc, signal.SIGUSR2, '--- end of memory report')
    assert 'own' in err and 'shared memory' in err
    assert '20000  Hoarded' in err               # the objects by type
    assert '<string>:6' in err                   # tracemalloc names the allocation site


def test_without_tracemalloc_the_report_says_how_to_turn_it_on():
    proc = _child({'PYTHONTRACEMALLOC': ''})
    err = _wait_for(proc, signal.SIGUSR2, 'PYTHONTRACEMALLOC=10')
    assert 'python objects tracked by gc' in err


def test_sigusr1_dumps_every_threads_stack():
    proc = _child({})
    _wait_for(proc, signal.SIGUSR1, 'most recent call first')


def test_memory_status_splits_rss():
    st = diagnostics.memory_status()
    assert st['VmRSS'] > 0
    assert abs(st['VmRSS'] - st['RssAnon'] - st['RssFile'] - st['RssShmem']) < 1.0
    assert diagnostics.memory_status(2 ** 22 + 12345) == {}
