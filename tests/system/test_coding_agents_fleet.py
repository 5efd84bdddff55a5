"""``enpire improve --agent claude-code --cells 2``: two stand-in agents, one per cell, that
borrow from each other through the shared remote (no cell runs before: the fleet launch is
started by the run). The stand-ins are test doubles, not models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / 'tests' / 'agents' / 'bin'


def test_two_agents_borrow_from_each_other(tmp_path: Path) -> None:
    from enpire_evolution.core.store import ExperimentStore

    home = tmp_path / 'home'
    exp = 'fleet-borrow'
    env = {**os.environ, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}",
           'ENPIRE_HOME': str(home), 'ANTHROPIC_API_KEY': 'sk-ant-standin-0123456789abcdef',
           'STANDIN_MODE': 'borrow', 'STANDIN_TRIALS': '1'}
    out = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', 'improve', '--task',
                          'push_t', '--agent', 'claude-code', '--cells', '2', '--budget-min',
                          '4', '--max-restarts', '0', '--experiment', exp, '--json',
                          '--no-report'], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600)
    assert out.stdout.strip(), out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert [a['cell'] for a in res['agents']] == ['cell_0', 'cell_1'], out.stderr[-2000:]
    with ExperimentStore.open(home) as s:
        borrowed = s.events(exp, 'borrowed')
        revs = {r.id: r for r in s.revisions(exp)}
        trials = s.trials_for(exp)
        sessions = {x.id: x for x in s.agent_sessions(exp)}
        agent_trials = s.agent_trial_ids(exp)
    takers = {e.data['agent'] for e in borrowed}
    assert takers == {'claude-code-0', 'claude-code-1'}, out.stderr[-3000:]
    for e in borrowed:
        assert revs[e.data['revision']].origin.startswith('borrowed from agent/claude-code-')
    # each agent ran its trials on its own cell only
    for t in trials:
        if t.trial_id in agent_trials:
            assert t.cell == sessions[agent_trials[t.trial_id]].cell
