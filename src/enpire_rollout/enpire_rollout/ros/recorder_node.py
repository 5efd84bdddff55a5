"""The recorder node: records a cell's streams into one trial at a time, on request.

Control protocol (topics, because enpire_interfaces has no recorder service yet):
``recorder/control`` (std_msgs/String) carries one JSON request
``{"id": str, "op": "start"|"stop"|"status", ...}``:

- start: ``{"trial_dir": str, "meta": {experiment_id, trial_id, revision_id, cell_id, task,
  seed, extra}}`` -> opens the trial (an open one is closed first as ``aborted``).
- stop: ``{"outcome": str, "reason", "success", "score", "steps", "reset_s", "verdicts",
  "error_code", "error_msg", "controller", "sandbox", "sandbox_denials", "reset",
  "stages"}`` -> closes it and writes trial.json.
- status: reports the counts so far.

``recorder/status`` (std_msgs/String, transient local, depth 1) answers every request with
``{"id", "ok", "state": "idle"|"recording", "trial_dir", "counts", "error", "record"}``
(``record``: the trial.json written by stop). :class:`RecorderClient` wraps this.

A request is sent again (same id) while its status has not come: a lost request or a lost
answer costs a resend, not the trial. The recorder answers a request id it has already
handled with the status it gave then, and does nothing else, so a resent start never
reopens a trial and a resent stop never writes a second record.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from enpire_common.errors import ConfigError, EnpireError, EnpireTimeoutError
from enpire_common.paths import enpire_home
from enpire_common.ros import NodeClock, run_node
from enpire_rollout.core.config import RecorderConfig
from enpire_rollout.core.recorder import IMAGE_TYPE, EpisodeRecorder, TrialMeta, topic_types

CONTROL_TOPIC = 'recorder/control'
STATUS_TOPIC = 'recorder/status'
# Streams a real sensor may publish best-effort (see RecorderConfig.best_effort_sensors).
_BEST_EFFORT = ('image_raw', 'state', 'command')
#: A request unanswered this long is sent again (same id).
RESEND_S = 1.0
#: Request ids whose answer the recorder keeps, to answer a resend the same way.
ANSWERS_KEPT = 64


def status_qos() -> QoSProfile:
    """Latched: a late subscriber still gets the last status."""
    return QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                      reliability=ReliabilityPolicy.RELIABLE)


def _msg_class(msgtype: str) -> type:
    pkg, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{pkg}.{kind}'), name)


class RecorderNode(Node):
    """Records the cell's topics into ``<trial_dir>/{episode/, <view>.mp4, trial.json}``.

    Subscribes (cell namespace): camera/<view>/image_raw (sensor_msgs/Image, also encoded to
        <view>.mp4; bagged as a CompressedImage on camera/<view>/image_raw/compressed, or
        as is with bag_images raw), state (StateVector), policy/command and command (Command),
        safety/events (SafetyEvent), verdicts (Verdict), cell_state (CellState), alerts
        (Alert: a reset that paused the cell or needed the fallback);
        recorder/control (std_msgs/String, JSON requests, see the module docstring).
    Publishes: recorder/status (std_msgs/String, JSON, transient local).
    Parameters (see RecorderConfig): camera_views (str[]), control_rate_hz (float, Hz),
        gap_tolerance (float), gap_factor (float), video_codec (str), chunk_interval_s (s),
        bag_compression (str: zstd|none), bag_images (str: jpeg|png|raw), jpeg_quality
        (int, 1..100).
    Messages are stamped with their arrival time on the node's clock (sim time when
    use_sim_time is set), as ros2 bag record does.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__('recorder', **kwargs)
        from enpire_common.ros import declare_config

        self.config = declare_config(self, RecorderConfig)
        self.recorder = EpisodeRecorder(self.config, clock=NodeClock(self))
        self._lock = threading.Lock()
        self._status_pub = self.create_publisher(String, STATUS_TOPIC, status_qos())
        self._answered: OrderedDict[str, str] = OrderedDict()   # request id -> its status
        self.create_subscription(String, CONTROL_TOPIC, self._on_control, 10)
        self._latched: dict[str, tuple[str, bytes]] = {}   # resolved topic -> (type, last)
        for topic, msgtype in topic_types(self.config).items():
            best_effort = self.config.best_effort_sensors and topic.endswith(_BEST_EFFORT)
            # Sensor streams best-effort by default (see RecorderConfig.best_effort_sensors).
            qos = QoSProfile(depth=100, reliability=(ReliabilityPolicy.BEST_EFFORT if best_effort
                                                     else ReliabilityPolicy.RELIABLE))
            resolved = self.resolve_topic_name(topic)
            if topic in self.config.latched_topics:
                self.create_subscription(
                    _msg_class(msgtype), topic,
                    lambda data, t=resolved, m=msgtype: self._on_latched(data, t, m),
                    status_qos(), raw=True)
                continue
            view = topic.split('/')[1] if msgtype == IMAGE_TYPE else None
            # raw: the bag wants the CDR bytes anyway (or a compression of the pixels), so
            # nothing is deserialized into a message and serialized back (a 691 KB frame
            # every tick); the video frame is decoded straight from those bytes.
            self.create_subscription(
                _msg_class(msgtype), topic,
                lambda data, t=resolved, m=msgtype, v=view: self._on_message(data, t, m, v),
                qos, raw=True)
        self._publish_status('', ok=True)

    def _on_message(self, data: bytes, topic: str, msgtype: str, view: str | None) -> None:
        with self._lock:
            if not self.recorder.is_open:
                return
            stamp_ns = self.get_clock().now().nanoseconds
            try:
                if view is not None:
                    self.recorder.write_image(topic, view, stamp_ns, data)
                else:
                    self.recorder.write(topic, msgtype, stamp_ns, data)
            except EnpireError as exc:
                self.get_logger().error(f'cannot record {topic}: {exc}',
                                        throttle_duration_sec=5.0)

    def _on_latched(self, data: bytes, topic: str, msgtype: str) -> None:
        with self._lock:
            self._latched[topic] = (msgtype, data)
            if self.recorder.is_open:
                self._write_latched(topic)

    def _write_latched(self, topic: str) -> None:
        msgtype, data = self._latched[topic]
        try:
            self.recorder.write(topic, msgtype, self.get_clock().now().nanoseconds, data)
        except EnpireError as exc:
            self.get_logger().error(f'cannot record {topic}: {exc}', throttle_duration_sec=5.0)

    def _on_control(self, msg: String) -> None:
        request_id = ''
        with self._lock:
            # The one broad except: any failure becomes an error status, never a dead node.
            try:
                request = json.loads(msg.data)
                request_id = str(request.get('id', ''))
                if request_id and request_id in self._answered:
                    # a resend (our answer was lost, or it crossed it): the same answer
                    self._status_pub.publish(String(data=self._answered[request_id]))
                    return
                record = self._handle(request)
            except Exception as exc:  # noqa: BLE001
                self._publish_status(request_id, ok=False, error=f'{type(exc).__name__}: {exc}')
                return
            self._publish_status(request_id, ok=True, record=record)

    def _handle(self, request: dict[str, Any]) -> dict[str, Any] | None:
        op = request.get('op')
        if op == 'start':
            if self.recorder.is_open:
                self.recorder.abort('a new trial started before this one was stopped')
            meta = TrialMeta(**(request.get('meta') or {}))
            self.recorder.open(Path(request['trial_dir']), meta)
            for topic in self._latched:     # descriptions published once, in every bag
                self._write_latched(topic)
            return None
        if op == 'stop':
            result = dict(request)
            for key in ('id', 'op'):
                result.pop(key, None)
            outcome = result.pop('outcome', 'aborted')
            return self.recorder.close(outcome, **result)
        if op == 'status':
            return None
        raise ConfigError(f"recorder op {op!r} is unknown (known: 'start', 'stop', 'status')")

    def _publish_status(self, request_id: str, ok: bool, error: str = '',
                        record: dict[str, Any] | None = None) -> None:
        status = {'id': request_id, 'ok': ok, 'error': error,
                  'state': 'recording' if self.recorder.is_open else 'idle',
                  'trial_dir': str(self.recorder.trial_dir or ''),
                  'counts': self.recorder.counts(), 'record': record}
        data = json.dumps(status)
        if request_id:
            self._answered[request_id] = data
            while len(self._answered) > ANSWERS_KEPT:
                self._answered.popitem(last=False)
        self._status_pub.publish(String(data=data))

    def destroy_node(self) -> None:
        with self._lock:
            if self.recorder.is_open:
                self.recorder.abort('recorder node shut down during the trial')
        super().destroy_node()


class RecorderClient:
    """Drives a recorder node; also the rollout's ``RecorderPort`` (start/finish).

    Call from a thread other than the executor spinning ``node``.

    Args:
        node: a node of the caller, in the cell's namespace.
        runs_root: trials go to ``<runs_root>/<experiment_id>/trials/<trial_id>``; default
            ``$ENPIRE_HOME`` or ``./runs``.
        timeout_s: bound of every request.
    """

    def __init__(self, node: Node, runs_root: str | Path | None = None,
                 timeout_s: float = 10.0) -> None:
        self._node = node
        self.runs_root = enpire_home(runs_root)
        self.timeout_s = timeout_s
        self._pub = node.create_publisher(String, CONTROL_TOPIC, 10)
        self._cond = threading.Condition()
        self._statuses: OrderedDict[str, dict[str, Any]] = OrderedDict()
        node.create_subscription(String, STATUS_TOPIC, self._on_status, status_qos())

    def _on_status(self, msg: String) -> None:
        status = json.loads(msg.data)
        with self._cond:
            self._statuses[status.get('id', '')] = status
            while len(self._statuses) > ANSWERS_KEPT:    # answers to resends nobody waits for
                self._statuses.popitem(last=False)
            self._cond.notify_all()

    def request(self, op: str, **payload: Any) -> dict[str, Any]:
        """Send one request and wait for its status; raises on error or timeout."""
        from enpire_common.clock import Deadline

        deadline = Deadline(self.timeout_s)
        while self._pub.get_subscription_count() == 0:
            if deadline.expired():
                raise EnpireTimeoutError(f'no recorder node subscribes {CONTROL_TOPIC} within '
                                         f'{self.timeout_s:.1f} s; is the recorder launched?')
            threading.Event().wait(0.02)
        request_id = uuid.uuid4().hex
        data = String(data=json.dumps({'id': request_id, 'op': op, **payload}))
        with self._cond:
            while True:     # sent again, same id, until answered (see the module docstring)
                self._pub.publish(data)
                if self._cond.wait_for(lambda: request_id in self._statuses,
                                       min(RESEND_S, deadline.remaining_s())):
                    break
                if deadline.expired():
                    raise EnpireTimeoutError(f'recorder did not answer {op} within '
                                             f'{self.timeout_s:.1f} s')
            status = self._statuses.pop(request_id)
        if not status['ok']:
            raise ConfigError(f"recorder {op} failed: {status['error']}")
        return status

    def start(self, record: Any) -> str:
        """Open a trial for a TrialRecord-like object; returns its trial dir."""
        trial_dir = self.runs_root / record.experiment_id / 'trials' / record.trial_id
        meta = {k: getattr(record, k) for k in ('experiment_id', 'trial_id', 'revision_id',
                                                 'cell_id', 'task', 'seed')}
        self.request('start', trial_dir=str(trial_dir), meta=meta)
        return str(trial_dir)

    def finish(self, record: Any) -> dict[str, Any]:
        """Close the open trial with a TrialRecord-like object's outcome; returns trial.json."""
        result = {k: getattr(record, k) for k in ('outcome', 'reason', 'success', 'score',
                                                   'steps', 'reset_s', 'verdicts',
                                                   'error_code', 'error_msg',
                                                   'controller', 'sandbox',
                                                   'sandbox_denials')}
        # How the start was reached (TrialRecord.reset); a record without one has none.
        result['reset'] = dict(getattr(record, 'reset', None) or {})
        result['stages'] = dict(getattr(record, 'stages', None) or {})
        return self.request('stop', **result)['record']


def main(argv: list[str] | None = None) -> int:
    # The events executor: the recorder takes ~7 messages a control step, and the default
    # executor's per-message wait-set rebuild cost more CPU than recording them.
    # Recording is off the control path: it must never delay a tick (see run_node).
    return run_node('recorder', RecorderNode, argv, executor='fast', nice=10)


if __name__ == '__main__':
    sys.exit(main())
