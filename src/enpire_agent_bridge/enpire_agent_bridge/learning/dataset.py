"""Reading a LeRobot v3.0 dataset (``enpire dataset export``'s, or any local one) into arrays
for training: per-frame state, action and episode index, and each camera's frames decoded and
resized once.

Everything on disk is untrusted: a missing file, a version other than v3.x, a feature the
training needs that the dataset lacks, or a video shorter than its episode raises
:class:`DatasetError` with the path and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError

IMAGE_PREFIX = 'observation.images.'


class DatasetError(ConfigError):
    """A dataset directory cannot be used (what is wrong, and where)."""


@dataclass
class TrainingData:
    """Frames of a dataset, in dataset order."""

    root: Path
    info: dict[str, Any]
    state: np.ndarray              # (N, D) float32, the dataset's observation.state
    state_names: list[str]
    action: np.ndarray             # (N, A) float32
    episode: np.ndarray            # (N,) int64
    frame: np.ndarray              # (N,) int64
    # view: (N, S, S, 3) uint8, or (N, ...) of load_training_data's per_frame
    images: dict[str, np.ndarray] = field(default_factory=dict)
    episodes: list[dict[str, Any]] = field(default_factory=list)  # meta/episodes rows
    task: str = ''                 # the ENPIRE task (from an ENPIRE export's journal)
    reward: np.ndarray | None = None   # (N,) float32 next.reward, where the dataset has it
    done: np.ndarray | None = None     # (N,) bool next.done

    @property
    def n(self) -> int:
        return int(self.action.shape[0])


def read_info(root: str | Path) -> dict[str, Any]:
    """``meta/info.json`` of a LeRobot v3 dataset, checked.

    Raises:
        DatasetError: missing, not JSON, not v3.x, or without fps/features.
    """
    path = Path(root) / 'meta' / 'info.json'
    try:
        info = json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise DatasetError(f'{path}: not found; --dataset must be a LeRobot v3 dataset '
                           '(enpire dataset export writes one)') from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f'{path}: unreadable ({exc})') from None
    if not isinstance(info, dict):
        raise DatasetError(f'{path}: not a JSON object')
    version = str(info.get('codebase_version', ''))
    if not version.startswith('v3.'):
        raise DatasetError(f'{path}: codebase_version {version!r}; only LeRobot v3.x datasets '
                           'are read (convert older ones with lerobot\'s converter)')
    for key in ('fps', 'features'):
        if key not in info:
            raise DatasetError(f'{path}: no {key!r}')
    return info


def dataset_task(root: str | Path) -> str:
    """The ENPIRE task an ``enpire dataset export`` dataset holds ('' for other datasets)."""
    path = Path(root) / 'meta' / 'enpire_export.json'
    try:
        return str(json.loads(path.read_text(encoding='utf-8')).get('task') or '')
    except (OSError, json.JSONDecodeError, AttributeError):
        return ''


def _parquet_rows(paths: Sequence[Path], columns: list[str] | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in paths:
        try:
            tables.append(pq.read_table(path, columns=columns))
        except Exception as exc:  # noqa: BLE001 - arrow raises many types for a bad file
            raise DatasetError(f'{path}: unreadable parquet ({exc})') from None
    if not tables:
        raise DatasetError('no parquet files')
    return pa.concat_tables(tables)


def _decode(path: Path, start_s: float, count: int, size: int, fps: int,
            per_frame: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``count`` frames of the video at ``path`` from ``start_s`` on, resized to size x size;
    or, with ``per_frame``, its value of each full-size frame, stacked (the frames are not
    kept)."""
    import av
    import cv2

    out: Any = (np.empty((count, size, size, 3), dtype=np.uint8) if per_frame is None
                else [None] * count)
    first = int(round(start_s * fps))
    got = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if first > 0:
                container.seek(int(start_s / stream.time_base), backward=True,
                               any_frame=False, stream=stream)
            for frame in container.decode(stream):
                k = (first + got if frame.pts is None
                     else int(round(float(frame.pts * stream.time_base) * fps)))
                if k < first:
                    continue
                img = frame.to_ndarray(format='rgb24')
                if per_frame is not None:
                    out[got] = per_frame(img)
                else:
                    if img.shape[:2] != (size, size):
                        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
                    out[got] = img
                got += 1
                if got == count:
                    break
    except Exception as exc:  # noqa: BLE001 - PyAV raises many types for a bad file
        raise DatasetError(f'{path}: cannot decode ({exc})') from None
    if got < count:
        raise DatasetError(f'{path}: {got} frames from {start_s:g} s; the episode has {count}')
    return out if per_frame is None else np.stack(out)


def load_training_data(root: str | Path, *, image_size: int, views: Sequence[str] | None = None,
                       episode_filter: Callable[[dict[str, Any]], bool] | None = None,
                       progress: Callable[[str], None] | None = None,
                       per_frame: Callable[[str, np.ndarray], np.ndarray] | None = None,
                       max_episodes: int = 0) -> TrainingData:
    """The frames of the dataset at ``root`` (see the module docstring).

    Args:
        image_size: every camera frame is resized to this square size.
        views: camera views to load (default: all of the dataset's).
        episode_filter: keep only the episodes (meta/episodes rows) it accepts.
        max_episodes: of those, the first this many (0: all).
        per_frame: ``(view, full-size frame) -> array``: ``images[view]`` holds its values
            instead of the resized frames (say, a pose estimated from every frame).

    Raises:
        DatasetError: see the module docstring.
    """
    root = Path(root)
    info = read_info(root)
    feats = info['features']
    for key in ('observation.state', 'action'):
        if key not in feats:
            raise DatasetError(f"{root}: feature {key!r} missing (features: {sorted(feats)})")
    all_views = [k[len(IMAGE_PREFIX):] for k, v in feats.items()
                 if k.startswith(IMAGE_PREFIX) and v.get('dtype') == 'video']
    views = list(all_views if views is None else views)
    absent = [v for v in views if v not in all_views]
    if absent:
        raise DatasetError(f'{root}: no video feature for view(s) {absent} (has {all_views})')
    fps = int(info['fps'])
    ep_files = sorted((root / 'meta' / 'episodes').glob('*/*.parquet'))
    if not ep_files:
        raise DatasetError(f'{root}/meta/episodes: no episode table')
    episodes = _parquet_rows(ep_files).to_pylist()
    keep = [e for e in episodes if episode_filter is None or episode_filter(e)]
    if max_episodes > 0:
        keep = keep[:max_episodes]
    if not keep:
        raise DatasetError(f'{root}: no episodes left to train on (of {len(episodes)})')
    data_files = sorted((root / 'data').glob('*/*.parquet'))
    if not data_files:
        raise DatasetError(f'{root}/data: no data files')
    extra = [c for c in ('next.reward', 'next.done') if c in feats]
    table = _parquet_rows(data_files, ['observation.state', 'action', 'episode_index',
                                       'frame_index', 'index', *extra])
    index = np.asarray(table['index'].to_numpy(), dtype=np.int64)
    position = {int(i): p for p, i in enumerate(index)}

    def column(name: str) -> np.ndarray:
        try:
            return np.array(table[name].to_pylist(), dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise DatasetError(f'{root}: column {name!r} is ragged or not numeric ({exc})') \
                from None

    state_all, action_all = column('observation.state'), column('action')
    rows: list[np.ndarray] = []
    for e in keep:
        lo, hi = int(e['dataset_from_index']), int(e['dataset_to_index'])
        if lo not in position or hi - 1 not in position:
            raise DatasetError(f"{root}: episode {e['episode_index']} rows {lo}..{hi} are not "
                               'in the data files')
        rows.append(np.arange(position[lo], position[hi - 1] + 1))
    take = np.concatenate(rows)
    if not (np.all(np.isfinite(state_all[take])) and np.all(np.isfinite(action_all[take]))):
        raise DatasetError(f'{root}: non-finite state or action values')
    data = TrainingData(
        root=root, info=info, state=state_all[take], action=action_all[take],
        state_names=list(feats['observation.state'].get('names') or []),
        episode=np.asarray(table['episode_index'].to_numpy(), dtype=np.int64)[take],
        frame=np.asarray(table['frame_index'].to_numpy(), dtype=np.int64)[take],
        episodes=keep, task=dataset_task(root))
    if 'next.reward' in extra:
        data.reward = np.array(table['next.reward'].to_pylist(),
                               dtype=np.float32).reshape(-1)[take]
    if 'next.done' in extra:
        data.done = np.array(table['next.done'].to_pylist(), dtype=bool).reshape(-1)[take]
    template = info.get('video_path') or \
        'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
    for view in views:
        key = IMAGE_PREFIX + view
        parts = []
        for i, e in enumerate(keep):
            try:
                rel = template.format(video_key=key,
                                      chunk_index=int(e[f'videos/{key}/chunk_index']),
                                      file_index=int(e[f'videos/{key}/file_index']))
                start = float(e[f'videos/{key}/from_timestamp'])
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"{root}: episode {e['episode_index']} lacks its {key} "
                                   f'video columns ({exc})') from None
            path = root / rel
            if not path.resolve().is_relative_to(root.resolve()):
                raise DatasetError(f'{root}: video path {rel!r} leaves the dataset')
            parts.append(_decode(path, start, int(e['dataset_to_index']) -
                                 int(e['dataset_from_index']), image_size, fps,
                                 None if per_frame is None
                                 else (lambda img, v=view: per_frame(v, img))))
            if progress and (i + 1) % 10 == 0:
                progress(f'decoded {view}: {i + 1}/{len(keep)} episodes')
        data.images[view] = np.concatenate(parts)
    return data
