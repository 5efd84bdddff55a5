"""ROS implementations of the trial runner's ports (cell, controller, verifier).

Each port is called from the rollout's action thread and waits on futures / conditions fed by
the node's executor threads; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty, String

from enpire_common.errors import (
    OK,
    CellUnavailableError,
    EnpireTimeoutError,
    PolicyFaultError,
    ResetFailedError,
    VerificationError,
    error_from_code,
)
from enpire_common.process import die_with_this_process
from enpire_common.ros import (
    ActionClient,
    resend_until_answered,
    wait_for_service,
    wait_future,
)
from enpire_interfaces.action import ResetCell
from enpire_interfaces.msg import SafetyEvent, StateVector
from enpire_interfaces.srv import VerifySuccess
from enpire_rollout.core.trial import (
    Checkpoints,
    EpisodeTicks,
    Progress,
    ResetInfo,
    VerifyOutcome,
)
from enpire_rollout.ros.conversions import stamp_s, verdict_to_dict

#: a held cell that has not stepped this long after a resume is sent it again
RESUME_AGAIN_S = 1.0
#: how long a verdict waits for the frame of the tick it judges (a lockstep checkpoint)
FRESH_FRAME_WAIT_S = 0.5

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: Episode control is never latched (a restarted host must not act on a stale start).
CONTROL = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
#: Per-episode counters of the policy host's ``stopped`` status, kept in trial.json.
HOST_COUNTERS = ('late_acts', 'resent_commands')
#: ...and the task tools' per-episode accounting (``tool_calls``, ``tool_ms``, per tool).
TOOL_COUNTER_PREFIX = 'tool_'


#: How long a reset goal may wait to be accepted before it is sent again (RosCell._send).
SEND_TIMEOUT_S = 5.0
#: verify_success calls before a verdict counts as unreadable (RosVerifier.verify).
VERIFY_CALLS = 3


class RosCell:
    """CellPort over the cell's ``reset_cell`` action."""

    def __init__(self, node: Node, group: ReentrantCallbackGroup,
                 server_timeout_s: float = 15.0) -> None:
        self._node = node
        self._client = ActionClient(node, ResetCell, 'reset_cell', callback_group=group)
        self._server_timeout_s = server_timeout_s

    def reset(self, seed: int, timeout_s: float, stage: str = '') -> ResetInfo:
        goal = ResetCell.Goal(seed=int(seed), timeout_s=float(timeout_s), stage=stage)
        handle = self._send(goal)
        if not handle.accepted:
            raise CellUnavailableError('reset_cell rejected the goal (cell busy?)')
        result = wait_future(handle.get_result_async(), timeout_s + 5.0, 'reset_cell').result
        if result.error_code != OK or not result.success:
            err = error_from_code(result.error_code or 202, result.error_msg or 'reset failed')
            if isinstance(err, ResetFailedError):
                raise err
            raise ResetFailedError(f'reset failed: {err}') if result.error_code in (0, 202) \
                else err
        return ResetInfo(tuple(result.start_pose), tuple(result.observed_pose),
                         int(result.attempts), str(result.method),
                         tuple(str(r) for r in result.retried_after))

    def _send(self, goal: Any) -> Any:
        """Send the goal, again while unanswered for ``server_timeout_s``: a reset server
        that died answers nothing, its respawned successor answers the resend (no reset has
        started while the goal is unanswered). See :func:`resend_until_answered`."""
        return resend_until_answered(
            lambda: self._client.send_goal_async(goal), per_try_s=SEND_TIMEOUT_S,
            total_s=self._server_timeout_s, what='reset_cell goal',
            before_try=lambda left: wait_for_service(self._client, left,
                                                     'reset_cell action server'),
            on_resend=lambda: self._node.get_logger().warning(
                'reset_cell did not answer a goal (a server that died?); sending it again'))

    def make_safe(self) -> None:
        # Commands only flow while an episode is enabled; with the policy host stopped, a
        # lockstep cell does not step and a real-time cell holds its last target.
        return None


class RosVerifier:
    """VerifierPort over the cell's ``verify_success`` service."""

    def __init__(self, node: Node, group: ReentrantCallbackGroup, timeout_s: float = 10.0) -> None:
        self._client = node.create_client(VerifySuccess, 'verify_success', callback_group=group)
        self._timeout_s = timeout_s

    def verify(self, not_before_s: float | None = None) -> VerifyOutcome:
        req = VerifySuccess.Request(goal=VerifySuccess.Request.GOAL_SUCCESS)
        end = time.monotonic() + FRESH_FRAME_WAIT_S
        while True:
            # Verifying twice is harmless (it only reads the cameras): a verifier that died
            # is asked again, and its respawned successor answers (VERIFY_CALLS tries).
            res = resend_until_answered(
                lambda: self._client.call_async(req), per_try_s=self._timeout_s,
                total_s=(VERIFY_CALLS - 0.5) * self._timeout_s, what='verify_success',
                before_try=lambda _left: wait_for_service(self._client, self._timeout_s,
                                                          'verify_success service'))
            # A frame older than the tick asked for was judged (the tick's frame is still
            # on its way to the verifier): ask again, briefly; a camera that publishes
            # less often than the state never gets there, and its latest frame is judged.
            stale = (not_before_s is not None and res.error_code == OK
                     and any(t < not_before_s - 1e-6 for t in res.frame_stamps_s))
            if not stale or time.monotonic() > end:
                break
            time.sleep(0.01)
        if res.error_code != OK:
            err = error_from_code(res.error_code, res.error_msg)
            raise err if isinstance(err, VerificationError) else VerificationError(str(err))
        return VerifyOutcome(bool(res.success), float(res.score),
                             tuple(verdict_to_dict(v) for v in res.verdicts),
                             invalid=bool(res.invalid), stages=tuple(res.stages))


def _policy_host_executable() -> str:
    from ament_index_python.packages import get_package_prefix

    exe = Path(get_package_prefix('enpire_agent_bridge')) / 'lib' / 'enpire_agent_bridge' / \
        'policy_host'
    if not exe.exists():
        raise CellUnavailableError(f'policy_host executable not found at {exe}; run '
                                   'scripts/setup.sh to build the workspace')
    return str(exe)


class RosController:
    """ControllerPort: one policy host process per revision, gated per episode.

    The host process is started for a revision (``load``) and kept across that revision's
    trials; ``start_episode`` resets the policy with the trial's seed and enables it,
    ``stop_episode`` disables it. Progress comes from the cell's ``state`` ticks, the host's
    ``policy/status`` and the supervisor's ``safety/events``.
    """

    def __init__(self, node: Node, group: ReentrantCallbackGroup, *, task: str,
                 log_dir: Path, start_timeout_s: float = 60.0, stall_timeout_s: float = 15.0,
                 extra_params: dict[str, Any] | None = None,
                 listen_node: Node | None = None, holds: bool = False) -> None:
        self._node = node
        self.holds = holds
        self.task = task
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self._last_tick_t = time.monotonic()
        self.extra_params = extra_params or {}
        self._cond = threading.Condition()
        self._tick = -1
        self._tick0 = 0
        self._stamp_s: float | None = None      # the latest state's header stamp
        self._resumed: tuple[int, float] | None = None   # (held tick, monotonic time sent)
        self._ticks = EpisodeTicks()
        self._restarted = ''
        self._state_topic = node.resolve_topic_name('state')
        self._publishers: set[bytes] = set()     # the state stream's writers at episode start
        self._publishers_checked = 0.0
        self._status: dict[str, Any] = {}
        self._abort: str | None = None
        self._episode = ''
        self._episode_started_ns = 0
        self._proc: subprocess.Popen | None = None
        self._revision_id = ''
        self._revision_dir = ''
        self.allow_unconfined = False
        self._confinement = 'unknown'
        self._episode_denials: dict[str, Any] = {}
        self._control = node.create_publisher(String, 'policy/control', CONTROL)
        self._safety_reset = node.create_publisher(Empty, 'safety/reset', 10)
        # ``listen_node`` (same namespace, its own fast executor) takes the per-tick state
        # stream off the caller's multi-threaded executor, whose per-message overhead cost
        # more CPU than anything the rollout does with a tick.
        sub_node = listen_node or node
        sub_group = None if listen_node is not None else group
        sub_node.create_subscription(StateVector, 'state', self._on_state, LATCHED,
                                     callback_group=sub_group)
        sub_node.create_subscription(String, 'policy/status', self._on_status, LATCHED,
                                     callback_group=sub_group)
        sub_node.create_subscription(SafetyEvent, 'safety/events', self._on_safety, 50,
                                     callback_group=sub_group)

    # -- subscriptions -----------------------------------------------------------------------
    def _on_state(self, msg: StateVector) -> None:
        with self._cond:
            if int(msg.tick) != self._tick:
                self._last_tick_t = time.monotonic()
            self._tick = int(msg.tick)
            self._stamp_s = stamp_s(msg.header.stamp)
            if self._episode and not self._restarted:
                self._restarted = self._ticks.observe(self._tick)
            self._cond.notify_all()

    def _on_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(status, dict):
            return
        with self._cond:
            if status.get('revision_id') == self._revision_id:
                self._status = status
                if isinstance(status.get('confinement'), str):
                    self._confinement = status['confinement']
                self._cond.notify_all()

    def _on_safety(self, msg: SafetyEvent) -> None:
        if msg.action != SafetyEvent.ACTION_ABORTED:
            return
        with self._cond:
            if self._episode:
                self._abort = msg.detail or f'safety rule {msg.kind} aborted the trial'
                self._cond.notify_all()

    # -- host process ------------------------------------------------------------------------
    @property
    def tick(self) -> int:
        with self._cond:
            return self._tick

    def set_allow_unconfined(self, allow: bool) -> None:
        """Whether hosts may run policy code unconfined (restarts a host started otherwise)."""
        if bool(allow) != self.allow_unconfined:
            self.unload()
        self.allow_unconfined = bool(allow)
        self.extra_params['sandbox.allow_unconfined'] = 'true' if allow else 'false'

    def load(self, revision_id: str, revision_dir: str) -> None:
        """Make ``revision_id`` the hosted revision (starts its host process if needed)."""
        if self._proc is not None and self._proc.poll() is None \
                and revision_id == self._revision_id:
            return
        self.unload()
        self._revision_id, self._revision_dir = revision_id, revision_dir
        self._spawn()

    def _spawn(self) -> None:
        ns = self._node.get_namespace()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        params = {'revision_dir': self._revision_dir, 'revision_id': self._revision_id,
                  'task': self.task, 'log_dir': str(self.log_dir / self._revision_id[:16]),
                  **self.extra_params}
        cmd = [_policy_host_executable(), '--ros-args', '-r', f'__ns:={ns}']
        for k, v in params.items():
            cmd += ['-p', f'{k}:={v}']
        with self._cond:
            self._status = {}
        out = open(self.log_dir / f'policy_host-{self._revision_id[:16]}.log', 'ab')  # noqa: SIM115
        try:
            # Its own session (killed as a group) and tied to this node's life: a SIGKILLed
            # rollout must not leave a policy host driving the cell.
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=die_with_this_process(signal.SIGINT))
        finally:
            out.close()
        try:
            self._await_status(('ready', 'fault'), self.start_timeout_s, 'policy host start')
        except EnpireTimeoutError as err:
            # A host that never said ready is useless and must not be reused by the next
            # trial (which would wait on it again): kill it, say what was heard from it.
            heard = self._status.get('state')
            alive = self._proc is not None and self._proc.poll() is None
            dumped = self._dump_stacks('no ready status') if alive else ''
            self.unload()
            raise EnpireTimeoutError(
                f'{err} (last status heard: {heard or "none"}; the process was '
                f'{"alive" if alive else "gone"}: killed; the next trial starts a new one'
                f'{dumped})') from None
        if self._status.get('state') == 'fault':
            raise PolicyFaultError(self._status.get('reason') or 'policy host failed to start')

    def _await_status(self, states: tuple[str, ...], timeout_s: float, what: str,
                      episode: str | None = None) -> None:
        end = time.monotonic() + timeout_s
        with self._cond:
            while True:
                st = self._status
                if st.get('state') in states and (episode is None or st.get('state') == 'fault'
                                                  or st.get('episode') == episode):
                    return
                if self._proc is not None and self._proc.poll() is not None:
                    raise PolicyFaultError(
                        f'policy host exited with code {self._proc.returncode} during {what}')
                left = end - time.monotonic()
                if left <= 0:
                    raise EnpireTimeoutError(f'{what}: no answer from the policy host within '
                                             f'{timeout_s:.0f} s')
                self._cond.wait(min(left, 0.2))

    def _dump_stacks(self, why: str) -> str:
        """Append py-spy's dump of the silent host's threads to its log (where it waits is
        why it did not answer); returns '; its stacks are in <log>' or ''."""
        proc = self._proc
        exe = shutil.which('py-spy') or str(Path(sys.executable).with_name('py-spy'))
        if proc is None or proc.poll() is not None or not Path(exe).exists():
            return ''
        try:
            out = subprocess.run([exe, 'dump', '--pid', str(proc.pid)], capture_output=True,
                                 text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return ''
        log = self.log_dir / f'policy_host-{self._revision_id[:16]}.log'
        try:
            with log.open('a') as f:
                f.write(f'\n--- {why}: py-spy dump of the policy host (pid {proc.pid})\n'
                        f'{out.stdout}{out.stderr}\n')
        except OSError:
            return ''
        return f'; its stacks are in {log}'

    def unload(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=5.0)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5.0)

    def _send(self, op: str, **payload: Any) -> None:
        end = time.monotonic() + 10.0
        while self._control.get_subscription_count() == 0:
            if time.monotonic() > end:
                raise EnpireTimeoutError('the policy host does not subscribe policy/control')
            time.sleep(0.01)
        self._control.publish(self._control_msg(op, **payload))

    def _control_msg(self, op: str, **payload: Any) -> String:
        return String(data=json.dumps({'op': op, 'revision_id': self._revision_id, **payload}))

    # -- ControllerPort ----------------------------------------------------------------------
    def start_episode(self, seed: int, retry_index: int = 0,
                      checkpoints: Checkpoints | None = None) -> None:
        if self._proc is None or self._proc.poll() is not None \
                or self._status.get('state') not in ('ready', 'running', 'stopped'):
            # The host died (killed?), its policy faulted in the last trial, or it never
            # said ready: every trial starts with a fresh host, so one fault never leaks
            # into the next trial.
            self.unload()
            self._spawn()
        episode = uuid.uuid4().hex[:12]
        with self._cond:
            self._abort = None
            self._episode = episode
            self._restarted = ''
            self._ticks.start()
            self._publishers = self._state_writers()
            self._last_tick_t = time.monotonic()
            # Steps count from here: a pass@k retry continues the scene (no reset).
            self._tick0 = max(self._tick, 0) if retry_index else 0
            self._resumed = None
            holds: dict[str, int] = {}
            if self.holds:
                # A lockstep cell: its episode starts on tick 0 after a reset (never on a
                # state left from before it) and stands still on each checkpoint.
                holds = {} if retry_index else {'first_tick': 0}
                if checkpoints is not None:
                    holds.update(hold_from=self._tick0, hold_every=int(checkpoints.every),
                                 hold_at=self._tick0 + int(checkpoints.last))
        self._safety_reset.publish(Empty())
        # Control messages are volatile: one sent while the host's subscription is only half
        # matched is lost. Resend until acknowledged (the host treats a repeat as a no-op).
        for attempt in range(10):
            self._send('start', seed=int(seed), episode=episode, retry_index=int(retry_index),
                       **holds)
            try:
                self._await_status(('running', 'fault'), 1.0, 'episode start', episode=episode)
                break
            except EnpireTimeoutError as err:
                if attempt == 9:
                    # A host that does not answer is not reused: the next trial starts anew.
                    heard = self._status.get('state')
                    dumped = self._dump_stacks('no answer to episode start')
                    self.unload()
                    raise EnpireTimeoutError(f'{err} 10 times (last status heard: '
                                             f'{heard or "none"}; host killed{dumped})'
                                             ) from None
        if self._status.get('state') == 'fault':
            raise PolicyFaultError(self._status.get('reason') or 'policy faulted in reset')

    def poll(self, timeout_s: float) -> Progress:
        end = time.monotonic() + timeout_s
        with self._cond:
            last = self._tick
            while True:
                if self._status.get('state') == 'fault':
                    return self._progress(fault=self._status.get('reason')
                                    or 'policy fault')
                if self._abort:
                    return self._progress(safety_abort=self._abort)
                if not self._restarted:
                    self._restarted = self._new_state_writer()
                if self._restarted:
                    return self._progress(cell_lost=self._restarted)
                if self._proc is None or self._proc.poll() is not None:
                    code = None if self._proc is None else self._proc.returncode
                    return self._progress(
                        cell_lost=f'policy host process died (exit code {code})')
                if self._tick != last:
                    return self._progress()
                resumed = self._resumed
                if resumed is not None and resumed[0] == self._tick \
                        and time.monotonic() - resumed[1] > RESUME_AGAIN_S:
                    self._resumed = (self._tick, time.monotonic())
                    self._control.publish(self._control_msg(
                        'resume', episode=self._episode, tick=self._tick))
                stalled_s = time.monotonic() - self._last_tick_t
                if stalled_s > self.stall_timeout_s:
                    return self._progress(cell_lost=(
                        f'cell stalled: no new state for {stalled_s:.0f} s at step '
                        f'{self._tick} (lost command or dead cell/supervisor)'))
                left = end - time.monotonic()
                if left <= 0:
                    return self._progress()
                self._cond.wait(min(left, 0.1))

    def _steps(self) -> int:
        return max(self._tick - self._tick0, 0)

    def _progress(self, **why: str) -> Progress:
        return Progress(self._steps(), stamp_s=self._stamp_s, **why)

    def resume(self) -> None:
        """Release the checkpoint the cell is held at (lockstep); poll sends it again while
        the cell stays on that tick (a lost control message)."""
        if not self.holds:
            return
        with self._cond:
            tick, episode = self._tick, self._episode
            self._resumed = (tick, time.monotonic())
            self._last_tick_t = time.monotonic()    # the hold was not a stall
        self._send('resume', episode=episode, tick=tick)

    def _state_writers(self) -> set[bytes]:
        try:
            infos = self._node.get_publishers_info_by_topic(self._state_topic)
        except Exception:  # noqa: BLE001 - a graph query during shutdown; nothing to compare
            return set()
        return {bytes(i.endpoint_gid) for i in infos}

    def _new_state_writer(self) -> str:
        """Why the episode is void when a new writer of the state stream appeared since it
        started (twice a second at most), else ''. A cell node that died and was respawned
        writes from a new endpoint; when this node discovers it late, the policy host may
        already have stepped the fresh scene past the tick the episode had reached, so a
        tick going back (EpisodeTicks) is never seen."""
        now = time.monotonic()
        if not self._episode or not self._publishers or now - self._publishers_checked < 0.5:
            return ''
        self._publishers_checked = now
        if self._state_writers() - self._publishers:
            return ('cell restarted mid-episode: a new writer of its state stream appeared '
                    '(the cell node was restarted and the scene is no longer the trial\'s)')
        return ''

    def sandbox(self) -> dict[str, Any]:
        return {'confinement': self._confinement, 'allow_unconfined': self.allow_unconfined,
                'sandbox_denials': self._episode_denials}

    def _take_sandbox(self) -> None:
        # The host's stopped/fault status carries what its sandbox refused in the episode.
        report = self._status.get('sandbox_denials')
        ok = isinstance(report, dict) and isinstance(report.get('count'), int) \
            and isinstance(report.get('first', []), list)
        self._episode_denials = report if ok else {}

    def stop_episode(self) -> dict[str, int]:
        with self._cond:
            episode, self._episode = self._episode, ''
            self._episode_denials = {}
            if self._status.get('state') == 'fault':
                self._take_sandbox()
        if self._proc is None or self._proc.poll() is not None:
            return {}
        self._send('stop', episode=episode)
        try:
            self._await_status(('stopped', 'fault'), 5.0, 'episode stop')
        except (EnpireTimeoutError, PolicyFaultError):
            return {}
        with self._cond:
            self._take_sandbox()
            stats = {key: int(value) for key, value in self._status.items()
                     if (key in HOST_COUNTERS or key.startswith(TOOL_COUNTER_PREFIX))
                     and isinstance(value, int) and not isinstance(value, bool)}
        # Let the last in-flight command land so the final verdict sees a still scene.
        stable_since = time.monotonic()
        last = self.tick
        end = stable_since + 1.0
        while time.monotonic() < end:
            time.sleep(0.01)
            now_tick = self.tick
            if now_tick != last:
                last, stable_since = now_tick, time.monotonic()
            elif time.monotonic() - stable_since >= 0.05:
                break
        return stats

    def close(self) -> None:
        self.unload()
