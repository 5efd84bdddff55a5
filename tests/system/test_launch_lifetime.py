"""System tests: every process a launch starts dies with its launcher, however it dies.

* ``enpire up`` of one sim cell SIGKILLed mid-trial: none of its descendants (nodes, the
  policy host and worker, the watchdog) is alive 2 s later;
* the same with a node that ignores SIGINT and SIGTERM and a stray grandchild of it in a
  session of its own that ignores them too (tests/data/launch/push_t_sim_stubborn...);
* the same for a fleet launch of two cells;
* SIGINT to a one-cell launch mid-trial, with and without the stubborn node: the launcher
  exits 0 and every process is gone within 5 s.

The times measured are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enpire_bringup.testing import Launch, descendants, survivors, wait_gone

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ONE_CELL = ROOT / 'launch' / 'push_t_sim.launch.yaml'
STUBBORN = ROOT / 'tests' / 'data' / 'launch' / 'push_t_sim_stubborn.launch.yaml'
FLEET = ROOT / 'launch' / 'fleet_sim.launch.yaml'
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
START_S = 150.0          # a fleet's start on a loaded 2-core machine
AFTER_SIGKILL_S = 2.0    # the bound: nothing of the launch is alive 2 s after
AFTER_SIGINT_S = 5.0     # ... and a Ctrl-C'd launch is all gone within 5 s


class LaunchUnderTest(Launch):
    """A :class:`Launch` that remembers every descendant it was seen with."""

    def __init__(self, *args: str, home: Path) -> None:
        super().__init__(*args, cwd=ROOT, env={**os.environ, 'ENPIRE_HOME': str(home)},
                         timeout_s=START_S)
        self.home = home
        self.seen: list[Any] = []

    def snapshot(self) -> list[Any]:
        """psutil handles of the launcher's descendants now."""
        procs = descendants(self.proc.pid)
        self.seen += procs
        return procs


@contextlib.contextmanager
def launched(home: Path, *args: str) -> Iterator[LaunchUnderTest]:
    """``enpire up <args>`` in ENPIRE_HOME ``home``; whatever a failed test left is killed."""
    launch = LaunchUnderTest(*args, home=home)
    try:
        yield launch
    finally:
        with contextlib.suppress(Exception):
            launch.snapshot()
        launch.stop()
        for p in launch.seen:
            with contextlib.suppress(Exception):
                p.kill()


def _ppid(proc: Any) -> int | None:
    try:
        return proc.ppid()
    except Exception:  # psutil.NoSuchProcess: it ended meanwhile
        return None


class Trial:
    """A run of scripted trials on ``/<cell>`` in the background: ``running`` is set once an
    episode is under way (a policy host and its worker process exist)."""

    def __init__(self, cell: str, launch: LaunchUnderTest) -> None:
        from enpire_evolution.ros.trials_port import TrialsClient
        from enpire_rollout.client import RolloutClient

        # The policy directory is submitted client-side into the launch's revision store.
        self.rollout = RolloutClient(cell)
        self.client = TrialsClient(self.rollout, home=launch.home)
        self.running = threading.Event()
        self.error: BaseException | None = None
        end = time.monotonic() + START_S
        while not self.client.wait_ready(1.0):
            assert launch.proc.poll() is None, '\n'.join(launch.lines[-40:])
            assert time.monotonic() < end, f'/{cell}/run_trials not ready in {START_S} s'
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.client.run_trials(count=5, policy_dir=str(SCRIPTED), seeds=[11],
                                   experiment_id='lifetime', on_feedback=self._on_feedback,
                                   timeout_s=START_S)
        except Exception as exc:  # the cell is killed under it: expected
            self.error = exc
        finally:
            self.running.set()

    def _on_feedback(self, fb: Any) -> None:
        if fb.phase == 'running':
            self.running.set()

    def wait_running(self) -> None:
        assert self.running.wait(START_S), 'no episode running'
        assert self.error is None, f'the run failed before the kill: {self.error!r}'

    def close(self) -> None:
        # A run whose cell is gone ends after RolloutClient.LOST_AFTER_S.
        self._thread.join(timeout=30.0)
        self.client.close()
        self.rollout.close()


def mid_trial(launch: LaunchUnderTest, cell: str = 'cell_0') -> Trial:
    trial = Trial(cell, launch)
    trial.wait_running()
    # The episode's processes are up: the policy host node and its worker (grandchildren).
    return trial


def sigkill_and_check(launch: LaunchUnderTest, expect_at_least: int) -> None:
    procs = launch.snapshot()
    assert len(procs) >= expect_at_least, survivors(procs)
    assert any(_ppid(p) not in (launch.proc.pid, None) for p in procs), 'no grandchild'
    killed_at = time.monotonic()
    launch.proc.kill()
    launch.proc.wait(10)
    took = wait_gone(procs, AFTER_SIGKILL_S, since=killed_at)
    print(f'\n{len(procs)} processes all gone {took:.2f} s after the SIGKILL')


def test_sigkilled_one_cell_launch_mid_trial_leaves_nothing_behind(tmp_path: Path) -> None:
    with launched(tmp_path, str(ONE_CELL)) as launch:
        trial = mid_trial(launch)
        try:
            # 6 nodes + the watchdog + the episode's policy host (a grandchild).
            sigkill_and_check(launch, expect_at_least=8)
        finally:
            trial.close()


def test_sigkilled_launch_with_a_node_ignoring_sigint_and_sigterm_leaves_nothing_behind(
        tmp_path: Path) -> None:
    with launched(tmp_path, str(STUBBORN)) as launch:
        trial = mid_trial(launch)
        try:
            procs = launch.snapshot()
            stray = [p for p in procs if 'time.sleep(3600)' in ' '.join(p.cmdline())]
            assert len(stray) == 1 and stray[0].pid == os.getsid(stray[0].pid), \
                'the stubborn node has no stray child in a session of its own'
            sigkill_and_check(launch, expect_at_least=10)
        finally:
            trial.close()


def test_sigkilled_fleet_launch_mid_trial_leaves_nothing_behind(tmp_path: Path) -> None:
    with launched(tmp_path, str(FLEET), 'cells:=2') as launch:
        trial = mid_trial(launch, 'cell_0')
        try:
            # 2 x 6 nodes + the watchdog + cell_0's policy host.
            sigkill_and_check(launch, expect_at_least=14)
        finally:
            trial.close()


@pytest.mark.parametrize('file', [ONE_CELL, STUBBORN], ids=['one_cell', 'stubborn_node'])
def test_sigint_stops_a_one_cell_launch_mid_trial_within_5_s(tmp_path: Path,
                                                              file: Path) -> None:
    with launched(tmp_path, str(file)) as launch:
        trial = mid_trial(launch)
        try:
            procs = launch.snapshot()
            sent_at = time.monotonic()
            launch.proc.send_signal(signal.SIGINT)
            took = wait_gone(procs, AFTER_SIGINT_S, since=sent_at)
            assert launch.proc.wait(AFTER_SIGINT_S) == 0
            exited = time.monotonic() - sent_at
            assert exited <= AFTER_SIGINT_S, f'the launcher exited {exited:.2f} s after SIGINT'
            print(f'\n{len(procs)} processes gone {took:.2f} s, the launcher {exited:.2f} s '
                  'after SIGINT')
            launch.wait_for(lambda lines: lines and lines[-1].startswith(
                '[enpire] done (received SIGINT)'), 'the done line')
            assert survivors(procs) == []
        finally:
            trial.close()
