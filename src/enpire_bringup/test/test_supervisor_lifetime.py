"""The Supervisor's shutdown, without ROS: plain Python processes stand in for nodes.

A "node" that ignores SIGINT and SIGTERM and leaves a stray child in a session of its own is
SIGKILLed after the (shortened) timeouts; its stray is adopted by the launcher (a child
subreaper) and ended in the same step; nothing is left, the watchdog included.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time

import psutil

from enpire_bringup.launcher.parse import LaunchPlan, NodeSpec
from enpire_bringup.launcher.supervisor import Supervisor
from enpire_bringup.testing import alive

STUBBORN = ('import signal, subprocess, sys, time\n'
            'for s in (signal.SIGINT, signal.SIGTERM):\n'
            '    signal.signal(s, signal.SIG_IGN)\n'
            'if sys.argv[1:] == ["stray"]:\n'
            '    p = subprocess.Popen([sys.executable, "-I", "-S", "-c", '
            '"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
            'time.sleep(600)"], start_new_session=True)\n'
            '    print("stray", p.pid, flush=True)\n'
            'print("ready", flush=True)\n'
            'time.sleep(600)\n')
POLITE = 'import time\nprint("ready", flush=True)\ntime.sleep(600)\n'


def node(name: str, code: str, *args: str) -> NodeSpec:
    return NodeSpec(package='test', executable=name, executable_path=sys.executable,
                    name=None, namespace='/', args=('-I', '-S', '-c', code, *args),
                    output='screen', label=name)


def test_sigint_ends_a_stubborn_node_and_its_stray_child_within_the_timeouts(tmp_path):
    plan = LaunchPlan(file='test', nodes=(node('stubborn', STUBBORN, 'stray'),
                                          node('polite', POLITE)))
    out = io.StringIO()
    sup = Supervisor(plan, out=out, log_dir=tmp_path, sigint_timeout_s=0.4,
                     sigterm_timeout_s=0.4, sigkill_timeout_s=1.0)
    sent = threading.Event()
    stray: list[int] = []
    watchdog: list[int] = []

    def stop_when_ready() -> None:
        end = time.monotonic() + 30.0
        while time.monotonic() < end:
            text = out.getvalue()
            if text.count('] ready') == 2:
                stray.extend(int(line.rsplit(' ', 1)[1]) for line in text.splitlines()
                             if line.startswith('[stubborn] stray '))
                watchdog.extend(c.pid for c in psutil.Process().children()
                                if 'watchdog.py' in ' '.join(c.cmdline()))
                sent.set()
                os.kill(os.getpid(), signal.SIGINT)  # handled by the Supervisor: a flag
                return
            time.sleep(0.02)

    threading.Thread(target=stop_when_ready, daemon=True).start()
    start = time.monotonic()
    code = sup.run()
    assert sent.is_set(), out.getvalue()
    took = time.monotonic() - start
    text = out.getvalue()
    assert code == 0, text  # a shutdown on request, however the nodes ended
    assert 'escalating to SIGTERM for: stubborn' in text
    assert 'escalating to SIGKILL for: stubborn' in text
    assert 'exited polite' in text and 'exited stubborn' in text and 'code=-9' in text
    assert text.rstrip().endswith('done (received SIGINT)')
    assert took < 30.0
    assert len(stray) == 1 and not alive(stray[0]), text
    pids = {int(w.split('=')[1]) for line in text.splitlines() if '] started ' in line
            for w in line.split() if w.startswith('pid=')}
    assert len(pids) == 2 and not any(alive(p) for p in pids)
    assert len(watchdog) == 1 and not alive(watchdog[0])
