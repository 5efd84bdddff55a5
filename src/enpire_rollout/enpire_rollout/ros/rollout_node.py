"""The rollout node: ``run_trials`` runs budgeted trials of a policy revision on its cell.

Per trial: reset (``reset_cell``, verified) -> the revision's policy host drives the cell
through the safety supervisor -> success polled with ``verify_success`` -> final verdict with
the cell holding -> the recorder closes ``episode.mcap`` + MP4 + ``trial.json`` -> a
``TrialResult`` on ``trial_events`` and in the run's feedback and result. The node records
nothing in the experiment store: evolution does, from those results
(``enpire_evolution.ros.trials_port``). A run that records watches the free space of its
records' disk (:mod:`enpire_rollout.core.disk`): it pauses the cell with an ``alerts``
message before the disk fills.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from enpire_common.alerts import SEVERITY_ERROR, SEVERITY_WARNING, Alert
from enpire_common.clock import SystemClock
from enpire_common.config import require
from enpire_common.confinement import require_confinement, unconfined_allowed
from enpire_common.errors import OK, CellBusyError, ConfigError, EnpireError
from enpire_common.paths import enpire_home, revision_policy_dir
from enpire_common.ros import ALERT_QOS, declare_config, run_node
from enpire_common.tasks import DEFAULT_TASK, load_task, verify_contract
from enpire_interfaces.action import RunTrials
from enpire_interfaces.msg import Alert as AlertMsg
from enpire_interfaces.msg import TrialResult
from enpire_rollout.core.config import DiskSpaceConfig
from enpire_rollout.core.disk import DISK_LOW, DiskGuard, config_from_env
from enpire_rollout.core.trial import (
    BudgetConfig,
    NullRecorder,
    TrialRecord,
    TrialRunner,
    seed_sequence,
)
from enpire_rollout.ros.conversions import trial_to_msg
from enpire_rollout.ros.ports import RosCell, RosController, RosVerifier


@dataclass(frozen=True)
class RolloutConfig:
    """Parameters of the rollout node (``budget.*`` are defaults a goal may override)."""

    task: str = DEFAULT_TASK
    home: str = ''                  # ENPIRE_HOME override ('' = $ENPIRE_HOME or ./runs)
    cell_id: str = ''               # '' = the node's namespace
    # RunTrials.record is a plain bool, so "unset" reads as false: the node honours it as given
    # (RolloutClient sends true unless asked not to); force_record records every trial anyway.
    force_record: bool = False
    host_start_timeout_s: float = 60.0
    verify_timeout_s: float = 10.0
    stall_timeout_s: float = 15.0   # no new state for this long ends the trial as aborted
    # The cell steps only on commands (clock_mode lockstep): hold it on each verdict's tick
    # (trial.Checkpoints), so where an episode ends does not depend on the verifier's speed.
    lockstep: bool = False
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    record: DiskSpaceConfig = field(default_factory=DiskSpaceConfig)   # the disk guard

    def __post_init__(self) -> None:
        require(self.host_start_timeout_s > 0, 'host_start_timeout_s',
                self.host_start_timeout_s, 'must be > 0 seconds')
        require(self.verify_timeout_s > 0, 'verify_timeout_s', self.verify_timeout_s,
                'must be > 0 seconds')
        require(self.stall_timeout_s > 0, 'stall_timeout_s', self.stall_timeout_s,
                'must be > 0 seconds')


class RolloutNode(Node):
    """Runs budgeted trials of one policy revision at a time on its cell.

    Action server: ``run_trials`` (enpire_interfaces/RunTrials): revision_id (the full id
        of a revision under ``<home>/revisions``; a goal with policy_dir is refused: clients
        submit the directory first), count, seeds / seed_start, budget fields (0 = the
        node's ``budget.*`` default), record (honoured as given: false writes no
        bag/video/trial.json; a raw goal that leaves it unset records nothing unless
        ``force_record``). Feedback per phase and per finished trial; cancel stops after
        making the cell safe (the open trial ends ``aborted``).
    Publishes: ``trial_events`` (TrialResult), ``policy/control`` (to the policy host),
        ``safety/reset`` (to the supervisor, at each episode start), ``alerts``
        (enpire_interfaces/Alert, reliable, transient local: ``disk_low`` ERROR when the
        records' disk is too full to start or go on recording a trial, ``disk_ok`` INFO
        when a trial may start again).
    Subscribes: ``state``, ``policy/status``, ``safety/events``.
    Uses: ``reset_cell`` (action), ``verify_success`` (service), the recorder
        (``recorder/control`` / ``recorder/status``), and starts one ``policy_host`` process
        per revision under test.
    Parameters (RolloutConfig): task, home, cell_id, force_record,
        host_start_timeout_s, verify_timeout_s, lockstep (the launch sets it from the
        cell's clock_mode), budget.max_wall_time_s,
        budget.max_consecutive_faults, budget.max_episode_steps, budget.max_episode_time_s,
        budget.verify_period_s, budget.reset_timeout_s, record.min_free_mb (MB; a trial
        starts only with this much free on the records' filesystem; 0 = unwatched;
        ``$ENPIRE_MIN_FREE_MB`` overrides it), record.abort_free_mb (MB; a recording stops
        early below it), record.check_period_s (s).

    Disk guard: a run that records checks the free space of ``home``'s filesystem before
    each trial and about once a second while recording (:mod:`enpire_rollout.core.disk`).
    Too little: the trial is not started (or its recording stops early, the trial ending
    ``aborted``, truncated by disk), a ``disk_low`` alert is published, and the run ends
    with stop_reason ``disk_low`` (error_code 0; error_msg says free and needed MB and the
    path).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('rollout', **kwargs)
        self.config = declare_config(self, RolloutConfig)
        self.task = load_task(self.config.task)
        self.home = enpire_home(self.config.home or None)
        self.cell_id = self.config.cell_id or self.get_namespace().strip('/') or 'cell_0'
        self._group = ReentrantCallbackGroup()
        self._busy = threading.Lock()
        self._events = self.create_publisher(TrialResult, 'trial_events', 100)
        self._alerts = self.create_publisher(AlertMsg, 'alerts', ALERT_QOS)
        self.disk = DiskGuard(self.home, config_from_env(self.config.record),
                              clock=SystemClock(), on_alert=self._raise_alert)
        self.cell = RosCell(self, self._group)
        self.verifier = RosVerifier(self, self._group, self.config.verify_timeout_s)
        self._listener = _Listener(self)
        self.controller = RosController(
            self, self._group, task=self.task.name, log_dir=self.home / 'logs' / self.cell_id,
            start_timeout_s=self.config.host_start_timeout_s,
            stall_timeout_s=self.config.stall_timeout_s, listen_node=self._listener.node,
            holds=self.config.lockstep)
        self._listener.start()
        from enpire_rollout.ros.recorder_node import RecorderClient

        self.recorder = RecorderClient(self, runs_root=self.home)
        self._server = ActionServer(self, RunTrials, 'run_trials', self._execute,
                                    goal_callback=self._on_goal,
                                    cancel_callback=self._on_cancel,
                                    callback_group=self._group)

    # -- action ------------------------------------------------------------------------------
    def _on_cancel(self, _goal_handle: Any) -> CancelResponse:
        self.get_logger().info('run_trials: cancel requested; the run stops after making the '
                               'cell safe')
        return CancelResponse.ACCEPT

    def _on_goal(self, goal: RunTrials.Goal) -> GoalResponse:
        if self._busy.locked():
            self.get_logger().warning('run_trials rejected: a run is in progress')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle: Any) -> RunTrials.Result:
        result = RunTrials.Result()
        if not self._busy.acquire(blocking=False):
            err = CellBusyError('a run is already in progress on this cell')
            result.error_code, result.error_msg = err.code, str(err)
            goal_handle.abort()
            return result
        try:
            return self._run(goal_handle, result)
        except EnpireError as err:
            result.error_code, result.error_msg = err.code, str(err)
            self.get_logger().error(f'run_trials failed: {err}')
            goal_handle.abort()
            return result
        except Exception as exc:  # noqa: BLE001 - never let a run kill the executor thread
            result.error_code, result.error_msg = 1, f'internal error: {exc!r}'
            self.get_logger().error(f'run_trials crashed: {exc!r}')
            goal_handle.abort()
            return result
        finally:
            self._busy.release()

    def _budget(self, goal: RunTrials.Goal) -> BudgetConfig:
        d = self.config.budget
        return BudgetConfig(
            max_trials=0,
            max_wall_time_s=goal.max_wall_time_s or d.max_wall_time_s,
            max_consecutive_faults=goal.max_consecutive_faults or d.max_consecutive_faults,
            max_episode_steps=goal.max_episode_steps or d.max_episode_steps,
            max_episode_time_s=goal.max_episode_time_s or d.max_episode_time_s,
            verify_period_s=goal.verify_period_s or d.verify_period_s,
            reset_timeout_s=d.reset_timeout_s,
            attempts=max(1, int(goal.attempts)), reset_stage=str(goal.reset_stage))

    def _run(self, goal_handle: Any, result: RunTrials.Result) -> RunTrials.Result:
        goal = goal_handle.request
        count = goal.count or len(goal.seeds)
        if count <= 0:
            raise ConfigError('count=0 is invalid: ask for at least one trial (or give seeds)')
        budget = self._budget(goal)
        verify_contract(self.task, self.home)
        self._check_confinement(bool(goal.allow_unconfined))
        revision_id, revision_dir = self._resolve_revision(goal)
        experiment = goal.experiment_id or 'default'
        self._recover_open(experiment, 'a crash')
        try:
            self.controller.load(revision_id, str(revision_dir))
        except EnpireError as err:
            # Every trial will then record the fault (budget stops the run).
            self.get_logger().error(f'policy host for {revision_id[:12]} failed to start: '
                                    f'{err}')
        feedback = RunTrials.Feedback(total=count)
        n_success = 0

        def on_phase(index: int, phase: str) -> None:
            feedback.trial_index, feedback.phase = index, phase
            goal_handle.publish_feedback(feedback)

        def on_trial(record: TrialRecord) -> None:
            nonlocal n_success
            n_success += record.success
            if record.record_dir and not record.success:
                self._close_if_left_open(record, experiment)
            msg = trial_to_msg(record)
            self._events.publish(msg)
            feedback.n_success, feedback.last, feedback.phase = n_success, msg, 'done'
            goal_handle.publish_feedback(feedback)

        record = bool(goal.record) or self.config.force_record
        runner = TrialRunner(
            cell=self.cell, controller=self.controller, verifier=self.verifier,
            recorder=self.recorder if record else NullRecorder(), clock=SystemClock(),
            control_rate_hz=self.task.action.rate_hz, wall_time=time.time,
            on_trial=on_trial, on_phase=on_phase,
            cancelled=lambda: goal_handle.is_cancel_requested, stages=self.task.stages,
            space=self.disk if record else None)
        seeds = seed_sequence(list(goal.seeds) or None, int(goal.seed_start), count)
        summary = runner.run(experiment_id=experiment, revision_id=revision_id,
                             cell_id=self.cell_id, task=self.task.name, seeds=seeds,
                             budget=budget)
        result.trials = [trial_to_msg(t) for t in summary.trials]
        result.n_success = summary.n_success
        result.success_rate = summary.success_rate
        result.ci_low, result.ci_high = summary.interval()
        result.stop_reason = summary.stop_reason
        if budget.attempts > 1:
            result.pass_at_1 = summary.pass_at(1)
            result.pass_at_k = summary.pass_at(budget.attempts)
        result.error_code, result.error_msg = OK, ''
        if summary.stop_reason == DISK_LOW:
            # Not an error of the run (its trials stand): why it stopped early, for people.
            result.error_msg = summary.stop_detail
        if summary.stop_reason == 'cancelled':
            goal_handle.canceled()
        else:
            goal_handle.succeed()
        return result

    def _raise_alert(self, alert: Alert) -> None:
        """Publish an alert on ``alerts`` and log it at its severity."""
        msg = AlertMsg(cell_id=self.cell_id, source=self.get_name(), kind=alert.kind,
                       severity=alert.severity, failures=alert.failures, detail=alert.detail)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._alerts.publish(msg)
        log, text = self.get_logger(), f'ALERT {alert.kind}: {alert.detail}'
        if alert.severity >= SEVERITY_ERROR:
            log.error(text)
        elif alert.severity == SEVERITY_WARNING:
            log.warning(text)
        else:
            log.info(text)

    def _close_if_left_open(self, record: TrialRecord, experiment: str) -> None:
        """A recorder that died mid-trial (its respawned successor knows nothing of it) left
        the trial's record open: close it now (``aborted``, its bag made readable) rather
        than at the experiment's next goal, so no reader sees it running meanwhile."""
        from enpire_rollout.core.records import read_trial

        try:
            if read_trial(record.record_dir).get('outcome') != 'running':
                return
        except EnpireError:
            return
        self._recover_open(experiment, 'its recorder')

    def _recover_open(self, experiment: str, by: str) -> None:
        """Close the experiment's open trials whose writer is gone (aborted, bags made
        readable), in a child process: a bag rebuild's buffers stay out of this long-lived
        node, and a bag that breaks the reader cannot take it down. A failed rebuild is
        logged; those trials stay open and the next goal tries again."""
        from enpire_rollout.core.records import recover_incomplete

        try:
            marked = recover_incomplete(self.home / experiment, now_unix_s=time.time(),
                                        isolated=True)
        except EnpireError as err:
            self.get_logger().error(str(err))
            return
        for trial_id in marked:
            self.get_logger().warning(f'trial {trial_id} was left open by {by}: aborted')

    def _check_confinement(self, allow: bool) -> None:
        """Refuse (UnconfinedError) to run policy code unconfined unless allowed."""
        found = require_confinement('auto', allow)
        if not found.confined:
            self.get_logger().warning(f'running policy code UNCONFINED ({found.detail}); '
                                      'trial records say so')
        self.controller.set_allow_unconfined(unconfined_allowed(allow))

    def _resolve_revision(self, goal: RunTrials.Goal) -> tuple[str, Path]:
        """The goal's revision id and its snapshot directory under ``<home>/revisions``."""
        if goal.policy_dir:
            raise ConfigError(
                f'policy_dir={goal.policy_dir!r}: the rollout node runs stored revisions only; '
                'submit the directory first (enpire policy submit, or a client that submits, '
                'e.g. enpire_evolution.ros.trials_port.TrialsClient) and send its revision_id')
        if not goal.revision_id:
            raise ConfigError('give revision_id: the full id of a submitted revision '
                              '(enpire policy submit DIR prints it)')
        return goal.revision_id, revision_policy_dir(self.home, goal.revision_id)

    def destroy_node(self) -> None:
        self.controller.close()
        self._listener.close()
        super().destroy_node()


class _Listener:
    """A helper node ``<name>_listener`` in the same namespace, spun by its own thread on the
    events executor: the per-tick ``state`` stream of a lockstep cell (tens of messages a
    second) costs a fraction of the CPU there that it costs on the multi-threaded executor
    the action server needs. Its callbacks only update state under locks."""

    def __init__(self, owner: Node) -> None:
        from enpire_common.ros import make_fast_executor

        self._context = owner.context
        # A launch names the process's node with a global remap (__node:=rollout), which
        # renames every node of the process: without a remap of its own this one would be a
        # second /<cell>/rollout in the graph, sharing its rosout publisher (rcl warns, and
        # the rollout's logs stop reaching /rosout when either is destroyed).
        name = f'{owner.get_name()}_listener'
        self.node = Node(name, namespace=owner.get_namespace(), context=owner.context,
                         cli_args=['--ros-args', '-r', f'__node:={name}'])
        self._executor = make_fast_executor(context=owner.context)
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name='rollout-listener',
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self._context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.2)
            except (ExternalShutdownException, KeyboardInterrupt):
                return
            except Exception as exc:  # noqa: BLE001 - one bad callback must not deafen the node
                # An exception out of a callback would end this thread: the rollout would
                # then hear no state and no policy status for the rest of its life.
                if self._stop.is_set() or not self._context.ok():
                    return
                self.node.get_logger().error(f'listener callback failed: {exc!r}',
                                             throttle_duration_sec=5.0)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._executor.shutdown()
        self.node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    # Several threads: run_trials blocks on futures other callbacks complete.
    return run_node('rollout', RolloutNode, argv, executor='multi')


if __name__ == '__main__':
    sys.exit(main())
