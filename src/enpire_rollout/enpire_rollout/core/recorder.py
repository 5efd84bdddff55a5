"""The episode recorder: one trial -> rosbag2 bag + one MP4 per view + trial.json.

The :class:`EpisodeWriter` port is what the rollout calls; :class:`EpisodeRecorder` is the
real implementation (bag through a :class:`~enpire_rollout.core.bag.BagWriter`, videos through
:class:`~enpire_rollout.core.video.VideoWriter`), :class:`MemoryEpisodeWriter` the shipped fake.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import ConfigError, UnknownNameError
from enpire_common.images import compressed_from_rgb, rgb_from_compressed, rgb_from_image
from enpire_rollout.core.bag import (
    BAG_DIRNAME,
    BagWriter,
    make_bag_writer,
    parse_cdr,
    serialize,
    typestore,
)
from enpire_rollout.core.config import RecorderConfig
from enpire_rollout.core.records import (
    OUTCOME_RUNNING,
    OUTCOMES,
    SCHEMA,
    TRIAL_JSON,
    atomic_write_json,
    hash_files,
)
from enpire_rollout.core.video import VideoWriter

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE_TYPE = 'sensor_msgs/msg/CompressedImage'
#: image_transport's name for the compressed form of an image topic (``.../image_raw`` +).
COMPRESSED_SUFFIX = '/compressed'


def image_topic(view: str, bag_images: str = 'raw') -> str:
    """The relative topic of ``view``'s frames: the camera's own (``camera/<view>/image_raw``)
    for ``raw``, its image_transport ``/compressed`` topic for ``jpeg`` and ``png``."""
    topic = f'camera/{view}/image_raw'
    return topic if bag_images == 'raw' else topic + COMPRESSED_SUFFIX


def topic_types(config: RecorderConfig) -> dict[str, str]:
    """Relative topic name -> message type of every stream the recorder subscribes.

    Cameras are subscribed as they publish (raw Images); :func:`recorded_types` says how
    the bag stores them.
    """
    topics = {image_topic(view): IMAGE_TYPE for view in config.camera_views}
    topics.update({
        'state': 'enpire_interfaces/msg/StateVector',
        'policy/command': 'enpire_interfaces/msg/Command',
        'command': 'enpire_interfaces/msg/Command',
        'safety/events': 'enpire_interfaces/msg/SafetyEvent',
        'verdicts': 'enpire_interfaces/msg/Verdict',
        'cell_state': 'enpire_interfaces/msg/CellState',
        'alerts': 'enpire_interfaces/msg/Alert',
    })
    topics.update(dict(spec.split(':') for spec in config.extra_topics))
    return topics


def recorded_types(config: RecorderConfig) -> dict[str, str]:
    """Relative topic name -> message type of every stream a trial's bag holds
    (:func:`topic_types` with each camera in its ``config.bag_images`` form)."""
    topics = topic_types(config)
    if config.bag_images != 'raw':
        for view in config.camera_views:
            del topics[image_topic(view)]
            topics[image_topic(view, config.bag_images)] = COMPRESSED_IMAGE_TYPE
    return topics


def declared_rates(config: RecorderConfig) -> dict[str, float]:
    """Relative topic -> declared rate (Hz); event streams (events, verdicts) have none.

    A camera's rate is declared for both of its forms (raw and ``/compressed``): the stream
    report rates whichever one a trial holds.
    """
    rated = [image_topic(view, form) for view in config.camera_views
             for form in ('raw', 'jpeg')]
    rated += ['state', 'policy/command', 'command']
    return {t: config.control_rate_hz for t in rated}


def bag_image_rgb(msgtype: str, msg: Any) -> np.ndarray:
    """The H x W x 3 uint8 RGB frame of a camera message read from a bag (a rosbags
    ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``): the one decoder every bag
    reader uses, so a raw and a compressed bag read alike.

    Raises:
        BadImageError: an unsupported encoding or format, or data that does not decode.
        ConfigError: ``msgtype`` is not an image type.
    """
    if msgtype == IMAGE_TYPE:
        return rgb_from_image(msg.encoding, int(msg.height), int(msg.width), int(msg.step),
                              msg.data)
    if msgtype == COMPRESSED_IMAGE_TYPE:
        return rgb_from_compressed(msg.format, msg.data)
    raise ConfigError(f'{msgtype} is not a camera image type ({IMAGE_TYPE} or '
                      f'{COMPRESSED_IMAGE_TYPE})')


def _relative(topic: str, names: Sequence[str]) -> str | None:
    """The relative name ``topic`` (possibly namespaced: /cell_0/state) stands for."""
    for name in names:
        if topic == name or topic.endswith('/' + name):
            return name
    return None


@dataclass(frozen=True)
class TrialMeta:
    """Identity of one trial (the ids of trial.json)."""

    experiment_id: str
    trial_id: str
    revision_id: str = ''
    cell_id: str = ''
    task: str = ''
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Stream:
    msgtype: str
    count: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    max_gap_ns: int = 0

    def add(self, stamp_ns: int) -> None:
        if self.last_ns is not None:
            self.max_gap_ns = max(self.max_gap_ns, stamp_ns - self.last_ns)
        if self.first_ns is None:
            self.first_ns = stamp_ns
        self.last_ns = stamp_ns
        self.count += 1


class EpisodeWriter(Protocol):
    """Port: records one trial at a time."""

    def open(self, trial_dir: str | Path, meta: TrialMeta) -> None:
        """Start a trial in ``trial_dir`` (created; must not hold a trial yet)."""

    def write(self, topic: str, msgtype: str, stamp_ns: int, msg_or_bytes: Any) -> None:
        """Record one message (CDR bytes, dict or dataclass) at ``stamp_ns``."""

    def write_frame(self, view: str, stamp_ns: int, frame: np.ndarray) -> None:
        """Append an RGB frame (H x W x 3 uint8) to ``<view>.mp4``."""

    def close(self, outcome: str, **result: Any) -> dict[str, Any]:
        """Finish the trial; returns the trial.json record (see EpisodeRecorder.close)."""


class _UnixClock:
    def now_s(self) -> float:
        return time.time()

    def sleep_s(self, duration_s: float) -> None:  # pragma: no cover - never used
        time.sleep(max(0.0, duration_s))


class EpisodeRecorder:
    """Records trials to disk: bag, MP4s and trial.json, every file written atomically.

    Args:
        config: streams, rates and video settings.
        clock: episode time (durations, expected message counts): the node's ROS clock.
        wall_clock: Unix time for the ``started_at``/``ended_at`` fields.
        bag_factory: makes the :class:`BagWriter` of each trial (default: rosbag2_py when
            importable, else rosbags).
    """

    def __init__(self, config: RecorderConfig | None = None, clock: Clock | None = None,
                 wall_clock: Clock | None = None,
                 bag_factory: Callable[[], BagWriter] | None = None) -> None:
        self.config = config or RecorderConfig()
        self._clock = clock or SystemClock()
        self._wall = wall_clock or _UnixClock()
        interval_ns = int(self.config.chunk_interval_s * 1e9)
        compression = self.config.bag_compression
        self._bag_factory = bag_factory or (
            lambda: make_bag_writer('auto', interval_ns, compression))
        self._types = recorded_types(self.config)
        self._rates = declared_rates(self.config)
        self._reset()

    def _reset(self) -> None:
        self.trial_dir: Path | None = None
        self._meta: TrialMeta | None = None
        self._bag: BagWriter | None = None
        self._videos: dict[str, VideoWriter] = {}
        self._streams: dict[str, _Stream] = {}
        self._record: dict[str, Any] = {}
        self._t0 = 0.0

    @property
    def is_open(self) -> bool:
        return self.trial_dir is not None

    def counts(self) -> dict[str, int]:
        """Messages recorded so far per topic (plus ``<view>.mp4`` frame counts)."""
        out = {topic: s.count for topic, s in self._streams.items()}
        out.update({f'{view}.mp4': v.frames for view, v in self._videos.items()})
        return out

    def open(self, trial_dir: str | Path, meta: TrialMeta) -> None:
        """Start a trial: create ``trial_dir``, the bag, and trial.json marked ``running``.

        Raises:
            ConfigError: a trial is already open, or ``trial_dir`` already holds a trial.
        """
        if self.is_open:
            raise ConfigError(f'a trial is already being recorded in {self.trial_dir}; close '
                              'it before opening another')
        trial_dir = Path(trial_dir)
        if (trial_dir / TRIAL_JSON).exists() or (trial_dir / BAG_DIRNAME).exists():
            raise ConfigError(f'{trial_dir} already holds a trial; trial ids must be unique')
        trial_dir.mkdir(parents=True, exist_ok=True)
        self._t0 = self._clock.now_s()
        self._record = {
            'schema': SCHEMA,
            'ids': {'experiment_id': meta.experiment_id, 'trial_id': meta.trial_id,
                    'revision_id': meta.revision_id, 'cell_id': meta.cell_id,
                    'task': meta.task},
            'seed': int(meta.seed),
            'extra': dict(meta.extra),
            'outcome': OUTCOME_RUNNING,
            'reason': '',
            'timings': {'started_unix_s': self._wall.now_s()},
            'writer': {'pid': os.getpid(), 'host': socket.gethostname()},
        }
        # The marker goes down first: a crash after this point is found by recover_incomplete.
        atomic_write_json(trial_dir / TRIAL_JSON, self._record)
        bag = self._bag_factory()
        bag.open(trial_dir / BAG_DIRNAME)
        self.trial_dir, self._meta, self._bag = trial_dir, meta, bag
        self._record['bag'] = {'path': BAG_DIRNAME, 'storage': 'mcap', 'writer': bag.name}

    def write(self, topic: str, msgtype: str, stamp_ns: int, msg_or_bytes: Any) -> None:
        """Record one message; dicts/dataclasses are serialized with the rosbags typestore."""
        if self._bag is None:
            raise ConfigError(f'no trial is open; cannot record {topic} (call open first)')
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = _Stream(msgtype)
        self._bag.write(topic, msgtype, int(stamp_ns), serialize(msgtype, msg_or_bytes))
        stream.add(int(stamp_ns))

    def write_image(self, topic: str, view: str, stamp_ns: int, cdr: bytes | memoryview
                    ) -> None:
        """Record a serialized sensor_msgs/Image: into the bag and as a frame of ``<view>.mp4``.

        With ``bag_images: raw`` the same as :meth:`write` then :meth:`write_frame` with the
        decoded pixels; with ``jpeg``/``png`` the bag gets a sensor_msgs/CompressedImage of
        the frame (same header) on ``topic + '/compressed'`` instead. Either way from one
        parse of ``cdr`` (the pixels are a view of it, never deserialized into a message).

        Raises:
            BadImageError: the image's encoding or size is wrong (in ``raw`` mode the bag
                has the message already; a compressed bag gets nothing, having no pixels).
        """
        if self._bag is None:
            raise ConfigError(f'no trial is open; cannot record {topic} (call open first)')
        data, msg = parse_cdr(IMAGE_TYPE, cdr)
        mode = self.config.bag_images
        if mode == 'raw':
            self.write(topic, IMAGE_TYPE, stamp_ns, data)
        frame = rgb_from_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        if mode != 'raw':
            fmt, packed = compressed_from_rgb(frame, mode, self.config.jpeg_quality)
            store = typestore()
            compressed = store.types[COMPRESSED_IMAGE_TYPE](header=msg.header, format=fmt,
                                                            data=packed)
            self.write(topic + COMPRESSED_SUFFIX, COMPRESSED_IMAGE_TYPE, stamp_ns,
                       store.serialize_cdr(compressed, COMPRESSED_IMAGE_TYPE))
        self.write_frame(view, stamp_ns, frame)

    def write_frame(self, view: str, stamp_ns: int, frame: np.ndarray) -> None:
        """Append a frame to ``<view>.mp4`` (views come from ``config.camera_views``)."""
        if self.trial_dir is None:
            raise ConfigError(f'no trial is open; cannot record a {view} frame')
        video = self._videos.get(view)
        if video is None:
            if view not in self.config.camera_views:
                raise UnknownNameError('camera view', view, self.config.camera_views)
            video = self._videos[view] = VideoWriter(
                self.trial_dir / f'{view}.mp4', self.config.control_rate_hz,
                self.config.video_codec)
        video.write(frame)

    def close(self, outcome: str, *, reason: str = '', success: bool = False,
              score: float = 0.0, steps: int = 0, reset_s: float = 0.0,
              verdicts: Sequence[Any] = (), error_code: int = 0, error_msg: str = '',
              controller: Mapping[str, int] | None = None,
              sandbox: Mapping[str, Any] | None = None,
              sandbox_denials: Mapping[str, Any] | None = None,
              reset: Mapping[str, Any] | None = None,
              stages: Mapping[str, bool] | None = None) -> dict[str, Any]:
        """Finish the trial: close bag and videos, hash them, write the final trial.json.

        Args:
            outcome: one of TrialResult's OUTCOME_* values.
            reason: why it ended.
            success, score: the final verdict's decision and task score.
            steps: control steps executed (the expected count of the command streams).
            reset_s: reset duration, seconds.
            verdicts: per-view verdicts (dicts or dataclasses), fused last.
            error_code, error_msg: as in TrialResult.
            controller: the controller's counters for the episode (TrialRecord.controller).
            sandbox: the policy's confinement (TrialRecord.sandbox: confinement,
                allow_unconfined).
            sandbox_denials: what its sandbox refused (TrialRecord.sandbox_denials:
                ``count``, ``first``: the first few refused operations).
            reset: how the trial's start was reached (TrialRecord.reset: start and observed
                pose, attempts, ``method``: robot, sim_place or sim_place (fallback)).
            stages: the task's stages -> reached during the trial (TrialRecord.stages).

        Returns:
            The trial.json record.
        """
        if self.trial_dir is None or self._bag is None:
            raise ConfigError('no trial is open; nothing to close')
        if outcome not in OUTCOMES or outcome == OUTCOME_RUNNING:
            raise UnknownNameError('trial outcome', outcome,
                                   [o for o in OUTCOMES if o != OUTCOME_RUNNING])
        trial_dir, record = self.trial_dir, self._record
        duration_s = max(0.0, self._clock.now_s() - self._t0)
        self._bag.close()
        videos = {view: v.close() for view, v in self._videos.items()}
        streams, gaps = self._stream_report(duration_s, steps)
        record.update({
            'outcome': outcome, 'reason': reason, 'success': bool(success),
            'score': float(score), 'steps': int(steps),
            'verdicts': [asdict(v) if is_dataclass(v) else dict(v) for v in verdicts],
            'error_code': int(error_code), 'error_msg': error_msg,
            'streams': streams, 'gaps': gaps, 'videos': videos,
            'controller': {str(k): int(v) for k, v in (controller or {}).items()},
            'sandbox': {'confinement': str((sandbox or {}).get('confinement', 'unknown')),
                        'allow_unconfined': bool((sandbox or {}).get('allow_unconfined'))},
            'sandbox_denials': {'count': int((sandbox_denials or {}).get('count', 0)),
                                'first': [str(d) for d in
                                          (sandbox_denials or {}).get('first') or []]},
            'reset': {str(k): v for k, v in (reset or {}).items()},
            'stages': {str(k): bool(v) for k, v in (stages or {}).items()},
        })
        record['timings'].update({'ended_unix_s': self._wall.now_s(),
                                  'duration_s': duration_s, 'reset_s': float(reset_s)})
        names = [f'{BAG_DIRNAME}/{p.name}' for p in sorted((trial_dir / BAG_DIRNAME).iterdir())
                 if p.is_file()]
        names += [v['path'] for v in videos.values() if v['path']]
        record['files'] = hash_files(trial_dir, names)
        atomic_write_json(trial_dir / TRIAL_JSON, record)
        self._reset()
        return record

    def abort(self, reason: str) -> dict[str, Any] | None:
        """Close an open trial as ``aborted`` (e.g. a new start arrived); None if none open."""
        if not self.is_open:
            return None
        return self.close('aborted', reason=reason)

    def _stream_report(self, duration_s: float, steps: int) -> tuple[dict[str, Any], bool]:
        cfg = self.config
        out: dict[str, Any] = {}
        any_gap = False
        names = list(self._types)
        seen = {(_relative(t, [*names, *self._rates]) or t): (t, s)
                for t, s in self._streams.items()}
        # A camera recorded in its other form (a raw Image passed to write() while the config
        # says jpeg, or the reverse) is that camera's stream: its declared form is not missing.
        other = {image_topic(v, a): image_topic(v, b) for v in cfg.camera_views
                 for a, b in (('raw', 'jpeg'), ('jpeg', 'raw'))}
        for name in sorted(set(names) | set(seen)):
            if name not in seen and other.get(name) in seen:
                continue
            topic, stream = seen.get(name, (name, _Stream(self._types.get(name, ''))))
            rate = self._rates.get(name, 0.0)
            entry: dict[str, Any] = {'topic': topic, 'msgtype': stream.msgtype,
                                     'count': stream.count, 'rate_hz': rate or None,
                                     'max_gap_s': stream.max_gap_ns * 1e-9}
            if rate > 0:
                commands = name in ('policy/command', 'command')
                expected = int(steps) if commands and steps > 0 else int(
                    math.floor(duration_s * rate + 1e-9))
                missing = max(0, expected - stream.count)
                gap = (missing > cfg.gap_tolerance * expected + 1
                       or stream.max_gap_ns * 1e-9 > cfg.gap_factor / rate)
                entry.update({'expected': expected, 'missing': missing, 'gaps': bool(gap)})
                any_gap = any_gap or gap
            out[name] = entry
        return out, bool(any_gap)


class MemoryEpisodeWriter:
    """In-memory :class:`EpisodeWriter` for rollout tests: keeps every call, writes nothing."""

    def __init__(self) -> None:
        self.trials: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None

    def open(self, trial_dir: str | Path, meta: TrialMeta) -> None:
        if self.current is not None:
            raise ConfigError('a trial is already being recorded; close it first')
        self.current = {'trial_dir': str(trial_dir), 'meta': meta, 'messages': [],
                        'frames': {}, 'outcome': OUTCOME_RUNNING}

    def write(self, topic: str, msgtype: str, stamp_ns: int, msg_or_bytes: Any) -> None:
        if self.current is None:
            raise ConfigError(f'no trial is open; cannot record {topic}')
        self.current['messages'].append((topic, msgtype, int(stamp_ns), msg_or_bytes))

    def write_frame(self, view: str, stamp_ns: int, frame: np.ndarray) -> None:
        if self.current is None:
            raise ConfigError(f'no trial is open; cannot record a {view} frame')
        self.current['frames'][view] = self.current['frames'].get(view, 0) + 1

    def close(self, outcome: str, **result: Any) -> dict[str, Any]:
        if self.current is None:
            raise ConfigError('no trial is open; nothing to close')
        record, self.current = {**self.current, 'outcome': outcome, **result}, None
        self.trials.append(record)
        return record
