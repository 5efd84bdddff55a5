"""Human-labelled image sets: what a person said a camera frame shows, for calibration.

``enpire verify label`` writes one; ``enpire verify calibrate --labels DIR`` scores a verifier
backend on it (:func:`score_labelled`, the calibration's ``human`` kind).

Layout of a set directory::

    labels.jsonl     one JSON object a line, one line a label (appended, never rewritten)
    frames/<name>.png  the labelled frames: copies, so the set stands alone
    pending.png      the frame shown to the labeller now (not part of the set)

A line (schema ``enpire.label/1``): ``image`` (file name under ``frames/``), ``sha256`` (of
that PNG), ``task``, ``view``, ``label`` (``success``, ``failure`` or ``invalid``: the view
cannot tell, e.g. occluded or unreadable), the frame's source (``trial_dir``, ``trial_id``,
``stamp_ns`` and ``source``: ``bag`` or ``mp4``), ``labeller`` and ``labelled_at`` (UTC,
ISO 8601). A frame is known by ``(trial_id, view, source, stamp_ns)``; labelled again, the
later line wins.

Appending is crash-safe: the PNG is written atomically first, then the line is written,
flushed and fsynced in one go. A last line cut short by a crash (no newline, not JSON) is
ignored with a warning when read, and cut off before the next append. Everything else is
untrusted input and checked on read: a bad line, a missing or altered image, or an image
name that leaves ``frames/`` is a :class:`ConfigError` naming ``labels.jsonl:<line>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.files import atomic_write_bytes
from enpire_common.tasks import TaskSpec

SCHEMA = 'enpire.label/1'
LABELS_FILE = 'labels.jsonl'
FRAMES_DIR = 'frames'
PENDING_FILE = 'pending.png'
SUCCESS, FAILURE, INVALID = 'success', 'failure', 'invalid'
LABELS = (SUCCESS, FAILURE, INVALID)
SOURCES = ('bag', 'mp4')
#: A frame's file name: one path component, no leading dot, a .png suffix.
_IMAGE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.png$')
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_STR_FIELDS = ('image', 'sha256', 'task', 'view', 'label', 'trial_id', 'trial_dir', 'source',
               'labeller', 'labelled_at')


@dataclass(frozen=True)
class FrameToLabel:
    """One camera frame for a person to label (the final frame of one view of a trial).

    ``recorded``: what the trial's own verifier said (trial.json's ``outcome``, ``success``,
    ``score`` and ``verdicts``), shown to the labeller, never copied into the label.
    """

    task: str
    view: str
    trial_id: str
    trial_dir: str
    stamp_ns: int
    source: str
    image: np.ndarray = field(repr=False, compare=False)
    recorded: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.trial_id, self.view, self.source, int(self.stamp_ns))


@dataclass(frozen=True)
class Label:
    """One line of ``labels.jsonl`` (``line``: its 1-based line number, 0 when new)."""

    image: str
    sha256: str
    task: str
    view: str
    label: str
    trial_id: str
    trial_dir: str
    stamp_ns: int
    source: str
    labeller: str
    labelled_at: str
    line: int = field(default=0, compare=False)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.trial_id, self.view, self.source, int(self.stamp_ns))

    def to_json(self) -> dict[str, Any]:
        return {'schema': SCHEMA, **{f: getattr(self, f) for f in _STR_FIELDS},
                'stamp_ns': int(self.stamp_ns)}


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an H x W x 3 uint8 RGB frame."""
    import cv2

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConfigError(f'a frame to label must be HxWx3 uint8 RGB, got shape {rgb.shape} '
                          f'dtype {rgb.dtype}')
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:      # pragma: no cover - OpenCV encodes any uint8 image
        raise ConfigError('could not encode the frame as PNG')
    return buf.tobytes()


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's header; None when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_MAGIC) or data[12:16] != b'IHDR':
        return None
    return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')


def _safe(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9._-]', '_', text).strip('.') or 'x'


def image_name(frame: FrameToLabel) -> str:
    """The file name a frame is stored under (unique per frame key)."""
    base = f'{_safe(frame.trial_id)[:80]}-{_safe(frame.view)[:40]}-{frame.source}-' \
           f'{int(frame.stamp_ns)}'
    if _safe(frame.trial_id) != frame.trial_id or _safe(frame.view) != frame.view:
        # characters were replaced: two ids could meet in one name, the key's hash parts them
        base += '-' + hashlib.sha256(repr(frame.key).encode()).hexdigest()[:8]
    return base + '.png'


class LabelledSet:
    """A labelled image set directory (see the module doc); :func:`open_labelled_set` or
    :func:`load_labelled_set` make one.

    Attributes:
        path: the set's directory.
        labels: every valid line, in file order.
        warnings: what reading tolerated (a crash-truncated last line).
    """

    def __init__(self, path: Path, labels: list[Label], warnings: list[str],
                 truncated_at: int | None = None, next_line: int = 1) -> None:
        self.path = path
        self.labels = labels
        self.warnings = warnings
        self._truncated_at = truncated_at   # byte offset where a crash-cut last line starts
        self._next_line = next_line         # the line number the next label gets

    @property
    def labels_path(self) -> Path:
        return self.path / LABELS_FILE

    @property
    def pending_path(self) -> Path:
        return self.path / PENDING_FILE

    def latest(self) -> list[Label]:
        """One label per frame: the last line of each frame key, in first-seen order."""
        by_key: dict[tuple[str, str, str, int], Label] = {}
        for label in self.labels:
            by_key.pop(label.key, None)
            by_key[label.key] = label
        return sorted(by_key.values(), key=lambda lab: lab.line)

    def keys(self) -> set[tuple[str, str, str, int]]:
        return {label.key for label in self.labels}

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(LABELS, 0)
        for label in self.latest():
            out[label.label] += 1
        return out

    def labels_sha256(self) -> str:
        """sha256 of ``labels.jsonl`` as it is on disk ('' when there is none yet)."""
        try:
            return hashlib.sha256(self.labels_path.read_bytes()).hexdigest()
        except FileNotFoundError:
            return ''

    def summary(self) -> dict[str, Any]:
        """What a calibration records of the set."""
        return {'path': str(self.path.resolve()), 'labels_sha256': self.labels_sha256(),
                'frames': len(self.latest()), 'counts': self.counts(),
                'warnings': list(self.warnings)}

    def write_pending(self, png: bytes) -> Path:
        """Put the frame being labelled at ``pending.png`` (atomically); its path."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.pending_path, png)
        return self.pending_path

    def read_image(self, label: Label) -> np.ndarray:
        """The RGB pixels of a label's frame (its sha256 checked again).

        Raises:
            ConfigError: the PNG is missing, altered since labelling, or does not decode.
        """
        import cv2

        data = _read_checked(self.path, label, self.labels_path)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f'{self.labels_path}:{label.line}: {FRAMES_DIR}/{label.image} '
                              'does not decode as an image')
        return np.ascontiguousarray(bgr[:, :, ::-1])

    def append(self, frame: FrameToLabel, label: str, *, labeller: str,
               labelled_at_s: float, png: bytes | None = None) -> Label:
        """Store ``frame`` with ``label``: the PNG first (atomic), then one fsynced line.

        Args:
            labelled_at_s: Unix time of the label (the caller's clock).
            png: the frame already encoded (:func:`encode_png`), to encode it once.

        Raises:
            UnknownNameError: ``label`` is not one of :data:`LABELS`.
        """
        from enpire_common.errors import UnknownNameError

        if label not in LABELS:
            raise UnknownNameError('label', label, LABELS)
        if frame.source not in SOURCES:
            raise UnknownNameError('frame source', frame.source, SOURCES)
        png = encode_png(frame.image) if png is None else png
        name = image_name(frame)
        frames = self.path / FRAMES_DIR
        frames.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(frames / name, png)
        entry = Label(image=name, sha256=hashlib.sha256(png).hexdigest(), task=frame.task,
                      view=frame.view, label=label, trial_id=frame.trial_id,
                      trial_dir=frame.trial_dir, stamp_ns=int(frame.stamp_ns),
                      source=frame.source, labeller=labeller,
                      labelled_at=time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                                time.gmtime(labelled_at_s)))
        line = (json.dumps(entry.to_json(), sort_keys=True) + '\n').encode()
        new_file = not self.labels_path.exists()
        # O_APPEND: a second labeller on the same set appends, it never overwrites
        fd = os.open(self.labels_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            end = os.fstat(fd).st_size
            if self._truncated_at is not None:
                # the crash-cut line (warned about on read) goes before the next line lands
                os.ftruncate(fd, self._truncated_at)
                self._truncated_at = None
            elif end and os.pread(fd, 1, end - 1) != b'\n':
                line = b'\n' + line         # a complete last line that lost its newline
            while line:
                line = line[os.write(fd, line):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new_file:
            _fsync_dir(self.path)
        entry = dataclasses.replace(entry, line=self._next_line)
        self._next_line += 1
        self.labels.append(entry)
        return entry


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_checked(root: Path, label: Label, where: Path) -> bytes:
    frames = (root / FRAMES_DIR).resolve()
    path = frames / label.image
    # a symlink out of frames/ is an escape too
    if path.resolve().parent != frames:
        raise ConfigError(f'{where}:{label.line}: image {label.image!r} resolves outside '
                          f'{FRAMES_DIR}/; a set holds its frames itself')
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f'{where}:{label.line}: image {FRAMES_DIR}/{label.image} is '
                          'missing; copy the whole set directory, or label the frame again'
                          ) from None
    if hashlib.sha256(data).hexdigest() != label.sha256:
        raise ConfigError(f'{where}:{label.line}: image {FRAMES_DIR}/{label.image} does not '
                          'match its sha256 (altered after labelling); label it again')
    return data


def _parse_line(obj: Any, where: str, line: int) -> Label:
    if not isinstance(obj, dict):
        raise ConfigError(f'{where}: a label line must be a JSON object, got '
                          f'{type(obj).__name__}')
    if obj.get('schema') != SCHEMA:
        raise ConfigError(f"{where}: schema {obj.get('schema')!r} is not {SCHEMA!r}")
    missing = [f for f in (*_STR_FIELDS, 'stamp_ns') if f not in obj]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
    for f in _STR_FIELDS:
        if not isinstance(obj[f], str) or (not obj[f] and f != 'trial_dir'):
            raise ConfigError(f'{where}: {f} must be a non-empty string, got {obj[f]!r}')
    stamp = obj['stamp_ns']
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        raise ConfigError(f'{where}: stamp_ns must be an integer, got {stamp!r}')
    if obj['label'] not in LABELS:
        raise ConfigError(f"{where}: label {obj['label']!r} is not one of {', '.join(LABELS)}")
    if obj['source'] not in SOURCES:
        raise ConfigError(f"{where}: source {obj['source']!r} is not one of "
                          f"{', '.join(SOURCES)}")
    if not _IMAGE_NAME.match(obj['image']):
        raise ConfigError(f"{where}: image {obj['image']!r} is not a plain .png file name "
                          f'under {FRAMES_DIR}/ (no directories, no leading dot)')
    if not re.fullmatch(r'[0-9a-f]{64}', obj['sha256']):
        raise ConfigError(f"{where}: sha256 {obj['sha256']!r} is not 64 hex digits")
    return Label(**{f: obj[f] for f in _STR_FIELDS}, stamp_ns=stamp, line=line)


def _read(path: Path, task: TaskSpec | str | None, check_images: bool = True) -> LabelledSet:
    file = path / LABELS_FILE
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f'{path}: no {LABELS_FILE} here; is this a labelled set (written by '
                          '`enpire verify label`)?') from None
    views = task.views if isinstance(task, TaskSpec) else None
    name = task.name if isinstance(task, TaskSpec) else task
    labels: list[Label] = []
    warnings: list[str] = []
    truncated_at = None
    lines = raw.split(b'\n')
    offset = 0
    for i, chunk in enumerate(lines, start=1):
        start, offset = offset, offset + len(chunk) + 1
        if not chunk.strip():
            continue
        where = f'{file}:{i}'
        last = i == len(lines)          # no newline after it
        try:
            obj = json.loads(chunk.decode('utf-8'))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if last:
                warnings.append(f'{where}: ignored a last line cut short (a crash while '
                                f'labelling?): {exc}')
                truncated_at = start
                continue
            raise ConfigError(f'{where}: not a JSON line ({exc})') from None
        label = _parse_line(obj, where, i)
        if name and label.task != name:
            raise ConfigError(f"{where}: a label of task '{label.task}' in a set read for "
                              f"task '{name}'; keep one set per task")
        if check_images:
            data = _read_checked(path, label, file)
            if views is not None:
                if label.view not in views:
                    raise ConfigError(f"{where}: view '{label.view}' is not a camera of task "
                                      f"'{name}' (views: {', '.join(views)})")
                size = png_size(data)
                want = (views[label.view].width_px, views[label.view].height_px)
                if size is None:
                    raise ConfigError(f'{where}: {FRAMES_DIR}/{label.image} is not a PNG')
                if size != want:
                    raise ConfigError(
                        f'{where}: {FRAMES_DIR}/{label.image} is {size[0]}x{size[1]} px; view '
                        f"'{label.view}' of task '{name}' is {want[0]}x{want[1]}: a set of "
                        'another camera setup')
        labels.append(label)
    # lines[-1] is b'' after a final newline: the next label takes its number; a cut-short
    # line is replaced; a complete last line without its newline gets one first
    next_line = len(lines) if truncated_at is not None or not lines[-1] else len(lines) + 1
    return LabelledSet(path, labels, warnings, truncated_at, next_line)


def load_labelled_set(path: str | Path, task: TaskSpec | str | None = None, *,
                      check_images: bool = True) -> LabelledSet:
    """Read and check a labelled set (every line, and every image against its sha256).

    Args:
        task: a TaskSpec (or a task name): every label must be of it; with a TaskSpec, every
            view must be one of its cameras and every image the camera's size.

    Raises:
        ConfigError: no set at ``path``, or a bad line or image (named ``file:line``).
    """
    return _read(Path(path), task, check_images)


def open_labelled_set(path: str | Path, task: TaskSpec | str | None = None) -> LabelledSet:
    """A set to append to: created when ``path`` holds none yet, else read and checked."""
    path = Path(path)
    if not (path / LABELS_FILE).exists():
        if path.exists() and not path.is_dir():
            raise ConfigError(f'{path} is a file, not a labelled set directory')
        path.mkdir(parents=True, exist_ok=True)
        return LabelledSet(path, [], [])
    return _read(path, task)


def score_labelled(verifier: Any, labelled: LabelledSet) -> dict[str, Any]:
    """A backend's calibration on a human-labelled set (the ``human`` kind).

    Each frame is judged alone, in its view. Over the ``success``/``failure`` labels:
    ``label_agreement`` and ``false_negative_rate``; a backend success on an ``invalid``
    frame is a false success too: ``false_positive_rate`` = (successes on ``failure`` and
    ``invalid`` frames) / (``failure`` + ``invalid`` frames). Frames of views the backend
    does not judge are counted in ``not_judged``.

    Raises:
        ConfigError: no ``success`` or ``failure`` label of a view the backend judges.
    """
    views = tuple(verifier.views)
    counts = dict.fromkeys(LABELS, 0)
    agree = fp = fn = invalid_successes = not_judged = 0
    latencies: list[float] = []
    for label in labelled.latest():
        if label.view not in views:
            not_judged += 1
            continue
        images = {label.view: labelled.read_image(label)}
        # One camera's frame: judged in that view alone (a multi-view verifier is told so).
        result = (verifier.verify(images) if views == (label.view,)
                  else verifier.verify(images, views=(label.view,)))
        verdict = result.view(label.view)
        latencies.append(float(verdict.latency_s))
        said = bool(verdict.success)
        counts[label.label] += 1
        if label.label == SUCCESS:
            agree += said
            fn += not said
        elif label.label == FAILURE:
            agree += not said
            fp += said
        else:
            invalid_successes += said
    decided = counts[SUCCESS] + counts[FAILURE]
    if not decided:
        raise ConfigError(f'{labelled.labels_path}: no success or failure label of a view '
                          f"backend '{verifier.backend_id}' judges ({', '.join(views)}); "
                          'label some with `enpire verify label`')
    negatives = counts[FAILURE] + counts[INVALID]
    return {'label_agreement': agree / decided,
            'false_positive_rate': (fp + invalid_successes) / negatives if negatives else 0.0,
            'false_negative_rate': fn / counts[SUCCESS] if counts[SUCCESS] else 0.0,
            'false_positives': fp + invalid_successes, 'false_negatives': fn,
            'positives': counts[SUCCESS],
            'latency_p95_s': float(np.percentile(np.asarray(latencies), 95)),
            'frames': sum(counts.values()), 'labels': counts,
            'invalid_false_successes': invalid_successes, 'not_judged': not_judged}


__all__ = ['FAILURE', 'FRAMES_DIR', 'INVALID', 'LABELS', 'LABELS_FILE', 'PENDING_FILE',
           'SCHEMA', 'SUCCESS', 'FrameToLabel', 'Label', 'LabelledSet', 'encode_png',
           'image_name', 'load_labelled_set', 'open_labelled_set', 'png_size',
           'score_labelled']
