"""What the dashboard shows of an experiment, read from the experiment store (no ROS, no I/O
beyond the store): success versus wall clock per agent, robot utilisation (MRU) per cell,
tokens per minute per agent, and the idea tree."""

from __future__ import annotations

import time
from typing import Any

from enpire_evolution.core.metrics import mru_by_cell
from enpire_evolution.core.store import ExperimentStore

#: At most this many points per agent curve (the most recent ones).
MAX_POINTS = 2000
#: Tokens per minute are over this trailing window, seconds.
TOKEN_WINDOW_S = 60.0


def latest_experiment(store: ExperimentStore) -> str | None:
    """The experiment created last (what a dashboard started without --experiment shows)."""
    experiments = store.experiments()
    if not experiments:
        return None
    return max(experiments, key=lambda e: e.created_at).id


def experiment_view(store: ExperimentStore, experiment: str, now: float | None = None
                    ) -> dict[str, Any]:
    """The experiment's panel data (JSON-ready)."""
    now = time.time() if now is None else now
    exp = store.experiment(experiment)
    trials = store.trials_for(experiment)
    # success versus wall clock, per agent (a branch is one agent's line of work)
    curves: dict[str, dict[str, Any]] = {}
    for t in trials:
        c = curves.setdefault(t.branch or 'main', {'t': [], 'successes': [], 'trials': 0})
        c['trials'] += 1
        prev = c['successes'][-1] if c['successes'] else 0
        c['t'].append(round(t.ended_at - exp.created_at, 2))
        c['successes'].append(prev + int(bool(t.success)))
    for c in curves.values():
        c['t'], c['successes'] = c['t'][-MAX_POINTS:], c['successes'][-MAX_POINTS:]
    # utilisation of each cell since the experiment began
    intervals: dict[str, list[tuple[float, float]]] = {}
    for t in trials:
        if t.started_at and t.ended_at:
            intervals.setdefault(t.cell or '?', []).append((t.started_at, t.ended_at))
    summary = mru_by_cell(intervals, exp.created_at, now) if intervals else None
    mru = ({cell: round(v, 4) for cell, v in summary.per_cell.items()}
           if summary is not None else {})
    # tokens per minute per agent (coding agents report them; the built-in one has none)
    sessions = {s.id: s for s in store.agent_sessions(experiment)}
    tokens: dict[str, dict[str, float]] = {}
    last: dict[str, int] = {}
    for sample in sorted(store.usage_samples(experiment), key=lambda u: u.ts):
        agent = sessions[sample.session].agent if sample.session in sessions else sample.session
        entry = tokens.setdefault(agent, {'tokens': 0, 'tokens_per_min': 0.0})
        delta = sample.tokens - last.get(sample.session, 0)
        last[sample.session] = sample.tokens
        entry['tokens'] += delta
        if now - sample.ts <= TOKEN_WINDOW_S:
            entry['tokens_per_min'] += delta * 60.0 / TOKEN_WINDOW_S
    for s in sessions.values():           # sessions that only reported a total
        if s.agent not in tokens and s.tokens:
            tokens[s.agent] = {'tokens': s.tokens, 'tokens_per_min': 0.0}
    # the idea tree: revisions under their parents, with their results
    stats = {s.revision: s for s in store.revision_stats(experiment)}
    nodes = []
    for r in store.revisions(experiment):
        st = stats.get(r.id)
        nodes.append({'id': r.id[:12], 'parent': r.parent[:12] if r.parent else None,
                      'branch': r.branch, 'status': r.status, 'hypothesis': r.hypothesis[:120],
                      'trials': st.n if st else 0, 'successes': st.successes if st else 0})
    return {'experiment': experiment, 'task': exp.task, 'status': exp.status,
            'created_at': exp.created_at, 'elapsed_s': round(now - exp.created_at, 1),
            'n_trials': len(trials), 'n_success': sum(t.success for t in trials),
            'curves': curves, 'mru': mru,
            'mru_mean': round(summary.mean, 4) if summary is not None else None,
            'tokens': tokens, 'ideas': nodes,
            'last_trial': _trial(trials[-1]) if trials else None}


def _trial(t: Any) -> dict[str, Any]:
    return {'trial_id': t.trial_id, 'cell': t.cell, 'branch': t.branch, 'seed': t.seed,
            'outcome': t.outcome, 'score': round(t.score, 4), 'steps': t.steps,
            'revision': t.revision[:12]}
