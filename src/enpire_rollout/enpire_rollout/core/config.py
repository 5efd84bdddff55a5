"""Config dataclasses of the rollout package (safety envelope, recorder, disk guard).

One source of truth per component; nodes declare their ROS parameters from these with
``enpire_common.ros.declare_config`` (dotted names such as ``envelope.max_step_px``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from enpire_common.config import require
from enpire_rollout.core.bag import BAG_COMPRESSIONS

#: Per-rule reactions. ``clamp`` changes the command and applies it, ``reject`` drops it (the
#: cell holds its last command), ``abort`` drops it and every later command until ``reset``.
RULE_MODES = ('clamp', 'reject', 'abort')
RATE_MODES = ('reject', 'abort')  # a too-early command cannot be clamped in time
#: How a trial bag stores camera frames (:attr:`RecorderConfig.bag_images`).
BAG_IMAGES = ('jpeg', 'png', 'raw')


@dataclass(frozen=True)
class EnvelopeConfig:
    """The safety envelope of a task's command space (defaults: Push-T, pixels, 10 Hz).

    Attributes:
        low: lower bound per axis, task units (Push-T: px).
        high: upper bound per axis, task units.
        max_step_px: largest allowed distance between the previous applied command (or, before
            the first one, the agent position the caller passes as ``prev``) and the new one,
            task units; 0 disables the rule.
        max_rate_hz: largest command rate; a command closer than ``1 / max_rate_hz`` to the
            previous applied one is a RATE violation; 0 disables the rule.
        stale_timeout_s: a STALE event is raised when no command arrived for this long while
            commands are expected; 0 disables it.
    """

    low: tuple[float, ...] = (0.0, 0.0)
    high: tuple[float, ...] = (512.0, 512.0)
    max_step_px: float = 0.0
    max_rate_hz: float = 0.0
    stale_timeout_s: float = 0.0

    def __post_init__(self) -> None:
        require(len(self.low) > 0, 'envelope.low', self.low, 'needs at least one axis')
        require(len(self.low) == len(self.high), 'envelope.high', self.high,
                f'must have as many axes as envelope.low ({len(self.low)})')
        for i, (lo, hi) in enumerate(zip(self.low, self.high, strict=True)):
            require(math.isfinite(lo) and math.isfinite(hi), f'envelope.low/high[{i}]',
                    (lo, hi), 'bounds must be finite numbers')
            require(lo < hi, f'envelope.high[{i}]', hi, f'must be greater than low ({lo})')
        for name in ('max_step_px', 'max_rate_hz', 'stale_timeout_s'):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, f'envelope.{name}', value,
                    'must be >= 0 (0 disables the rule)')


@dataclass(frozen=True)
class ModesConfig:
    """What each rule does when violated (see :data:`RULE_MODES`)."""

    bounds: str = 'clamp'
    max_step: str = 'clamp'
    rate: str = 'reject'

    def __post_init__(self) -> None:
        require(self.bounds in RULE_MODES, 'modes.bounds', self.bounds, f'one of {RULE_MODES}')
        require(self.max_step in RULE_MODES, 'modes.max_step', self.max_step,
                f'one of {RULE_MODES}')
        require(self.rate in RATE_MODES, 'modes.rate', self.rate, f'one of {RATE_MODES}')


@dataclass(frozen=True)
class SafetyConfig:
    """Safety supervisor config: the envelope, per-rule modes and the cell id for events.

    NaN/inf values and a wrong command shape are always rejected (never clamped, never
    configurable): there is no meaningful command to clamp towards.
    """

    envelope: EnvelopeConfig = field(default_factory=EnvelopeConfig)
    modes: ModesConfig = field(default_factory=ModesConfig)
    cell_id: str = ''
    task: str = ''   # when set, envelope and modes come from the task contract's safety.yaml

    @property
    def ndim(self) -> int:
        return len(self.envelope.low)

    def with_task_envelope(self, safety: Any) -> SafetyConfig:
        """This config with the envelope of a task contract (``TaskSpec.safety``).

        The contract is the single source of truth of a task's envelope: ``clamp`` clamps
        bounds and steps, ``abort`` aborts on them; a too-early command is rejected, or aborts
        in ``abort`` mode.
        """
        inf = float('inf')
        envelope = EnvelopeConfig(
            low=tuple(safety.low), high=tuple(safety.high),
            max_step_px=0.0 if safety.max_step_px == inf else float(safety.max_step_px),
            max_rate_hz=0.0 if safety.max_rate_hz == inf else float(safety.max_rate_hz),
            stale_timeout_s=self.envelope.stale_timeout_s)
        rate = 'abort' if safety.mode == 'abort' else 'reject'
        return SafetyConfig(envelope=envelope,
                            modes=ModesConfig(bounds=safety.mode, max_step=safety.mode,
                                              rate=rate),
                            cell_id=self.cell_id, task=self.task)


@dataclass(frozen=True)
class RecorderConfig:
    """Recorder config: which streams a trial records and at which declared rates.

    Attributes:
        camera_views: camera views recorded (``camera/<view>/image_raw``), one MP4 each.
        control_rate_hz: the task's control rate; MP4 fps and the expected rate of images,
            states and commands.
        gap_tolerance: a rated stream is flagged with ``gaps`` when it recorded fewer than
            ``(1 - gap_tolerance)`` of the expected messages, or when two consecutive messages
            are further apart than ``gap_factor / rate``.
        gap_factor: see ``gap_tolerance``.
        extra_topics: more streams of the cell, each ``<relative topic>:<pkg/msg/Type>``
            (an arm cell: ``joint_states:sensor_msgs/msg/JointState``, ``tf:...``).
        latched_topics: of those, the ones a cell publishes once, latched (``tf_static``,
            ``robot_description``): the last message is written at the start of every
            episode's bag.
        video_codec: preferred encoder (``libx264``); falls back to ``mpeg4`` when missing.
        chunk_interval_s: an open bag is made durable at least this often (stamp time), so a
            killed recorder loses at most this much of the episode.
        best_effort_sensors: subscribe images, states and commands best-effort (default): a
            SIGKILLed reliable subscriber of 691 KB frames back-pressures the camera's writer
            until DDS declares it dead (~20 s; the cell stalled), a best-effort one never
            does. The price: frames may drop under load, flagged as ``gaps`` in trial.json.
        bag_compression: ``zstd`` (default) compresses the bag's MCAP chunks (~200 MB of raw
            480x480 frames per 300-step episode -> ~1-2 MB; a 30-minute improve run went from
            ~35 GB of bags to well under 1 GB) or ``none``.
        bag_images: how the bag stores each camera frame. ``jpeg`` (default) and ``png``
            write a sensor_msgs/CompressedImage on ``camera/<view>/image_raw/compressed``
            (image_transport's name and format, so ROS tools read it); ``raw`` writes the
            sensor_msgs/Image itself on ``camera/<view>/image_raw``. Frames dominate a bag: a
            480x480 rgb8 frame is 691 KB raw, 72-105 KB after zstd, 44-150 KB as PNG
            (lossless, ~10 ms to encode) and 10-22 KB as JPEG at quality 90 (~1 ms); use
            ``png`` or ``raw`` where exact pixels matter. Every reader (dataset export,
            labelling, replay) accepts either form. The MP4s are the same either way.
        jpeg_quality: JPEG quality of ``bag_images: jpeg``, 1..100.
"""

    camera_views: tuple[str, ...] = ('top',)
    control_rate_hz: float = 10.0
    extra_topics: tuple[str, ...] = ()
    latched_topics: tuple[str, ...] = ()
    gap_tolerance: float = 0.1
    gap_factor: float = 3.0
    video_codec: str = 'libx264'
    chunk_interval_s: float = 1.0
    best_effort_sensors: bool = True
    bag_compression: str = 'zstd'
    bag_images: str = 'jpeg'
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        require(self.control_rate_hz > 0, 'control_rate_hz', self.control_rate_hz, 'must be > 0')
        require(0 <= self.gap_tolerance < 1, 'gap_tolerance', self.gap_tolerance,
                'must be in [0, 1)')
        require(self.gap_factor >= 1, 'gap_factor', self.gap_factor, 'must be >= 1')
        require(self.chunk_interval_s >= 0, 'chunk_interval_s', self.chunk_interval_s,
                'must be >= 0 (0: only at close)')
        for spec in self.extra_topics:
            require(spec.count(':') == 1 and spec.split(':')[1].count('/') == 2,
                    'extra_topics', spec, 'each must be <topic>:<pkg>/msg/<Type>')
        names = {spec.split(':')[0] for spec in self.extra_topics}
        for t in self.latched_topics:
            require(t in names, 'latched_topics', t, 'must name one of extra_topics')
        for view in self.camera_views:
            require(bool(view) and '/' not in view, 'camera_views', self.camera_views,
                    'view names are non-empty and contain no "/"')
        require(self.bag_compression in BAG_COMPRESSIONS, 'bag_compression',
                self.bag_compression, f"must be one of {', '.join(BAG_COMPRESSIONS)}")
        require(self.bag_images in BAG_IMAGES, 'bag_images', self.bag_images,
                f"must be one of {', '.join(BAG_IMAGES)}")
        require(int(self.jpeg_quality) == self.jpeg_quality and 1 <= self.jpeg_quality <= 100,
                'jpeg_quality', self.jpeg_quality, 'must be an integer in 1..100')


@dataclass(frozen=True)
class DiskSpaceConfig:
    """The disk guard of a cell's records (the rollout node's ``record.*`` parameters).

    A cell whose disk fills fails mid-recording (a half-written bag, a lost trial); the guard
    pauses it first, with an alert (:mod:`enpire_rollout.core.disk`). ``$ENPIRE_MIN_FREE_MB``
    overrides ``min_free_mb`` (tests, a nearly full disk on purpose).

    Attributes:
        min_free_mb: a trial starts only while the record directory's filesystem has at
            least this much free, MB (1 MB = 2**20 bytes); 0 disables the guard. A trial
            writes ~2 MB (bag + MP4s), so the default leaves room for hundreds.
        abort_free_mb: a recording in progress stops early (the trial ends ``aborted``,
            truncated by disk, its bag closed cleanly) when free space drops below this, MB.
        check_period_s: how often a recording in progress looks, seconds.
    """

    min_free_mb: float = 1024.0
    abort_free_mb: float = 256.0
    check_period_s: float = 1.0

    def __post_init__(self) -> None:
        require(math.isfinite(self.min_free_mb) and self.min_free_mb >= 0,
                'record.min_free_mb', self.min_free_mb, 'must be >= 0 MB (0 disables it)')
        require(math.isfinite(self.abort_free_mb) and self.abort_free_mb >= 0,
                'record.abort_free_mb', self.abort_free_mb, 'must be >= 0 MB')
        require(self.abort_free_mb <= self.min_free_mb or self.min_free_mb == 0,
                'record.abort_free_mb', self.abort_free_mb,
                f'must be <= record.min_free_mb ({self.min_free_mb:g}): a trial that may '
                'start must not be stopped at once')
        require(self.check_period_s > 0, 'record.check_period_s', self.check_period_s,
                'must be > 0 seconds')


@dataclass(frozen=True)
class MarkersConfig:
    """Parameters of the ``markers`` node (rviz / Foxglove 3D of one cell).

    Attributes:
        task: task id (its contract gives the goal, the envelope, the outline).
        rate_hz: how often the markers are rebuilt and published while someone subscribes.
        publish_tf: publish this cell's frames (``<cell>/world`` under ``world``, and
            ``<cell>/agent_<i>`` where the state puts the pusher / grippers). An arm cell
            publishes its own TF tree: false there.
    """

    task: str = 'push_t'
    rate_hz: float = 5.0
    publish_tf: bool = False

    def __post_init__(self) -> None:
        require(bool(self.task), 'task', self.task, 'must name a task')
        require(0 < self.rate_hz <= 60, 'rate_hz', self.rate_hz, 'must be in (0, 60] Hz')
