"""Resource metrics of coding agents, from the store: tokens, cost, MTU, tokens/time to success.

* **tokens** of a session: uncached input + cache reads + cache writes + output, as the agent
  reported them (see :class:`enpire_evolution.core.store.AgentSession`);
* **MTU** (model token utilisation): tokens per minute of agent wall time;
* **tokens to success** / **time to success**: the experiment's tokens (all agents) and the
  wall time since its first agent session when the first trial an agent ran succeeded;
* **success curves**: after each agent trial, the cumulative successes against the tokens
  spent so far and against wall time (what ``enpire report`` plots).
"""

from __future__ import annotations

import bisect
from typing import Any

from enpire_evolution.core.store import ExperimentStore


def mtu(tokens: int, wall_s: float) -> float:
    """Model token utilisation: tokens per minute of wall time (0 for no time)."""
    return round(tokens / (wall_s / 60.0), 1) if wall_s > 0 else 0.0


class TokenClock:
    """The experiment's cumulative tokens (and cost) at any time, from the usage samples."""

    def __init__(self, store: ExperimentStore, experiment: str) -> None:
        self.by_session: dict[str, tuple[list[float], list[int], list[float]]] = {}
        for s in store.usage_samples(experiment):
            ts, tok, cost = self.by_session.setdefault(s.session, ([], [], []))
            ts.append(s.ts)
            tok.append(int(s.tokens))
            cost.append(float(s.cost_usd or 0.0))

    def at(self, t: float) -> tuple[int, float]:
        tokens, cost = 0, 0.0
        for ts, tok, c in self.by_session.values():
            i = bisect.bisect_right(ts, t) - 1
            if i >= 0:
                tokens += tok[i]
                cost += c[i]
        return tokens, cost


def experiment_accounting(store: ExperimentStore, experiment: str) -> dict[str, Any]:
    """Totals per agent and for the experiment, MTU, tokens/time to success and the curves."""
    sessions = store.agent_sessions(experiment)
    agent_trials = store.agent_trial_ids(experiment)
    trials = sorted((t for t in store.trials_for(experiment) if t.trial_id in agent_trials),
                    key=lambda t: t.ended_at)
    per_agent: dict[str, dict[str, Any]] = {}
    for s in sessions:
        a = per_agent.setdefault(s.agent, {
            'agent': s.agent, 'kind': s.kind, 'model': s.model, 'cell': s.cell,
            'sessions': 0, 'input_tokens': 0, 'output_tokens': 0, 'cache_read_tokens': 0,
            'cache_write_tokens': 0, 'tokens': 0, 'cost_usd': None, 'turns': 0,
            'wall_s': 0.0, 'trials': 0, 'stops': []})
        a['sessions'] += 1
        for k in ('input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens',
                  'turns'):
            a[k] += getattr(s, k)
        a['tokens'] += s.tokens
        if s.cost_usd is not None:
            a['cost_usd'] = (a['cost_usd'] or 0.0) + s.cost_usd
        a['wall_s'] += s.wall_s
        a['stops'].append(s.stop_reason)
    by_session = {s.id: s.agent for s in sessions}
    for t in trials:
        agent = by_session.get(agent_trials[t.trial_id])
        if agent in per_agent:
            per_agent[agent]['trials'] += 1
    for a in per_agent.values():
        a['mtu'] = mtu(a['tokens'], a['wall_s'])
    totals = {k: sum(a[k] for a in per_agent.values())
              for k in ('input_tokens', 'output_tokens', 'cache_read_tokens',
                        'cache_write_tokens', 'tokens', 'turns', 'trials', 'sessions')}
    costs = [a['cost_usd'] for a in per_agent.values() if a['cost_usd'] is not None]
    totals['cost_usd'] = sum(costs) if costs else None
    totals['wall_s'] = round(sum(a['wall_s'] for a in per_agent.values()), 1)
    totals['mtu'] = mtu(totals['tokens'], totals['wall_s'])
    t0 = min((s.started_at for s in sessions), default=0.0)
    clock = TokenClock(store, experiment)
    curve, successes = [], 0
    first_success: dict[str, Any] | None = None
    for i, t in enumerate(trials, 1):
        successes += bool(t.success)
        tokens, cost = clock.at(t.ended_at)
        point = {'trial': t.trial_id, 'tokens': tokens, 'cost_usd': round(cost, 6),
                 'time_s': round(t.ended_at - t0, 2), 'successes': successes,
                 'rate': round(successes / i, 4), 'success': bool(t.success)}
        curve.append(point)
        if t.success and first_success is None:
            first_success = point
    return {'agents': list(per_agent.values()), 'totals': totals,
            'tokens_to_success': first_success['tokens'] if first_success else None,
            'time_to_success_s': first_success['time_s'] if first_success else None,
            'curve': curve}
