"""rosbag2 (MCAP) episode bags: writers, message building and inspection.

Reading a bag that may be cut short or damaged is :mod:`~enpire_rollout.core.bag_reader`;
rebuilding one is :mod:`~enpire_rollout.core.bag_recover`.

Core code never imports ROS message types: messages arrive here either as CDR bytes
(serialized by the recorder node) or as plain dicts/dataclasses, which are serialized with
the rosbags typestore (ROS 2 Jazzy types plus the enpire_interfaces messages read from their
``.msg`` files).

Layout: a trial's bag is the rosbag2 directory ``<trial_dir>/episode/`` holding
``episode.mcap`` and ``metadata.yaml`` (``ros2 bag info <trial_dir>/episode`` works).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from enpire_common.errors import ConfigError, RecordError

BAG_DIRNAME = 'episode'

_BASE_DTYPES = {
    'bool': np.bool_, 'byte': np.uint8, 'char': np.uint8, 'octet': np.uint8,
    'int8': np.int8, 'uint8': np.uint8, 'int16': np.int16, 'uint16': np.uint16,
    'int32': np.int32, 'uint32': np.uint32, 'int64': np.int64, 'uint64': np.uint64,
    'float32': np.float32, 'float64': np.float64,
}
# rosbags' Nodetype values (rosbags.typesys.msg): BASE, NAME, ARRAY, SEQUENCE.
_BASE, _NAME, _ARRAY, _SEQUENCE = 1, 2, 3, 4


class BagError(RecordError):
    """A bag could not be written or read; the message names the bag and the cause.

    A bag that is damaged on disk raises :class:`~enpire_common.errors.RecordDamagedError`
    instead (see :mod:`~enpire_rollout.core.bag_reader`).
    """


def bag_dir_of(path: str | Path) -> Path:
    """The rosbag2 directory of a trial dir (or ``path`` itself when it is a bag dir)."""
    path = Path(path)
    if (path / BAG_DIRNAME).is_dir():
        return path / BAG_DIRNAME
    return path


def interfaces_msg_dir() -> Path:
    """The ``msg`` directory of the installed enpire_interfaces package."""
    from ament_index_python.packages import (
        PackageNotFoundError,
        get_package_share_directory,
    )

    try:
        return Path(get_package_share_directory('enpire_interfaces')) / 'msg'
    except PackageNotFoundError:
        raise ConfigError('enpire_interfaces is not installed (no ament index entry); '
                          'source scripts/env.sh after building the workspace') from None


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """The Jazzy typestore with every enpire_interfaces message registered (cached)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for path in sorted(interfaces_msg_dir().glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(encoding='utf-8'),
                                        f'enpire_interfaces/msg/{path.stem}'))
    store.register(types)
    return store


def _default_base(name: str) -> Any:
    if name in ('string', 'wstring'):
        return ''
    return False if name == 'bool' else 0


def _build_field(store: Any, node: tuple[int, Any], value: Any, where: str) -> Any:
    kind, spec = node
    if kind == _BASE:
        base = spec[0]
        if value is None:
            return _default_base(base)
        if base in ('string', 'wstring'):
            return str(value)
        return bool(value) if base == 'bool' else _BASE_DTYPES[base](value).item()
    if kind == _NAME:
        return build_message(store, spec, value if value is not None else {})
    (item_kind, item_spec), _length = spec
    items = [] if value is None else value
    if item_kind == _BASE and item_spec[0] in _BASE_DTYPES:
        if isinstance(items, (bytes, bytearray, memoryview)):
            return np.frombuffer(items, dtype=np.uint8).astype(_BASE_DTYPES[item_spec[0]],
                                                                copy=False)
        return np.asarray(items, dtype=_BASE_DTYPES[item_spec[0]]).ravel()
    return [_build_field(store, (item_kind, item_spec), v, f'{where}[{i}]')
            for i, v in enumerate(items)]


def build_message(store: Any, msgtype: str, value: Any) -> Any:
    """A rosbags message object of ``msgtype`` from a dict or dataclass (missing = default).

    Raises:
        BagError: ``msgtype`` is unknown or ``value`` has a field the type does not.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        if type(value).__name__ == msgtype.rsplit('/', 1)[-1]:
            return value  # already a rosbags message object
        raise BagError(f'cannot build {msgtype} from {type(value).__name__}: pass a dict, '
                       'a dataclass or CDR bytes')
    if msgtype not in store.fielddefs:
        raise BagError(f'unknown message type {msgtype!r}; is enpire_interfaces built?')
    _consts, fields = store.fielddefs[msgtype]
    names = {name for name, _ in fields}
    extra = set(value) - names
    if extra:
        raise BagError(f'{msgtype} has no field(s) {sorted(extra)} (fields: {sorted(names)})')
    kwargs = {name: _build_field(store, node, value.get(name), f'{msgtype}.{name}')
              for name, node in fields}
    return store.types[msgtype](**kwargs)


def canonical_cdr(msgtype: str, data: bytes | bytearray | memoryview) -> memoryview:
    """``data`` without the trailing bytes some middlewares append after a CDR message.

    rmw_fastrtps may hand out a serialized message with up to a few stray bytes past its
    end (seen with an empty float64[] followed by strings); strict readers such as rosbags
    then refuse the whole message ("CDR message size mismatch"). Parsing once to find the
    true end (cheap: arrays are zero-copy views) keeps every bag readable by every reader.
    Raises BagError when the bytes are not a valid ``msgtype`` at all.
    """
    return parse_cdr(msgtype, data)[0]


def parse_cdr(msgtype: str, data: bytes | bytearray | memoryview) -> tuple[memoryview, Any]:
    """``(canonical_cdr(msgtype, data), message)``: one parse gives both.

    The message is a rosbags object whose arrays are zero-copy views of ``data`` (an
    Image's ``data`` is the pixel buffer), so a recorder needs no second deserialization
    to get at the pixels. Raises BagError like :func:`canonical_cdr`.
    """
    view = memoryview(data)
    if len(view) < 4 or bytes(view[:2]) not in (b'\x00\x00', b'\x00\x01'):
        raise BagError(f'{msgtype}: not a CDR-encapsulated message')
    msgdef = typestore().get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if view[1] else msgdef.deserialize_cdr_be
    try:
        msg, pos = func(view[4:], 0, msgdef.cls, typestore())
    except Exception as exc:  # noqa: BLE001 - any parse failure means corrupt input
        raise BagError(f'{msgtype}: CDR bytes do not parse ({exc})') from None
    end = 4 + pos
    end += -end % 4  # keep the CDR stream's final alignment padding
    return view[:min(end, len(view))], msg


def serialize(msgtype: str, msg_or_bytes: Any) -> bytes | memoryview:
    """CDR bytes of a message given as bytes (canonicalised), dict or dataclass."""
    if isinstance(msg_or_bytes, (bytes, bytearray, memoryview)):
        return canonical_cdr(msgtype, msg_or_bytes)
    store = typestore()
    return store.serialize_cdr(build_message(store, msgtype, msg_or_bytes), msgtype)


class BagWriter(Protocol):
    """Port: writes CDR messages into one rosbag2 directory."""

    name: str

    def open(self, bag_dir: Path) -> None: ...

    def write(self, topic: str, msgtype: str, stamp_ns: int, data: bytes | memoryview) -> None:
        ...

    def close(self) -> None: ...


class RosbagsMcapWriter:
    """:class:`BagWriter` on the pure-Python ``rosbags`` library (MCAP storage, version 9).

    Args:
        chunk_interval_ns: close the pending MCAP chunk (and flush it to the file) when it
            spans this much stamp time, so a killed process loses at most this much; 0 keeps
            rosbags' default (1 MiB chunks).
        compression: ``'zstd'`` compresses each MCAP chunk (MCAP's own chunk compression,
            which rosbag2, rosbags and the ``mcap`` readers all decode); ``'none'`` writes
            them raw. Camera frames dominate a bag: a 300-step Push-T episode is ~200 MB raw
            and ~1-2 MB with zstd, at the same write cost per frame.
    """

    name = 'rosbags'

    def __init__(self, chunk_interval_ns: int = 1_000_000_000,
                 compression: str = 'zstd') -> None:
        _check_compression(compression)
        self._compression = compression
        self._chunk_interval_ns = int(chunk_interval_ns)
        self._writer: Any = None
        self._conns: dict[str, Any] = {}
        self._chunk_start_ns: int | None = None

    def open(self, bag_dir: Path) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

        try:
            self._writer = Writer(Path(bag_dir), version=9, storage_plugin=StoragePlugin.MCAP)
            if self._compression == 'zstd':
                from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

                self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
            self._writer.open()
        except WriterError as exc:
            raise BagError(f'cannot create bag {bag_dir}: {exc}') from None

    def write(self, topic: str, msgtype: str, stamp_ns: int, data: bytes | memoryview) -> None:
        if self._writer is None:
            raise BagError(f'bag is not open; cannot write {topic}')
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore(),
                                               serialization_format='cdr')
            self._conns[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f'topic {topic} was recorded as {conn.msgtype}, got {msgtype}')
        self._writer.write(conn, int(stamp_ns), data)
        self._make_durable(int(stamp_ns))

    def _make_durable(self, stamp_ns: int) -> None:
        if self._chunk_interval_ns <= 0:
            return
        if self._chunk_start_ns is None:
            self._chunk_start_ns = stamp_ns
            return
        if 0 <= stamp_ns - self._chunk_start_ns < self._chunk_interval_ns:
            return   # (a stamp that jumps back, e.g. a restarted sim clock, closes the chunk)
        # rosbags keeps up to 1 MiB of messages in memory; closing the chunk early bounds what
        # a SIGKILL loses. Internal API, so degrade to the default when it changes.
        storage = getattr(self._writer, 'storage', None)
        close_chunk = getattr(storage, 'close_chunk', None)
        chunk = getattr(storage, 'chunk', None)
        if close_chunk is not None and getattr(getattr(chunk, 'bio', None), 'tell', None):
            if chunk.bio.tell():
                close_chunk()
            storage.bio.flush()
        self._chunk_start_ns = stamp_ns

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            _fsync_dir_files(Path(writer.path))


class Rosbag2PyWriter:
    """:class:`BagWriter` on ``rosbag2_py`` (present with a system ROS install only)."""

    name = 'rosbag2_py'

    def __init__(self, compression: str = 'zstd') -> None:
        _check_compression(compression)
        self._compression = compression
        self._writer: Any = None
        self._topics: dict[str, str] = {}

    def open(self, bag_dir: Path) -> None:
        import rosbag2_py

        self._rb = rosbag2_py
        self._writer = rosbag2_py.SequentialWriter()
        # The MCAP plugin's 'zstd_fast' preset: zstd chunk compression, as RosbagsMcapWriter.
        preset = 'zstd_fast' if self._compression == 'zstd' else ''
        self._writer.open(rosbag2_py.StorageOptions(uri=str(bag_dir), storage_id='mcap',
                                                    storage_preset_profile=preset),
                          rosbag2_py.ConverterOptions('cdr', 'cdr'))

    def write(self, topic: str, msgtype: str, stamp_ns: int, data: bytes | memoryview) -> None:
        if topic not in self._topics:
            meta = self._rb.TopicMetadata(id=len(self._topics), name=topic, type=msgtype,
                                          serialization_format='cdr')
            self._writer.create_topic(meta)
            self._topics[topic] = msgtype
        self._writer.write(topic, bytes(data), int(stamp_ns))

    def close(self) -> None:
        if self._writer is not None:
            close = getattr(self._writer, 'close', None)
            if close is not None:
                close()
            self._writer = None


def rosbag2_py_available() -> bool:
    """True when the ``rosbag2_py`` module is importable (system ROS install)."""
    return importlib.util.find_spec('rosbag2_py') is not None


BAG_COMPRESSIONS = ('zstd', 'none')


def _check_compression(compression: str) -> None:
    if compression not in BAG_COMPRESSIONS:
        from enpire_common.errors import UnknownNameError

        raise UnknownNameError('bag compression', compression, list(BAG_COMPRESSIONS))


def make_bag_writer(backend: str = 'auto', chunk_interval_ns: int = 1_000_000_000,
                    compression: str = 'zstd') -> BagWriter:
    """The bag writer for ``backend``: 'auto' (rosbag2_py when importable, else rosbags),
    'rosbags' or 'rosbag2_py'; ``compression`` 'zstd' (MCAP chunks) or 'none'."""
    from enpire_common.errors import UnknownNameError

    if backend == 'auto':
        backend = 'rosbag2_py' if rosbag2_py_available() else 'rosbags'
    if backend == 'rosbags':
        return RosbagsMcapWriter(chunk_interval_ns, compression)
    if backend == 'rosbag2_py':
        return Rosbag2PyWriter(compression)
    raise UnknownNameError('bag writer', backend, ['auto', 'rosbags', 'rosbag2_py'])


def _fsync_dir_files(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_mcap(files: list[Path]) -> dict[str, dict[str, Any]]:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: dict[str, dict[str, Any]] = {}
    factory = DecoderFactory()
    for path in files:
        with path.open('rb') as stream:
            reader = make_reader(stream)
            summary = reader.get_summary()
            if summary is None or summary.statistics is None:
                raise BagError(f'{path}: MCAP file has no summary (cut short?)')
            counts = summary.statistics.channel_message_counts
            for cid, channel in summary.channels.items():
                schema = summary.schemas[channel.schema_id]
                entry = out.setdefault(channel.topic, {'type': schema.name, 'count': 0,
                                                       'decoded': False})
                entry['count'] += counts.get(cid, 0)
                if counts.get(cid, 0) and not entry['decoded']:
                    # Decode one message per topic: proves the schema and CDR agree.
                    _schema, _channel, message = next(iter(reader.iter_messages(
                        topics=[channel.topic])))
                    decoder = factory.decoder_for(channel.message_encoding, schema)
                    if decoder is None:
                        raise BagError(f'{path}: no decoder for {schema.name}')
                    decoder(message.data)
                    entry['decoded'] = True
    return out


def _read_rosbags(bag: Path) -> dict[str, Any]:
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        topics = {c.topic: {'type': c.msgtype, 'count': c.msgcount} for c in reader.connections}
        return {
            'duration_s': reader.duration * 1e-9 if reader.message_count else 0.0,
            'start_ns': reader.start_time if reader.message_count else 0,
            'end_ns': reader.end_time if reader.message_count else 0,
            'message_count': reader.message_count,
            'topics': topics,
        }


def bag_info(path: str | Path) -> dict[str, Any]:
    """Describe a trial's bag, check every record of it, and cross-check two readers.

    Args:
        path: a trial directory or a rosbag2 directory.

    Returns:
        ``{'path', 'state', 'indexed', 'duration_s', 'start_ns', 'end_ns', 'message_count',
        'files', 'topics': {topic: {'type', 'count', 'mcap_count'}}, 'problems',
        'bytes_dropped', 'hint', 'consistent', 'errors'}``. ``state`` is
        :func:`~enpire_rollout.core.bag_reader.check_bag`'s (``ok``, ``unindexed``,
        ``truncated``, ``damaged``, ``empty``); a bag that rosbags cannot open is described from
        its intact records (``indexed`` False). ``consistent`` is True when the bag is ``ok``
        and rosbags and the ``mcap`` reader agree on every topic's type and count; ``hint`` is
        the command that repairs a bag that is not ``ok``.

    Raises:
        ConfigError: no bag at ``path``.
    """
    from enpire_rollout.core.bag_reader import check_bag, recover_hint

    bag = bag_dir_of(path)
    health = check_bag(bag)
    errors: list[str] = list(health.problems)
    try:
        info = _read_rosbags(bag)
        info['indexed'] = True
    except Exception as exc:  # noqa: BLE001 - any reader failure is reported, not raised
        stamps = [(s.start_ns, s.end_ns) for s in health.scans if s.start_ns is not None]
        start = min((a for a, _b in stamps), default=0)
        end = max((b + 1 for _a, b in stamps), default=0)
        types = health.topic_types
        info = {'duration_s': (end - start) * 1e-9, 'start_ns': start, 'end_ns': end,
                'message_count': health.messages, 'indexed': False,
                'files': [s.path.name for s in health.scans],
                'topics': {t: {'type': types.get(t, ''), 'count': n}
                           for t, n in health.per_topic.items()}}
        errors.append(f'rosbags cannot open the bag ({type(exc).__name__}: {exc})')
    info['files'] = [s.path.name for s in health.scans]
    info.update(path=str(bag), state=health.state, problems=list(health.problems),
                bytes_dropped=health.bytes_dropped,
                hint='' if health.state == 'ok' else recover_hint(bag))
    mcap: dict[str, dict[str, Any]] = {}
    if info['indexed']:
        try:
            mcap = _read_mcap([bag / name for name in info['files']])
        except Exception as exc:  # noqa: BLE001 - any reader failure is reported, not raised
            errors.append(f'mcap reader: {exc}')
    for topic, entry in info['topics'].items():
        other = mcap.get(topic)
        entry['mcap_count'] = other['count'] if other else None
        if not info['indexed']:
            continue
        if other is None:
            errors.append(f'{topic}: missing in the MCAP summary')
        elif other['count'] != entry['count'] or other['type'] != entry['type']:
            errors.append(f"{topic}: rosbags {entry['type']} x{entry['count']} != mcap "
                          f"{other['type']} x{other['count']}")
    info['consistent'] = not errors and health.state == 'ok'
    info['errors'] = errors
    return info


def bag_readable(path: str | Path) -> bool:
    """True when rosbags can open the bag (metadata.yaml and a complete MCAP file)."""
    try:
        _read_rosbags(bag_dir_of(path))
    except Exception:  # noqa: BLE001 - any failure means "not readable"
        return False
    return True
