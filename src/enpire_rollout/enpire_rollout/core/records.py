"""trial.json records: atomic writes, integrity hashes, listing and crash recovery.

Layout (DESIGN.md section 6): ``runs/<experiment>/trials/<trial_id>/`` holds ``episode/``
(the rosbag2 bag: ``episode.mcap`` + ``metadata.yaml``), ``<view>.mp4`` and ``trial.json``.
A trial whose ``trial.json`` says ``outcome: running`` is open; :func:`recover_incomplete`
closes every open trial whose writer is gone as ``aborted``. A ``trial.json`` that is not a
whole record (cut short, overwritten) is refused by :func:`read_trial` with
:class:`~enpire_common.errors.RecordDamagedError`, skipped and reported by :func:`list_trials`,
and rebuilt from what is left by ``enpire bag recover`` (:func:`salvage_trial_json`).
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError, RecordDamagedError
from enpire_common.files import atomic_write_bytes, sha256_file

SCHEMA = 'enpire.trial/1'
TRIAL_JSON = 'trial.json'
OUTCOME_RUNNING = 'running'
OUTCOME_ABORTED = 'aborted'
#: Outcomes of TrialResult.msg plus 'running' (open trial).
OUTCOMES = ('success', 'failure', 'timeout', 'safety_abort', 'policy_fault', 'reset_failed',
            OUTCOME_ABORTED, 'invalid', OUTCOME_RUNNING)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented, key-sorted JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + '\n').encode())


def hash_files(trial_dir: str | Path, names: list[str]) -> dict[str, str]:
    """``{relative name: sha256}`` for each existing file of ``names`` under ``trial_dir``."""
    trial_dir = Path(trial_dir)
    return {name: sha256_file(trial_dir / name) for name in names
            if (trial_dir / name).is_file()}


def verify_files(trial_dir: str | Path, record: dict[str, Any]) -> dict[str, str]:
    """Files whose sha256 differs from ``record['files']``: ``{name: 'missing'|'modified'}``."""
    trial_dir = Path(trial_dir)
    bad: dict[str, str] = {}
    for name, digest in (record.get('files') or {}).items():
        path = trial_dir / name
        if not path.is_file():
            bad[name] = 'missing'
        elif sha256_file(path) != digest:
            bad[name] = 'modified'
    return bad


def _damaged(path: Path, what: str) -> RecordDamagedError:
    trial = path.parent
    return RecordDamagedError(f'{path}: {what}; the trial record is damaged: run `enpire bag '
                              f'recover {trial}` to rebuild it from what is left (the damaged '
                              f'file is kept as {TRIAL_JSON}.damaged)')


def read_trial(trial_dir: str | Path) -> dict[str, Any]:
    """Read and check a trial's ``trial.json``.

    Raises:
        ConfigError: no trial.json here, or it is another kind of record (schema).
        RecordDamagedError: the file is not a whole record: empty, cut short, not JSON, or
            without its ``ids``/``outcome``.
    """
    path = Path(trial_dir) / TRIAL_JSON
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise ConfigError(f'{path}: no trial record here; is this a trial directory '
                          '(runs/<experiment>/trials/<trial_id>)?') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, f'unreadable ({exc})') from None
    if not text.strip():
        raise _damaged(path, f'empty ({len(text)} bytes)')
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = '' if text.rstrip().endswith('}') else ', cut short'
        raise _damaged(path, f'line {exc.lineno}: invalid JSON ({exc.msg}{cut})') from None
    if not isinstance(record, dict):
        raise _damaged(path, f'holds a JSON {type(record).__name__}, not a record')
    if record.get('schema') != SCHEMA:
        raise ConfigError(f"{path}: schema {record.get('schema')!r} is not {SCHEMA!r}")
    for key, kind, required in (('ids', dict, True), ('outcome', str, True),
                                ('timings', dict, False)):
        if (required or key in record) and not isinstance(record.get(key), kind):
            raise _damaged(path, f'{key!r} is {type(record.get(key)).__name__}, not a '
                                 f'{kind.__name__}')
    return record


_TOP_KEY = re.compile(r'^ {2}"', re.M)   # a top-level key: nested ones are indented deeper


def salvage_trial_json(text: str) -> dict[str, Any]:
    """The top-level fields of a damaged trial.json that are still whole.

    trial.json is written by :func:`atomic_write_json` (two-space indent, one top-level key
    per line at that indent), so each top-level field parses on its own: a file cut short or
    overwritten in one place loses only the fields it cut through.
    """
    starts = [m.start() for m in _TOP_KEY.finditer(text)]
    out: dict[str, Any] = {}
    for i, start in enumerate(starts):
        piece = text[start:starts[i + 1] if i + 1 < len(starts) else len(text)].rstrip()
        piece = piece.rstrip(',').rstrip()
        if i + 1 == len(starts) and piece.endswith('}'):
            piece = piece[:-1].rstrip()   # the record's closing brace
        try:
            out.update(json.loads('{' + piece + '}'))
        except json.JSONDecodeError:
            continue
    return out


def trials_dir(run_dir: str | Path) -> Path:
    """``<run_dir>/trials`` when it exists, else ``run_dir`` itself."""
    run_dir = Path(run_dir)
    return run_dir / 'trials' if (run_dir / 'trials').is_dir() else run_dir


def list_trials(run_dir: str | Path, skipped: list[dict[str, Any]] | None = None
                ) -> list[dict[str, Any]]:
    """Every readable trial record under a run dir, oldest first.

    A record that cannot be read is left out; when ``skipped`` is given, each one is appended
    to it as ``{'dir', 'trial_id', 'error_code', 'error', 'message'}``.
    """
    out = []
    base = trials_dir(run_dir)
    if not base.is_dir():
        return []
    for child in sorted(base.iterdir()):
        if (child / TRIAL_JSON).is_file():
            try:
                record = read_trial(child)
            except (ConfigError, RecordDamagedError) as exc:
                if skipped is not None:
                    skipped.append({'dir': str(child), 'trial_id': child.name,
                                    'error_code': exc.code, 'error': exc.name,
                                    'message': str(exc)})
                continue
            record['dir'] = str(child)
            out.append(record)
    out.sort(key=lambda r: (_started(r), str(r['ids'].get('trial_id', ''))))
    return out


def _started(record: dict[str, Any]) -> float:
    value = (record.get('timings') or {}).get('started_unix_s')
    return float(value) if isinstance(value, (int, float)) else 0.0


def find_trial(ref: str | Path, roots: list[Path]) -> Path:
    """A trial dir from a path or a trial id searched under ``roots/*/trials/``.

    Raises:
        ConfigError: nothing matches (lists where it looked).
    """
    path = Path(ref)
    if path.is_dir():
        return path
    for root in roots:
        for candidate in sorted(root.glob(f'*/trials/{ref}')) + [root / 'trials' / str(ref)]:
            if candidate.is_dir():
                return candidate
    where = ', '.join(str(r) for r in roots) or '(no roots)'
    raise ConfigError(f"no trial '{ref}': not a directory and not a trial id under {where}; "
                      'set ENPIRE_HOME or pass the trial directory')


def writer_alive(record: dict[str, Any]) -> bool:
    """True when the trial's recorder process (``record['writer']``) runs on this host."""
    writer = record.get('writer') or {}
    if writer.get('host') != socket.gethostname() or not writer.get('pid'):
        return False
    if int(writer['pid']) == os.getpid():
        return False
    try:
        os.kill(int(writer['pid']), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: trial.json files this process read as closed, by path: their (inode, mtime, size) then.
#: A closed trial never opens again, so a node that looks for open trials before every run
#: (a day of them in one experiment) reads each closed record once, not once per run.
_CLOSED: dict[Path, tuple[int, int, int]] = {}


def open_trials(run_dir: str | Path, *, force: bool = False) -> list[Path]:
    """The trial dirs of a run that are open (``outcome == 'running'``) and whose writer
    process is gone (any writer with ``force``): what :func:`recover_incomplete` closes.
    Reads only trial.json files, and a closed one only once while it stays unchanged."""
    base = trials_dir(run_dir)
    if not base.is_dir():
        return []
    found = []
    for child in sorted(base.iterdir()):
        path = child / TRIAL_JSON
        try:
            st = path.stat()
        except OSError:
            continue
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if _CLOSED.get(path) == key:
            continue
        try:
            record = read_trial(child)
        except (ConfigError, RecordDamagedError):
            continue
        if record.get('outcome') != OUTCOME_RUNNING:
            _CLOSED[path] = key
        elif force or not writer_alive(record):
            found.append(child)
    return found


def recover_incomplete(run_dir: str | Path, *, force: bool = False,
                       now_unix_s: float | None = None, isolated: bool = False,
                       timeout_s: float = 600.0) -> list[str]:
    """Mark every open trial of a run as ``aborted`` and make its bag readable.

    An open trial (``outcome == 'running'``) whose writer process is still alive on this host
    is left alone unless ``force``. The bag of an aborted trial is rebuilt from its intact
    records (:func:`enpire_rollout.core.bag_recover.recover_trial`, no backup kept: a killed
    writer's file holds nothing more); closed trials are never touched.

    ``isolated``: rebuild the bags in a child process (``python -m
    enpire_rollout.core.records``), as a long-lived node does. A rebuild reads and rewrites a
    whole bag, from disk and of any size: in a node that runs for days its transient buffers
    would stay in the heap (measured: 1-9 MB of the rollout node's memory per killed
    recorder), and a bag that breaks the reader must not take the node down. Without open
    trials no child is started.

    Returns:
        The trial ids marked aborted.

    Raises:
        RecordDamagedError: ``isolated`` and the child failed or ran past ``timeout_s``; the
            trials stay open and the next call tries again.
    """
    todo = open_trials(run_dir, force=force)
    if not todo:
        return []
    if isolated:
        return _recover_in_child(todo, now_unix_s, timeout_s)
    return _recover(todo, now_unix_s)


def _recover(trial_dirs: list[Path], now_unix_s: float | None) -> list[str]:
    from enpire_rollout.core.bag_recover import recover_trial

    marked = []
    for child in trial_dirs:
        try:
            result = recover_trial(child, now_unix_s=now_unix_s, backup=False, force=True,
                                   allow_empty=True, recovered_by='recover_incomplete')
        except RecordDamagedError:
            continue   # nothing intact in its bag: left for `enpire bag recover` to report
        if result['record']['marked_aborted']:
            marked.append(_trial_id(child))
    return marked


def _trial_id(trial_dir: Path) -> str:
    try:
        return str((read_trial(trial_dir).get('ids') or {}).get('trial_id') or trial_dir.name)
    except (ConfigError, RecordDamagedError):
        return trial_dir.name


def _recover_in_child(trial_dirs: list[Path], now_unix_s: float | None,
                      timeout_s: float) -> list[str]:
    import subprocess
    import sys

    cmd = [sys.executable, '-m', 'enpire_rollout.core.records']
    if now_unix_s is not None:
        cmd += ['--now', repr(now_unix_s)]
    cmd += [str(d) for d in trial_dirs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise RecordDamagedError(f'recovering {len(trial_dirs)} open trial(s) took more than '
                                 f'{timeout_s:.0f} s; they stay open') from exc
    try:
        if proc.returncode != 0:
            raise ValueError
        return list(json.loads(proc.stdout.strip().splitlines()[-1])['marked'])
    except (ValueError, KeyError, IndexError, TypeError):
        tail = (proc.stderr or proc.stdout).strip()[-600:]
        raise RecordDamagedError(
            f'recovering open trial(s) {", ".join(d.name for d in trial_dirs)} failed (exit '
            f'{proc.returncode}); they stay open: {tail}') from None


def main(argv: list[str] | None = None) -> int:
    """``python -m enpire_rollout.core.records [--now T] TRIAL_DIR...``: close these open
    trials as :func:`recover_incomplete` does; prints ``{"marked": [...]}`` on its last line.
    """
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__.split(':', 1)[1].strip())
    ap.add_argument('--now', type=float, default=None)
    ap.add_argument('trial_dirs', nargs='+', type=Path)
    args = ap.parse_args(argv)
    print(json.dumps({'marked': _recover(args.trial_dirs, args.now)}))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
