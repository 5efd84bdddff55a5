"""Reading a trial's bag whether or not its writer closed it, and refusing one that is damaged.

:class:`BagReader` is the one reader behind ``enpire bag``, replay, episodes (the LeRobot
export) and the labelling frames. A bag that rosbags can open is read through its index, as
before. A bag that it cannot open is checked (:func:`check_bag`):

- cut short or unindexed (a recorder killed mid-trial: no summary, often no metadata.yaml):
  its messages are streamed from every complete chunk, and :attr:`BagReader.warnings` says
  that the bag is unindexed and how to rebuild its index;
- damaged (bytes inside overwritten, wrong magic, empty): :class:`RecordDamagedError` names
  the file, the damage, and ``enpire bag recover``.

A damaged chunk in a bag whose index is intact only shows when it is read: the reader then
raises the same error.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, RecordDamagedError
from enpire_rollout.core.bag import BAG_DIRNAME, bag_dir_of
from enpire_rollout.core.mcap_scan import McapScan, iter_messages, scan_mcap

METADATA = 'metadata.yaml'

#: Bag states, best first: what :func:`check_bag` calls a bag.
STATES = ('ok', 'unindexed', 'truncated', 'damaged', 'empty')


def recover_hint(bag: Path) -> str:
    """The command that rebuilds ``bag`` (named by its trial directory)."""
    bag = Path(bag)
    return f'enpire bag recover {bag.parent if bag.name == BAG_DIRNAME else bag}'


@dataclass
class BagHealth:
    """What :func:`check_bag` found: the bag's state, its files' scans and what is wrong."""

    bag: Path
    state: str
    scans: list[McapScan] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def per_topic(self) -> dict[str, int]:
        """Messages per topic in every intact record."""
        out: dict[str, int] = {}
        for scan in self.scans:
            for topic, n in scan.topic_counts().items():
                out[topic] = out.get(topic, 0) + n
        return out

    @property
    def topic_types(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for scan in self.scans:
            out.update({t: m for t, m in scan.topic_types().items() if m or t not in out})
        return out

    @property
    def messages(self) -> int:
        return sum(s.message_count for s in self.scans)

    @property
    def bytes_dropped(self) -> int:
        return sum(s.bytes_dropped for s in self.scans)

    def to_dict(self) -> dict[str, Any]:
        return {'bag': str(self.bag), 'state': self.state, 'messages': self.messages,
                'per_topic': self.per_topic, 'bytes_dropped': self.bytes_dropped,
                'bytes': sum(s.size for s in self.scans), 'problems': list(self.problems),
                'files': [s.to_dict() for s in self.scans]}


def mcap_files(bag: Path) -> list[Path]:
    """The bag's MCAP files: those metadata.yaml lists when it can be read, else every
    ``*.mcap`` in the directory (a killed writer leaves no metadata.yaml)."""
    meta = read_metadata(bag)
    if meta is not None:
        names = meta.get('relative_file_paths') or []
        if names and all((bag / n).is_file() for n in names):
            return [bag / n for n in names]
    return sorted(p for p in bag.glob('*.mcap') if p.is_file())


def read_metadata(bag: Path) -> dict[str, Any] | None:
    """``rosbag2_bagfile_information`` of the bag's metadata.yaml; None when absent or
    unreadable."""
    import yaml

    try:
        meta = yaml.safe_load((bag / METADATA).read_text(encoding='utf-8'))
        info = meta['rosbag2_bagfile_information']
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None


def _metadata_counts(meta: dict[str, Any]) -> dict[str, int] | None:
    try:
        return {t['topic_metadata']['name']: int(t['message_count'])
                for t in meta.get('topics_with_message_count') or []}
    except (KeyError, TypeError, ValueError):
        return None


def check_bag(path: str | Path) -> BagHealth:
    """Scan every MCAP file of a bag and compare with its metadata.yaml.

    States: ``ok`` (every file intact and indexed, metadata.yaml agrees), ``unindexed``
    (the data is whole but a summary or metadata.yaml is missing or disagrees), ``truncated``
    (a file ends mid-record or without its footer: a killed writer), ``damaged`` (bytes inside
    a file are unreadable), ``empty`` (no byte of data at all).

    Raises:
        ConfigError: no bag at ``path`` (neither metadata.yaml nor an MCAP file).
    """
    bag = bag_dir_of(path)
    files = mcap_files(bag) if bag.is_dir() else []
    if not files and not (bag / METADATA).is_file():
        raise ConfigError(f'{bag}: no rosbag2 bag here (neither {METADATA} nor an .mcap '
                          'file); pass a trial directory or its episode/ folder')
    health = BagHealth(bag, 'ok', metadata=read_metadata(bag))
    if not files:
        health.state = 'empty'
        health.problems.append(f'{bag}: {METADATA} names no MCAP file that exists')
        return health
    health.scans = [scan_mcap(f) for f in files]
    for scan in health.scans:
        health.problems += scan.problems()
    meta = health.metadata
    if meta is None:
        why = 'missing' if not (bag / METADATA).is_file() else 'unreadable'
        health.problems.append(f'{METADATA} {why} (the writer never closed the bag)')
    elif any(s.damaged or not s.footer for s in health.scans):
        pass   # the damage explains why metadata.yaml and the data disagree
    elif _metadata_counts(meta) != health.per_topic:
        health.problems.append(f'{METADATA} counts {_metadata_counts(meta)} differ from '
                               f'the data {health.per_topic}')
    elif [Path(n).name for n in meta.get('relative_file_paths') or []] != \
            [f.name for f in files]:
        health.problems.append(f'{METADATA} lists {meta.get("relative_file_paths")}, the bag '
                               f'holds {[f.name for f in files]}')
    if all(s.size == 0 for s in health.scans):
        health.state = 'empty'
    elif any(s.damaged or s.orphans for s in health.scans):
        health.state = 'damaged'
    elif any(not s.footer for s in health.scans):
        health.state = 'truncated'
    elif health.problems:
        health.state = 'unindexed'
    return health


def damaged_error(health: BagHealth) -> RecordDamagedError:
    """The error a reader raises for a damaged or empty bag."""
    what = '; '.join(health.problems[:3]) + (' ...' if len(health.problems) > 3 else '')
    if health.state == 'empty':
        return RecordDamagedError(f'{health.bag}: the bag holds no data ({what}); the '
                                  'recorder stopped before writing anything, or the file was '
                                  'emptied: nothing in it can be read or recovered')
    return RecordDamagedError(f'{health.bag}: the bag is damaged ({what}); run '
                              f'`{recover_hint(health.bag)}` to rebuild it from its intact '
                              'records (the original is kept as .damaged)')


@dataclass(frozen=True)
class BagConnection:
    """One stream of a bag: topic, message type and how many messages it holds."""

    topic: str
    msgtype: str
    count: int


class BagReader:
    """Messages of a trial's bag: indexed when it can be, streamed when its index is missing.

    Use as a context manager. ``indexed`` says which; ``warnings`` says why a bag was streamed
    (empty for an intact bag); ``state`` is ``ok`` or :func:`check_bag`'s state.

    Args:
        path: a trial directory or its rosbag2 (``episode/``) directory.

    Raises (on enter):
        ConfigError: no bag at ``path``.
        RecordDamagedError: the bag is damaged or empty (the message says how to recover).
    """

    def __init__(self, path: str | Path) -> None:
        self.bag = bag_dir_of(path)
        self.indexed = False
        self.state = 'ok'
        self.warnings: list[str] = []
        self.connections: list[BagConnection] = []
        self.message_count = 0
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self._reader: Any = None
        self._health: BagHealth | None = None

    def __enter__(self) -> BagReader:
        self.open()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def open(self) -> None:
        if (self.bag / METADATA).is_file() and self._open_indexed():
            return
        health = check_bag(self.bag)
        if health.state in ('damaged', 'empty'):
            raise damaged_error(health)
        self._health, self.state = health, health.state
        self.warnings.append(
            f'{self.bag}: the bag is {health.state} ({"; ".join(health.problems)}); read '
            f'by streaming its {health.messages} intact message(s); run '
            f'`{recover_hint(self.bag)}` to rebuild its index')
        topics = health.topic_types
        self.connections = [BagConnection(t, topics.get(t, ''), n)
                            for t, n in health.per_topic.items()]
        self.message_count = health.messages
        stamps = [(s.start_ns, s.end_ns) for s in health.scans if s.start_ns is not None]
        if stamps:
            self.start_ns = min(a for a, _b in stamps)
            self.end_ns = max(b for _a, b in stamps)

    def _open_indexed(self) -> bool:
        from rosbags.rosbag2 import Reader

        try:
            reader = Reader(self.bag)
            reader.open()
        except Exception:  # noqa: BLE001 - any failure: fall back to checking the files
            return False
        self._reader, self.indexed = reader, True
        counts: dict[tuple[str, str], int] = {}
        for conn in reader.connections:
            key = (conn.topic, conn.msgtype)
            counts[key] = counts.get(key, 0) + conn.msgcount
        self.connections = [BagConnection(t, m, n) for (t, m), n in counts.items()]
        self.message_count = reader.message_count
        if reader.message_count:
            self.start_ns, self.end_ns = reader.start_time, reader.end_time - 1
        return True

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()

    def messages(self, connections: Collection[BagConnection] | None = None,
                 start_ns: int | None = None) -> Iterator[tuple[BagConnection, int, bytes]]:
        """``(connection, stamp_ns, cdr bytes)`` of the chosen streams (default: all), from
        ``start_ns`` on; in time order when indexed, in recorded (file) order when streamed.

        Raises:
            RecordDamagedError: a chunk of an indexed bag cannot be read.
        """
        wanted = {(c.topic, c.msgtype) for c in (connections if connections is not None
                                                 else self.connections)}
        by_key = {(c.topic, c.msgtype): c for c in self.connections}
        if self._reader is not None:
            yield from self._indexed_messages(wanted, by_key, start_ns)
            return
        if self._health is None:
            raise ConfigError(f'{self.bag}: the reader is not open (use it with `with`)')
        for scan in self._health.scans:
            schemas = scan.schemas
            for channel, message in iter_messages(scan.path, scan):
                schema = schemas.get(channel.schema_id)
                key = (channel.topic, schema.name if schema is not None else '')
                if key in wanted and (start_ns is None or message.log_time >= start_ns):
                    yield by_key[key], int(message.log_time), message.data

    def _indexed_messages(self, wanted: set[tuple[str, str]],
                          by_key: dict[tuple[str, str], BagConnection],
                          start_ns: int | None) -> Iterator[tuple[BagConnection, int, bytes]]:
        conns = [c for c in self._reader.connections if (c.topic, c.msgtype) in wanted]
        it = self._reader.messages(connections=conns, start=start_ns)
        while True:
            try:
                conn, stamp_ns, raw = next(it)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - rosbags raises many types for bad bytes
                raise RecordDamagedError(
                    f'{self.bag}: the bag is damaged: a chunk cannot be read '
                    f'({type(exc).__name__}: {exc}); run `{recover_hint(self.bag)}` to rebuild '
                    'it from its intact records (the original is kept as .damaged)') from None
            yield by_key[(conn.topic, conn.msgtype)], int(stamp_ns), raw


__all__ = ['STATES', 'BagConnection', 'BagHealth', 'BagReader', 'check_bag', 'damaged_error',
           'mcap_files', 'read_metadata', 'recover_hint']
