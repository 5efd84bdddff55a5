"""The ``agent_bridge`` node: hot-swaps the active policy revision of a running cell.

Design (ros2_control's controller switching, applied to policy revisions):

* **Policy code never runs in this process.** The node owns one :class:`PolicyHost` sandbox
  *subprocess* per revision it hosts (active, staged, and a few retired-but-warm standbys) and
  only moves observations and actions across their pipes. Driving the sandboxes directly
  (rather than spawning one ``policy_host`` node per revision) keeps the hot path to one DDS
  hop (cell -> bridge -> ``policy/command``) plus a pipe round trip, and makes the gate exact:
  the bridge decides, per tick, which revision's action is published.
* **One command per tick.** The bridge subscribes image + state once. For each new state tick
  it asks :class:`SwapMachine` (under one lock, atomically with ``tick()``) which revision
  passes the gate, runs that host's ``act`` and publishes exactly one ``policy/command``
  stamped with the tick and the revision id.
* **switch_policy** (SwitchPolicy.srv): (1) get a host for the target: a warm standby if one
  is parked, else start a new sandbox (import + ``make_policy`` + a first ``act`` with a
  generous deadline: lazy imports, caches); (2) ``SwapMachine.request`` -> STAGING;
  (3) warm-up on the live stream: ``reset(None)`` and one ``act`` on the newest observation
  under the contract deadline; (4) a valid action switches at a tick boundary. A real-time
  cell applies the latest command it holds when it steps, so (``switch_within_tick``, the
  default) the switch takes the *current* tick: with the tick path locked, the new revision's
  action for the newest observation is published as that tick's command and replaces the
  old revision's before the cell's next step; nothing of the old revision is published after
  it. A lockstep cell steps once per command (``use_sim_time``), so there the switch waits
  for the next tick. (5) The response returns once the new revision's first command is
  published; the old host is retired only then (parked as a warm standby, so switching back
  or restoring costs no process start). ``switch_latency_s`` is request -> first published
  command of the new revision: about two acts in real time, plus the wait for the next tick
  in lockstep.
* **STRICT** failure (start, import, warm-up fault/deadline/NaN/bounds, no first command in
  time): the previous revision stays active and the response carries SWITCH_FAILED with the
  reason. **BEST_EFFORT** failure: falls back to ``hold``.
* **Fault after activation** (crash, hang past the deadline, NaN, out of bounds): the host is
  killed, the same tick is answered by the built-in ``hold`` (command = the current agent
  position, computed here, no policy code) and ``hold`` stays active.
* **Restore**: ``switch_policy`` with ``revision_id`` ``last_good`` (or ``restore``)
  switches back to the last revision that was replaced by a successful switch (STRICT, as
  any switch). ``revision_id`` ``hold`` activates the built-in hold.
* **pause_cell** stops publishing commands (a real-time cell keeps its last target);
  **home_cell** publishes a home target every tick (``home_position`` param, else the task
  contract's ``home``, else the agent position at the time of the call: stay where you are);
  **resume_cell** returns to the active revision. Switches are refused while paused/homing.

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
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
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

from enpire_agent_bridge.core.config import BridgeNodeConfig
from enpire_agent_bridge.core.contract import ContractError, PolicySpec, spec_for_revision
from enpire_agent_bridge.core.host import PolicyHost, hard_deadline_s
from enpire_agent_bridge.core.revisions import RevisionStore
from enpire_agent_bridge.core.swap import HOLD, Phase, Strictness, SwapMachine
from enpire_agent_bridge.ros import conversions as conv
from enpire_common.errors import (
    CellBusyError,
    ConfigError,
    EnpireError,
    PolicyError,
    SwitchFailedError,
)
from enpire_common.paths import enpire_home
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

#: ``revision_id`` values that restore the last good revision.
RESTORE_IDS = ('last_good', 'restore')
HOME = 'home'


@dataclass
class _Slot:
    """A hosted revision: its sandbox process and where it came from."""

    revision: str
    directory: Path
    host: PolicyHost


class _Waiter:
    """Set when the first command of ``revision`` is published."""

    def __init__(self, revision: str) -> None:
        self.revision = revision
        self.event = threading.Event()
        self.time_s = 0.0
        self.tick = -1
        self.error = ''     # set with the event when the revision faulted before its command
        self.scheduled_s = 0.0   # when the warm-up action scheduled the switch


class AgentBridgeNode(Node):
    """Hosts the cell's policy revisions in sandboxes and hot-swaps the active one.

    See the module docstring for the design, topics, services and parameters.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('agent_bridge', **kwargs)
        self.config = declare_config(self, BridgeNodeConfig)
        cfg = self.config
        self.task = self._task()
        self.rate_hz = float(self.task.action.rate_hz)
        self.low = np.asarray(self.task.action.low, dtype=np.float64)
        self.high = np.asarray(self.task.action.high, dtype=np.float64)
        self._home = self._configured_home()
        # A lockstep cell steps on every command: a second command for a tick would step it
        # twice, so replacing the current tick's command is for real-time cells only.
        self._within_tick = cfg.switch_within_tick and not bool(
            self.get_parameter('use_sim_time').value)
        self.store = RevisionStore(Path(cfg.revisions_dir) if cfg.revisions_dir
                                   else enpire_home() / 'revisions')
        self._log_root = Path(cfg.log_dir) if cfg.log_dir else (
            enpire_home() / 'logs' / 'agent_bridge')

        # _lock guards the machine, the host tables, the mode and the waiters; it is held
        # only for bookkeeping, never across a host call or a publish.
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()      # one tick at a time, in order
        self._switch_lock = threading.Lock()    # one switch at a time
        self.machine = SwapMachine(warmup_ticks=cfg.warmup_ticks, on_retire=self._on_retire)
        self._hosts: dict[str, _Slot] = {}              # active / staged / retiring
        self._standby: OrderedDict[str, _Slot] = OrderedDict()   # warm, oldest first
        self._dirs: dict[str, Path] = {}
        self._discard: set[str] = set()
        self._waiters: dict[str, _Waiter] = {}
        self._mode = 'running'                          # running | paused | homing
        self._home_target: np.ndarray | None = None
        self._image: tuple[float, np.ndarray] | None = None
        self._pending: deque[StateVector] = deque(maxlen=TICK_QOS.depth)
        self._last_tick: int | None = None
        self._latest_obs: tuple[int, dict[str, Any]] | None = None
        self._latest_state: StateVector | None = None
        self._obs_event = threading.Event()
        self._switches = 0
        self._skipped_ticks = 0
        self._late_acts = 0             # round trips past the deadline (CPU time within it)
        self._last_switch: dict[str, Any] = {}
        self._faults: list[str] = []
        self._closers: list[threading.Thread] = []

        self._status_pub = self.create_publisher(String, 'bridge/status', LATEST_QOS)
        self._cmd_pub = self.create_publisher(Command, 'policy/command', 10)
        tick_group = MutuallyExclusiveCallbackGroup()
        # The services live on a second node so that main() can spin the tick path on the
        # fast single-threaded events executor while a switch_policy call blocks (process
        # start, waiting for the first new command) on another thread. Same namespace; the
        # global remaps/params are for the main node.
        self.control = Node(f'{self.get_name()}_control', namespace=self.get_namespace(),
                            context=self.context, use_global_arguments=False)
        self._srv_group = ReentrantCallbackGroup()
        self.create_subscription(Image, 'camera/top/image_raw', self._on_image, LATEST_QOS,
                                 callback_group=tick_group)
        self.create_subscription(StateVector, 'state', self._on_state, TICK_QOS,
                                 callback_group=tick_group)
        self.control.create_service(SwitchPolicy, 'switch_policy', self._on_switch,
                                    callback_group=self._srv_group)
        for verb in ('pause', 'resume', 'home'):
            self.control.create_service(TriggerSrv, f'{verb}_cell',
                                        lambda req, resp, v=verb: self._on_cell_verb(v, resp),
                                        callback_group=self._srv_group)
        self._publish_status('started')

    # --- setup ------------------------------------------------------------------------------
    def _task(self) -> TaskSpec:
        cfg = self.config
        return parse_task(Path(cfg.task_file).parent) if cfg.task_file else load_task(cfg.task)

    def _configured_home(self) -> np.ndarray | None:
        text = self.config.home_position
        raw = self.task.raw.get('home')
        if text:
            values = [float(v) for v in text.split(',')]
        elif isinstance(raw, (list, tuple)):
            values = [float(v) for v in raw]
        else:
            return None
        home = np.asarray(values, dtype=np.float64)
        if home.shape != self.low.shape or np.any(home < self.low) or np.any(home > self.high):
            raise ConfigError(f'home_position={values} is invalid: must have shape '
                              f'{list(self.low.shape)} within the action bounds '
                              f'{self.low.tolist()}..{self.high.tolist()}')
        return home

    def _spec(self, directory: Path) -> PolicySpec:
        cfg = self.config
        try:
            return spec_for_revision(self.task.raw, directory,
                                     deadline_margin_s=cfg.deadline_margin_s,
                                     deadline_override_s=cfg.deadline_override_s)
        except ContractError as exc:
            raise SwitchFailedError(f'{directory}: {exc}') from None

    # --- observations and ticks -------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        try:
            img = conv.image_to_array(msg)
        except EnpireError as exc:
            self.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        with self._tick_lock:
            self._image = (conv.stamp_s(msg.header.stamp), img)
            self._drain()

    def _on_state(self, msg: StateVector) -> None:
        with self._tick_lock:
            self._pending.append(msg)
            self._drain()

    def _drain(self) -> None:
        """Serve queued states, oldest first, as soon as an image recent enough exists."""
        while self._pending:
            state = self._pending[0]
            image = self._image
            if image is None or image[0] < conv.stamp_s(state.header.stamp) - \
                    self.config.max_image_age_s - 1e-9:
                return      # act once the matching frame arrives
            self._pending.popleft()
            self._on_tick(state, image)

    def _on_tick(self, state: StateVector, image: tuple[float, np.ndarray]) -> None:
        """One state tick (tick lock held): gate, act, publish exactly one command."""
        tick = int(state.tick)
        if tick == self._last_tick:
            return
        new_episode = self._last_tick is not None and tick < self._last_tick
        if self._last_tick is not None and tick > self._last_tick + 1:
            # The cell ticked more than TICK_QOS.depth times while we were busy: lost.
            self._skipped_ticks += tick - self._last_tick - 1
            self.get_logger().warning(
                f'ticks {self._last_tick + 1}..{tick - 1} never reached the bridge '
                f'({self._skipped_ticks} in all); the host is overloaded',
                throttle_duration_sec=5.0)
        self._last_tick = tick
        try:
            pos, vel = conv.state_parts(state)
        except EnpireError as exc:
            self.get_logger().error(f'tick {tick}: {exc}', throttle_duration_sec=5.0)
            return
        obs = {'image_top': image[1], 'agent_pos': pos, 'agent_vel': vel, 'step': tick,
               'retry_index': 0}
        self._latest_obs = (tick, obs)
        self._latest_state = state
        self._obs_event.set()
        with self._lock:
            self.machine.tick(tick)
            mode = self._mode
            revision = self._gate(tick)
            slot = self._hosts.get(revision) if revision else None
        if mode == 'paused':
            return
        if mode == 'homing':
            target = self._home_target if self._home_target is not None else pos
            self._publish_command(tick, HOME, target, state)
            return
        self._act_and_publish(tick, revision, slot, obs, state, new_episode)

    def _gate(self, tick: int) -> str:
        """The revision whose command passes the gate for ``tick`` ('' = none). Lock held."""
        s = self.machine.state
        if s.phase is Phase.IDLE:
            return ''
        return s.active if self.machine.accepts(s.active, tick) else ''

    def _act_and_publish(self, tick: int, revision: str, slot: _Slot | None,
                         obs: dict[str, Any], state: StateVector, new_episode: bool) -> None:
        # At most three tries: the gated revision, then (after its fault) the rolled-back
        # previous revision or hold. Hold never faults, so every tick gets one command.
        for _ in range(3):
            if not revision:
                return
            if revision == HOLD:
                action = np.clip(obs['agent_pos'], self.low, self.high)
                break
            if slot is None:
                self.get_logger().error(f'no host for active revision {revision[:12]}')
                self._fault(revision, 'its host is missing')
            else:
                # The only broad-ish catch on the hot path: a misbehaving policy ends in a
                # fallback, never in an exception inside the executor.
                try:
                    if new_episode:
                        slot.host.reset(None)
                    action = slot.host.act(obs)
                    self._late_acts += slot.host.last_late
                    break
                except PolicyError as exc:
                    self._fault(revision, str(exc))
            with self._lock:
                revision = self._gate(tick)
                slot = self._hosts.get(revision) if revision else None
        else:
            return
        self._publish_command(tick, revision, action, state)
        self._published(revision, tick)

    def _published(self, revision: str, tick: int) -> None:
        """Bookkeeping after a command of ``revision`` for ``tick`` went out."""
        with self._lock:
            before = self.machine.state.phase
            self.machine.published(revision, tick)
            waiter = self._waiters.get(revision)
            if waiter is not None and not waiter.event.is_set():
                waiter.time_s, waiter.tick = time.monotonic(), tick
                waiter.event.set()
            if before is Phase.SWITCHED and self.machine.state.phase is Phase.ACTIVE:
                self._switches += 1

    def _publish_command(self, tick: int, revision: str, action: np.ndarray,
                         state: StateVector) -> None:
        self._cmd_pub.publish(conv.command_msg(tick, revision, action, state.header.stamp))

    def _fault(self, revision: str, reason: str) -> None:
        self.get_logger().error(f'policy {revision[:12]} faulted: {reason}')
        with self._lock:
            self.machine.fault(revision, reason)
            self._faults.append(f'{revision[:12]}: {reason}')
            waiter = self._waiters.get(revision)
            if waiter is not None and not waiter.event.is_set():
                waiter.error = reason
                waiter.event.set()
        self._publish_status('fault', reason=reason)

    # --- host bookkeeping -------------------------------------------------------------------
    def _on_retire(self, revision: str) -> None:
        """SwapMachine callback (lock held): park a healthy host, close a bad one."""
        if revision == HOLD:
            return
        slot = self._hosts.pop(revision, None)
        if slot is None:
            return
        if revision in self._discard or not slot.host.alive or self.config.standby_max == 0:
            self._discard.discard(revision)
            self._close_later(slot)
            return
        self._standby[revision] = slot
        self._standby.move_to_end(revision)
        while len(self._standby) > self.config.standby_max:
            _, oldest = self._standby.popitem(last=False)
            self._close_later(oldest)

    def _close_later(self, slot: _Slot) -> None:
        # close() may wait for a clean exit; never on the tick path or under the lock.
        t = threading.Thread(target=slot.host.close, name=f'close-{slot.revision[:8]}',
                             daemon=True)
        self._closers = [c for c in self._closers if c.is_alive()] + [t]
        t.start()

    def _resolve(self, req: SwitchPolicy.Request) -> tuple[str, Path | None]:
        rid = req.revision_id.strip()
        if rid in RESTORE_IDS:
            with self._lock:
                target = self.machine.state.last_good
            if not target:
                raise SwitchFailedError('no earlier good revision to restore: last_good is '
                                        'set only when a switch replaced a working revision')
            return target, self._dirs.get(target)
        if req.revision_dir:
            directory = Path(req.revision_dir)
            if not (directory / 'policy.py').is_file():
                raise SwitchFailedError(f'revision_dir {directory} has no policy.py; give a '
                                        'revision directory (enpire policy show <rev>)')
            return rid or directory.name, directory
        if not rid:
            raise SwitchFailedError('revision_id is empty: give a revision id, hold or '
                                    'last_good')
        if rid == HOLD:
            return HOLD, None
        with self._lock:
            known = rid in self._standby or rid in self._hosts or rid in self._dirs
        if known:   # hosted before (maybe parked warm): no store lookup, no directory needed
            return rid, self._dirs.get(rid)
        rev = self.store.get(rid)
        return rev.id, rev.path

    def _take_host(self, revision: str, directory: Path | None, end_s: float) -> _Slot:
        """A warm host for ``revision``: a parked standby, else a freshly started sandbox."""
        with self._lock:
            slot = self._standby.pop(revision, None)
        if slot is not None and slot.host.alive:
            return slot
        if slot is not None:
            self._close_later(slot)
        if directory is None:
            raise SwitchFailedError(f'revision {revision[:12]} has no known directory; switch '
                                    'to it by id from the revision store')
        spec = self._spec(directory)
        cfg = self.config
        host = PolicyHost(directory, spec, config=cfg.sandbox,
                          log_dir=self._log_root / revision[:40],
                          hard_deadline_s=hard_deadline_s(spec.deadline_s,
                                                          cfg.hard_deadline_factor,
                                                          cfg.hard_deadline_min_s))
        try:
            host.start(timeout_s=max(0.5, end_s - time.monotonic()))
            host.reset(None)
            # First act: generous deadline (lazy imports, caches) on a real observation.
            host.act(self._warm_obs(spec, end_s),
                     deadline_s=min(self.config.first_act_timeout_s,
                                    max(0.1, end_s - time.monotonic())))
        except BaseException:
            host.close()
            raise
        return _Slot(revision, directory, host)

    def _warm_obs(self, spec: PolicySpec, end_s: float) -> dict[str, Any]:
        latest = self._latest_obs
        if latest is not None:
            return latest[1]
        # No cell stream yet: the contract's example observation exercises the same code.
        return spec.example_observation()

    # --- switch_policy ----------------------------------------------------------------------
    def _on_switch(self, req: SwitchPolicy.Request,
                   resp: SwitchPolicy.Response) -> SwitchPolicy.Response:
        t0 = time.monotonic()
        with self._lock:
            resp.previous_revision = self.machine.state.active
        # Service boundary: every failure becomes error_code/error_msg, the node lives on.
        try:
            revision, latency_s = self._switch(req, t0)
        except EnpireError as exc:
            resp.ok, resp.error_code, resp.error_msg = False, exc.code, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the cell's bridge
            self.get_logger().error(f'switch_policy: unexpected {exc!r}')
            resp.ok, resp.error_code = False, SwitchFailedError.code
            resp.error_msg = f'switch failed unexpectedly: {exc!r}'
        else:
            resp.ok, resp.switch_latency_s = True, latency_s
        with self._lock:
            resp.active_revision = self.machine.state.active
        return resp

    def _switch(self, req: SwitchPolicy.Request, t0: float) -> tuple[str, float]:
        strictness = (Strictness.BEST_EFFORT if req.strictness == SwitchPolicy.Request.BEST_EFFORT
                      else Strictness.STRICT)
        timeout_s = req.timeout_s if req.timeout_s > 0 else self.config.switch_timeout_s
        end_s = t0 + timeout_s
        if not self._switch_lock.acquire(blocking=False):
            raise SwitchFailedError('another switch is in progress on this cell; retry when '
                                    'it completes')
        try:
            with self._lock:
                if self._mode != 'running':
                    raise CellBusyError(f'the cell is {self._mode}; resume it first '
                                        '(enpire cell resume) and switch again')
                state = self.machine.state
                previous = state.active
                if state.phase is Phase.ACTIVE and previous and previous == self._peek_id(req):
                    return previous, 0.0
            revision, directory = self._resolve(req)
            with self._lock:
                if revision == self.machine.state.active and \
                        self.machine.state.phase is Phase.ACTIVE:
                    return revision, 0.0
            slot = None
            if revision != HOLD:
                try:
                    slot = self._take_host(revision, directory, end_s)
                except PolicyError as exc:
                    self._staging_failed(revision, strictness, str(exc))
                    raise self._switch_error(revision, previous, strictness, str(exc)) \
                        from None
                if directory is not None:
                    self._dirs[revision] = directory
            waiter = _Waiter(revision)
            with self._lock:
                if slot is not None:
                    self._hosts[revision] = slot
                self._waiters[revision] = waiter
                self.machine.request(revision, strictness)
                staging = self.machine.state.phase is Phase.STAGING
            self._publish_status('staging' if staging else 'activating', target=revision)
            try:
                if staging:
                    self._warm_up(revision, slot, strictness, previous, end_s)
                    waiter.scheduled_s = time.monotonic()
                if not waiter.event.wait(max(0.0, end_s - time.monotonic())):
                    self._first_command_missing(revision, timeout_s)
                if waiter.error:
                    raise self._switch_error(revision, previous, strictness,
                                             f'faulted at its first tick: {waiter.error}')
            finally:
                with self._lock:
                    self._waiters.pop(revision, None)
            latency_s = waiter.time_s - t0
            # Monotonic times are comparable across processes on one host (benchmarks).
            self._last_switch = {
                'revision': revision, 'previous': previous, 'switch_tick': waiter.tick,
                'latency_s': latency_s, 'request_mono_s': t0,
                'warmup_s': (waiter.scheduled_s - t0) if waiter.scheduled_s else None}
            self._publish_status('switched', target=revision)
            return revision, latency_s
        finally:
            self._switch_lock.release()

    @staticmethod
    def _peek_id(req: SwitchPolicy.Request) -> str:
        return req.revision_id.strip() if not req.revision_dir else ''

    def _warm_up(self, revision: str, slot: _Slot | None, strictness: Strictness,
                 previous: str, end_s: float) -> None:
        """One act on the newest live observation under the contract deadline."""
        if slot is None:        # hold: nothing to warm up
            with self._lock:
                self.machine.warm_action(revision, True)
            return
        if self._latest_obs is None and not self._obs_event.wait(
                max(0.0, end_s - time.monotonic())):
            reason = 'no observation from the cell to warm up on (is it publishing state?)'
            self._staging_failed(revision, strictness, reason)
            raise self._switch_error(revision, previous, strictness, reason)
        assert self._latest_obs is not None
        try:
            slot.host.reset(None)
            if self._within_tick:
                # The tick path is locked from the act to the publish: the warm-up action is
                # the newest tick's, and no tick is served between the gate flip and this
                # tick's replacement command. One act: it is the warm-up and the command.
                with self._tick_lock:
                    failed = self._switch_within_tick(revision, slot)
            else:
                slot.host.act(self._latest_obs[1])
                with self._lock:
                    self.machine.warm_action(revision, True)
                    failed = self.machine.state.phase is not Phase.SWITCHED
        except PolicyError as exc:
            with self._lock:
                self._discard.add(revision)
                self.machine.warm_action(revision, False, str(exc))
            self._publish_status('staging_failed', reason=str(exc))
            raise self._switch_error(revision, previous, strictness, str(exc)) from None
        if failed:
            # Overtaken while acting: the warm-up window ran out, or the active revision
            # faulted (-> hold) and cancelled the staging.
            with self._lock:
                s = self.machine.state
                left = (self._hosts.pop(revision, None)
                        if revision not in (s.active, s.retiring) else None)
                last = s.log[-1]
            if left is not None:
                self._close_later(left)
            reason = f'overtaken by {last.kind} of {last.revision[:12]}: {last.detail}'
            raise self._switch_error(revision, previous, strictness, reason)

    def _switch_within_tick(self, revision: str, slot: _Slot) -> bool:
        """Act on the newest served tick and switch there, replacing its command.

        Tick lock held. A PolicyError of the act is a staging failure (the caller's). Returns
        True when the switch was overtaken (no longer SWITCHED), like the next-tick path.
        """
        latest, state = self._latest_obs, self._latest_state
        assert latest is not None and state is not None
        tick, obs = latest
        action = slot.host.act(obs)
        with self._lock:
            self.machine.warm_action(revision, True, at_tick=tick)
            s = self.machine.state
            if s.phase is not Phase.SWITCHED:
                return True
            replace = s.switch_tick == tick and self._mode == 'running'
        if replace:
            self._publish_command(tick, revision, action, state)
            self._published(revision, tick)
        return False

    def _staging_failed(self, revision: str, strictness: Strictness, reason: str) -> None:
        with self._lock:
            self._discard.add(revision)
            phase = self.machine.state.phase
            if phase is Phase.STAGING and self.machine.state.staged == revision:
                self.machine.staging_failed(revision, reason)
            elif strictness is Strictness.BEST_EFFORT and phase is not Phase.IDLE:
                # Failed before staging began (the host never started): same outcome.
                self.machine.request(revision, strictness)
                self.machine.staging_failed(revision, reason)
            self._discard.discard(revision)
        self._publish_status('staging_failed', reason=reason)

    def _first_command_missing(self, revision: str, timeout_s: float) -> None:
        reason = f'no command of {revision[:12]} was published within {timeout_s:.1f} s'
        with self._lock:
            state = self.machine.state
            if state.phase is Phase.SWITCHED and state.active == revision:
                self.machine.fault(revision, reason)   # STRICT: rolls back to the old host
            elif state.phase is Phase.STAGING and state.staged == revision:
                self.machine.staging_failed(revision, reason)
            elif state.active == revision:   # first activation, but the cell never ticked
                self.machine.fault(revision, reason)
        self._publish_status('staging_failed', reason=reason)
        raise SwitchFailedError(f'{reason} (is the cell publishing state ticks?)')

    def _switch_error(self, revision: str, previous: str, strictness: Strictness,
                      reason: str) -> SwitchFailedError:
        keep = (f'{previous[:12] or HOLD} stays active' if strictness is Strictness.STRICT
                else 'fell back to hold')
        return SwitchFailedError(f'switch to {revision[:12]} failed, {keep}: {reason}')

    # --- pause / resume / home --------------------------------------------------------------
    def _on_cell_verb(self, verb: str, resp: Any) -> Any:
        with self._lock:
            if verb == 'pause':
                self._mode, msg = 'paused', 'paused: no commands are published'
            elif verb == 'resume':
                self._mode, msg = 'running', f'resumed {self.machine.active[:12]}'
            else:
                latest = self._latest_obs
                if self._home is not None:
                    self._home_target = self._home
                elif latest is not None:
                    self._home_target = np.clip(latest[1]['agent_pos'], self.low, self.high)
                else:
                    self._home_target = None
                self._mode = 'homing'
                where = ('the agent position' if self._home_target is None
                         else str(self._home_target.tolist()))
                msg = f'homing to {where}'
        resp.success = True
        if hasattr(resp, 'message'):
            resp.message = msg
        else:
            resp.error_msg = msg
        self._publish_status(verb)
        return resp

    # --- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            s = self.machine.state
            last = s.log[-1] if s.log else None
            return {'mode': self._mode, 'phase': s.phase.value, 'active': s.active,
                    'staged': s.staged, 'retiring': s.retiring, 'last_good': s.last_good,
                    'standby': list(self._standby), 'switches': self._switches,
                    'skipped_ticks': self._skipped_ticks, 'late_acts': self._late_acts,
                    'last_switch': self._last_switch,
                    'faults': self._faults[-5:],
                    'last_event': None if last is None else {
                        'kind': last.kind, 'revision': last.revision, 'tick': last.tick,
                        'detail': last.detail}}

    def _publish_status(self, event: str, **extra: Any) -> None:
        self._status_pub.publish(String(data=json.dumps({'event': event, **self.status(),
                                                         **extra})))

    def destroy_node(self) -> None:
        with self._lock:
            slots = [*self._hosts.values(), *self._standby.values()]
            self._hosts.clear()
            self._standby.clear()
        for slot in slots:
            slot.host.close()
        for t in self._closers:
            t.join(timeout=5.0)
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
