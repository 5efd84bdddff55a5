"""Client side of the rollout: run trials on a cell from a CLI or an agent.

:class:`RolloutClient` talks to a cell's ``run_trials`` action from its own rclpy context.
:class:`CellStack` starts the embedded sim cell launch (``enpire up``) when no cell answers,
and stops it again (process group, SIGINT then SIGKILL); :class:`CellSession` and
:class:`FleetSession` hold clients of one cell or several.

The rollout runs stored revisions and records nothing in the experiment store: submitting a
policy directory (agent bridge) and storing the trials (evolution) belong to the layers
above, whose client (``enpire_evolution.ros.trials_port``) wraps these sessions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enpire_common.errors import (
    CellUnavailableError,
    ConfigError,
    EnpireTimeoutError,
    error_from_code,
)
from enpire_common.process import die_with_this_process
from enpire_common.tasks import DEFAULT_TASK


def sim_launch_file(task: str, fleet: bool = False) -> Path:
    """The launch file of ``task``'s simulated cell (``fleet``: of N cells), from its plugin."""
    from enpire_tasks import registry

    plugin = registry.get(task)
    name = plugin.fleet_launch if fleet else plugin.sim_launch
    if not name:
        raise ConfigError(f"task '{task}' has no simulated {'fleet' if fleet else 'cell'} "
                          'launch (its plugin names none): start its cell(s) yourself')
    return default_launch_file(name)


def sim_launch_args(task: str) -> dict[str, str]:
    """The launch arguments ``task``'s plugin gives its simulated cells (e.g. ``task``)."""
    from enpire_tasks import registry

    return dict(registry.get(task).sim_launch_args)


def default_launch_file(name: str) -> Path:
    """The workspace's launch file ``name``, else the installed copy."""
    root = os.environ.get('ENPIRE_ROOT')
    candidates = [Path(root) / 'launch' / name] if root else []
    candidates.append(Path(__file__).resolve().parents[3] / 'launch' / name)
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory('enpire_bringup')) / 'launch' / name)
    except Exception:  # noqa: BLE001 - no ament index: only the workspace copy
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f'launch file {name} not found (looked in: '
                      f"{', '.join(str(c) for c in candidates)})")


def trial_to_dict(t: Any) -> dict[str, Any]:
    """A TrialResult message as plain JSON-able data (its record's ``summary()``)."""
    from enpire_rollout.ros.conversions import trial_from_msg

    return trial_from_msg(t).summary()


#: How long a client waits for a cell that should be running (no start allowed, or a fleet
#: of which one cell already answers): a fresh process's DDS discovery of a running cell was
#: seen to take more than 3 s per cell on a loaded machine.
RUNNING_CELL_WAIT_S = 15.0


class RolloutClient:
    """Action client of one cell's ``run_trials``, spinning in a private context."""

    #: A run whose action server is gone from the graph this long is a lost cell.
    LOST_AFTER_S = 3.0
    #: How long an unanswered goal is sent again (``_send``).
    SEND_FOR_S = 60.0
    #: How long a second run_trials server in the graph may take to leave it before a run
    #: is refused.
    SERVER_SETTLE_S = 5.0

    def __init__(self, cell: str = 'cell_0') -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node

        from enpire_common.ros import ActionClient
        from enpire_interfaces.action import RunTrials

        self.cell = cell
        self._context = Context()
        rclpy.init(context=self._context)
        self._node = Node('enpire_rollout_client', namespace=f'/{cell}',
                          context=self._context)
        self._client = ActionClient(self._node, RunTrials, 'run_trials')
        self._executor = MultiThreadedExecutor(num_threads=2, context=self._context)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()
        self._goal = None

    def wait_ready(self, timeout_s: float) -> bool:
        return bool(self._client.wait_for_server(timeout_sec=timeout_s))

    def run_trials(self, *, count: int, policy_dir: str = '', revision_id: str = '',
                   seeds: Sequence[int] = (), seed_start: int = 0, experiment_id: str = '',
                   max_wall_time_s: float = 0.0, max_episode_steps: int = 0,
                   max_consecutive_faults: int = 0, record: bool = True, attempts: int = 1,
                   allow_unconfined: bool = False, reset_stage: str = '',
                   on_feedback: Callable[[Any], None] | None = None,
                   timeout_s: float = 24 * 3600.0) -> Any:
        """Send one RunTrials goal and wait for its result (raises the result's error).

        ``revision_id`` is the full id of a submitted revision: the cell runs stored
        revisions only, so a ``policy_dir`` is refused here (ConfigError) instead of by the
        cell; submit it first, or use a client that does (TrialsClient in
        ``enpire_evolution.ros.trials_port``). ``record=False`` runs the trials without
        bag, video or trial.json (benchmarks); the node honours the flag as sent.
        ``allow_unconfined`` lets the cell run the policy where no sandbox confinement exists
        (otherwise the run fails with SANDBOX_UNCONFINED); trial.json records it.
        ``reset_stage`` starts every trial at a later stage of the task (``pre_insertion``:
        the hardest stage of an insertion); trial.json records it.
        """
        from enpire_common.ros import wait_future
        from enpire_interfaces.action import RunTrials

        if policy_dir:
            raise ConfigError(
                f'policy_dir={policy_dir!r}: cells run submitted revisions only; submit the '
                'directory first (enpire policy submit) and pass revision_id, or run through '
                'enpire_evolution.ros.trials_port.TrialsClient, which submits it')
        if not self.wait_ready(10.0):
            raise CellUnavailableError(f'/{self.cell}/run_trials is not available')
        self._check_one_server()
        goal = RunTrials.Goal(
            experiment_id=experiment_id, revision_id=revision_id, count=int(count),
            seeds=[int(s) for s in seeds], seed_start=int(seed_start),
            max_wall_time_s=float(max_wall_time_s), max_episode_steps=int(max_episode_steps),
            max_consecutive_faults=int(max_consecutive_faults), record=bool(record),
            attempts=int(attempts), allow_unconfined=bool(allow_unconfined),
            reset_stage=str(reset_stage))
        cb = (lambda fb: on_feedback(fb.feedback)) if on_feedback else None
        handle = self._send(goal, cb)
        if not handle.accepted:
            raise CellUnavailableError(f'/{self.cell} rejected the run (another run is in '
                                       'progress on this cell)')
        self._goal = handle
        try:
            result = self._wait_result(handle.get_result_async(), timeout_s)
        except KeyboardInterrupt:
            # An interrupted caller (Ctrl-C, a coding agent's budget stop) stops the cell's
            # run too: without a cancel the cell would go on with the remaining trials.
            print(f'run_trials: interrupted; cancelling the run on /{self.cell}',
                  file=sys.stderr, flush=True)
            try:
                wait_future(handle.cancel_goal_async(), 3.0, 'run_trials cancel')
                print('run_trials: the cell accepted the cancel', file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - say it, then stop as asked
                print(f'run_trials: cancel not confirmed: {exc}', file=sys.stderr, flush=True)
            raise
        finally:
            self._goal = None
        if result.error_code:
            raise error_from_code(result.error_code, result.error_msg)
        return result

    def _send(self, goal: Any, feedback_callback: Any) -> Any:
        """Send the goal and wait for its acceptance, again while unanswered for
        ``SEND_FOR_S``: a rollout node that died answers nothing, its respawned successor
        answers the resend (nothing has run while a goal is unanswered)."""
        from enpire_common.ros import resend_until_answered

        def again() -> None:
            print(f'run_trials: /{self.cell} did not answer the goal (a rollout node that '
                  'died?); sending it again', file=sys.stderr, flush=True)
            self.wait_ready(10.0)

        return resend_until_answered(
            lambda: self._client.send_goal_async(goal, feedback_callback=feedback_callback),
            per_try_s=min(10.0, self.SEND_FOR_S), total_s=self.SEND_FOR_S,
            what='run_trials goal', on_resend=again)

    def _check_one_server(self) -> None:
        """Refuse to send a goal that two ``run_trials`` servers would both run.

        Two cells of one name on a domain (on two hosts: one host refuses the second by its
        node-name claim) both accept and run every goal, and record into each other's
        trials. A server that just died can linger in the graph for a while: wait
        ``SERVER_SETTLE_S`` for the count to drop before refusing.
        """
        end = time.monotonic() + self.SERVER_SETTLE_S
        while (n := self._client.servers_answering()) > 1:
            if time.monotonic() > end:
                domain = os.environ.get('ROS_DOMAIN_ID', '0')
                raise CellUnavailableError(
                    f'{n} servers answer /{self.cell}/run_trials on ROS_DOMAIN_ID={domain}: '
                    f'two cells are named {self.cell}; stop one (a cell that just died leaves '
                    'the graph within ~20 s) or give them different names')
            time.sleep(0.25)

    def _wait_result(self, future: Any, timeout_s: float) -> Any:
        """The run's result; a server that leaves the graph mid-run (its node died) raises
        CellUnavailableError instead of waiting for a result that will never come."""
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        end = time.monotonic() + timeout_s
        gone_since: float | None = None
        # On this host the rollout node's claim names its pid: a node that died and was
        # respawned at once (its launch's respawn) never leaves the graph, but its pid changes,
        # and the new node knows nothing of this goal.
        pid = local_cell_pid(self.cell) or None
        while not done.wait(0.5):
            if pid is not None and (now_pid := local_cell_pid(self.cell)) != pid:
                future.cancel()
                again = f'; it runs again as pid {now_pid}' if now_pid else ''
                raise CellUnavailableError(
                    f'/{self.cell}/run_trials: the cell\'s rollout node died during the run '
                    f'(pid {pid}){again}; the trial it was running is closed as aborted on '
                    'the next run; run the same command to resume (restart the cell first, '
                    'enpire up ..., if it does not come back)')
            now = time.monotonic()
            if not self._thread.is_alive():
                future.cancel()
                raise CellUnavailableError(
                    f'/{self.cell}/run_trials: this client\'s ROS executor stopped during the '
                    'run (see the error above); the run\'s result cannot arrive')
            if now > end:
                future.cancel()
                raise EnpireTimeoutError(f'/{self.cell}/run_trials did not finish within '
                                         f'{timeout_s:.0f} s')
            if self._client.server_is_ready():
                gone_since = None
                continue
            gone_since = gone_since if gone_since is not None else now
            if now - gone_since >= self.LOST_AFTER_S:
                future.cancel()
                raise CellUnavailableError(
                    f'/{self.cell}/run_trials left the graph during a run (gone for '
                    f'{now - gone_since:.1f} s): the cell\'s rollout node died; restart the '
                    'cell (enpire up ...) and run the same command to resume')
        return future.result().result

    def cancel(self) -> None:
        if self._goal is not None:
            self._goal.cancel_goal_async()

    def close(self) -> None:
        import rclpy

        self._executor.shutdown(timeout_sec=2.0)
        # Destroyed now, while the cells still run: Node.destroy_node leaves an action client
        # to the garbage collector, which at interpreter exit (after a fleet launch was stopped
        # with SIGKILLs) blocked forever in Fast DDS on a shared-memory port lock that a killed
        # process held; `enpire improve --cells 8` never exited.
        self._client.destroy()
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)
        # The spin thread must be out of rclpy's C++ wait before the interpreter exits: a
        # CLI run once ended in 'terminate called without an active exception' (SIGABRT).
        self._thread.join(timeout=2.0)


@dataclass
class CellStack:
    """Runs ``enpire up <launch> ...`` in the background while in use."""

    launch_file: Path
    args: dict[str, str]
    log_path: Path
    home: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, 'ENPIRE_HOME': str(self.home)}
        cmd = [sys.executable, '-m', 'enpire_bringup.cli', 'up', str(self.launch_file),
               *(f'{k}:={v}' for k, v in self.args.items())]
        with open(self.log_path, 'ab') as log:
            # SIGINT (a clean launch shutdown) if this client dies without stopping it.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True,
                                         preexec_fn=die_with_this_process(signal.SIGINT))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGINT, 20.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


class CellSession:
    """A client for ``cell``, starting ``task``'s sim cell launch (its plugin's
    ``sim_launch``) first when none answers."""

    def __init__(self, *, home: Path, cell: str = 'cell_0', start: bool = True,
                 launch_args: dict[str, str] | None = None, probe_s: float = 3.0,
                 ready_timeout_s: float = 90.0, log: Callable[[str], None] | None = None,
                 task: str = DEFAULT_TASK) -> None:
        self.log = log or (lambda _m: None)
        self.client = RolloutClient(cell)
        self.stack: CellStack | None = None
        # Without the option to start a cell, a running one is the only way on.
        if self.client.wait_ready(probe_s if start else max(probe_s, RUNNING_CELL_WAIT_S)):
            self.log(f'using the running cell /{cell}')
            return
        if not start:
            self.client.close()
            raise CellUnavailableError(f'no cell answers on /{cell}/run_trials')
        if self._wait_for_local_cell(ready_timeout_s):
            return
        self.stack = CellStack(sim_launch_file(task),
                               {'cell': cell, **sim_launch_args(task), **(launch_args or {})},
                               home / 'logs' / f'launch-{cell}.log', home)
        self.log(f'starting the sim cell /{cell} ({self.stack.launch_file.name}); '
                 f'log: {self.stack.log_path}')
        self.stack.start()
        end = time.monotonic() + ready_timeout_s
        while not self.client.wait_ready(1.0):
            if not self.stack.alive():
                log_path, self.stack = self.stack.log_path, None
                # Another client started the same cell a moment earlier: ours refused to run
                # a second /<cell>/rollout (enpire_common.claims); use theirs.
                if self._wait_for_local_cell(ready_timeout_s):
                    return
                self.close()
                raise CellUnavailableError(f'the cell launch exited; see {log_path}')
            if time.monotonic() > end:
                self.close()
                raise EnpireTimeoutError(f'/{cell}/run_trials not ready within '
                                         f'{ready_timeout_s:.0f} s')

    def _wait_for_local_cell(self, timeout_s: float) -> bool:
        """True once a cell whose rollout node runs on this host answers; False if none
        runs here. A loaded host's DDS discovery can outlast the probe: starting a second
        cell then would only have it refuse to run (and before claims, run every goal twice).
        """
        cell = self.client.cell
        pid = local_cell_pid(cell)
        if pid is None:
            return False
        self.log(f'/{cell} runs on this host (pid {pid or "?"}) but has not answered yet; '
                 f'waiting up to {timeout_s:.0f} s for it')
        if self.client.wait_ready(timeout_s):
            self.log(f'using the running cell /{cell}')
            return True
        self.close()
        raise CellUnavailableError(
            f'/{cell} runs on this host (its rollout node, pid {pid or "?"}) but its '
            f'run_trials did not answer within {timeout_s:.0f} s: it is stuck or on another '
            'ROS_DOMAIN_ID / discovery range; stop it and run again')

    def close(self) -> None:
        self.client.close()
        if self.stack is not None:
            self.stack.stop()


#: The node of a cell that serves ``run_trials`` (every sim cell launch names it so).
ROLLOUT_NODE = 'rollout'


def local_cell_pid(cell: str) -> int | None:
    """The pid of ``cell``'s rollout node if one runs on this host and domain (0 if its pid
    is unknown), else None."""
    from enpire_common.claims import claimed_by

    return claimed_by(f'/{cell}/{ROLLOUT_NODE}')


class FleetSession:
    """Clients for several cells, starting ``fleet_sim.launch.yaml cells:=N`` when none answers.

    Args:
        home: ENPIRE_HOME of the launch (logs, runs).
        cells: the cell namespaces (e.g. ``['cell_0', 'cell_1']``); a started launch names
            them cell_0..cell_<N-1>, so pass those names when ``start`` may be needed.
        start: start the fleet launch (``task``'s plugin's ``fleet_launch``) if no cell
            answers (else raise).
        probe_s: how long to look for running cells before starting any.
        ready_timeout_s: how long the started cells may take to answer.

    Raises:
        CellUnavailableError: some but not all cells answer (start or stop the others), or
            none answers and ``start`` is False, or the launch exited.
        EnpireTimeoutError: the started cells did not answer in time.
    """

    def __init__(self, *, home: Path, cells: Sequence[str], start: bool = True,
                 launch_args: dict[str, str] | None = None, probe_s: float = 3.0,
                 ready_timeout_s: float = 180.0,
                 log: Callable[[str], None] | None = None, task: str = DEFAULT_TASK) -> None:
        self.log = log or (lambda _m: None)
        self.cells = list(cells)
        self.clients = [RolloutClient(c) for c in self.cells]
        self.stack: CellStack | None = None
        ready = [self.clients[0].wait_ready(probe_s if start
                                            else max(probe_s, RUNNING_CELL_WAIT_S))]
        ready += [c.wait_ready(1.0) for c in self.clients[1:]]
        running_here = [local_cell_pid(c) is not None for c in self.cells]
        if any(ready) or any(running_here) or not start:
            # A running fleet is expected: every cell gets the discovery time before it counts
            # as missing. (The first cell alone deciding once let a loaded host whose cell_0
            # was discovered after the probe, but cell_1 within its second, refuse a fleet
            # whose cells all ran.) A cell whose rollout node runs on this host is there for
            # sure: it gets the whole ready timeout.
            now = time.monotonic()
            ends = [now + (ready_timeout_s if here else max(probe_s, RUNNING_CELL_WAIT_S))
                    for here in running_here]
            ready = [ok or c.wait_ready(max(0.5, end - time.monotonic()))
                     for c, ok, end in zip(self.clients, ready, ends, strict=True)]
        if all(ready):
            self.log(f"using the running cells {', '.join(self.cells)}")
            return
        if any(ready) or any(running_here) or not start:
            missing = [c for c, ok in zip(self.cells, ready, strict=True) if not ok]
            self.close()
            raise CellUnavailableError(
                f"no run_trials on {', '.join('/' + c for c in missing)}"
                + (' while other cells run: start the missing cells or stop the running ones'
                   if any(ready) else ''))
        self.stack = CellStack(sim_launch_file(task, fleet=True),
                               {'cells': str(len(self.cells)), **sim_launch_args(task),
                                **(launch_args or {})},
                               home / 'logs' / 'launch-fleet.log', home)
        self.log(f'starting {len(self.cells)} sim cells ({self.stack.launch_file.name}); '
                 f'log: {self.stack.log_path}')
        self.stack.start()
        end = time.monotonic() + ready_timeout_s
        for cell, client in zip(self.cells, self.clients, strict=True):
            while not client.wait_ready(1.0):
                if not self.stack.alive():
                    path = self.stack.log_path
                    self.close()
                    raise CellUnavailableError(f'the fleet launch exited; see {path}')
                if time.monotonic() > end:
                    self.close()
                    raise EnpireTimeoutError(f'/{cell}/run_trials not ready within '
                                             f'{ready_timeout_s:.0f} s')

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients = []
        if self.stack is not None:
            self.stack.stop()
