"""Reading an MCAP file that may be cut short or damaged, record by record.

A recorder that is killed leaves an MCAP file that ends inside a chunk and has no summary (no
index, no statistics, no footer); a file damaged on disk has unreadable bytes somewhere. The
``mcap`` library reads the first through its summary (``SeekingReader``) and stops at the
first bad record (``StreamReader``), without saying where. :func:`scan_mcap` walks the file
with the library's record parsers (``mcap.records``, ``mcap.stream_reader``), but checks every
record's frame against the file size, skips a record whose body does not parse (a corrupt
chunk), looks for the next intact chunk after bytes that are no record at all, and writes down
each byte range it could not use: :class:`McapScan`. :func:`iter_messages` walks the file again
and yields the messages of every intact record.

Why not ``StreamReader`` itself: it has no offsets (so nothing to report or resume from), and
its ``ReadDataStream`` returns short reads at the end of a file as if they were whole.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from mcap.data_stream import ReadDataStream
from mcap.exceptions import EndOfFile
from mcap.opcode import Opcode
from mcap.records import Channel, ChunkIndex, Footer, Message, Schema, Statistics
from mcap.stream_reader import get_chunk_data_stream

MAGIC = b'\x89MCAP0\r\n'
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)
_FOOTER_RECORD_BYTES = 1 + 8 + 8 + 8 + 4          # opcode, length, footer fields
_CHUNK_FIXED_BYTES = 8 + 8 + 8 + 4 + 4 + 8         # chunk fields besides compression + data
_COMPRESSIONS = ('', 'zstd', 'lz4')


class _Strict(ReadDataStream):
    """ReadDataStream that raises on a short read instead of returning what is left."""

    def read(self, length: int) -> bytes:
        data = super().read(length)
        if len(data) != length:
            raise EndOfFile()
        return data


def _stream(body: bytes) -> _Strict:
    return _Strict(BytesIO(body))


@dataclass(frozen=True)
class Damage:
    """A byte range of the file that could not be used, and why."""

    offset: int
    length: int
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {'offset': self.offset, 'length': self.length, 'why': self.why}


@dataclass
class McapScan:
    """What one pass over an MCAP file found.

    ``damage`` lists the unusable byte ranges inside the file; ``cut_at`` is the offset where
    a file cut short (a killed writer) ends inside a record. A file is ``intact`` when it
    starts and ends as MCAP, holds a summary (index and statistics) and nothing is damaged.
    """

    path: Path
    size: int = 0
    header: bool = False
    footer: bool = False
    summary: bool = False
    cut_at: int | None = None
    schemas: dict[int, Schema] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    start_ns: int | None = None
    end_ns: int | None = None
    damage: list[Damage] = field(default_factory=list)
    statistics: tuple[int, Statistics] | None = None
    chunk_spans: dict[int, int] = field(default_factory=dict, repr=False)   # offset: bytes
    _chunk_indexes: list[tuple[int, ChunkIndex]] = field(default_factory=list, repr=False)

    @property
    def chunks(self) -> int:
        """Intact chunks."""
        return len(self.chunk_spans)

    @property
    def message_count(self) -> int:
        """Messages in intact records whose channel is known."""
        return sum(n for cid, n in self.counts.items() if cid in self.channels)

    @property
    def orphans(self) -> int:
        """Messages whose channel record was lost: they cannot be read or recovered."""
        return sum(n for cid, n in self.counts.items() if cid not in self.channels)

    @property
    def bytes_dropped(self) -> int:
        """Bytes of the file that no intact record covers (damage plus a cut-short tail)."""
        tail = self.size - self.cut_at if self.cut_at is not None else 0
        return sum(d.length for d in self.damage) + tail

    @property
    def damaged(self) -> bool:
        """Bytes inside the file are unreadable (not just a cut-short tail)."""
        return bool(self.damage) or (self.size > 0 and not self.header)

    @property
    def intact(self) -> bool:
        return (self.header and self.footer and self.summary and self.cut_at is None
                and not self.damage and not self.orphans)

    def topic_counts(self) -> dict[str, int]:
        """Messages per topic (channels of one topic summed)."""
        out: dict[str, int] = {}
        for cid, channel in self.channels.items():
            out[channel.topic] = out.get(channel.topic, 0) + self.counts.get(cid, 0)
        return out

    def topic_types(self) -> dict[str, str]:
        """Topic -> message type (the schema name; '' when the schema is lost)."""
        return {ch.topic: (self.schemas[ch.schema_id].name if ch.schema_id in self.schemas
                           else '') for ch in self.channels.values()}

    def problems(self) -> list[str]:
        """One line per thing wrong with the file, in file order (empty when intact)."""
        name = self.path.name
        if self.size == 0:
            return [f'{name} is empty (0 bytes)']
        out = []
        if not self.header:
            out.append(f'{name} does not start as an MCAP file (magic or header record '
                       'missing)')
        out += [f'{name}: bytes {d.offset}..{d.offset + d.length} unreadable ({d.why})'
                if d.length else f'{name}: at byte {d.offset}: {d.why}' for d in self.damage]
        if self.orphans:
            out.append(f'{name}: {self.orphans} message(s) on channels whose definition is '
                       'lost')
        if self.cut_at is not None:
            out.append(f'{name} is cut short at byte {self.cut_at} of {self.size} (the writer '
                       f'stopped mid-record: {self.size - self.cut_at} bytes lost)')
        elif not self.footer and self.header:
            out.append(f'{name} ends without a footer (the writer never closed it)')
        if self.footer and not self.summary and not self.damage:
            out.append(f'{name} has no summary section (no index or statistics)')
        return out

    def to_dict(self) -> dict[str, Any]:
        return {'path': str(self.path), 'bytes': self.size, 'intact': self.intact,
                'damaged': self.damaged, 'truncated': not self.footer,
                'cut_at': self.cut_at, 'messages': self.message_count,
                'per_topic': self.topic_counts(), 'bytes_dropped': self.bytes_dropped,
                'damage': [d.to_dict() for d in self.damage], 'problems': self.problems()}


def _u64(buf: Any, at: int) -> int:
    return struct.unpack_from('<Q', buf, at)[0]


def _chunk_records(body: bytes) -> tuple[list[Any], int, int, str]:
    """``(records, start_ns, end_ns, compression)`` of a chunk record's body.

    Raises:
        Exception: the body is not a whole, decodable chunk (any parse or decode error).
    """
    from mcap.records import Chunk

    stream = _stream(body)
    chunk = Chunk.read(stream)
    if chunk.compression not in _COMPRESSIONS:
        raise ValueError(f'unknown chunk compression {chunk.compression[:16]!r}')
    data_stream, size = get_chunk_data_stream(chunk, validate_crc=True)
    data = data_stream.read(size) if size else b''
    if len(data) != chunk.uncompressed_size:
        raise ValueError(f'chunk decodes to {len(data)} bytes, its header says '
                         f'{chunk.uncompressed_size}')
    records: list[Any] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 9:
            raise ValueError('chunk content ends inside a record header')
        op, length = data[pos], _u64(data, pos + 1)
        end = pos + 9 + length
        if end > len(data):
            raise ValueError(f'record of {length} bytes at {pos} overruns its chunk')
        inner = data[pos + 9:end]
        if op == Opcode.MESSAGE:
            records.append(Message.read(_stream(inner), length))
        elif op == Opcode.SCHEMA:
            records.append(Schema.read(_stream(inner)))
        elif op == Opcode.CHANNEL:
            records.append(Channel.read(_stream(inner)))
        else:
            raise ValueError(f'opcode {op:#x} cannot be inside a chunk')
        pos = end
    return records, chunk.message_start_time, chunk.message_end_time, chunk.compression


def _find_chunk(buf: Any, start: int, stop: int) -> int | None:
    """Offset of the next record in ``buf[start:stop]`` that is a whole, decodable chunk."""
    pos = start
    while True:
        pos = buf.find(bytes([Opcode.CHUNK]), pos, stop)
        if pos < 0 or stop - pos < 9 + _CHUNK_FIXED_BYTES:
            return None
        length = _u64(buf, pos + 1)
        end = pos + 9 + length
        if length >= _CHUNK_FIXED_BYTES and end <= stop:
            # Cheap frame checks before any decompression: the compression name and the data
            # length must add up to the record length.
            name_len = struct.unpack_from('<I', buf, pos + 9 + 28)[0]
            if name_len <= 4 and _CHUNK_FIXED_BYTES + name_len <= length:
                data_len = _u64(buf, pos + 9 + 32 + name_len)
                if _CHUNK_FIXED_BYTES + name_len + data_len == length:
                    try:
                        _chunk_records(buf[pos + 9:end])
                    except Exception:  # noqa: BLE001 - not a chunk after all; keep looking
                        pass
                    else:
                        return pos
        pos += 1


def _end_footer(buf: Any) -> int | None:
    """Offset of the footer record when the file ends with an intact footer and magic."""
    size = len(buf)
    at = size - len(MAGIC) - _FOOTER_RECORD_BYTES
    if at < len(MAGIC) or buf[size - len(MAGIC):] != MAGIC:
        return None
    if buf[at] != Opcode.FOOTER or _u64(buf, at + 1) != _FOOTER_RECORD_BYTES - 9:
        return None
    return at


def _walk(buf: Any, scan: McapScan) -> Iterator[Message]:
    """Every message of every intact record of ``buf``, in file order; fills ``scan``."""
    size = scan.size = len(buf)
    if size == 0:
        return
    pos = 0
    stop = size
    if buf[:len(MAGIC)] == MAGIC:
        pos = len(MAGIC)
        if size - pos >= 9 and buf[pos] == Opcode.HEADER:
            scan.header = True
    end_footer = _end_footer(buf)
    while pos < stop:
        length = _u64(buf, pos + 1) if stop - pos >= 9 else None
        end = pos + 9 + length if length is not None else stop + 1
        if length is None or buf[pos] not in _KNOWN_OPCODES or end > stop:
            nxt = _find_chunk(buf, pos + 1, stop)
            if nxt is not None:
                why = ('not a record' if length is None or buf[pos] not in _KNOWN_OPCODES
                       else f'record length {length} overruns the file')
                scan.damage.append(Damage(pos, nxt - pos, why))
                pos = nxt
                continue
            if end_footer is not None and pos < end_footer:
                # The file was closed (it ends in a footer) but this part is unreadable.
                scan.damage.append(Damage(pos, end_footer - pos, 'no intact record here'))
                pos = end_footer
                continue
            scan.cut_at = pos
            return
        op = buf[pos]
        body = buf[pos + 9:end]
        try:
            if op == Opcode.CHUNK:
                records, first_ns, last_ns, _comp = _chunk_records(body)
                scan.chunk_spans[pos] = end - pos
            elif op in (Opcode.MESSAGE, Opcode.SCHEMA, Opcode.CHANNEL):
                parse = {Opcode.SCHEMA: Schema.read, Opcode.CHANNEL: Channel.read}.get(op)
                records = [parse(_stream(body)) if parse else Message.read(_stream(body),
                                                                           length)]
            elif op == Opcode.STATISTICS:
                records, scan.statistics = [], (pos, Statistics.read(_stream(body)))
            elif op == Opcode.CHUNK_INDEX:
                records = []
                scan._chunk_indexes.append((pos, ChunkIndex.read(_stream(body))))
            elif op == Opcode.FOOTER:
                records, footer = [], Footer.read(_stream(body))
                if buf[end:end + len(MAGIC)] == MAGIC:
                    scan.footer = True
                    scan.summary = footer.summary_start != 0
                    if end + len(MAGIC) < size:
                        scan.damage.append(Damage(end + len(MAGIC), size - end - len(MAGIC),
                                                  'bytes after the closing magic'))
                    break
                raise ValueError('footer without the closing magic')
            else:
                records = []     # header, data end, indexes, metadata, attachments
        except Exception as exc:  # noqa: BLE001 - a damaged record fails in any parser
            scan.damage.append(Damage(pos, end - pos, f'{Opcode(op).name.lower()} record: '
                                                      f'{type(exc).__name__} {exc}'.strip()))
            pos = end
            continue
        for record in records:
            if isinstance(record, Message):
                scan.counts[record.channel_id] = scan.counts.get(record.channel_id, 0) + 1
                if scan.start_ns is None or record.log_time < scan.start_ns:
                    scan.start_ns = record.log_time
                if scan.end_ns is None or record.log_time > scan.end_ns:
                    scan.end_ns = record.log_time
                yield record
            elif isinstance(record, Schema):
                scan.schemas.setdefault(record.id, record)
            elif isinstance(record, Channel):
                scan.channels.setdefault(record.id, record)
        pos = end
    _check_summary(scan)


def _check_summary(scan: McapScan) -> None:
    """Damage where the summary disagrees with intact data (an index or statistics overwritten).

    Only checked when the data itself is undamaged: a lost chunk already explains both.
    """
    if scan.damage:
        return
    for at, index in scan._chunk_indexes:
        if scan.chunk_spans.get(index.chunk_start_offset) != index.chunk_length:
            scan.damage.append(Damage(at, 0, f'chunk index points at byte '
                                             f'{index.chunk_start_offset}, where no such '
                                             'chunk is'))
    if scan.statistics is not None:
        at, stats = scan.statistics
        found = {cid: n for cid, n in scan.counts.items() if n}
        said = {cid: n for cid, n in stats.channel_message_counts.items() if n}
        if found != said:
            scan.damage.append(Damage(at, 0, f'statistics count {sum(said.values())} '
                                             f'messages, the data holds '
                                             f'{sum(found.values())}'))


def _mapped(path: Path) -> tuple[Any, Any]:
    stream = path.open('rb')
    try:
        if path.stat().st_size == 0:
            return stream, b''
        return stream, mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    except BaseException:
        stream.close()
        raise


def scan_mcap(path: str | Path) -> McapScan:
    """One pass over an MCAP file: what it holds and what is wrong with it.

    Raises:
        OSError: the file cannot be opened.
    """
    scan = McapScan(Path(path))
    stream, buf = _mapped(scan.path)
    try:
        for _message in _walk(buf, scan):
            pass
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()
        stream.close()
    return scan


def iter_messages(path: str | Path, scan: McapScan) -> Iterator[tuple[Channel, Message]]:
    """``(channel, message)`` for every message of an intact record, in file order.

    ``scan`` is :func:`scan_mcap` of the same file: it knows every channel, including those
    defined after their first message (in the summary of a closed file). Messages on a
    channel that is defined nowhere are skipped (``scan.orphans`` counts them).
    """
    stream, buf = _mapped(Path(path))
    try:
        for message in _walk(buf, McapScan(Path(path))):
            channel = scan.channels.get(message.channel_id)
            if channel is not None:
                yield channel, message
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()
        stream.close()


__all__ = ['MAGIC', 'Damage', 'McapScan', 'iter_messages', 'scan_mcap']
