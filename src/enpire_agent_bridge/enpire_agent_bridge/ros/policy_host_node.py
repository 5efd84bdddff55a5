"""The ``policy_host`` node: feeds cell observations to a sandboxed policy, publishes commands.

Policy code never runs here: the node owns a :class:`PolicyHost` (a separate, resource-limited
process) and only moves observations and actions across its pipes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from enpire_agent_bridge.core.config import PolicyHostNodeConfig
from enpire_agent_bridge.core.contract import ContractError
from enpire_agent_bridge.core.host import sandbox_host
from enpire_agent_bridge.core.policy_tools import task_tools
from enpire_agent_bridge.ros import conversions as conv
from enpire_agent_bridge.ros.observations import STATE_TOPIC, CameraFrames, TaskObservations
from enpire_common.errors import ConfigError, EnpireError, PolicyError, UnconfinedError
from enpire_common.paths import enpire_home
from enpire_common.ros import (
    LATEST_QOS,
    declare_config,
    run_node,
)
from enpire_common.tasks import load_task, parse_task
from enpire_interfaces.msg import Command, StateVector

#: Episode control is never latched: a restarted host must not act on a stale start.
CONTROL_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)


class PolicyHostNode(Node):
    """Runs one policy revision in lockstep with the cell: one ``act`` per new state tick.

    Topics (relative to the cell namespace):
        subscribes ``camera/top/image_raw`` (sensor_msgs/Image rgb8) and ``state``
            (enpire_interfaces/StateVector ``[x, y, vx, vy]`` px, px/s);
        publishes ``policy/command`` (enpire_interfaces/Command: tick, revision_id, action in
            task units) and ``policy/status`` (std_msgs/String JSON
            ``{state: starting|ready|running|stopped|fault|closed, reason, revision_id,
            episode, error_code}``, latched);
        subscribes ``policy/control`` (std_msgs/String JSON, reliable, volatile):
            ``{op: start, revision_id, seed, episode}`` resets the policy with the seed and
            opens an episode (acting at once on the newest state), ``{op: stop, episode}``
            closes it. Messages for another revision are ignored. With ``gated`` false the
            host acts on every new tick without episodes.
            Checkpoints (a lockstep cell, whose clock the rollout follows): a start with
            ``first_tick`` acts first on that tick (never on a state left from before the
            reset); with ``hold_every``/``hold_from``/``hold_at`` the host does not act on
            ticks ``hold_from + k * hold_every`` (k >= 1) and ``hold_at`` until ``{op:
            resume, episode, tick}`` releases them, so the cell stands still on the tick the
            rollout verifies: where an episode ends and what its verdicts see do not depend
            on how fast the verifier answers.
    Parameters (see PolicyHostNodeConfig): ``revision_dir`` (str), ``revision_id`` (str),
        ``task`` (str), ``task_file`` (str path), ``deadline_margin_s`` (s, <0 = contract),
        ``warmup_timeout_s`` (s), ``max_image_age_s`` (s), ``log_dir`` (str),
        ``sandbox.*`` (memory_limit_mb, cpu_limit_s, ... see SandboxConfig).

    On any policy fault the host process is killed, nothing more is published on
    ``policy/command`` (the cell holds) and ``policy/status`` says ``fault`` with the reason, so
    the rollout ends the trial as ``policy_fault``. A state tick lower than the previous one is
    a new episode and calls the policy's ``reset``.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('policy_host', **kwargs)
        self.config = declare_config(self, PolicyHostNodeConfig)
        cfg = self.config
        if not cfg.revision_dir:
            raise ConfigError("revision_dir='' is invalid: set it to the policy revision "
                              'directory to host')
        self.revision_dir = Path(cfg.revision_dir)
        self.revision_id = cfg.revision_id or self.revision_dir.name
        task = (parse_task(Path(cfg.task_file).parent) if cfg.task_file
                else load_task(cfg.task))
        log_dir = Path(cfg.log_dir) if cfg.log_dir else (
            enpire_home() / 'logs' / 'policy_host' / self.revision_id)
        try:
            self.host = sandbox_host(task.raw, self.revision_dir, cfg, log_dir,
                                     tools=task_tools(task))
        except ContractError as exc:
            raise ConfigError(str(exc)) from None
        self.spec = self.host.spec
        self._observations = TaskObservations(task)
        self._status_pub = self.create_publisher(String, 'policy/status', LATEST_QOS)
        self._cmd_pub = self.create_publisher(Command, 'policy/command', 10)
        self._lock = threading.Lock()
        self._frames = CameraFrames(cfg.max_image_age_s, self._observations.image_topics)
        self._pending: StateVector | None = None
        self._last_tick: int | None = None
        self._latest_state: StateVector | None = None
        self._episode = ''
        self._fault_reason = ''
        self._first_tick: int | None = None     # a checkpointed episode acts first on this
        self._hold: tuple[int, int, int] | None = None   # (hold_from, hold_every, hold_at)
        self._released = -1                     # checkpoints up to this tick are released
        self.late_acts = 0
        self._retry_index = 0
        # Loss recovery (PolicyHostNodeConfig.resend_after_s).
        self._last_cmd: Command | None = None
        self._last_cmd_s = 0.0        # monotonic time the last command went out
        self.resent_commands = 0
        self.state = 'starting'
        self._publish_status('starting', '')
        try:
            self.host.start()
            self.host.reset(None)
            self.host.act(self.spec.example_observation(), deadline_s=cfg.warmup_timeout_s)
        except (PolicyError, UnconfinedError) as exc:
            self._fault(exc)
        for topic in self._observations.image_topics:
            self.create_subscription(Image, topic,
                                     lambda msg, t=topic: self._on_image(msg, t), LATEST_QOS)
        self.create_subscription(StateVector, STATE_TOPIC, self._on_state, LATEST_QOS)
        self.create_subscription(String, 'policy/control', self._on_control, CONTROL_QOS)
        if cfg.resend_after_s > 0:
            self.create_timer(cfg.resend_after_s / 4.0, self._watchdog)
        if self.state == 'starting':
            if cfg.gated:
                self._await_command_subscriber(cfg.subscriber_wait_s)
            self.state = 'ready'
            self._publish_status('ready', '', confinement=self._confinement())

    def _await_command_subscriber(self, timeout_s: float) -> None:
        # A fresh host's first command must not be published before the safety supervisor
        # has matched this publisher: a lockstep cell steps only on a command, so a lost
        # first command stalls the whole episode. Discovery runs on DDS threads, so a
        # bounded wait here (before spinning) sees the match.
        end = time.monotonic() + timeout_s
        while self._cmd_pub.get_subscription_count() == 0 and time.monotonic() < end:
            time.sleep(0.01)
        if self._cmd_pub.get_subscription_count() == 0:
            self.get_logger().warning(f'nobody subscribes policy/command after {timeout_s:g} s '
                                      '(is the safety supervisor running?)')
            return
        # The count is this writer's view; the supervisor's reader matches this writer a
        # moment later, and a volatile reader drops samples written before its own match
        # (seen under load: a fresh host's first command lost, the cell stalled at step 0).
        time.sleep(self.config.discovery_grace_s)

    def _watchdog(self) -> None:
        """Re-send the last command when no new tick follows it (a lost message)."""
        cfg = self.config
        with self._lock:
            last = self._last_cmd
            if (self.state != ('running' if cfg.gated else 'ready') or last is None
                    # (held at a checkpoint too: the rollout may have lost that tick's
                    # state, and the cell publishes it again on the re-sent command)
                    or last.tick != self._last_tick
                    or time.monotonic() - self._last_cmd_s < cfg.resend_after_s):
                return
            self._last_cmd_s = time.monotonic()
            self.resent_commands += 1
            self._cmd_pub.publish(last)
        self.get_logger().warning(f'no tick after {last.tick} for {cfg.resend_after_s:g} s: '
                                  'sent its command again', throttle_duration_sec=5.0)

    # --- callbacks --------------------------------------------------------------------------
    def _on_image(self, msg: Image, topic: str) -> None:
        with self._lock:
            if not self._frames.receive(msg, self.get_logger(), topic):
                return
            pending = self._pending
        if pending is not None:
            self._try_act(pending)

    def _on_state(self, msg: StateVector) -> None:
        with self._lock:
            self._latest_state = msg
        self._try_act(msg)

    def _on_control(self, msg: String) -> None:
        try:
            req = json.loads(msg.data)
        except ValueError:
            self.get_logger().error(f'policy/control: not JSON: {msg.data[:80]!r}')
            return
        if req.get('revision_id') not in (None, self.revision_id):
            return
        op = req.get('op')
        episode = str(req.get('episode', ''))
        with self._lock:
            if self.state == 'fault':
                self._publish_status('fault', self._fault_reason, episode=episode)
                return
            if op == 'stop':
                self._stop(episode)
                return
            if op == 'resume':
                if self.state != 'running' or episode != self._episode:
                    return
                self._released = max(self._released, _int(req.get('tick'), -1))
                latest = self._pending
            elif op == 'start':
                if not self._start(req, episode):
                    return
                latest = self._latest_state
            else:
                self.get_logger().error(f'policy/control: unknown op {op!r}')
                return
        if latest is not None:
            self._try_act(latest)

    def _stop(self, episode: str) -> None:
        self._episode = ''
        self._hold = self._first_tick = None
        self._last_cmd = None
        if self.state == 'running':
            self.state = 'ready'
        self._publish_status('stopped', '', episode=episode, late_acts=self.late_acts,
                             resent_commands=self.resent_commands,
                             **self.host.tool_stats.take(),
                             confinement=self._confinement(),
                             sandbox_denials=self.host.take_denials())

    def _start(self, req: dict, episode: str) -> bool:
        """Open ``episode`` (under the lock); False when there is nothing to act on."""
        if self.state == 'running' and episode == self._episode:
            # A resent start (the first was not acknowledged in time): same episode, the
            # policy was already reset; just acknowledge again.
            self._publish_status('running', '', episode=episode)
            return False
        seed = req.get('seed')
        retry_index = _int(req.get('retry_index'), 0)
        # The callback is the only broad catch: a policy raising in reset() ends in a fault
        # status, never in an exception inside the executor. A pass@k retry keeps the
        # policy's state (no reset): it sees retry_index in its observation instead.
        try:
            if not retry_index:
                self.host.reset(None if seed is None else int(seed))
        except PolicyError as exc:
            self._fault(exc, episode=episode)
            return False
        self._retry_index = retry_index
        self._episode, self.state, self._last_tick = episode, 'running', None
        first = req.get('first_tick')
        self._first_tick = _int(first, 0) if first is not None else None
        every = _int(req.get('hold_every'), 0)
        self._hold = ((_int(req.get('hold_from'), 0), every, _int(req.get('hold_at'), -1))
                      if every > 0 or req.get('hold_at') is not None else None)
        self._released = -1
        self.late_acts = self.resent_commands = 0
        self.host.tool_stats.take()           # this episode's tool calls only
        self._pending = None
        self._last_cmd = None
        self._publish_status('running', '', episode=episode)
        return True

    def _held(self, tick: int) -> bool:
        """Whether ``tick`` is a checkpoint not yet released (under the lock)."""
        if self._hold is None or tick <= self._released:
            return False
        start, every, at = self._hold
        return tick == at or (every > 0 and tick > start and (tick - start) % every == 0)

    def _try_act(self, state: StateVector) -> None:
        with self._lock:
            if self.state != ('running' if self.config.gated else 'ready'):
                return
            tick = int(state.tick)
            if self._last_tick is not None and tick == self._last_tick:
                return
            if self._last_tick is None and self._first_tick is not None \
                    and tick != self._first_tick:
                return    # a state from before the reset: the episode's own comes next
            if self._held(tick):
                self._pending = state    # the rollout verifies this tick; resume acts on it
                return
            image = self._frames.for_state(state)
            if image is None:
                self._pending = state  # act once the matching frames arrive
                return
            self._pending = None
            new_episode = (not self.config.gated and self._last_tick is not None
                           and tick < self._last_tick)
            self._last_tick = tick
            # The callback is the only broad catch: a misbehaving policy ends in a fault
            # status, never in an exception inside the executor.
            try:
                if new_episode:
                    self.host.reset(None)
                action = self.host.act(self._observations.build(state, image,
                                                                self._retry_index))
                self.late_acts += self.host.last_late
            except PolicyError as exc:
                self._fault(exc)
                return
            except EnpireError as exc:
                self.get_logger().error(f'tick {tick}: {exc}', throttle_duration_sec=5.0)
                return
            cmd = conv.command_msg(tick, self.revision_id, action, state.header.stamp)
            self._cmd_pub.publish(cmd)
            self._last_cmd = cmd
            self._last_cmd_s = time.monotonic()

    def _fault(self, exc: EnpireError, **extra) -> None:
        self.state = 'fault'
        self._fault_reason = str(exc)
        self.get_logger().error(f'policy {self.revision_id} faulted: {exc}')
        self._publish_status('fault', str(exc), error_code=exc.code,
                             episode=extra.get('episode', self._episode),
                             confinement=self._confinement(),
                             sandbox_denials=self.host.take_denials())

    def _confinement(self) -> str:
        found = self.host.confinement
        return found.mode if found is not None else 'unknown'

    def _publish_status(self, state: str, reason: str, **extra) -> None:
        self._status_pub.publish(conv.status_msg(state, reason, self.revision_id, **extra))

    def destroy_node(self) -> None:
        self.host.close()
        if self.state != 'fault':
            self.state = 'closed'
        super().destroy_node()


def _int(value: object, default: int) -> int:
    """An integer field of a control message (``default`` when absent or not a number)."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def main(argv: list[str] | None = None) -> int:
    # A hot swap starts the new revision's host while the old one still drives the cell.
    return run_node('policy_host', PolicyHostNode, argv, executor='fast', unique=False)


if __name__ == '__main__':
    sys.exit(main())
