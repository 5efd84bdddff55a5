"""trial.json records: atomic writes, integrity hashes, listing and crash recovery.

Layout (DESIGN.md section 6): ``runs/<experiment>/trials/<trial_id>/`` holds ``episode/``
(the rosbag2 bag: ``episode.mcap`` + ``metadata.yaml``), ``<view>.mp4`` and ``trial.json``.
A trial whose ``trial.json`` says ``outcome: running`` is open; :func:`recover_incomplete`
closes every open trial whose writer is gone as ``aborted``.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from enpire_common.errors import ConfigError
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


def read_trial(trial_dir: str | Path) -> dict[str, Any]:
    """Read and check a trial's ``trial.json``.

    Raises:
        ConfigError: the file is missing, not JSON or not an ``enpire.trial`` record.
    """
    path = Path(trial_dir) / TRIAL_JSON
    try:
        record = json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise ConfigError(f'{path}: no trial record here; is this a trial directory '
                          '(runs/<experiment>/trials/<trial_id>)?') from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f'{path}:{exc.lineno}: invalid JSON ({exc.msg})') from None
    if not isinstance(record, dict) or record.get('schema') != SCHEMA:
        got = record.get('schema') if isinstance(record, dict) else type(record).__name__
        raise ConfigError(f'{path}: schema {got!r} is not {SCHEMA!r}')
    return record


def trials_dir(run_dir: str | Path) -> Path:
    """``<run_dir>/trials`` when it exists, else ``run_dir`` itself."""
    run_dir = Path(run_dir)
    return run_dir / 'trials' if (run_dir / 'trials').is_dir() else run_dir


def list_trials(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every readable trial record under a run dir, oldest first; unreadable ones skipped."""
    out = []
    base = trials_dir(run_dir)
    if not base.is_dir():
        return []
    for child in base.iterdir():
        if (child / TRIAL_JSON).is_file():
            try:
                record = read_trial(child)
            except ConfigError:
                continue
            record['dir'] = str(child)
            out.append(record)
    out.sort(key=lambda r: (r.get('timings', {}).get('started_unix_s') or 0,
                            r['ids'].get('trial_id', '')))
    return out


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


def _writer_alive(record: dict[str, Any]) -> bool:
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


def recover_incomplete(run_dir: str | Path, *, force: bool = False) -> list[str]:
    """Mark every open trial of a run as ``aborted`` and make its bag readable.

    An open trial (``outcome == 'running'``) whose writer process is still alive on this host
    is left alone unless ``force``. The bag of an aborted trial is repaired as far as it got
    (see :func:`enpire_rollout.core.bag.repair_bag`); closed trials are never touched.

    Returns:
        The trial ids marked aborted.
    """
    from enpire_rollout.core.bag import bag_dir_of, repair_bag

    marked = []
    base = trials_dir(run_dir)
    if not base.is_dir():
        return []
    for child in sorted(base.iterdir()):
        if not (child / TRIAL_JSON).is_file():
            continue
        try:
            record = read_trial(child)
        except ConfigError:
            continue
        if record.get('outcome') != OUTCOME_RUNNING or (_writer_alive(record) and not force):
            continue
        bag = repair_bag(child) if bag_dir_of(child) != child else {
            'repaired': False, 'readable': False, 'messages': 0, 'detail': 'no bag'}
        for stale in child.glob('.*.tmp'):
            stale.unlink(missing_ok=True)  # half-written video / json temp files
        record['outcome'] = OUTCOME_ABORTED
        record['reason'] = ('recorder stopped before the trial closed (crash or kill); '
                            'recovered by recover_incomplete')
        record['recovery'] = bag
        record['bag'] = {**(record.get('bag') or {}), 'readable': bag['readable'],
                         'repaired': bag['repaired']}
        files = [n for n in ('episode/episode.mcap', 'episode/metadata.yaml')
                 if (child / n).is_file()]
        record['files'] = hash_files(child, files)
        record['gaps'] = True  # an aborted trial's streams stop early by definition
        atomic_write_json(child / TRIAL_JSON, record)
        marked.append(record['ids'].get('trial_id', child.name))
    return marked
