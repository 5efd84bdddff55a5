"""Replay of recorded trials: republish a bag, or re-run a trial in sim and compare.

:func:`replay_bag` publishes a trial bag's messages like ``ros2 bag play``: the same topic
names (optionally moved to another cell namespace or under a prefix, so a live cell is not
disturbed), the same types, the recorded relative timing scaled by ``rate`` (``rate=0``: as
fast as possible). Messages go out as the recorded CDR bytes (``Publisher.publish`` accepts
serialized bytes), so nothing is deserialized on the way, with one exception: a camera
frame recorded compressed (``.../image_raw/compressed``, see ``RecorderConfig.bag_images``)
is also decoded and published as the sensor_msgs/Image on ``.../image_raw`` that the camera
published live, so the verifier, policy host and dashboard see what they saw then.

:func:`rerun_trial` runs a recorded trial again on a (sim) cell from its seed and revision
(experiment ``<experiment>-rerun``) and :func:`compare_states` checks, tick by tick, whether
the cell's ``state`` stream is bit-identical to the original: in lockstep with the same seed
and a deterministic policy it must be.

The reading and comparison helpers (:func:`read_messages`, :func:`episode_states`,
:func:`compare_states`) need rosbags only; rclpy is imported by the publishing functions.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enpire_common.errors import BadImageError, ConfigError
from enpire_rollout.core.recorder import COMPRESSED_IMAGE_TYPE, COMPRESSED_SUFFIX, IMAGE_TYPE

#: Topics a live cell latches (depth 1, transient local); everything else is a plain stream.
_LATCHED_SUFFIXES = ('image_raw', 'image_raw/compressed', 'camera_info', 'state',
                     'cell_state', 'clock')
STATE_TYPE = 'enpire_interfaces/msg/StateVector'
CELL_STATE_TYPE = 'enpire_interfaces/msg/CellState'


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    stamp_ns: int
    data: bytes


def read_messages(path: str | Path, topics: Callable[[str], bool] | None = None,
                  warnings: list[str] | None = None) -> Iterator[BagMessage]:
    """Messages of a trial's bag (trial dir or bag dir) in recorded order.

    A bag whose recorder was killed (no index) is read up to its last complete chunk; why it
    was streamed is appended to ``warnings`` when given.

    Args:
        path: a trial directory or its ``episode/`` rosbag2 directory.
        topics: keep only topics for which this returns True (default: all).
        warnings: a list to append the reader's warnings to.

    Raises:
        ConfigError: no bag at ``path``.
        RecordDamagedError: the bag is damaged (the message names ``enpire bag recover``).
    """
    from enpire_rollout.core.bag_reader import BagReader

    with BagReader(path) as reader:
        if warnings is not None:
            warnings.extend(reader.warnings)
        conns = [c for c in reader.connections if topics is None or topics(c.topic)]
        for conn, stamp_ns, raw in reader.messages(conns):
            yield BagMessage(conn.topic, conn.msgtype, int(stamp_ns), bytes(raw))


def raw_image_topic(m: BagMessage) -> str | None:
    """The image topic a recorded CompressedImage stands for (``.../image_raw`` for
    ``.../image_raw/compressed``, image_transport's naming); None for any other message."""
    if m.msgtype != COMPRESSED_IMAGE_TYPE or not m.topic.endswith(COMPRESSED_SUFFIX):
        return None
    return m.topic[:-len(COMPRESSED_SUFFIX)] or None


def decode_image(m: BagMessage) -> BagMessage:
    """The rgb8 sensor_msgs/Image (same header) of a recorded CompressedImage, on the topic
    :func:`raw_image_topic` names.

    Raises:
        ConfigError: ``m`` is not a CompressedImage on a ``.../compressed`` topic.
        BadImageError: its CDR bytes do not parse, or its data does not decode.
    """
    from enpire_rollout.core.bag import typestore
    from enpire_rollout.core.recorder import bag_image_rgb

    topic = raw_image_topic(m)
    if topic is None:
        raise ConfigError(f'{m.topic} ({m.msgtype}) is not a compressed image topic')
    store = typestore()
    try:
        msg = store.deserialize_cdr(m.data, m.msgtype)
    except Exception as exc:  # noqa: BLE001 - any parse failure means corrupt input
        raise BadImageError(f'{m.topic}: CDR bytes do not parse ({exc})') from None
    rgb = bag_image_rgb(m.msgtype, msg)
    height, width = rgb.shape[:2]
    image = store.types[IMAGE_TYPE](header=msg.header, height=height, width=width,
                                    encoding='rgb8', is_bigendian=0, step=width * 3,
                                    data=rgb.reshape(-1))
    return BagMessage(topic, IMAGE_TYPE, m.stamp_ns,
                      bytes(store.serialize_cdr(image, IMAGE_TYPE)))


def remap_topic(topic: str, cell: str = '', prefix: str = '') -> str:
    """Where a recorded topic is republished.

    ``cell`` replaces the recorded cell namespace (the first name segment of ``/cell_0/...``);
    ``prefix`` is put in front of the result (``/replay`` + ``/cell_0/state``). Global topics
    (one segment, e.g. ``/clock``) keep their name unless a prefix is given.
    """
    parts = topic.strip('/').split('/')
    if cell and len(parts) > 1:
        parts[0] = cell.strip('/')
    out = '/' + '/'.join(parts)
    if prefix:
        out = '/' + prefix.strip('/') + out
    return out


def _msg_class(msgtype: str) -> type:
    pkg, kind, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ImportError, AttributeError):
        raise ConfigError(f'message type {msgtype} is not importable; source scripts/env.sh '
                          'so the workspace interfaces are on the path') from None


def _qos(topic: str) -> Any:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    if topic.endswith(_LATCHED_SUFFIXES):
        # Reliable + transient local serves every subscriber (best-effort, volatile, latched).
        return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


@dataclass
class ReplayStats:
    messages: int = 0
    loops: int = 0
    duration_s: float = 0.0
    topics: dict[str, int] | None = None
    warnings: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {'messages': self.messages, 'loops': self.loops,
                'duration_s': round(self.duration_s, 3), 'topics': self.topics or {},
                'warnings': list(self.warnings or [])}


def replay_bag(path: str | Path, *, rate: float = 1.0, loop: bool = False, cell: str = '',
               prefix: str = '', topics: Callable[[str], bool] | None = None,
               wait_subscribers_s: float = 0.0, stop: threading.Event | None = None,
               max_loops: int = 0) -> ReplayStats:
    """Republish a bag's messages with their recorded timing (``ros2 bag play``).

    Args:
        path: trial directory or bag directory.
        rate: playback speed factor (2.0 = twice as fast); 0 = as fast as possible.
        loop: start over at the end until ``stop`` is set (or ``max_loops`` passes).
        cell, prefix: where topics go, see :func:`remap_topic`.
        topics: keep only the recorded topics for which this returns True (a compressed
            camera topic is kept also when this keeps its ``.../image_raw`` topic).
        wait_subscribers_s: wait up to this long for every publisher to have a subscriber
            before the first message (0: start at once, like ``ros2 bag play``).
        stop: set it to stop early (e.g. from a signal handler).
        max_loops: with ``loop``, stop after this many passes (0 = until ``stop``).

    Returns:
        What was published; ``warnings`` says when the bag was unindexed (read up to its last
        complete chunk) and how many compressed frames of a topic did not decode (those
        are published compressed only).

    Raises:
        ConfigError: no bag at ``path``, or ``rate`` < 0.
        RecordDamagedError: the bag is damaged.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    if rate < 0:
        raise ConfigError(f'rate={rate!r} is invalid: use a factor > 0, or 0 for as fast as '
                          'possible')
    warnings: list[str] = []

    def keep(t: str) -> bool:
        return topics is None or topics(t) or (t.endswith(COMPRESSED_SUFFIX) and topics(
            t.removesuffix(COMPRESSED_SUFFIX)))

    messages = list(read_messages(path, keep, warnings))
    recorded = {m.topic for m in messages}
    # Compressed frames are also published decoded, where the bag lacks the raw stream.
    decoded = {m.topic: t for m in messages
               if (t := raw_image_topic(m)) is not None and t not in recorded}
    undecodable: dict[str, tuple[int, str]] = {}    # topic -> (frames, first reason)
    stop = stop or threading.Event()
    stats = ReplayStats(topics={}, warnings=warnings)
    context = Context()
    rclpy.init(context=context)
    node = Node('enpire_replay', context=context, start_parameter_services=False)
    try:
        pubs: dict[str, Any] = {}
        for topic, msgtype in [*((m.topic, m.msgtype) for m in messages),
                               *((t, IMAGE_TYPE) for t in decoded.values())]:
            if topic not in pubs:
                out = remap_topic(topic, cell, prefix)
                pubs[topic] = node.create_publisher(_msg_class(msgtype), out, _qos(out))
        if wait_subscribers_s > 0:
            end = time.monotonic() + wait_subscribers_s
            while (not stop.is_set() and time.monotonic() < end
                   and any(p.get_subscription_count() == 0 for p in pubs.values())):
                stop.wait(0.02)
        t_start = time.monotonic()
        while not stop.is_set() and messages:
            t0_wall = time.monotonic()
            t0_bag = messages[0].stamp_ns
            for m in messages:
                if rate > 0:
                    due = t0_wall + (m.stamp_ns - t0_bag) * 1e-9 / rate
                    delay = due - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        break
                if stop.is_set():
                    break
                pubs[m.topic].publish(m.data)
                stats.messages += 1
                stats.topics[m.topic] = stats.topics.get(m.topic, 0) + 1
                if m.topic in decoded:
                    try:
                        image = decode_image(m)
                    except BadImageError as exc:    # a bad frame is skipped, and reported
                        n, first = undecodable.get(m.topic, (0, str(exc)))
                        undecodable[m.topic] = (n + 1, first)
                        continue
                    pubs[image.topic].publish(image.data)
                    stats.messages += 1
                    stats.topics[image.topic] = stats.topics.get(image.topic, 0) + 1
            else:
                stats.loops += 1
            if not loop or (max_loops and stats.loops >= max_loops):
                break
        stats.duration_s = time.monotonic() - t_start
        warnings.extend([f'{topic}: {n} frame(s) do not decode and were published compressed '
                         f'only (first: {first})' for topic, (n, first) in undecodable.items()])
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return stats


# --- comparison ------------------------------------------------------------------------------
def episode_states(path: str | Path) -> list[tuple[int, tuple[float, ...]]]:
    """``(tick, values)`` of the bag's ``state`` stream for the episode itself.

    The recorder opens before the reset, and a reset may be repeated (a start that is already
    solved is re-reset), so the episode starts at the last tick-0 state; one entry per tick.
    """
    from enpire_rollout.core.bag import typestore

    store = typestore()
    series: list[tuple[int, tuple[float, ...]]] = []
    for m in read_messages(path, lambda t: t.endswith('/state') or t == 'state'):
        if m.msgtype != STATE_TYPE:
            continue
        msg = store.deserialize_cdr(m.data, STATE_TYPE)
        tick = int(msg.tick)
        if tick == 0:
            series = []
        if series and series[-1][0] == tick:
            continue
        series.append((tick, tuple(float(v) for v in msg.values)))
    return series


def clock_mode(path: str | Path) -> str:
    """The cell's clock mode recorded in the bag's ``cell_state`` ('' when absent)."""
    from enpire_rollout.core.bag import typestore

    store = typestore()
    for m in read_messages(path, lambda t: t.endswith('cell_state')):
        return str(store.deserialize_cdr(m.data, CELL_STATE_TYPE).clock_mode)
    return ''


def compare_states(original: list[tuple[int, tuple[float, ...]]],
                   rerun: list[tuple[int, tuple[float, ...]]]) -> dict[str, Any]:
    """Tick-by-tick comparison of two episodes' state series (exact float equality).

    Ticks are compared up to the last tick both episodes reached: the stop of an episode
    races the last in-flight command, so one run may end a tick or two later (reported as
    ``trailing_ticks``, not as a difference). A tick missing on one side only (a message the
    recorder lost) is counted in ``missing_ticks`` and skipped.

    Returns:
        ``{'identical', 'compared_ticks', 'original_ticks', 'rerun_ticks', 'trailing_ticks',
        'missing_ticks', 'first_diff'}``; ``first_diff`` is None or ``{'tick', 'original',
        'rerun'}`` (the two value lists).
    """
    a, b = dict(original), dict(rerun)
    last = min(max(a, default=-1), max(b, default=-1))
    common = sorted(t for t in set(a) & set(b) if t <= last)
    missing = sum(1 for t in set(a) ^ set(b) if t <= last)
    first_diff = None
    for tick in common:
        if a[tick] != b[tick]:
            first_diff = {'tick': tick, 'original': list(a[tick]), 'rerun': list(b[tick])}
            break
    return {'identical': first_diff is None and bool(common), 'compared_ticks': len(common),
            'original_ticks': len(a), 'rerun_ticks': len(b),
            'trailing_ticks': abs(max(a, default=-1) - max(b, default=-1)),
            'missing_ticks': missing, 'first_diff': first_diff}


def rerun_trial(trial_dir: str | Path, *, home: Path, cell: str = 'cell_0',
                start: bool = True, log: Callable[[str], None] | None = None,
                session: Any = None) -> dict[str, Any]:
    """Run a recorded trial again from its seed and revision; compare with the original.

    The rerun goes to experiment ``<experiment>-rerun`` with the same budget limits as the
    node's defaults (the original's step count is not a limit: it is a result to reproduce).

    Args:
        trial_dir: the original trial's directory (trial.json + episode/).
        home: ENPIRE_HOME holding the revision store.
        cell: cell namespace to run on (started from the sim launch when none answers and
            ``start``).
        session: an open :class:`~enpire_rollout.client.CellSession` to use (not closed here);
            the rerun is stored in the experiment store only through a session that records
            (``enpire_evolution.ros.trials_port.TrialsSession``): the rollout records nothing.

    Returns:
        ``{'ok', 'original', 'rerun', 'outcome_reproduced', 'lockstep', 'states'}`` where
        ``states`` is :func:`compare_states` of the two bags (None when either has no bag).
    """
    from enpire_rollout.client import CellSession, trial_to_dict
    from enpire_rollout.core.records import read_trial

    trial_dir = Path(trial_dir)
    record = read_trial(trial_dir)
    ids = record.get('ids') or {}
    revision_id = ids.get('revision_id') or ''
    if not revision_id:
        raise ConfigError(f'{trial_dir}/trial.json has no revision_id; cannot re-run it')
    experiment = f"{ids.get('experiment_id') or 'default'}-rerun"
    own = session is None
    if own:
        session = CellSession(home=home, cell=cell, start=start, log=log)
    try:
        result = session.client.run_trials(count=1, revision_id=revision_id,
                                           seeds=[int(record['seed'])],
                                           experiment_id=experiment, record=True)
    finally:
        if own:
            session.close()
    new = trial_to_dict(result.trials[0])
    original = {'trial_id': ids.get('trial_id'), 'revision_id': revision_id,
                'seed': record.get('seed'), 'outcome': record.get('outcome'),
                'score': record.get('score'), 'steps': record.get('steps'),
                'record_dir': str(trial_dir)}
    states = None
    modes = ('', '')
    if (trial_dir / 'episode').is_dir() and new['record_dir'] and \
            (Path(new['record_dir']) / 'episode').is_dir():
        states = compare_states(episode_states(trial_dir), episode_states(new['record_dir']))
        modes = (clock_mode(trial_dir), clock_mode(new['record_dir']))
    lockstep = modes == ('lockstep', 'lockstep')
    reproduced = new['outcome'] == original['outcome']
    ok = reproduced and (not lockstep or bool(states and states['identical']))
    return {'ok': ok, 'original': original, 'rerun': new, 'outcome_reproduced': reproduced,
            'lockstep': lockstep, 'states': states}
