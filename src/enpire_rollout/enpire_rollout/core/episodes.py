"""A recorded trial as a learning episode: one frame per control tick, read from its bag.

Frame ``i`` (``0 <= i < steps``) pairs what the policy saw at tick ``i`` with what the cell
executed for it:

- ``state``: the ``state`` StateVector stamped with ``tick == i``;
- each camera view: the last ``camera/<view>/image_raw`` image (or its
  ``image_raw/compressed`` CompressedImage, see ``RecorderConfig.bag_images``) stamped at or
  before that state (sample and hold, as a policy polling the latest image sees it; the first
  image where none came before);
- ``action``: the ``command`` topic's ``action`` for ``tick == i`` (what the cell executed,
  after the safety layer; the last one where a tick was resent);
- ``reward``: the fused verifier score known after the action (the last ``verdicts`` message
  stamped at or before the state of tick ``i + 1``; 0 before the first), the record's final
  score on the last frame; ``success`` likewise, the record's outcome on the last frame;
  ``done`` only on the last frame.

A trial whose bag lacks a state or command for a tick inside its episode is not an episode:
:class:`EpisodeError` says which tick and topic. A bag without its index (a killed recorder)
is read up to its last complete chunk (``Episode.warnings`` says so); a damaged one is
refused (:class:`~enpire_common.errors.RecordDamagedError`, naming ``enpire bag recover``).
Images are not held in memory: the arrays come from one pass over the small topics, and
:meth:`Episode.frames` streams each view's frames in a second pass.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import EnpireError, RecordDamagedError
from enpire_rollout.core.bag import bag_dir_of, typestore
from enpire_rollout.core.bag_reader import BagReader
from enpire_rollout.core.recorder import (
    COMPRESSED_IMAGE_TYPE,
    COMPRESSED_SUFFIX,
    IMAGE_TYPE,
    bag_image_rgb,
)
from enpire_rollout.core.records import read_trial

STATE_SUFFIX = '/state'
COMMAND_SUFFIX = '/command'
POLICY_COMMAND_SUFFIX = '/policy/command'
VERDICTS_SUFFIX = '/verdicts'
IMAGE_PREFIX = 'camera/'
IMAGE_SUFFIX = '/image_raw'


class EpisodeError(EnpireError):
    """A trial's record cannot be read as an episode (missing ticks, no bag, wrong sizes)."""


def _topic_is(topic: str, suffix: str) -> bool:
    return topic == suffix.lstrip('/') or topic.endswith(suffix)


def _is_command(topic: str) -> bool:
    return _topic_is(topic, COMMAND_SUFFIX) and not _topic_is(topic, POLICY_COMMAND_SUFFIX)


def view_of(topic: str) -> str | None:
    """``top`` for ``/cell_0/camera/top/image_raw`` (or ``.../image_raw/compressed``); None
    for any other topic."""
    topic = topic.removesuffix(COMPRESSED_SUFFIX)
    if not topic.endswith(IMAGE_SUFFIX):
        return None
    head = topic[:-len(IMAGE_SUFFIX)]
    at = head.rfind(IMAGE_PREFIX)
    if at < 0 or (at > 0 and head[at - 1] != '/'):
        return None
    view = head[at + len(IMAGE_PREFIX):]
    return view if view and '/' not in view else None


def image_connections(connections: Sequence[Any], views: Sequence[str] | None = None
                      ) -> list[Any]:
    """The camera streams among a bag's ``connections``, one per view (of ``views``, default
    all): its raw ``image_raw`` Image stream, else its ``image_raw/compressed`` one (a bag
    holding both is read from the lossless one, never from both)."""
    by_view: dict[str, Any] = {}
    for conn in connections:
        view = view_of(conn.topic)
        if view is None or (views is not None and view not in views):
            continue
        if conn.msgtype == IMAGE_TYPE or (conn.msgtype == COMPRESSED_IMAGE_TYPE
                                          and view not in by_view):
            by_view[view] = conn
    return list(by_view.values())


def _stamp(msg: Any, fallback_ns: int) -> int:
    header = getattr(msg, 'header', None)
    if header is None:
        return fallback_ns
    ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    return ns or fallback_ns


@dataclass
class Episode:
    """The arrays of one trial's episode (images are streamed by :meth:`frames`)."""

    trial_dir: Path
    record: dict[str, Any]
    state_names: list[str]
    state: np.ndarray             # (n, S) float64
    action: np.ndarray            # (n, A) float64
    reward: np.ndarray            # (n,) float64
    success: np.ndarray           # (n,) bool
    done: np.ndarray              # (n,) bool
    stamps_ns: np.ndarray         # (n,) int64, the state stamps
    views: dict[str, tuple[int, int]] = field(default_factory=dict)   # view: (height, width)
    warnings: list[str] = field(default_factory=list)   # e.g. the bag was read unindexed

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    @property
    def trial_id(self) -> str:
        return str((self.record.get('ids') or {}).get('trial_id') or self.trial_dir.name)

    def frames(self, view: str) -> Iterator[np.ndarray]:
        """The ``length`` RGB frames of ``view`` (H x W x 3 uint8), in order.

        Raises:
            EpisodeError: the view has no images or one cannot be decoded.
            RecordDamagedError: the bag is damaged.
        """
        store = typestore()
        with BagReader(self.trial_dir) as reader:
            conns = image_connections(reader.connections, [view])
            if not conns:
                raise EpisodeError(f'{self.trial_dir}: no images of view {view!r} in the bag')
            held: np.ndarray | None = None
            i = 0
            for conn, stamp_ns, raw in reader.messages(conns):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                ns = _stamp(msg, int(stamp_ns))
                try:
                    image = bag_image_rgb(conn.msgtype, msg)
                except Exception as exc:  # noqa: BLE001 - the reason is reported
                    raise EpisodeError(f'{self.trial_dir}: image of view {view!r} at '
                                       f'{ns} ns cannot be decoded: {exc}') from None
                if image.shape[:2] != self.views[view]:
                    raise EpisodeError(f'{self.trial_dir}: view {view!r} changed size from '
                                       f'{self.views[view]} to {image.shape[:2]} at {ns} ns')
                # Frames whose state came before this image saw the one held until now (the
                # first image, for frames before any).
                while i < self.length and self.stamps_ns[i] < ns:
                    yield held if held is not None else image
                    i += 1
                held = image
                if i >= self.length:
                    break
            while i < self.length and held is not None:
                yield held
                i += 1


def _tick_rows(rows: list[tuple[int, int, np.ndarray]], n: int, what: str, where: Path
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(values (n, D), stamps (n,))`` for ticks 0..n-1 from ``(tick, stamp, values)`` rows
    (the last row of a tick wins)."""
    by_tick: dict[int, tuple[int, np.ndarray]] = {}
    for tick, ns, values in rows:
        if 0 <= tick < n:
            by_tick[tick] = (ns, values)
    missing = [t for t in range(n) if t not in by_tick]
    if missing:
        raise EpisodeError(f'{where}: no {what} for tick {missing[0]} ({len(missing)} of {n} '
                           'ticks missing); a trial with gaps is not exported')
    sizes = {v.shape for _ns, v in by_tick.values()}
    if len(sizes) != 1:
        raise EpisodeError(f'{where}: {what} changes size within the episode ({sorted(sizes)})')
    values = np.stack([by_tick[t][1] for t in range(n)])
    stamps = np.array([by_tick[t][0] for t in range(n)], dtype=np.int64)
    if not np.all(np.isfinite(values)):
        bad = int(np.argwhere(~np.isfinite(values))[0][0])
        raise EpisodeError(f'{where}: {what} of tick {bad} is not finite')
    return values, stamps


def read_episode(trial_dir: str | Path, views: Sequence[str] | None = None) -> Episode:
    """The episode of the trial at ``trial_dir`` (see the module docstring).

    Args:
        views: the camera views to include (default: every view with images in the bag).

    Raises:
        ConfigError: the trial record is unreadable.
        RecordDamagedError: trial.json or the bag is damaged.
        EpisodeError: no bag, no steps, or a tick without its state or command.
    """
    trial_dir = Path(trial_dir)
    record = read_trial(trial_dir)
    n = int(record.get('steps') or 0)
    if n <= 0:
        raise EpisodeError(f'{trial_dir}: the trial ran no control steps '
                           f"(outcome {record.get('outcome')!r})")
    bag = bag_dir_of(trial_dir)
    if bag == trial_dir:
        raise EpisodeError(f'{trial_dir}: no bag (no episode/ directory)')
    store = typestore()
    warnings: list[str] = []
    states: list[tuple[int, int, np.ndarray]] = []
    commands: list[tuple[int, int, np.ndarray]] = []
    verdicts: list[tuple[int, float, bool, str]] = []
    names: list[str] = []
    sizes: dict[str, tuple[int, int]] = {}
    try:
        with BagReader(bag) as reader:
            warnings += reader.warnings
            image_conns = image_connections(reader.connections, views)
            small = [c for c in reader.connections
                     if _topic_is(c.topic, STATE_SUFFIX) or _is_command(c.topic)
                     or _topic_is(c.topic, VERDICTS_SUFFIX)]
            for conn, stamp_ns, raw in reader.messages(small):
                msg = store.deserialize_cdr(raw, conn.msgtype)
                ns = _stamp(msg, int(stamp_ns))
                if _topic_is(conn.topic, STATE_SUFFIX):
                    states.append((int(msg.tick), ns, np.asarray(msg.values, dtype=np.float64)))
                    names = names or [str(x) for x in msg.names]
                elif _is_command(conn.topic):
                    commands.append((int(msg.tick), ns, np.asarray(msg.action, np.float64)))
                else:
                    verdicts.append((ns, float(msg.score), bool(msg.success), str(msg.view)))
            for conn in image_conns:
                view = view_of(conn.topic)
                for _c, stamp_ns, raw in reader.messages([conn]):
                    msg = store.deserialize_cdr(raw, conn.msgtype)
                    if conn.msgtype == IMAGE_TYPE:
                        sizes[view] = (int(msg.height), int(msg.width))
                        break
                    try:    # a compressed frame's size is in its data
                        sizes[view] = bag_image_rgb(conn.msgtype, msg).shape[:2]
                    except Exception as exc:  # noqa: BLE001 - the reason is reported
                        raise EpisodeError(
                            f'{trial_dir}: image of view {view!r} at '
                            f'{_stamp(msg, int(stamp_ns))} ns cannot be decoded: {exc}'
                        ) from None
                    break
    except (EpisodeError, RecordDamagedError):
        raise
    except Exception as exc:  # noqa: BLE001 - rosbags raises many types for a bad bag
        raise EpisodeError(f'{trial_dir}: the bag cannot be read: {exc}') from None
    if views is not None:
        absent = [v for v in views if v not in sizes]
        if absent:
            raise EpisodeError(f'{trial_dir}: no images of view(s) {absent} in the bag')
    try:
        state, stamps = _tick_rows(states, n, 'state', trial_dir)
        action, _ = _tick_rows(commands, n, 'command', trial_dir)
    except EpisodeError as exc:
        if warnings:   # an unindexed bag ends early: say why the ticks are missing
            raise EpisodeError(f'{exc} ({warnings[0]})') from None
        raise
    # The fused verdict where the cell publishes one, else the only view's.
    fused = [v for v in verdicts if v[3] == 'fused'] or \
        ([v for v in verdicts] if len({v[3] for v in verdicts}) == 1 else [])
    fused.sort(key=lambda v: v[0])
    fused_ns = [v[0] for v in fused]
    after = {t: ns for t, ns, _v in states}      # stamp of each tick's state, incl. tick n
    reward = np.zeros(n)
    success = np.zeros(n, dtype=bool)
    for i in range(n):
        ns = after.get(i + 1, int(stamps[i]))
        k = bisect.bisect_right(fused_ns, ns) - 1
        if k >= 0:
            reward[i], success[i] = fused[k][1], fused[k][2]
    reward[-1] = float(record.get('score') or 0.0)
    success[-1] = bool(record.get('success'))
    done = np.zeros(n, dtype=bool)
    done[-1] = True
    return Episode(trial_dir=trial_dir, record=record, state_names=names, state=state,
                   action=action, reward=reward, success=success, done=done, stamps_ns=stamps,
                   views=dict(sorted(sizes.items())), warnings=warnings)
