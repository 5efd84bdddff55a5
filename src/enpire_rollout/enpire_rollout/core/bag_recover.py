"""Rebuilding a trial's bag and record after a crash or damage (``enpire bag recover``).

:func:`recover_bag` copies every message of every intact record of a bag (see
:mod:`~enpire_rollout.core.mcap_scan`) into a fresh, fully indexed rosbag2 bag, written beside
it and fsynced, then put in place with ``os.replace`` (the MCAP file is never missing: the
original is hard-linked to ``<name>.damaged`` first, unless no backup is wanted).

:func:`recover_trial` does that for a trial and brings its ``trial.json`` along: the recovered
counts (``bag_recovered``), the file hashes of the new bag, ``aborted`` for a trial whose
recorder died, and a record rebuilt from its whole fields when trial.json itself is damaged.
Both are idempotent: a healthy trial is left alone ("nothing to do").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, RecordDamagedError
from enpire_common.files import fsync_path
from enpire_rollout.core.bag import BAG_DIRNAME, bag_dir_of, parse_cdr, typestore
from enpire_rollout.core.bag_reader import (
    METADATA,
    BagHealth,
    check_bag,
    damaged_error,
    read_metadata,
)
from enpire_rollout.core.mcap_scan import iter_messages
from enpire_rollout.core.records import (
    OUTCOME_ABORTED,
    OUTCOME_RUNNING,
    SCHEMA,
    TRIAL_JSON,
    atomic_write_json,
    hash_files,
    read_trial,
    salvage_trial_json,
    writer_alive,
)

BACKUP_SUFFIX = '.damaged'
_NO_HASH = 'RIHS01_' + '0' * 64


def _backup_name(path: Path) -> Path:
    dst = path.with_name(path.name + BACKUP_SUFFIX)
    n = 1
    while dst.exists():
        dst = path.with_name(f'{path.name}{BACKUP_SUFFIX}.{n}')
        n += 1
    return dst


def _keep_copy(path: Path) -> Path:
    """A backup of ``path`` beside it (a hard link: no copy, and the name stays in place)."""
    dst = _backup_name(path)
    try:
        os.link(path, dst)
    except OSError:
        shutil.copy2(path, dst)
    return dst


def _type_hashes(bag: Path) -> dict[str, str]:
    meta = read_metadata(bag) or {}
    out = {}
    for entry in meta.get('topics_with_message_count') or []:
        try:
            topic = entry['topic_metadata']
            if topic.get('type_description_hash'):
                out[str(topic['type'])] = str(topic['type_description_hash'])
        except (KeyError, TypeError, AttributeError):
            continue
    return out


def _qos(channel: Any) -> list[Any]:
    from rosbags.rosbag2.metadata import parse_qos

    text = (channel.metadata or {}).get('offered_qos_profiles')
    if not text:
        return []
    try:
        return parse_qos(text)
    except Exception:  # noqa: BLE001 - QoS is a nicety; a bag without it still plays
        return []


def _rebuild(health: BagHealth, out_dir: Path) -> dict[str, Any]:
    """Write every intact, parseable message of ``health``'s files into a new bag."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    store = typestore()
    hashes = _type_hashes(health.bag)
    writer = Writer(out_dir, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()
    conns: dict[tuple[str, str, str], Any] = {}
    per_topic: dict[str, int] = {}
    invalid: dict[str, int] = {}
    try:
        for scan in health.scans:
            for channel, message in iter_messages(scan.path, scan):
                schema = scan.schemas.get(channel.schema_id)
                if schema is None:
                    invalid[channel.topic] = invalid.get(channel.topic, 0) + 1
                    continue
                msgtype = schema.name
                if msgtype in store.fielddefs:
                    try:
                        parse_cdr(msgtype, message.data)
                    except Exception:  # noqa: BLE001 - garbage bytes in an unchecked chunk
                        invalid[channel.topic] = invalid.get(channel.topic, 0) + 1
                        continue
                key = (channel.topic, msgtype, channel.message_encoding)
                conn = conns.get(key)
                if conn is None:
                    known = msgtype in store.fielddefs
                    conn = conns[key] = writer.add_connection(
                        channel.topic, msgtype,
                        msgdef=None if known else schema.data.decode('utf-8', 'replace'),
                        rihs01=None if known else hashes.get(msgtype, _NO_HASH),
                        typestore=store if known else None,
                        serialization_format=channel.message_encoding or 'cdr',
                        offered_qos_profiles=_qos(channel))
                writer.write(conn, int(message.log_time), message.data)
                per_topic[channel.topic] = per_topic.get(channel.topic, 0) + 1
    finally:
        writer.close()
    for path in out_dir.iterdir():
        fsync_path(path)
    fsync_path(out_dir)
    return {'per_topic': per_topic, 'invalid': invalid}


def recover_bag(path: str | Path, *, backup: bool = True, dry_run: bool = False,
                allow_empty: bool = False) -> dict[str, Any]:
    """Rebuild a bag from every intact record; leave an intact bag alone.

    Args:
        path: a trial directory or its rosbag2 directory.
        backup: keep each original MCAP file as ``<name>.damaged`` (and metadata.yaml too).
        dry_run: only report what would be recovered; change nothing.
        allow_empty: rebuild even when no message is intact (an empty, readable bag); else
            such a bag is refused.

    Returns:
        ``{'bag', 'state', 'problems', 'recovered', 'messages', 'per_topic', 'invalid',
        'bytes', 'bytes_dropped', 'backup', 'detail'}``: ``state`` is the bag's state before
        (:func:`~enpire_rollout.core.bag_reader.check_bag`), ``messages``/``per_topic`` what
        the (recovered) bag holds, ``invalid`` messages dropped because their bytes do not
        parse as their type, ``backup`` the kept originals.

    Raises:
        ConfigError: no bag at ``path``.
        RecordDamagedError: nothing in the bag is intact (and not ``allow_empty``).
    """
    health = check_bag(path)
    bag = health.bag
    out: dict[str, Any] = {
        'bag': str(bag), 'state': health.state, 'problems': list(health.problems),
        'recovered': False, 'messages': health.messages, 'per_topic': health.per_topic,
        'invalid': {}, 'bytes': sum(s.size for s in health.scans),
        'bytes_dropped': health.bytes_dropped, 'backup': [], 'dry_run': dry_run}
    if health.state == 'ok':
        out['detail'] = f'nothing to do: the bag is intact ({health.messages} messages, indexed)'
        return out
    if not allow_empty and (health.state == 'empty' or (
            not health.messages and not any(s.channels for s in health.scans))):
        if health.state == 'empty':
            raise damaged_error(health)
        raise RecordDamagedError(f'{bag}: no intact record to recover '
                                 f"({'; '.join(health.problems)}); the bag was left as it is")
    if dry_run:
        out['detail'] = (f'would rebuild the bag from {health.messages} intact message(s), '
                         f'dropping {health.bytes_dropped} byte(s)')
        return out
    work = bag.parent / f'.{bag.name}.recover'
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        built = _rebuild(health, work / bag.name)
        new_dir = work / bag.name
        target = bag / f'{bag.name}.mcap'
        originals = [s.path for s in health.scans]
        if backup:
            out['backup'] = [str(_keep_copy(p)) for p in originals if p.exists()]
            if (bag / METADATA).is_file():
                out['backup'].append(str(_keep_copy(bag / METADATA)))
        os.replace(new_dir / target.name, target)
        for old in originals:
            if old != target:
                old.unlink(missing_ok=True)
        os.replace(new_dir / METADATA, bag / METADATA)
        fsync_path(bag)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.update(recovered=True, messages=sum(built['per_topic'].values()),
               per_topic=built['per_topic'], invalid=built['invalid'],
               detail=f"rebuilt from {sum(built['per_topic'].values())} intact message(s); "
                      f"{health.bytes_dropped} byte(s) dropped")
    return out


def _trial_dir_of(path: Path) -> Path:
    if (path / TRIAL_JSON).is_file() or (path / BAG_DIRNAME).is_dir():
        return path
    if path.name == BAG_DIRNAME and (path.parent / TRIAL_JSON).is_file():
        return path.parent
    return path


def _rebuilt_record(trial_dir: Path, text: str, error: str, backup: Path | None,
                    now_unix_s: float | None) -> dict[str, Any]:
    """A trial record from the whole fields of a damaged trial.json, the gaps filled in."""
    kept = salvage_trial_json(text)
    record: dict[str, Any] = dict(kept)
    record['schema'] = SCHEMA
    ids = record.get('ids') if isinstance(record.get('ids'), dict) else {}
    run = trial_dir.parent.parent if trial_dir.parent.name == 'trials' else trial_dir.parent
    ids.setdefault('trial_id', trial_dir.name)
    ids.setdefault('experiment_id', run.name)
    record['ids'] = ids
    if not isinstance(record.get('outcome'), str):
        record['outcome'] = 'invalid'
        record['reason'] = ('trial.json was damaged and its outcome lost; rebuilt by enpire bag '
                            'recover')
    if not isinstance(record.get('timings'), dict):
        record['timings'] = {}
    record['record_recovered'] = {'at': now_unix_s, 'error': error,
                                  'kept_fields': sorted(kept),
                                  'backup': str(backup) if backup else None}
    return record


def recover_trial(path: str | Path, *, now_unix_s: float | None = None, backup: bool = True,
                  force: bool = False, dry_run: bool = False, allow_empty: bool = False,
                  recovered_by: str = 'enpire bag recover') -> dict[str, Any]:
    """Recover a trial's bag and bring its trial.json along (see the module docstring).

    Args:
        path: a trial directory (or its bag directory).
        now_unix_s: when, for the record (``bag_recovered.at``).
        backup: keep the damaged originals (``.damaged``) beside the rebuilt files.
        force: recover a trial whose recorder still runs on this host.
        dry_run: report only.
        allow_empty: see :func:`recover_bag`.
        recovered_by: who recovers, for the ``reason`` of a trial marked aborted.

    Returns:
        ``{'ok', 'trial_dir', 'recovered', 'bag', 'record', 'detail'}``; ``bag`` is
        :func:`recover_bag`'s result (None without a bag), ``record`` says what happened to
        trial.json: ``{'state': 'ok'|'damaged'|'missing', 'updated', 'rebuilt', 'error',
        'marked_aborted'}``.

    Raises:
        ConfigError: neither a bag nor a trial record at ``path``, or the trial is still
            being recorded (and not ``force``).
        RecordDamagedError: the bag holds nothing intact.
    """
    trial_dir = _trial_dir_of(Path(path))
    json_path = trial_dir / TRIAL_JSON
    bag_dir = bag_dir_of(trial_dir)
    has_bag = (bag_dir / METADATA).is_file() or any(bag_dir.glob('*.mcap'))
    record: dict[str, Any] | None = None
    rec: dict[str, Any] = {'state': 'missing', 'updated': False, 'rebuilt': False,
                           'error': None, 'marked_aborted': False}
    if json_path.is_file():
        try:
            record = read_trial(trial_dir)
            rec['state'] = 'ok'
        except RecordDamagedError as exc:
            rec.update(state='damaged', error=str(exc))
    if not has_bag and rec['state'] == 'missing':
        raise ConfigError(f'{trial_dir}: neither a trial record nor a bag here; pass a trial '
                          'directory or id')
    running = record is not None and record.get('outcome') == OUTCOME_RUNNING
    if running and writer_alive(record) and not force:
        pid = (record.get('writer') or {}).get('pid')
        raise ConfigError(f'{trial_dir}: the trial is still being recorded (pid {pid}); '
                          'recover it after its recorder stops, or pass --force')
    bag = recover_bag(trial_dir, backup=backup, dry_run=dry_run,
                      allow_empty=allow_empty) if has_bag else None
    bag_changed = bool(bag and bag['recovered'])
    out: dict[str, Any] = {'ok': True, 'trial_dir': str(trial_dir), 'bag': bag, 'record': rec,
                           'dry_run': dry_run, 'recovered': bag_changed}
    pruned = record is not None and bool((record.get('pruned') or {}).get('bag'))
    notes = [bag['detail']] if bag else ['no bag' + (' (pruned by gc)' if pruned else '')]
    if rec['state'] == 'damaged':
        notes.append('trial.json is damaged: ' + ('would rebuild it' if dry_run else
                                                  'rebuilt from its whole fields'))
    if running:
        notes.append('would mark the trial aborted' if dry_run else 'trial marked aborted')
    out['detail'] = '; '.join(notes)
    touch_record = rec['state'] == 'damaged' or (record is not None and
                                                 (bag_changed or running))
    if dry_run or not touch_record:
        return out
    if record is None:
        text = json_path.read_bytes().decode('utf-8', 'replace')
        kept = _keep_copy(json_path) if backup else None
        record = _rebuilt_record(trial_dir, text, rec['error'] or '', kept, now_unix_s)
        rec['rebuilt'] = True
    if record.get('outcome') == OUTCOME_RUNNING:
        for stale in trial_dir.glob('.*.tmp'):
            stale.unlink(missing_ok=True)  # half-written video / json temp files
        record['outcome'] = OUTCOME_ABORTED
        record['reason'] = ('recorder stopped before the trial closed (crash or kill); '
                            f'recovered by {recovered_by}')
        record['gaps'] = True  # an aborted trial's streams stop early by definition
        rec['marked_aborted'] = True
    if bag is not None:
        old = record.get('bag') if isinstance(record.get('bag'), dict) else {}
        record['bag'] = {**old, 'readable': True, 'repaired': bool(old.get('repaired'))
                         or bag_changed}
    if bag_changed:
        record['bag_recovered'] = _recovery_note(bag, record, now_unix_s)
    _rehash(trial_dir, record)
    atomic_write_json(json_path, record)
    rec['updated'] = True
    out['recovered'] = True
    return out


def _recovery_note(bag: dict[str, Any], record: dict[str, Any],
                   now_unix_s: float | None) -> dict[str, Any]:
    """trial.json's ``bag_recovered``: what the rebuilt bag holds and what was lost."""
    lost = {}
    streams = record.get('streams') if isinstance(record.get('streams'), dict) else {}
    for entry in streams.values():
        if not isinstance(entry, dict) or not isinstance(entry.get('count'), int):
            continue
        have = bag['per_topic'].get(entry.get('topic'), 0)
        if entry['count'] > have:
            lost[str(entry.get('topic'))] = entry['count'] - have
    return {'at': now_unix_s, 'state': bag['state'], 'messages': bag['messages'],
            'per_topic': bag['per_topic'], 'lost_per_topic': lost, 'invalid': bag['invalid'],
            'bytes_dropped': bag['bytes_dropped'], 'problems': bag['problems'][:10],
            'backup': bag['backup']}


def _rehash(trial_dir: Path, record: dict[str, Any]) -> None:
    """Hash the bag's files anew in ``record['files']``; other files keep their hashes."""
    files = record.get('files') if isinstance(record.get('files'), dict) else {}
    prefix = f'{BAG_DIRNAME}/'
    kept = {n: h for n, h in files.items() if not n.startswith(prefix)}
    bag = trial_dir / BAG_DIRNAME
    names = [f'{prefix}{p.name}' for p in sorted(bag.iterdir())
             if p.is_file() and BACKUP_SUFFIX not in p.name] if bag.is_dir() else []
    record['files'] = {**kept, **hash_files(trial_dir, names)}


__all__ = ['BACKUP_SUFFIX', 'recover_bag', 'recover_trial']
