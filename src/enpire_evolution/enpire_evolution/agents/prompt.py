"""The prompts a coding agent gets: the first one, and the continuation after a restart.

Both are built from what the agent needs and nothing it could not read itself: the task
contract (``enpire task show``), AGENTS.md (the rules, including what a policy must survive:
the all-zero warm-up observation), the task's recipes, the peers' branches with their best
revisions, the budget left, and, on a continuation, the experiment so far: the best revision
with its numbers and the last failures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.metrics import wilson_interval
from enpire_evolution.core.store import ExperimentStore

_MAX_DOC = 12_000


@dataclass
class PromptContext:
    """What the prompts say about one agent."""

    agent: str
    task: str
    experiment: str
    cell: str
    worktree: Path
    branch: str
    contract: dict[str, Any]
    agents_md: str = ''
    recipes: str = ''
    budget: dict[str, Any] = field(default_factory=dict)
    peers: list[str] = field(default_factory=list)


def _contract_summary(c: dict[str, Any]) -> str:
    keep = {k: v for k, v in c.items() if k not in ('ok', 'directory')}
    text = json.dumps(keep, indent=1, default=str)
    return text[:_MAX_DOC]


def best_of(store: ExperimentStore, experiment: str, branch: str | None = None
            ) -> dict[str, Any] | None:
    """The revision with the most tuning successes (then the best rate), with its numbers."""
    try:
        stats = store.revision_stats(experiment, is_eval=False)
    except Exception:  # noqa: BLE001 - no experiment yet
        return None
    if branch is not None:
        stats = [s for s in stats if s.branch == branch]
    stats = [s for s in stats if s.n]
    if not stats:
        return None
    s = max(stats, key=lambda s: (s.success_rate, s.successes, s.n))
    lo, hi = wilson_interval(s.successes, s.n)
    return {'revision': s.revision, 'branch': s.branch, 'successes': s.successes, 'n': s.n,
            'rate': s.success_rate, 'ci95': [round(lo, 3), round(hi, 3)]}


def last_failures(store: ExperimentStore, experiment: str, branch: str, k: int = 5
                  ) -> list[dict[str, Any]]:
    try:
        trials = store.trials_for(experiment)
    except Exception:  # noqa: BLE001
        return []
    failed = [t for t in trials if t.branch == branch and not t.success][-k:]
    return [{'trial_id': t.trial_id, 'revision': t.revision[:12], 'seed': t.seed,
             'outcome': t.outcome, 'reason': t.reason, 'score': round(t.score, 3)}
            for t in failed]


def _budget_line(b: dict[str, Any]) -> str:
    parts = [f"{b['wall_min_left']:.1f} min of wall time"]
    if b.get('tokens_left') is not None:
        parts.append(f"{b['tokens_left']} tokens")
    if b.get('usd_left') is not None:
        parts.append(f"${b['usd_left']:.2f}")
    if b.get('trials_left') is not None:
        parts.append(f"{b['trials_left']} trials")
    return ', '.join(parts)


def initial_prompt(ctx: PromptContext, store: ExperimentStore) -> str:
    """The first prompt of an agent."""
    peers = []
    for p in ctx.peers:
        best = best_of(store, ctx.experiment, p)
        peers.append(f'- `origin/{p}`' + (f": best revision {best['revision'][:12]} "
                                          f"{best['successes']}/{best['n']} tuning successes"
                                          if best else ': no trials yet'))
    sections = [
        f'# Improve the `{ctx.task}` policy (agent {ctx.agent}, experiment {ctx.experiment})',
        f'Your policy directory is your git worktree `{ctx.worktree}` (branch `{ctx.branch}`). '
        'It is the only place you can write (and your scratch dir). Goal: the highest success '
        'rate of the policy on the task, measured by trials on your cell.',
        '## How to work\n'
        '1. Read `policy.py` and `policy.yaml` here, and the contract below.\n'
        '2. Make one change with one hypothesis (`policy.yaml`: `hypothesis`, bump '
        '`version`, `parent` = the revision you started from).\n'
        '3. `policy_submit` (MCP tool `enpire`, or `enpire policy submit . --json`): fix what '
        'a rejection says.\n'
        '4. `trial_run` with the revision id (a few trials first, on tuning seeds), read '
        'failures with `trial_show`.\n'
        '5. `exp_compare baseline candidate`; commit on keep (`git commit`), revert on '
        'revert; run more trials when inconclusive.\n'
        f'Your cell is `{ctx.cell}` and your experiment `{ctx.experiment}`: the tools use them '
        'whatever you pass. Every trial counts against your budget.',
        f'## Budget left\n{_budget_line(ctx.budget)}. When it is spent you are stopped and '
        'your worktree is committed as a WIP; commit what works as you go.',
    ]
    if peers:
        sections.append('## Peers (run `git fetch origin` to see their branches; borrow what '
                        'works: submit it with `parent` set to their revision)\n'
                        + '\n'.join(peers))
    if ctx.recipes:
        sections.append('## Recipes: what worked before\n' + ctx.recipes[:_MAX_DOC])
    sections.append('## Task contract (`enpire task show`)\n```json\n'
                    + _contract_summary(ctx.contract) + '\n```')
    if ctx.agents_md:
        sections.append('## AGENTS.md (the rules)\n' + ctx.agents_md[:_MAX_DOC])
    return '\n\n'.join(sections) + '\n'


def continuation_prompt(ctx: PromptContext, store: ExperimentStore, why: str,
                        restarts: int) -> str:
    """The prompt of a restarted agent: where the experiment stands."""
    best = best_of(store, ctx.experiment)
    mine = best_of(store, ctx.experiment, ctx.branch)
    fails = last_failures(store, ctx.experiment, ctx.branch)
    lines = [f'# Continue improving the `{ctx.task}` policy (restart {restarts}: {why})',
             'You were restarted; your worktree keeps your work (uncommitted changes were '
             'committed as a WIP). The experiment so far:']
    if best:
        lines.append(f"- best revision of the experiment: {best['revision']} (branch "
                     f"{best['branch']}): {best['successes']}/{best['n']} tuning successes, "
                     f"rate {best['rate']:.2f}, 95% CI {best['ci95']}")
    else:
        lines.append('- no trial has been run yet')
    if mine and (not best or mine['revision'] != best['revision']):
        lines.append(f"- your best revision: {mine['revision']}: {mine['successes']}/"
                     f"{mine['n']} successes")
    if fails:
        lines.append('- your last failures:\n' + '\n'.join(
            f"  - {f['trial_id']} revision {f['revision']} seed {f['seed']}: {f['outcome']} "
            f"({f['reason']}, score {f['score']})" for f in fails))
    return '\n'.join(lines) + '\n\n' + initial_prompt(ctx, store)
