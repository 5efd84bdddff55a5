"""Retention of trial records on disk: what ``enpire gc`` keeps and what it thins.

A cell writes ~2 MB a trial (bag + MP4s + trial.json): ~40 GB a day. Most of it is the videos
of routine successes, which nobody watches after the first few. The rules, per experiment
(``<home>/<experiment>/trials/<trial_id>/``):

- ``trial.json`` is never deleted; a trial without a final outcome (``running``: its writer
  may be recording it now) or with an unreadable record is never touched (``skipped``);
- every trial that is not a verified success is kept whole (``failure``: failure, timeout,
  safety_abort, policy_fault, reset_failed, aborted, invalid);
- every trial the experiment's decisions name is kept whole (``referenced``): a trial id, or
  a path through a trial's directory, anywhere in the data of the store's events of the
  experiment (agent decisions, comparisons, prunes, ...);
- every trial of a best revision is kept whole (``best_revision``): the store's best
  revision of the experiment (all trials, and held-out trials only), and each
  ``best_revision`` named in the JSON embedded in a report under the home
  (``<home>/reports/*.html``: bench and improve reports; ``<home>/<experiment>/report.html``);
- of the other (routine) successes of each revision, the newest ``keep_per_revision`` keep
  their videos (``newest``); the older ones are thinned: their MP4s (and with ``bags``
  their bag, ``episode/``) are deleted.

A thinned trial's trial.json says so (written atomically before any file goes): ``pruned``
``{videos: [...], bag: [...], bytes, at, by: 'enpire gc', reason}``, each pruned view's
``videos`` entry gets ``pruned: true``, and the removed files leave ``files`` (their hashes),
so ``enpire bag info``'s integrity check does not call them tampered. A second run over the
same trials frees nothing (idempotent).

The report (:mod:`enpire_evolution.core.report`) shows a pruned video as pruned instead of a
dead link. :func:`plan` decides (reads only), :func:`apply` deletes; both are core (no ROS).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.errors import EnpireError, UnknownNameError
from enpire_evolution.core.config import RetentionConfig
from enpire_rollout.core.records import (
    OUTCOME_RUNNING,
    TRIAL_JSON,
    atomic_write_json,
    read_trial,
    trials_dir,
)

GC_BY = 'enpire gc'
BAG_DIR = 'episode'
#: Why a trial keeps its files, in the order the rules apply.
KEEP_REASONS = ('failure', 'referenced', 'best_revision', 'newest')
#: Why a trial is not looked at.
SKIP_REASONS = ('open', 'unreadable', 'no_record')
_JSON_SCRIPT = re.compile(r'<script type="application/json"[^>]*>(.*?)</script>', re.S)


@dataclass(frozen=True)
class References:
    """What an experiment's decisions and reports name, with why (for people).

    Attributes:
        trials: trial id -> why it is kept whole.
        revisions: revision id -> why every trial of it is kept whole.
    """

    trials: Mapping[str, str] = field(default_factory=dict)
    revisions: Mapping[str, str] = field(default_factory=dict)


@dataclass
class TrialPlan:
    """What gc does with one trial directory."""

    trial_id: str
    revision: str
    path: Path
    action: str                 # 'keep', 'thin' or 'skip'
    reason: str                 # one of KEEP_REASONS / SKIP_REASONS, or why it is thinned
    files: list[str] = field(default_factory=list)   # thin: names under path to delete
    bytes: int = 0


@dataclass
class ExperimentPlan:
    """gc's decisions over one experiment's trials (scan order: oldest first)."""

    experiment: str
    trials: list[TrialPlan] = field(default_factory=list)

    @property
    def thin(self) -> list[TrialPlan]:
        """Trials with files to delete."""
        return [t for t in self.trials if t.action == 'thin' and t.files]

    def summary(self) -> dict[str, Any]:
        """Counts of the plan: scanned, kept by reason, skipped by reason, thinned, bytes."""
        kept = dict.fromkeys(KEEP_REASONS, 0)
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        for t in self.trials:
            if t.action == 'keep':
                kept[t.reason] += 1
            elif t.action == 'skip':
                skipped[t.reason] += 1
        thin = self.thin
        return {'experiment': self.experiment, 'scanned': len(self.trials), 'kept': kept,
                'skipped': skipped, 'thinned': len(thin),
                'already_thinned': sum(t.action == 'thin' and not t.files
                                       for t in self.trials),
                'files': sum(len(t.files) for t in thin),
                'bytes': sum(t.bytes for t in thin),
                'thinned_trials': [t.trial_id for t in thin]}


# --- what is referenced -----------------------------------------------------------------------
def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _strings(value)


def _named_trial(text: str, trial_ids: set[str]) -> str | None:
    """The trial id ``text`` is, or a path through (``.../trials/<id>/top.mp4``)."""
    if text in trial_ids:
        return text
    if '/' in text:
        return next((part for part in Path(text).parts if part in trial_ids), None)
    return None


def store_references(store: Any, experiment: str, trial_ids: Iterable[str]) -> References:
    """What the experiment store names of ``experiment``: trials its events name, and its
    best revisions (over all trials, and over held-out ones)."""
    ids = set(trial_ids)
    trials: dict[str, str] = {}
    for event in store.events(experiment):
        for text in _strings(event.data):
            hit = _named_trial(text, ids)
            if hit is not None:
                trials.setdefault(hit, f'named by a {event.kind} event')
    revisions: dict[str, str] = {}
    for is_eval, label in ((None, 'the best revision'),
                           (True, 'the best revision on held-out trials')):
        best = store.best_revision(experiment, is_eval=is_eval)
        if best is not None:
            revisions.setdefault(best.id, label)
    return References(trials, revisions)


def _best_revisions(obj: Any) -> Iterable[str]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key == 'best_revision' and isinstance(value, str) and value:
                yield value
            else:
                yield from _best_revisions(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _best_revisions(value)


def report_references(home: str | Path) -> dict[str, str]:
    """Revision id -> why, for each ``best_revision`` in the JSON that the HTML reports
    under ``home`` embed (``reports/*.html``, ``<experiment>/report.html``)."""
    home = Path(home)
    out: dict[str, str] = {}
    for page in sorted([*home.glob('reports/*.html'), *home.glob('*/report.html')]):
        try:
            text = page.read_text(encoding='utf-8', errors='replace')
        except OSError:
            continue
        for blob in _JSON_SCRIPT.findall(text):
            try:
                data = json.loads(blob)
            except ValueError:
                continue
            for rev in _best_revisions(data):
                out.setdefault(rev, f'the best revision in {page.relative_to(home)}')
    return out


# --- plan and apply ---------------------------------------------------------------------------
def experiments_on_disk(home: str | Path) -> list[str]:
    """The experiments with recorded trials under ``home`` (``<experiment>/trials/``)."""
    home = Path(home)
    if not home.is_dir():
        return []
    return sorted(p.name for p in home.iterdir() if (p / 'trials').is_dir())


def _files_to_thin(trial_dir: Path, bags: bool) -> list[Path]:
    files = sorted(p for p in trial_dir.glob('*.mp4') if p.is_file())
    if bags and (trial_dir / BAG_DIR).is_dir():
        files += sorted(p for p in (trial_dir / BAG_DIR).rglob('*') if p.is_file())
    return files


def _scan(run_dir: Path) -> list[tuple[Path, dict[str, Any] | None, str]]:
    """(trial dir, record or None, skip reason) of every trial dir, oldest first."""
    base = trials_dir(run_dir)
    found: list[tuple[float, str, Path, dict[str, Any] | None, str]] = []
    for child in sorted(base.iterdir()) if base.is_dir() else []:
        if not child.is_dir():
            continue
        if not (child / TRIAL_JSON).is_file():
            found.append((0.0, child.name, child, None, 'no_record'))
            continue
        try:
            record = read_trial(child)
        except EnpireError:   # damaged or another kind of record: never touched
            found.append((0.0, child.name, child, None, 'unreadable'))
            continue
        started = (record.get('timings') or {}).get('started_unix_s') or 0.0
        found.append((float(started), child.name, child, record, ''))
    found.sort(key=lambda f: (f[0], f[1]))
    return [(path, record, skip) for _, _, path, record, skip in found]


def plan(run_dir: str | Path, references: References | None = None,
         config: RetentionConfig | None = None, experiment: str = '') -> ExperimentPlan:
    """Decide what gc keeps and thins in one experiment's run dir; reads only.

    Args:
        run_dir: ``<home>/<experiment>``.
        references: what the experiment's decisions and reports name (kept whole).
        config: how many routine successes per revision keep their videos; bags or not.
        experiment: the experiment's name in the plan (default: the run dir's name).
    """
    run_dir = Path(run_dir)
    refs = references or References()
    cfg = config or RetentionConfig()
    plans: list[TrialPlan] = []
    routine: dict[str, list[TrialPlan]] = {}
    for path, record, skip in _scan(run_dir):
        ids = (record or {}).get('ids') or {}
        tp = TrialPlan(trial_id=str(ids.get('trial_id') or path.name),
                       revision=str(ids.get('revision_id') or ''), path=path, action='skip',
                       reason=skip)
        plans.append(tp)
        if record is None:
            continue
        outcome = record.get('outcome')
        if not outcome or outcome == OUTCOME_RUNNING:
            tp.reason = 'open'   # its writer may be recording it now: never touched
        elif outcome != 'success' or not record.get('success'):
            tp.action, tp.reason = 'keep', 'failure'
        elif tp.trial_id in refs.trials or path.name in refs.trials:
            tp.action, tp.reason = 'keep', 'referenced'
        elif tp.revision in refs.revisions:
            tp.action, tp.reason = 'keep', 'best_revision'
        else:
            routine.setdefault(tp.revision, []).append(tp)
    for revision, trials in routine.items():
        for rank, tp in enumerate(reversed(trials)):   # newest first
            if rank < cfg.keep_per_revision:
                tp.action, tp.reason = 'keep', 'newest'
                continue
            tp.action = 'thin'
            tp.reason = (f'a routine success beyond the newest {cfg.keep_per_revision} of '
                         f'revision {revision[:12] or "(none)"}')
            files = _files_to_thin(tp.path, cfg.bags)
            tp.files = [f.relative_to(tp.path).as_posix() for f in files]
            tp.bytes = sum(f.stat().st_size for f in files)
    return ExperimentPlan(experiment or run_dir.name, plans)


def _thin(tp: TrialPlan, now_s: float) -> int:
    """Mark the trial's record pruned, then delete its files; the bytes freed."""
    record = read_trial(tp.path)   # afresh: gc never writes back a stale record
    if not record.get('outcome') or record.get('outcome') == OUTCOME_RUNNING:
        return 0
    names = [n for n in tp.files if (tp.path / n).is_file()]
    if not names:
        return 0
    size = sum((tp.path / n).stat().st_size for n in names)
    gone = set(names)
    pruned = dict(record.get('pruned') or {})
    videos = sorted(set(pruned.get('videos') or ()) | {n for n in names if '/' not in n})
    bag = sorted(set(pruned.get('bag') or ()) | {n for n in names if '/' in n})
    record['pruned'] = {'videos': videos, 'bag': bag,
                        'bytes': int(pruned.get('bytes') or 0) + size, 'at': float(now_s),
                        'by': GC_BY, 'reason': tp.reason}
    # A removed file is not a tampered one: its hash leaves the integrity list.
    record['files'] = {k: v for k, v in (record.get('files') or {}).items() if k not in gone}
    for entry in (record.get('videos') or {}).values():
        if isinstance(entry, dict) and entry.get('path') in gone:
            entry['pruned'] = True
    if bag and isinstance(record.get('bag'), dict):
        record['bag']['pruned'] = True
    # The record goes first: a crash between the two leaves files a later run deletes,
    # never a record whose files are missing without saying why.
    atomic_write_json(tp.path / TRIAL_JSON, record)
    for name in names:
        (tp.path / name).unlink(missing_ok=True)
    if bag:
        for sub in sorted((tp.path / BAG_DIR).rglob('*'), reverse=True):
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
        if (tp.path / BAG_DIR).is_dir() and not any((tp.path / BAG_DIR).iterdir()):
            (tp.path / BAG_DIR).rmdir()
    return size


def apply(experiment_plan: ExperimentPlan, now_s: float,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Delete what ``experiment_plan`` thins; returns ``bytes_freed``, ``thinned`` and
    ``errors`` (trial id -> why it could not be thinned; the others go on)."""
    say = progress or (lambda _line: None)
    todo = experiment_plan.thin
    freed, done, errors = 0, [], {}
    for i, tp in enumerate(todo, 1):
        try:
            size = _thin(tp, now_s)
        except (OSError, EnpireError) as exc:
            errors[tp.trial_id] = f'{type(exc).__name__}: {exc}'
            continue
        freed += size
        if size:
            done.append(tp.trial_id)
        if i % 100 == 0:
            say(f'gc: {experiment_plan.experiment}: thinned {i}/{len(todo)} trials')
    return {'bytes_freed': freed, 'thinned_trials': done, 'errors': errors}


def collect(home: str | Path, *, experiment: str | None = None, store: Any = None,
            config: RetentionConfig | None = None, do_apply: bool = False, now_s: float = 0.0,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Plan (and with ``do_apply`` delete) over one experiment of ``home`` or all of them.

    Args:
        home: the runtime data directory.
        experiment: one experiment, or None for every experiment with trials on disk.
        store: the experiment store (its events and best revisions are references); None:
            only failures, report references and the newest per revision are kept.
        config: the retention rules.
        do_apply: delete; otherwise a dry run that deletes and writes nothing.
        now_s: epoch seconds written as ``pruned.at``.
        progress: one line at a time, for people (stderr).

    Returns:
        ``experiments`` (one summary each, see :meth:`ExperimentPlan.summary`, plus
        ``bytes_freed`` and ``errors``), ``totals``, ``dry_run``, ``keep_per_revision``.

    Raises:
        UnknownNameError: ``experiment`` has no trials under ``home`` and the store does
            not know it either (did you mean).
    """
    home = Path(home)
    cfg = config or RetentionConfig()
    say = progress or (lambda _line: None)
    on_disk = experiments_on_disk(home)
    if experiment is not None and experiment not in on_disk:
        known = set(on_disk)
        if store is not None:
            known |= {e.id for e in store.experiments()}
        if experiment not in known:
            raise UnknownNameError(f'experiment (with trials under {home})', experiment, known)
    names = [experiment] if experiment is not None else on_disk
    reported = report_references(home)
    rows = []
    for name in names:
        run_dir = home / name
        base = trials_dir(run_dir)
        trial_ids = ({p.name for p in base.iterdir() if p.is_dir()}
                     if (run_dir / 'trials').is_dir() else set())
        say(f'gc: {name}: scanning {len(trial_ids)} trial dir(s)')
        refs = (store_references(store, name, trial_ids) if store is not None
                else References())
        refs = References(refs.trials, {**reported, **refs.revisions})
        if not (run_dir / 'trials').is_dir():
            exp_plan = ExperimentPlan(name)
        else:
            exp_plan = plan(run_dir, refs, cfg, experiment=name)
        row = exp_plan.summary()
        row.update(bytes_freed=0, errors={})
        if do_apply and exp_plan.thin:
            done = apply(exp_plan, now_s, say)
            row.update(bytes_freed=done['bytes_freed'], errors=done['errors'],
                       thinned_trials=done['thinned_trials'], thinned=len(done['thinned_trials']))
        say(f"gc: {name}: {row['scanned']} scanned, {row['thinned']} "
            f"{'thinned' if do_apply else 'to thin'}, "
            f"{_mb(row['bytes_freed'] if do_apply else row['bytes'])} MB")
        rows.append(row)
    totals = {k: sum(r[k] for r in rows)
              for k in ('scanned', 'thinned', 'already_thinned', 'files', 'bytes',
                        'bytes_freed')}
    return {'ok': not any(r['errors'] for r in rows), 'home': str(home),
            'dry_run': not do_apply, 'keep_per_revision': cfg.keep_per_revision,
            'bags': cfg.bags, 'experiments': rows, 'totals': totals}


def _mb(n: int) -> str:
    return f'{n / (1 << 20):.1f}'
