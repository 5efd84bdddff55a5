"""The final camera frames of recorded trials: what ``enpire verify label`` asks a person about.

For each trial directory under the given roots (a trial dir, a run dir or a whole
``ENPIRE_HOME``), the last ``camera/<view>/image_raw`` frame (raw, or its
``image_raw/compressed`` CompressedImage) of each view in its bag; where the bag cannot be read
(or lacks the view, or its last frame does not decode), the last frame of ``<view>.mp4`` when
PyAV can decode it. Records are untrusted: a trial that cannot give a frame is skipped with one
line saying why (through ``note``), never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError, RecordDamagedError
from enpire_reward.core.labelled_set import FrameToLabel
from enpire_rollout.core.bag import bag_dir_of, typestore
from enpire_rollout.core.episodes import image_connections, view_of
from enpire_rollout.core.recorder import bag_image_rgb
from enpire_rollout.core.records import OUTCOME_RUNNING, TRIAL_JSON, read_trial

#: Look for the last frames in this much of the bag's end first (a full read if not there).
TAIL_WINDOW_NS = 5_000_000_000


def trial_dirs(roots: Sequence[str | Path]) -> list[Path]:
    """Every directory holding a ``trial.json`` at or under ``roots``, sorted, once each
    (hidden directories, such as a repair's scratch copy, are not searched).

    Raises:
        ConfigError: a root does not exist.
    """
    found: set[Path] = set()
    for root in map(Path, roots):
        if not root.is_dir():
            raise ConfigError(f'--records {root}: no such directory; pass a trial directory, '
                              'a run directory or ENPIRE_HOME')
        if (root / TRIAL_JSON).is_file():
            found.add(root.resolve())
            continue
        for path in root.rglob(TRIAL_JSON):
            rel = path.relative_to(root).parts[:-1]
            if not any(part.startswith('.') for part in rel):
                found.add(path.parent.resolve())
    return sorted(found)


def last_bag_frames(trial_dir: str | Path, views: Sequence[str]
                    ) -> dict[str, tuple[int, np.ndarray]]:
    """``{view: (stamp_ns, rgb)}``: the last image of each view found in the trial's bag.

    Raises:
        RecordDamagedError: the bag is damaged (an unindexed one is read to its last chunk).
        Exception: whatever the image decoding raises for a bad image
            (:class:`~enpire_common.errors.BadImageError` for one that does not decode).
    """
    from enpire_rollout.core.bag_reader import BagReader

    last: dict[str, tuple[int, str, Any]] = {}
    with BagReader(bag_dir_of(trial_dir)) as reader:
        conns = image_connections(reader.connections, views)
        wanted = {view_of(c.topic) for c in conns}
        tail = reader.end_ns + 1 - TAIL_WINDOW_NS if reader.end_ns is not None else None
        for start in ((tail, None) if tail is not None else ()):
            for conn, stamp_ns, raw in reader.messages(conns, start_ns=start):
                view = view_of(conn.topic)
                if view is not None and stamp_ns >= last.get(view, (-1, '', None))[0]:
                    last[view] = (int(stamp_ns), conn.msgtype, raw)
            if set(last) >= wanted:
                break
    out = {}
    for view, (stamp_ns, msgtype, raw) in last.items():
        msg = typestore().deserialize_cdr(raw, msgtype)
        out[view] = (stamp_ns, bag_image_rgb(msgtype, msg).copy())
    return out


def last_video_frame(path: str | Path) -> tuple[int, np.ndarray]:
    """``(stamp_ns, rgb)`` of the last frame of an MP4 (its time in the video, ns).

    Raises:
        ImportError: PyAV is not installed.
        Exception: whatever PyAV raises for a file it cannot decode.
    """
    import av

    last = None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            last = frame
    if last is None:
        raise ConfigError('no frame in the video')
    stamp_ns = int(round(float(last.time) * 1e9)) if last.time is not None else 0
    return stamp_ns, last.to_ndarray(format='rgb24')


def _recorded(record: dict[str, Any]) -> dict[str, Any]:
    verdicts = record.get('verdicts')
    return {'outcome': record.get('outcome'), 'success': record.get('success'),
            'score': record.get('score'),
            'verdicts': [v for v in verdicts if isinstance(v, dict)]
            if isinstance(verdicts, list) else []}


class TrialFrames:
    """The final frame of each of ``views`` of every trial of ``task`` under ``roots``, in
    trial-directory order (an iterable of FrameToLabel; reads one trial at a time).

    ``total``: the frames expected; it drops as trials or views turn out unreadable.
    ``notes``: one line for each thing skipped (also passed to ``note`` as it happens).
    """

    def __init__(self, roots: Sequence[str | Path], task: str, views: Sequence[str],
                 note: Callable[[str], None] | None = None) -> None:
        if not views:
            raise ConfigError('no camera view to label')
        self.task, self.views = task, tuple(views)
        self.notes: list[str] = []
        self._note = note
        self.other_tasks = 0
        self.trials: list[tuple[Path, dict[str, Any]]] = []
        for trial_dir in trial_dirs(roots):
            try:
                record = read_trial(trial_dir)
            except (ConfigError, RecordDamagedError) as exc:
                self.skip(trial_dir, str(exc))
                continue
            ids = record.get('ids') if isinstance(record.get('ids'), dict) else {}
            if ids.get('task') != task:
                self.other_tasks += 1
                continue
            if record.get('outcome') == OUTCOME_RUNNING:
                self.skip(trial_dir, 'still running, or its writer died (recover it with '
                          'recover_incomplete, then label it)')
                continue
            self.trials.append((trial_dir, record))
        self.total = len(self.trials) * len(self.views)

    def skip(self, where: Path, why: str) -> None:
        line = f'skip {where}: {why}'
        self.notes.append(line)
        if self._note is not None:
            self._note(line)

    def frames_of(self, trial_dir: Path, record: dict[str, Any]) -> list[FrameToLabel]:
        """The final frames of one trial (views it cannot give are skipped with a note)."""
        found: dict[str, tuple[str, int, np.ndarray]] = {}
        try:
            found = {v: ('bag', s, img) for v, (s, img) in
                     last_bag_frames(trial_dir, self.views).items()}
            why = 'no frame of it in the bag'
        except Exception as exc:  # noqa: BLE001 - an untrusted bag fails in any reader error
            why = f'bag unreadable ({type(exc).__name__}: {exc})'.replace('\n', ' ')
        for view in self.views:
            if view in found:
                continue
            video = trial_dir / f'{view}.mp4'
            if not video.is_file():
                self.skip(trial_dir, f"view '{view}': {why}, and no {video.name}")
                continue
            try:
                stamp_ns, rgb = last_video_frame(video)
            except ImportError:
                self.skip(trial_dir, f"view '{view}': {why}, and PyAV (av) is not installed "
                          f'to decode {video.name}')
                continue
            except Exception as exc:  # noqa: BLE001 - an untrusted video fails in any way
                self.skip(trial_dir, f"view '{view}': {why}, and {video.name} does not "
                          f'decode ({type(exc).__name__}: {exc})'.replace('\n', ' '))
                continue
            found[view] = ('mp4', stamp_ns, rgb)
        ids = record.get('ids') if isinstance(record.get('ids'), dict) else {}
        trial_id = str(ids.get('trial_id') or trial_dir.name)
        return [FrameToLabel(task=self.task, view=view, trial_id=trial_id,
                             trial_dir=str(trial_dir), stamp_ns=stamp_ns, source=source,
                             image=np.ascontiguousarray(rgb, dtype=np.uint8),
                             recorded=_recorded(record))
                for view in self.views if view in found
                for source, stamp_ns, rgb in [found[view]]]

    def __iter__(self) -> Iterator[FrameToLabel]:
        for trial_dir, record in self.trials:
            frames = self.frames_of(trial_dir, record)
            self.total -= len(self.views) - len(frames)
            yield from frames


__all__ = ['TAIL_WINDOW_NS', 'TrialFrames', 'last_bag_frames', 'last_video_frame',
           'trial_dirs']
