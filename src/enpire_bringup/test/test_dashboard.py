"""The dashboard's experiment panel (enpire_bringup.dashboard.data) on a real store, and its
slow-client rule."""

from __future__ import annotations

import asyncio

import pytest

from enpire_bringup.dashboard.data import experiment_view, latest_experiment
from enpire_evolution.core.store import ExperimentStore
from enpire_evolution.core.store_schema import AgentSession, Revision, Trial, UsageSample


@pytest.fixture
def store(tmp_path):
    s = ExperimentStore.open(tmp_path)
    yield s
    s.close()


def test_curves_mru_tokens_and_the_idea_tree(store):
    t0 = 1000.0
    store.create_experiment('old', 'push_t', t0 - 500)
    store.create_experiment('e', 'push_t', t0)
    assert latest_experiment(store) == 'e'
    store.add_branch('e', 'agent-0')
    store.add_revision(Revision('e', 'a' * 64, 'agent-0', created_at=t0, hypothesis='seed'))
    store.add_revision(Revision('e', 'b' * 64, 'agent-0', parent='a' * 64, created_at=t0 + 5,
                                hypothesis='push from behind'))
    for i, (rev, ok) in enumerate((('a', False), ('a', True), ('b', True))):
        start = t0 + 10 * i
        store.record_trial(Trial(f't{i}', 'e', rev * 64, 'agent-0', 'cell_0', i,
                                 'success' if ok else 'failure', ok, 1.0 if ok else 0.1,
                                 steps=50, started_at=start, ended_at=start + 5))
    store.put_agent_session(AgentSession('e', 's0', 'claude-0', 'claude-code',
                                         started_at=t0))
    store.add_usage_sample(UsageSample('e', 's0', t0 + 10, 1000, None, 1))
    store.add_usage_sample(UsageSample('e', 's0', t0 + 40, 4000, None, 2))
    view = experiment_view(store, 'e', now=t0 + 50)
    curve = view['curves']['agent-0']
    assert curve['t'] == [5.0, 15.0, 25.0] and curve['successes'] == [0, 1, 2]
    assert view['mru'] == {'cell_0': pytest.approx(15 / 50)}
    # 4000 tokens reported, all within the last minute
    assert view['tokens']['claude-0'] == {'tokens': 4000, 'tokens_per_min': 4000.0}
    ideas = {n['id']: n for n in view['ideas']}
    assert ideas['b' * 12]['parent'] == 'a' * 12 and ideas['a' * 12]['successes'] == 1
    assert view['last_trial']['trial_id'] == 't2' and view['n_success'] == 2


def test_a_slow_client_keeps_one_update_and_counts_the_dropped_ones():
    from enpire_bringup.dashboard.server import _Client

    async def run() -> _Client:
        client = _Client()
        for i in range(5):               # five updates while the client sends nothing
            client.offer(f'u{i}')
        return client

    client = asyncio.run(run())
    assert client.latest == 'u4' and client.dropped == 4
