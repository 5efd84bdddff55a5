"""Child-process helpers: PDEATHSIG survives the ROS wheels' re-exec; the subreaper adopts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from enpire_common.process import die_with_this_process, owned_tempdir, sweep_dead_owners

GET_PDEATHSIG = textwrap.dedent('''
    import ctypes, os
    sig = ctypes.c_int()
    ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    print(sig.value, os.environ.get('_ROS_WHEELS_BOOTSTRAP_COMPLETE'))
''')


def test_pdeathsig_survives_the_ros_wheels_re_exec_of_a_python_child():
    # Without the guard variable the venv's ros_wheels_bootstrapper .pth re-execs the
    # interpreter (os.execve, same pid) and sets it: the child below ran after that exec.
    env = {k: v for k, v in os.environ.items() if k != '_ROS_WHEELS_BOOTSTRAP_COMPLETE'}
    out = subprocess.run([sys.executable, '-c', GET_PDEATHSIG], env=env, capture_output=True,
                         text=True, timeout=60, check=True,
                         preexec_fn=die_with_this_process(signal.SIGKILL)).stdout.split()
    bootstrapped = out[1] == '1'
    assert out[0] == str(int(signal.SIGKILL)), out
    assert bootstrapped or 'ros_wheels_bootstrapper' not in sys.modules, out


SUBREAPER = textwrap.dedent('''
    import os, subprocess, sys, time
    from enpire_common.process import set_child_subreaper
    assert set_child_subreaper(True)
    # A child that starts a grandchild and exits at once: the grandchild is orphaned. (Its
    # output goes elsewhere: had it kept the child's pipe, run() would wait for its 30 s.)
    mid = subprocess.run([sys.executable, '-I', '-S', '-c',
                          'import subprocess, sys; p = subprocess.Popen([sys.executable, '
                          '"-I", "-S", "-c", "import time; time.sleep(30)"], '
                          'stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)'],
                         capture_output=True, text=True, check=True)
    orphan = int(mid.stdout)
    with open(f'/proc/{orphan}/stat') as f:
        ppid = int(f.read().rsplit(')', 1)[1].split()[1])
    os.kill(orphan, 9)
    os.waitpid(orphan, 0)  # ours to reap
    print(ppid == os.getpid())
''')


def test_a_child_subreaper_adopts_its_orphaned_descendants():
    out = subprocess.run([sys.executable, '-c', SUBREAPER], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == 'True'


def test_temp_dirs_of_dead_owners_are_swept_and_live_ones_kept(tmp_path):
    """A SIGKILLed process leaves its temp dir; the next owned_tempdir removes it."""
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()                                     # reaped: its pid runs no more
    (tmp_path / f'enpire_x_{dead.pid}-abc').mkdir()
    (tmp_path / f'enpire_x_{dead.pid}-abc' / 'params.yaml').write_text('a: 1')
    (tmp_path / f'enpire_x_{os.getppid()}-def').mkdir()   # the parent runs
    (tmp_path / 'enpire_x_old-layout').mkdir()            # no pid: not ours to judge
    (tmp_path / f'other_{dead.pid}-ghi').mkdir()          # another prefix
    mine = owned_tempdir('enpire_x_', str(tmp_path))
    assert os.path.basename(mine).startswith(f'enpire_x_{os.getpid()}-')
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        os.path.basename(mine), f'enpire_x_{os.getppid()}-def', 'enpire_x_old-layout',
        f'other_{dead.pid}-ghi'])
    assert sweep_dead_owners(str(tmp_path), 'enpire_x_') == []   # its own dir stays
