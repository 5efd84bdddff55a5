"""Trial records as a LeRobot v3.0 dataset (parquet + MP4 + meta), written without lerobot.

Layout (LeRobot ``codebase_version`` v3.0; what ``LeRobotDataset(repo_id, root=OUT)`` reads)::

    OUT/meta/info.json                 fps, features, totals, path templates
    OUT/meta/stats.json                min/max/mean/std/count/q01..q99 per feature
    OUT/meta/tasks.parquet             task string (pandas index) -> task_index
    OUT/meta/episodes/chunk-000/file-000.parquet   one row per episode: ranges, video
                                       offsets, per-episode stats and ENPIRE's own columns
                                       (trial_id, seed, revision_id, outcome, success, ...)
    OUT/data/chunk-XXX/file-YYY.parquet            one file per episode
    OUT/videos/<key>/chunk-XXX/file-YYY.mp4        one file per episode and view (H.264)
    OUT/meta/enpire_export.json        ENPIRE's resume journal (ignored by lerobot)

Each episode's files are written to temporary names and renamed into place; the journal is
rewritten after each episode. An export that dies part-way is resumed by running it again:
episodes in the journal are kept, the rest are written, and the meta files are rebuilt from
the journal, so a rerun with nothing new leaves the dataset unchanged (idempotent). The
features of a dataset are fixed by its first episode; a trial of another task, or whose
state, action or views differ, is refused with the reason (the dataset is not touched).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError, RecordDamagedError
from enpire_common.files import atomic_write_bytes, fsync_path, sha256_file
from enpire_rollout.core.episodes import Episode, EpisodeError, read_episode
from enpire_rollout.core.records import TRIAL_JSON, list_trials

CODEBASE_VERSION = 'v3.0'
CHUNKS_SIZE = 1000
DATA_PATH = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
VIDEO_PATH = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
EPISODES_PATH = 'meta/episodes/chunk-000/file-000.parquet'
JOURNAL = 'meta/enpire_export.json'
JOURNAL_SCHEMA = 'enpire.lerobot_export/1'
#: lerobot's own encoder keeps a GOP of 2 so that random access decodes at most one frame more.
VIDEO_GOP = 2
VIDEO_CRF = 23
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
#: Image statistics are computed on at most this many evenly spaced frames per episode.
IMAGE_STAT_FRAMES = 50
DEFAULT_FEATURES = {
    'timestamp': {'dtype': 'float32', 'shape': [1], 'names': None},
    'frame_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'episode_index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'index': {'dtype': 'int64', 'shape': [1], 'names': None},
    'task_index': {'dtype': 'int64', 'shape': [1], 'names': None},
}


def image_key(view: str) -> str:
    return f'observation.images.{view}'


@dataclass
class ExportResult:
    out: Path
    episodes: int = 0            # episodes in the dataset after this run
    frames: int = 0
    added: list[str] = field(default_factory=list)      # trial ids written by this run
    kept: int = 0                # episodes already in the dataset
    skipped: list[dict[str, str]] = field(default_factory=list)   # {trial_id, reason}

    def to_dict(self) -> dict[str, Any]:
        return {'ok': True, 'out': str(self.out), 'episodes': self.episodes,
                'frames': self.frames, 'added': len(self.added), 'kept': self.kept,
                'skipped': self.skipped}


# --- statistics -------------------------------------------------------------------------------
def _stats(values: np.ndarray) -> dict[str, Any]:
    """lerobot's per-feature statistics of ``values`` (n, d): lists of length d."""
    values = np.asarray(values, dtype=np.float64)
    out: dict[str, Any] = {'min': values.min(0).tolist(), 'max': values.max(0).tolist(),
                           'mean': values.mean(0).tolist(), 'std': values.std(0).tolist(),
                           'count': [int(values.shape[0])]}
    for q in QUANTILES:
        out[f'q{round(q * 100):02d}'] = np.quantile(values, q, axis=0).tolist()
    return out


def _image_stats(frames: list[np.ndarray]) -> dict[str, Any]:
    """Per-channel statistics of sampled frames in [0, 1], shaped (3, 1, 1) as lerobot's.

    From each channel's 256-bin histogram of every pixel: exact min/max/mean/std, and the
    quantiles as the smallest level whose cumulative share reaches q (~20x faster than
    sorting the pixels, and without their float copy).
    """
    hist = np.zeros((3, 256), dtype=np.int64)
    for frame in frames:
        for c in range(3):
            hist[c] += np.bincount(frame[..., c].reshape(-1), minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    total = hist.sum(1).astype(np.float64)
    mean = (hist * levels).sum(1) / total
    std = np.sqrt(np.maximum((hist * levels ** 2).sum(1) / total - mean ** 2, 0.0))
    cdf = np.cumsum(hist, 1) / total[:, None]
    out: dict[str, Any] = {
        'min': [levels[np.flatnonzero(h)[0]] for h in hist],
        'max': [levels[np.flatnonzero(h)[-1]] for h in hist],
        'mean': mean.tolist(), 'std': std.tolist()}
    for q in QUANTILES:
        out[f'q{round(q * 100):02d}'] = [levels[int(np.searchsorted(cdf[c], q))]
                                         for c in range(3)]
    out = {k: [[[float(v)]] for v in vals] for k, vals in out.items()}
    out['count'] = [len(frames)]
    return out


def _merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Dataset statistics from per-episode ones: exact min/max/mean/std; quantiles are the
    count-weighted mean of the episodes' (as lerobot's aggregate_stats does)."""
    counts = np.array([p['count'][0] for p in parts], dtype=np.float64)
    weights = counts / counts.sum()

    def arr(key: str) -> np.ndarray:
        return np.array([p[key] for p in parts], dtype=np.float64)

    means = arr('mean')
    mean = np.tensordot(weights, means, axes=1)
    var = np.tensordot(weights, arr('std') ** 2 + (means - mean) ** 2, axes=1)
    out: dict[str, Any] = {'min': arr('min').min(0).tolist(), 'max': arr('max').max(0).tolist(),
                           'mean': mean.tolist(), 'std': np.sqrt(var).tolist(),
                           'count': [int(counts.sum())]}
    for key in parts[0]:
        if key.startswith('q'):
            out[key] = np.tensordot(weights, arr(key), axes=1).tolist()
    return out


# --- writing ----------------------------------------------------------------------------------
def _tmp(path: Path) -> Path:
    return path.with_name(f'.{path.name}.tmp')


def _write_video(path: Path, frames: Any, fps: int, sample_every: int) -> tuple[int, list]:
    """Encode ``frames`` to ``path`` (H.264, yuv420p, GOP 2, no B-frames, pts k at k/fps);
    returns (frame count, sampled frames for statistics)."""
    import av

    from enpire_rollout.core.video import pick_codec

    codec = pick_codec('libx264')
    tmp = _tmp(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    sampled: list[np.ndarray] = []
    try:
        with av.open(str(tmp), mode='w', format='mp4') as container:
            stream = container.add_stream(codec, rate=Fraction(fps), options=(
                {'preset': 'veryfast', 'crf': str(VIDEO_CRF), 'g': str(VIDEO_GOP), 'bf': '0'}
                if codec == 'libx264' else {'g': str(VIDEO_GOP), 'bf': '0'}))
            stream.pix_fmt = 'yuv420p'
            stream.time_base = Fraction(1, fps)
            stream.thread_count = 1
            for frame in frames:
                if count == 0:
                    h, w = frame.shape[:2]
                    if h % 2 or w % 2:
                        raise EpisodeError(f'{path}: H.264 in yuv420p needs an even frame size, '
                                           f'got {w}x{h}')
                    stream.width, stream.height = w, h
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format='rgb24')
                vf.pts = count
                for packet in stream.encode(vf):
                    container.mux(packet)
                if count % sample_every == 0:
                    sampled.append(frame)
                count += 1
            for packet in stream.encode(None):
                container.mux(packet)
        fsync_path(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return count, sampled


def _write_parquet(path: Path, table: Any, row_group_size: int | None = None) -> None:
    import pyarrow.parquet as pq

    tmp = _tmp(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pq.write_table(table, tmp, compression='snappy', row_group_size=row_group_size)
        fsync_path(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _vector_column(values: np.ndarray) -> Any:
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=np.float32)
    flat = pa.array(values.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _episode_table(ep: Episode, episode_index: int, first_index: int, task_index: int,
                   fps: int) -> Any:
    import pyarrow as pa

    n = ep.length
    frame = np.arange(n, dtype=np.int64)
    return pa.table({
        'observation.state': _vector_column(ep.state),
        'action': _vector_column(ep.action),
        'next.reward': pa.array(ep.reward.astype(np.float32)),
        'next.done': pa.array(ep.done),
        'next.success': pa.array(ep.success),
        'timestamp': pa.array((frame / fps).astype(np.float32)),
        'frame_index': pa.array(frame),
        'episode_index': pa.array(np.full(n, episode_index, dtype=np.int64)),
        'index': pa.array(frame + first_index),
        'task_index': pa.array(np.full(n, task_index, dtype=np.int64)),
    })


def _features(ep: Episode, fps: int, action_names: list[str]) -> dict[str, Any]:
    feats: dict[str, Any] = {
        'observation.state': {'dtype': 'float32', 'shape': [ep.state.shape[1]],
                              'names': list(ep.state_names) or
                              [f's{i}' for i in range(ep.state.shape[1])]},
        'action': {'dtype': 'float32', 'shape': [ep.action.shape[1]], 'names': action_names},
    }
    for view, (h, w) in ep.views.items():
        feats[image_key(view)] = {
            'dtype': 'video', 'shape': [h, w, 3], 'names': ['height', 'width', 'channels'],
            'info': {'video.height': h, 'video.width': w, 'video.codec': 'h264',
                     'video.pix_fmt': 'yuv420p', 'video.is_depth_map': False,
                     'video.fps': fps, 'video.channels': 3, 'video.g': VIDEO_GOP,
                     'video.crf': VIDEO_CRF, 'has_audio': False}}
    feats['next.reward'] = {'dtype': 'float32', 'shape': [1], 'names': None}
    feats['next.done'] = {'dtype': 'bool', 'shape': [1], 'names': None}
    feats['next.success'] = {'dtype': 'bool', 'shape': [1], 'names': None}
    feats.update(DEFAULT_FEATURES)
    return feats


def _pandas_metadata(index: str, columns: list[tuple[str, str, str]]) -> bytes:
    """The ``pandas`` schema metadata that makes ``pd.read_parquet`` restore ``index`` as the
    frame's index (lerobot reads each frame's task string as ``tasks.iloc[i].name``)."""
    import pyarrow as pa

    cols = [{'name': n, 'field_name': n, 'pandas_type': pt, 'numpy_type': nt, 'metadata': None}
            for n, pt, nt in columns]
    meta = {'index_columns': [index],
            'column_indexes': [{'name': None, 'field_name': None, 'pandas_type': 'unicode',
                                'numpy_type': 'object', 'metadata': {'encoding': 'UTF-8'}}],
            'columns': cols, 'creator': {'library': 'pyarrow', 'version': pa.__version__},
            'pandas_version': '2.2.3'}
    return json.dumps(meta).encode()


# --- the export -------------------------------------------------------------------------------
class LeRobotExporter:
    """Writes (or resumes) the LeRobot v3.0 dataset of a set of trial directories at ``out``.

    Args:
        out: the dataset root.
        task: the ENPIRE task id (``push_t``); trials of another task are refused.
        fps: frames per second (the task's control rate, an integer as lerobot requires).
        task_text: the natural-language task string of every episode.
        action_names: names of the action's components (default ``a0..``).
        note: called with one line per skipped trial and per episode written.
    """

    def __init__(self, out: str | Path, *, task: str, fps: float, task_text: str = '',
                 robot_type: str = '', action_names: Sequence[str] | None = None,
                 note: Callable[[str], None] | None = None) -> None:
        if abs(fps - round(fps)) > 1e-9 or round(fps) <= 0:
            raise ConfigError(f'LeRobot datasets need an integer fps > 0; the task runs at '
                              f'{fps:g} Hz')
        self.out = Path(out)
        self.task = task
        self.fps = int(round(fps))
        self.task_text = task_text or task
        self.robot_type = robot_type or f'enpire_{task}'
        self.action_names = list(action_names) if action_names else None
        self.note = note or (lambda _line: None)
        self.journal = self._load_journal()

    # The journal: everything the meta files are rebuilt from.
    def _load_journal(self) -> dict[str, Any]:
        path = self.out / JOURNAL
        if not path.is_file():
            if self.out.exists() and any(self.out.iterdir()):
                raise ConfigError(f'{self.out}: exists and is not an ENPIRE LeRobot export '
                                  f'({JOURNAL} missing); pass an empty or new --out')
            return {'schema': JOURNAL_SCHEMA, 'task': self.task, 'fps': self.fps,
                    'features': None, 'episodes': []}
        try:
            journal = json.loads(path.read_text(encoding='utf-8'))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f'{path}: unreadable export journal ({exc}); export to a new '
                              '--out') from None
        if not isinstance(journal, dict) or journal.get('schema') != JOURNAL_SCHEMA:
            raise ConfigError(f'{path}: not an {JOURNAL_SCHEMA} journal')
        if journal.get('task') != self.task or journal.get('fps') != self.fps:
            raise ConfigError(f"{self.out}: holds a {journal.get('task')} dataset at "
                              f"{journal.get('fps')} fps; this export is {self.task} at "
                              f'{self.fps} fps: pass another --out')
        return journal

    def _save_journal(self) -> None:
        atomic_write_bytes(self.out / JOURNAL,
                           (json.dumps(self.journal, indent=1) + '\n').encode())

    def export(self, trial_dirs: Sequence[str | Path]) -> ExportResult:
        """Add every trial of ``trial_dirs`` not yet in the dataset, then rebuild the meta."""
        (self.out / 'meta').mkdir(parents=True, exist_ok=True)
        result = ExportResult(out=self.out)
        done = {e['trial_id'] for e in self.journal['episodes']}
        result.kept = len(done)
        for trial_dir in map(Path, trial_dirs):
            trial_id = trial_dir.name
            if trial_id in done:
                continue
            try:
                ep = read_episode(trial_dir)
                trial_id = ep.trial_id
                if trial_id in done:
                    continue
                for warning in ep.warnings:
                    self.note(f'{trial_id}: {warning}')
                self._check(ep)
                try:
                    self._write_episode(ep)
                except BaseException:
                    self._remove_files(len(self.journal['episodes']))
                    raise
            except (EpisodeError, ConfigError, RecordDamagedError) as exc:
                result.skipped.append({'trial_id': trial_id, 'reason': str(exc)})
                self.note(f'skip {trial_id}: {exc}')
                continue
            done.add(trial_id)
            result.added.append(trial_id)
        self._write_meta()
        result.episodes = len(self.journal['episodes'])
        result.frames = sum(e['length'] for e in self.journal['episodes'])
        return result

    def _remove_files(self, index: int) -> None:
        """Drop what a failed write of episode ``index`` left (it is not in the journal)."""
        chunk, file = divmod(index, CHUNKS_SIZE)
        paths = [self.out / DATA_PATH.format(chunk_index=chunk, file_index=file)]
        feats = self.journal['features'] or {}
        paths += [self.out / VIDEO_PATH.format(video_key=k, chunk_index=chunk, file_index=file)
                  for k, v in feats.items() if v['dtype'] == 'video']
        for path in paths:
            path.unlink(missing_ok=True)
            _tmp(path).unlink(missing_ok=True)
        if not self.journal['episodes']:
            self.journal['features'] = None

    def _check(self, ep: Episode) -> None:
        ids = ep.record.get('ids') or {}
        if ids.get('task') != self.task:
            raise EpisodeError(f"a {ids.get('task')!r} trial, not {self.task!r}")
        feats = self.journal['features']
        if feats is None:
            return
        want = {'state': feats['observation.state']['shape'][0],
                'action': feats['action']['shape'][0],
                'views': sorted(k for k, v in feats.items() if v['dtype'] == 'video')}
        got = {'state': ep.state.shape[1], 'action': ep.action.shape[1],
               'views': sorted(image_key(v) for v in ep.views)}
        if got != want:
            raise EpisodeError(f'its shapes {got} differ from the dataset\'s {want}')
        for view, (h, w) in ep.views.items():
            if feats[image_key(view)]['shape'][:2] != [h, w]:
                raise EpisodeError(f'view {view} is {w}x{h}, the dataset\'s is '
                                   f"{feats[image_key(view)]['shape'][1]}x"
                                   f"{feats[image_key(view)]['shape'][0]}")

    def _write_episode(self, ep: Episode) -> None:
        index = len(self.journal['episodes'])
        first = sum(e['length'] for e in self.journal['episodes'])
        chunk, file = divmod(index, CHUNKS_SIZE)
        if self.journal['features'] is None:
            names = self.action_names or [f'a{i}' for i in range(ep.action.shape[1])]
            if len(names) != ep.action.shape[1]:
                raise ConfigError(f'{len(names)} action names for a {ep.action.shape[1]}-d '
                                  'action')
            self.journal['features'] = _features(ep, self.fps, names)
        stats: dict[str, Any] = {'observation.state': _stats(ep.state),
                                 'action': _stats(ep.action),
                                 'next.reward': _stats(ep.reward[:, None]),
                                 'next.done': _stats(ep.done[:, None]),
                                 'next.success': _stats(ep.success[:, None])}
        videos: dict[str, Any] = {}
        every = max(1, ep.length // IMAGE_STAT_FRAMES)
        for view in ep.views:
            key = image_key(view)
            rel = VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            count, sampled = _write_video(self.out / rel, ep.frames(view), self.fps, every)
            if count != ep.length:
                raise EpisodeError(f'view {view}: {count} frames for {ep.length} ticks')
            stats[key] = _image_stats(sampled)
            videos[key] = {'chunk_index': chunk, 'file_index': file, 'from_timestamp': 0.0,
                           'to_timestamp': ep.length / self.fps}
        rel = DATA_PATH.format(chunk_index=chunk, file_index=file)
        _write_parquet(self.out / rel, _episode_table(ep, index, first, 0, self.fps))
        frame = np.arange(ep.length)
        stats.update({'timestamp': _stats((frame / self.fps)[:, None]),
                      'frame_index': _stats(frame[:, None]),
                      'episode_index': _stats(np.full((ep.length, 1), index)),
                      'index': _stats((frame + first)[:, None]),
                      'task_index': _stats(np.zeros((ep.length, 1)))})
        rec = ep.record
        ids = rec.get('ids') or {}
        self.journal['episodes'].append({
            'episode_index': index, 'trial_id': ep.trial_id, 'length': ep.length,
            'chunk_index': chunk, 'file_index': file, 'from_index': first,
            'to_index': first + ep.length, 'videos': videos, 'stats': stats,
            'trial_json_sha256': sha256_file(ep.trial_dir / TRIAL_JSON),
            'seed': int(rec.get('seed') or 0), 'revision_id': str(ids.get('revision_id') or ''),
            'experiment_id': str(ids.get('experiment_id') or ''),
            'cell_id': str(ids.get('cell_id') or ''), 'outcome': str(rec.get('outcome') or ''),
            'success': bool(rec.get('success')), 'score': float(rec.get('score') or 0.0),
            'reason': str(rec.get('reason') or '')})
        self._save_journal()
        self.note(f'episode {index}: {ep.trial_id} ({ep.length} frames, '
                  f"{rec.get('outcome')})")

    def _write_meta(self) -> None:
        import pyarrow as pa

        episodes = self.journal['episodes']
        feats = self.journal['features'] or {}
        n, frames = len(episodes), sum(e['length'] for e in episodes)
        if n:
            tasks = pa.table({'task_index': pa.array([0], pa.int64()),
                              'task': pa.array([self.task_text], pa.string())})
            tasks = tasks.replace_schema_metadata({b'pandas': _pandas_metadata(
                'task', [('task_index', 'int64', 'int64'), ('task', 'unicode', 'object')])})
            _write_parquet(self.out / 'meta' / 'tasks.parquet', tasks)
            _write_parquet(self.out / EPISODES_PATH, self._episodes_table(episodes))
            keys = list(episodes[0]['stats'])
            stats = {k: _merge_stats([e['stats'][k] for e in episodes]) for k in keys}
            atomic_write_bytes(self.out / 'meta' / 'stats.json',
                               (json.dumps(stats, indent=1) + '\n').encode())
        info = {'codebase_version': CODEBASE_VERSION, 'robot_type': self.robot_type,
                'fps': self.fps, 'total_episodes': n, 'total_frames': frames,
                'total_tasks': 1 if n else 0, 'chunks_size': CHUNKS_SIZE,
                'data_files_size_in_mb': 100, 'video_files_size_in_mb': 200,
                'data_path': DATA_PATH, 'video_path': VIDEO_PATH,
                'splits': {'train': f'0:{n}'}, 'features': feats}
        atomic_write_bytes(self.out / 'meta' / 'info.json',
                           (json.dumps(info, indent=4) + '\n').encode())

    def _episodes_table(self, episodes: list[dict[str, Any]]) -> Any:
        import pyarrow as pa

        cols: dict[str, Any] = {
            'episode_index': pa.array([e['episode_index'] for e in episodes], pa.int64()),
            'tasks': pa.array([[self.task_text] for _ in episodes], pa.list_(pa.string())),
            'length': pa.array([e['length'] for e in episodes], pa.int64()),
            'data/chunk_index': pa.array([e['chunk_index'] for e in episodes], pa.int64()),
            'data/file_index': pa.array([e['file_index'] for e in episodes], pa.int64()),
            'dataset_from_index': pa.array([e['from_index'] for e in episodes], pa.int64()),
            'dataset_to_index': pa.array([e['to_index'] for e in episodes], pa.int64()),
        }
        for key in sorted(episodes[0]['videos']):
            for field_, kind in (('chunk_index', pa.int64()), ('file_index', pa.int64()),
                                 ('from_timestamp', pa.float64()),
                                 ('to_timestamp', pa.float64())):
                cols[f'videos/{key}/{field_}'] = pa.array(
                    [e['videos'][key][field_] for e in episodes], kind)
        for feat in episodes[0]['stats']:
            for stat in episodes[0]['stats'][feat]:
                values = [np.asarray(e['stats'][feat][stat], dtype=np.float64).reshape(-1)
                          for e in episodes]
                kind = pa.list_(pa.int64() if stat == 'count' else pa.float64())
                cols[f'stats/{feat}/{stat}'] = pa.array(
                    [v.astype(np.int64).tolist() if stat == 'count' else v.tolist()
                     for v in values], kind)
        cols['meta/episodes/chunk_index'] = pa.array([0] * len(episodes), pa.int64())
        cols['meta/episodes/file_index'] = pa.array([0] * len(episodes), pa.int64())
        for name, kind in (('trial_id', pa.string()), ('seed', pa.int64()),
                           ('revision_id', pa.string()), ('experiment_id', pa.string()),
                           ('cell_id', pa.string()), ('outcome', pa.string()),
                           ('success', pa.bool_()), ('score', pa.float64()),
                           ('reason', pa.string())):
            cols[name] = pa.array([e[name] for e in episodes], kind)
        return pa.table(cols)


def experiment_trials(run_dir: str | Path, *, only: str = 'all',
                      task: str | None = None) -> tuple[list[Path], list[dict[str, str]]]:
    """The finished trials of an experiment directory, oldest first, as directories; and the
    ones left out with why (open, aborted, failed with ``only='success'``, a damaged
    trial.json).

    Raises:
        ConfigError: ``only`` is unknown or ``run_dir`` has no trials.
    """
    if only not in ('all', 'success'):
        raise ConfigError(f"--only {only!r}: expected 'all' or 'success'")
    damaged: list[dict[str, Any]] = []
    records = list_trials(run_dir, skipped=damaged)
    if not records and not damaged:
        raise ConfigError(f'{run_dir}: no trial records (is the experiment name right? '
                          'trials live under $ENPIRE_HOME/<experiment>/trials/)')
    keep: list[Path] = []
    left: list[dict[str, str]] = [{'trial_id': d['trial_id'], 'reason': d['message']}
                                  for d in damaged]
    for rec in records:
        tid = (rec.get('ids') or {}).get('trial_id') or Path(rec['dir']).name
        outcome = rec.get('outcome')
        if task is not None and (rec.get('ids') or {}).get('task') != task:
            left.append({'trial_id': tid, 'reason': f"task {(rec.get('ids') or {}).get('task')}"})
        elif outcome in ('running', 'aborted', 'reset_failed', 'invalid'):
            left.append({'trial_id': tid, 'reason': f'outcome {outcome}'})
        elif only == 'success' and not rec.get('success'):
            left.append({'trial_id': tid, 'reason': f'outcome {outcome} (--only success)'})
        else:
            keep.append(Path(rec['dir']))
    return keep, left
