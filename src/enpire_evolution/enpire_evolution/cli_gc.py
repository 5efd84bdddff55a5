"""``enpire gc``: thin the trial records on disk before the disk fills.

A dry run by default (it says what it would free); ``--apply`` deletes. The rules are
:mod:`enpire_evolution.core.retention`'s: trial.json always stays; failures, trials the
experiment's decisions name and a best revision's trials stay whole; of each revision's
routine successes the newest ``--keep-per-revision`` keep their videos. :func:`gc` is the
verb (keyword arguments, the result dict, house errors).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any


def register_gc(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'gc', help='free disk: delete the videos of routine successes (dry run unless --apply)',
        description='Keeps trial.json always; keeps failures (any trial not a verified '
                    'success), trials named by the experiment\'s decisions (store events) and '
                    'the trials of best revisions (store, reports) whole; of the other '
                    'successes of each revision the newest N keep their videos. Open trials '
                    '(still recording) are never touched. Without --apply nothing is '
                    'deleted.')
    p.add_argument('experiment', nargs='?', default=None,
                   help='one experiment (default: every experiment with trials under the home)')
    p.add_argument('--keep-per-revision', type=int, default=3, metavar='N',
                   help='routine successes per revision that keep their videos, newest '
                        'first (default 3)')
    p.add_argument('--bags', action='store_true',
                   help="also delete the thinned trials' bags (episode/); replay and dataset "
                        'export then skip them')
    p.add_argument('--apply', action='store_true',
                   help='delete (default: a dry run that only says what it would free)')
    from enpire_evolution.cli_commands import _common

    _common(p)      # --url, sorted JSON
    p.set_defaults(func=_gc, text=_gc_text)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def gc(*, experiment: str | None = None, keep_per_revision: int = 3, bags: bool = False,
       apply: bool = False, home: str | Path | None = None, url: str | None = None,
       progress: Any = _progress) -> dict[str, Any]:
    """Thin the trial records of ``experiment`` (or every experiment) under ``home``.

    Returns:
        See :func:`enpire_evolution.core.retention.collect`, plus ``free_mb`` (the home's
        filesystem, after).

    Raises:
        UnknownNameError: an unknown experiment (did you mean).
        ConfigError: ``keep_per_revision`` < 0.
    """
    from enpire_common.paths import enpire_home
    from enpire_evolution.cli_commands import _open, store_url
    from enpire_evolution.core.config import RetentionConfig
    from enpire_evolution.core.retention import collect

    cfg = RetentionConfig(keep_per_revision=keep_per_revision, bags=bags)
    root = enpire_home(home)
    store = _open(store_url(url, home))
    try:
        out = collect(root, experiment=experiment, store=store, config=cfg, do_apply=apply,
                      now_s=time.time(), progress=progress)
    finally:
        if store is not None:
            store.close()
    try:
        out['free_mb'] = round(shutil.disk_usage(root if root.exists() else root.parent).free
                               / (1 << 20), 1)
    except OSError:
        out['free_mb'] = None
    return out


def _gc(args: argparse.Namespace) -> dict[str, Any]:
    return gc(experiment=args.experiment, keep_per_revision=args.keep_per_revision,
              bags=args.bags, apply=args.apply, home=args.home, url=args.url)


def _mb(n: float) -> str:
    return f'{n / (1 << 20):.1f} MB'


def _gc_text(out: dict[str, Any], _args: argparse.Namespace) -> str:
    rows = out['experiments']
    if not rows:
        return f"no experiments with trials under {out['home']}"
    dry = out['dry_run']
    lines = [f"{'experiment':24} {'scanned':>7} {'failure':>7} {'refd':>5} {'best':>5} "
             f"{'newest':>6} {'skipped':>7} {'thin':>5} {'freed' if not dry else 'frees':>10}"]
    for r in rows:
        k = r['kept']
        lines.append(f"{r['experiment'][:24]:24} {r['scanned']:7d} {k['failure']:7d} "
                     f"{k['referenced']:5d} {k['best_revision']:5d} {k['newest']:6d} "
                     f"{sum(r['skipped'].values()):7d} {r['thinned']:5d} "
                     f"{_mb(r['bytes'] if dry else r['bytes_freed']):>10}")
        lines += [f'  could not thin {tid}: {why}' for tid, why in r['errors'].items()]
    t = out['totals']
    what = 'videos' + (' and bags' if out['bags'] else '')
    if dry:
        lines.append(f"dry run: would free {_mb(t['bytes'])} ({t['files']} files, the {what} "
                     f"of {t['thinned']} routine successes beyond the newest "
                     f"{out['keep_per_revision']} per revision); `enpire gc --apply` deletes "
                     'them (trial.json stays)')
    else:
        lines.append(f"freed {_mb(t['bytes_freed'])}: the {what} of {t['thinned']} routine "
                     f"successes beyond the newest {out['keep_per_revision']} per revision "
                     '(their trial.json says pruned); re-run `enpire report <experiment>` to '
                     'refresh its video links')
    if out.get('free_mb') is not None:
        lines.append(f"free on the home's filesystem: {out['free_mb']:.0f} MB")
    return '\n'.join(lines)
