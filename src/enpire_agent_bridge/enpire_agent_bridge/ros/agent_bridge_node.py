"""The ``agent_bridge`` node: hot-swaps the active policy revision of a running cell.

Thin ROS glue around :class:`~enpire_agent_bridge.core.switching.SwitchCoordinator` (the rules:
one command per tick, switches at a tick boundary, STRICT / BEST_EFFORT failures, fallback to
hold, restore, pause/home/resume; read its module docstring) and
:class:`~enpire_agent_bridge.core.pool.HostPool` (active, staged and warm standby hosts).

* **Policy code never runs in this process.** The pool owns one sandboxed
  :class:`~enpire_agent_bridge.core.host.PolicyHost` *subprocess* per revision it hosts, and
  only observations and actions cross their pipes. Driving the sandboxes directly (rather than
  spawning one ``policy_host`` node per revision) keeps the hot path to one DDS hop (cell ->
  bridge -> ``policy/command``) plus a pipe round trip, and makes the gate exact: the bridge
  decides, per tick, which revision's action is published.
* This node pairs each state tick with its camera frame, builds the observation
  (:mod:`enpire_agent_bridge.ros.observations`, shared with ``policy_host``), hands the tick to
  the coordinator and publishes the command it answers. A lockstep cell (``use_sim_time``)
  steps once per command, so there a switch waits for the next tick instead of replacing the
  current tick's command (``switch_within_tick``).

Topics (relative to the cell namespace):
    subscribes ``camera/top/image_raw`` (sensor_msgs/Image rgb8) and ``state``
        (enpire_interfaces/StateVector ``[x, y, vx, vy]`` px, px/s), both LATEST_QOS;
    publishes ``policy/command`` (enpire_interfaces/Command: tick, revision_id, action in task
        units) and ``bridge/status`` (std_msgs/String JSON, latched: ``{mode, phase, active,
        staged, retiring, last_good, standby, switches, faults, last_event}``).
Services (served by the companion node ``agent_bridge_control`` in the same namespace, so the
tick path can spin on the events executor while a switch blocks on another thread):
    ``switch_policy`` (enpire_interfaces/SwitchPolicy); ``pause_cell``, ``resume_cell``,
    ``home_cell`` (empty request; ``success`` + message/``error_code``/``error_msg``; the
    type is :data:`TriggerSrv`, see there).
Parameters (see :class:`BridgeNodeConfig`): ``task`` (str), ``task_file`` (str path),
    ``revisions_dir`` (str), ``deadline_margin_s`` (s), ``deadline_override_s`` (s),
    ``switch_timeout_s`` (s), ``first_act_timeout_s`` (s), ``hard_deadline_factor``,
    ``hard_deadline_min_s`` (s), ``warmup_ticks`` (int), ``standby_max`` (int),
    ``switch_within_tick`` (bool), ``max_image_age_s`` (s), ``home_position`` (str
    ``"x,y"``), ``log_dir`` (str), ``sandbox.*`` (SandboxConfig).
Speed is judged like the policy host's: an act whose CPU time exceeds the deadline is a
fault; a round trip that is only late in wall time (a busy machine) counts as ``late_acts``
and is killed as hung only past ``max(hard_deadline_factor x deadline, hard_deadline_min_s)``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from enpire_agent_bridge.core.config import BridgeNodeConfig, home_target
from enpire_agent_bridge.core.contract import ContractError, PolicySpec
from enpire_agent_bridge.core.host import sandbox_host
from enpire_agent_bridge.core.policy_tools import task_tools
from enpire_agent_bridge.core.pool import HostPool
from enpire_agent_bridge.core.revisions import RevisionStore
from enpire_agent_bridge.core.swap import Strictness
from enpire_agent_bridge.core.switching import SwitchCoordinator, SwitchRequest, Tick
from enpire_agent_bridge.ros import conversions as conv
from enpire_agent_bridge.ros.observations import STATE_TOPIC, CameraFrames, TaskObservations
from enpire_common.clock import SystemClock
from enpire_common.errors import ConfigError, EnpireError, SwitchFailedError
from enpire_common.paths import enpire_home, revisions_root
from enpire_common.ros import (
    LATEST_QOS,
    declare_config,
    make_fast_executor,
    spin_until_shutdown,
)
from enpire_common.tasks import TaskSpec, load_task, parse_task
from enpire_interfaces.msg import Command, StateVector
from enpire_interfaces.srv import SwitchPolicy

try:  # The proposed empty-request service (enpire_interfaces/srv/Trigger.srv).
    from enpire_interfaces.srv import Trigger as TriggerSrv  # type: ignore[attr-defined]
except ImportError:
    # Stand-in until Trigger.srv exists: the only built type with an empty request and a
    # ``success`` + ``error_code``/``error_msg`` response, which is all the agent client reads
    # (it takes the type from the graph). Its sim fields stay empty here.
    from enpire_interfaces.srv import GetGroundTruth as TriggerSrv

#: State ticks: reliable and latched like LATEST_QOS, but a short queue on our side, so a tick
#: that arrives while the bridge is still busy with the previous one is served late rather
#: than overwritten (every tick gets exactly one command).
TICK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class AgentBridgeNode(Node):
    """Hosts the cell's policy revisions in sandboxes and hot-swaps the active one.

    See the module docstring for the ROS interface and parameters.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('agent_bridge', **kwargs)
        self.config = declare_config(self, BridgeNodeConfig)
        cfg = self.config
        self.task = self._task()
        low = np.asarray(self.task.action.low, dtype=np.float64)
        high = np.asarray(self.task.action.high, dtype=np.float64)
        store = RevisionStore(Path(cfg.revisions_dir) if cfg.revisions_dir
                              else revisions_root(enpire_home()))
        log_root = Path(cfg.log_dir) if cfg.log_dir else (
            enpire_home() / 'logs' / 'agent_bridge')

        tools = task_tools(self.task)

        def make_host(revision: str, directory: Path) -> Any:
            try:
                return sandbox_host(self.task.raw, directory, cfg, log_root / revision[:40],
                                    tools=tools)
            except ContractError as exc:
                raise SwitchFailedError(f'{directory}: {exc}') from None

        def lookup(revision: str) -> tuple[str, Path]:
            rev = store.get(revision)
            return rev.id, rev.path

        try:
            example_obs = PolicySpec.from_task_contract(self.task.raw).example_observation()
        except ContractError as exc:
            raise ConfigError(f'{cfg.task_file or cfg.task}: {exc}') from None
        self._observations = TaskObservations(self.task)
        clock = SystemClock()   # monotonic: switch times compare across processes (benchmark)
        pool = HostPool(make_host, standby_max=cfg.standby_max,
                        first_act_timeout_s=cfg.first_act_timeout_s, clock=clock)
        self.swap = SwitchCoordinator(
            pool, publish=self._publish_command, hold=self._observations.hold, lookup=lookup,
            example_obs=example_obs, clock=clock, warmup_ticks=cfg.warmup_ticks,
            switch_timeout_s=cfg.switch_timeout_s,
            # A lockstep cell steps on every command: a second command for a tick would step
            # it twice, so replacing the current tick's command is for real-time cells only.
            within_tick=cfg.switch_within_tick and not bool(
                self.get_parameter('use_sim_time').value),
            home=home_target(cfg.home_position, self.task.raw.get('home'), low, high),
            on_event=lambda event, extra: self._publish_status(event, **extra),
            log=self._log)
        self._frames = CameraFrames(cfg.max_image_age_s, self._observations.image_topics)
        self._frames_lock = threading.Lock()    # the frame and the queued states
        self._pending: deque[StateVector] = deque(maxlen=TICK_QOS.depth)

        self._status_pub = self.create_publisher(String, 'bridge/status', LATEST_QOS)
        self._cmd_pub = self.create_publisher(Command, 'policy/command', 10)
        tick_group = MutuallyExclusiveCallbackGroup()
        # The services live on a second node so that main() can spin the tick path on the
        # fast single-threaded events executor while a switch_policy call blocks (process
        # start, waiting for the first new command) on another thread. Same namespace; the
        # global remaps/params are for the main node.
        self.control = Node(f'{self.get_name()}_control', namespace=self.get_namespace(),
                            context=self.context, use_global_arguments=False)
        srv_group = ReentrantCallbackGroup()
        for topic in self._observations.image_topics:
            self.create_subscription(Image, topic,
                                     lambda msg, t=topic: self._on_image(msg, t), LATEST_QOS,
                                     callback_group=tick_group)
        self.create_subscription(StateVector, STATE_TOPIC, self._on_state, TICK_QOS,
                                 callback_group=tick_group)
        self.control.create_service(SwitchPolicy, 'switch_policy', self._on_switch,
                                    callback_group=srv_group)
        for verb in ('pause', 'resume', 'home'):
            self.control.create_service(TriggerSrv, f'{verb}_cell',
                                        lambda req, resp, v=verb: self._on_cell_verb(v, resp),
                                        callback_group=srv_group)
        self._publish_status('started')

    def _task(self) -> TaskSpec:
        cfg = self.config
        return parse_task(Path(cfg.task_file).parent) if cfg.task_file else load_task(cfg.task)

    def _log(self, level: str, message: str) -> None:
        logger = self.get_logger()
        if level == 'warning':
            logger.warning(message, throttle_duration_sec=5.0)
        else:
            logger.error(message)

    # --- observations and ticks -------------------------------------------------------------
    def _on_image(self, msg: Image, topic: str) -> None:
        with self._frames_lock:
            if self._frames.receive(msg, self.get_logger(), topic):
                self._drain()

    def _on_state(self, msg: StateVector) -> None:
        with self._frames_lock:
            self._pending.append(msg)
            self._drain()

    def _drain(self) -> None:
        """Serve queued states, oldest first, as soon as a frame recent enough exists."""
        while self._pending:
            image = self._frames.for_state(self._pending[0])
            if image is None:
                return      # act once the matching frame arrives
            state = self._pending.popleft()
            try:
                obs = self._observations.build(state, image)
            except EnpireError as exc:
                self.get_logger().error(f'tick {state.tick}: {exc}', throttle_duration_sec=5.0)
                continue
            self.swap.on_tick(Tick(int(state.tick), obs, state.header.stamp))

    def _publish_command(self, tick: Tick, revision: str, action: np.ndarray) -> None:
        self._cmd_pub.publish(conv.command_msg(tick.tick, revision, action, tick.stamp))

    # --- services ---------------------------------------------------------------------------
    def _on_switch(self, req: SwitchPolicy.Request,
                   resp: SwitchPolicy.Response) -> SwitchPolicy.Response:
        resp.previous_revision = self.swap.active
        request = SwitchRequest(
            revision_id=req.revision_id, revision_dir=req.revision_dir,
            strictness=(Strictness.BEST_EFFORT
                        if req.strictness == SwitchPolicy.Request.BEST_EFFORT
                        else Strictness.STRICT),
            timeout_s=req.timeout_s)
        # Service boundary: every failure becomes error_code/error_msg, the node lives on.
        try:
            result = self.swap.switch(request)
        except EnpireError as exc:
            resp.ok, resp.error_code, resp.error_msg = False, exc.code, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the cell's bridge
            self.get_logger().error(f'switch_policy: unexpected {exc!r}')
            resp.ok, resp.error_code = False, SwitchFailedError.code
            resp.error_msg = f'switch failed unexpectedly: {exc!r}'
        else:
            resp.ok, resp.switch_latency_s = True, result.latency_s
        resp.active_revision = self.swap.active
        return resp

    def _on_cell_verb(self, verb: str, resp: Any) -> Any:
        msg = self.swap.cell_verb(verb)
        resp.success = True
        if hasattr(resp, 'message'):
            resp.message = msg
        else:
            resp.error_msg = msg
        return resp

    # --- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self.swap.status()

    def _publish_status(self, event: str, **extra: Any) -> None:
        self._status_pub.publish(String(data=json.dumps({'event': event, **self.status(),
                                                         **extra})))

    def destroy_node(self) -> None:
        self.swap.close()
        self.control.destroy_node()
        super().destroy_node()


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = AgentBridgeNode()
    except (ConfigError, ParameterException) as exc:
        print(f'agent_bridge: invalid config: {exc}', file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    # The tick path on the fast events executor; the services on their own threads, since a
    # switch_policy call blocks (host start, waiting for the first new command).
    executor = make_fast_executor()
    executor.add_node(node)
    control = MultiThreadedExecutor(num_threads=2)
    control.add_node(node.control)
    control_thread = threading.Thread(target=spin_until_shutdown, args=(control,),
                                      name='bridge-control', daemon=True)
    control_thread.start()
    try:
        spin_until_shutdown(executor)
    finally:
        control.shutdown(timeout_sec=2.0)
        executor.shutdown()
        with contextlib.suppress(Exception):
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
