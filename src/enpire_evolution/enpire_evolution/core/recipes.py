"""Recipes: what worked (and what did not) per task, as markdown that agents read.

``recipes/<task>.md`` holds one section per experiment, delimited by HTML comments, so
re-writing one experiment's section keeps the others (what other experiments learned).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enpire_common.config import flatten
from enpire_evolution.core.compare import compare
from enpire_evolution.core.config import CompareConfig
from enpire_evolution.core.store import ExperimentStore, Revision

_MISSING = object()


def param_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` for every dotted key that changed; absent sides are ``None``."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if a.get(k, _MISSING) != b.get(k, _MISSING)]


@dataclass(frozen=True)
class RecipeEntry:
    """One revision's change against its parent and the measured effect."""

    revision: Revision
    parent: Revision | None
    diff: list[tuple[str, Any, Any]]
    effect: dict[str, Any] | None  # compare(parent trials, revision trials), tuning trials


def recipe_entries(store: ExperimentStore, experiment: str,
                   config: CompareConfig | None = None) -> list[RecipeEntry]:
    """Every revision of an experiment with its param diff and effect vs its parent."""
    revisions = store.revisions(experiment)
    by_id = {r.id: r for r in revisions}
    trials: dict[str, list] = {}
    for t in store.trials_for(experiment, is_eval=False):
        trials.setdefault(t.revision, []).append(t)
    out = []
    for rev in revisions:
        parent = by_id.get(rev.parent) if rev.parent else None
        diff = param_diff(parent.params if parent else {}, rev.params)
        effect = (compare(trials.get(parent.id, []), trials.get(rev.id, []), config)
                  if parent else None)
        out.append(RecipeEntry(rev, parent, diff, effect))
    return out


def _fmt_diff(diff: list[tuple[str, Any, Any]]) -> str:
    if not diff:
        return 'no parameter changes'
    parts = []
    for key, old, new in diff:
        if old is None:
            parts.append(f'`{key}` = {new!r} (new)')
        elif new is None:
            parts.append(f'`{key}` removed (was {old!r})')
        else:
            parts.append(f'`{key}`: {old!r} -> {new!r}')
    return '; '.join(parts)


def _fmt_side(s: Mapping[str, Any]) -> str:
    return (f"{s['successes']}/{s['n']} ({s['success_rate']:.2f}, "
            f"95% CI {s['ci_low']:.2f}-{s['ci_high']:.2f})")


def _fmt_effect(e: RecipeEntry) -> str:
    if e.effect is None:
        return 'baseline (no parent)'
    eff = e.effect
    score = eff['mean_score_delta']
    score_txt = 'n/a' if score is None else f'{score:+.3f}'
    return (f"success {_fmt_side(eff['a'])} -> {_fmt_side(eff['b'])}, delta "
            f"{eff['rate_delta']:+.2f}, Fisher p={eff['p_value']:.3g}, mean score delta "
            f"{score_txt}, decision {eff['decision']}")


def render_recipe_section(experiment: str, entries: list[RecipeEntry]) -> str:
    """The markdown section of one experiment (with its begin/end markers)."""
    kept = [e for e in entries if e.revision.status == 'kept']
    dropped = [e for e in entries if e.revision.status in ('reverted', 'rejected')]
    lines = [f'<!-- experiment: {experiment} -->',
             f'## Experiment `{experiment}`: {len(entries)} revisions, {len(kept)} kept', '',
             '### Kept changes (in order)']
    if not kept:
        lines.append('- none yet')
    for i, e in enumerate(kept, 1):
        r = e.revision
        origin = f'; {r.origin}' if r.origin else ''
        lines += [f'{i}. **{r.hypothesis or "(no hypothesis)"}** - revision `{r.id[:12]}` on '
                  f'branch `{r.branch}` (regime {r.regime}{origin})',
                  f'   - params: {_fmt_diff(e.diff)}',
                  f'   - effect: {_fmt_effect(e)}']
    lines += ['', '### Tried and dropped (do not repeat without a new reason)']
    if not dropped:
        lines.append('- none')
    for e in dropped:
        r = e.revision
        lines.append(f'- **{r.hypothesis or "(no hypothesis)"}** (`{r.id[:12]}`, '
                     f'{r.status}): {_fmt_diff(e.diff)}; {_fmt_effect(e)}')
    lines.append(f'<!-- end experiment: {experiment} -->')
    return '\n'.join(lines) + '\n'


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_recipe(store: ExperimentStore, experiment: str, task: str, recipes_dir: str | Path,
                 config: CompareConfig | None = None) -> Path:
    """Write (or update) ``<recipes_dir>/<task>.md`` with this experiment's section.

    Kept changes list hypothesis, parameter diff against the parent and the effect size
    measured on tuning trials; reverted/rejected ones are listed so agents do not retry them.
    Other experiments' sections in the file are kept. The write is atomic.

    Returns:
        The path of the recipe file.
    """
    store.experiment(experiment)
    path = Path(recipes_dir) / f'{task}.md'
    section = render_recipe_section(experiment, recipe_entries(store, experiment, config))
    header = (f'# Recipes for task `{task}`\n\nWhat changed policies for the better, per '
              'experiment (written by enpire_evolution; edit other sections freely).\n\n')
    text = path.read_text(encoding='utf-8') if path.exists() else header
    pattern = re.compile(rf'<!-- experiment: {re.escape(experiment)} -->\n.*?'
                         rf'<!-- end experiment: {re.escape(experiment)} -->\n?', re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text, count=1)
    else:
        text = text.rstrip('\n') + '\n\n' + section
    _atomic_write(path, text)
    return path
