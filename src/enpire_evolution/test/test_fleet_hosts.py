"""Agents of one experiment on two hosts: each its own ENPIRE_HOME (revisions, git workspace),
one shared store (fake ports; tests/system/test_two_hosts.py runs the real thing)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from enpire_agent_bridge.core.contract import load_policy_manifest
from enpire_agent_bridge.core.revisions import RevisionStore
from enpire_common.clock import FakeClock
from enpire_common.tasks import load_task
from enpire_evolution.core.agent import BuiltinAgent
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.branches import PolicyWorkspace
from enpire_evolution.core.fakes import FAKE_START_S
from enpire_evolution.core.fleet import fleet_agent_config
from enpire_evolution.core.store import ExperimentStore
from enpire_evolution.core.trials_port import FakeTrialsPort

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
TASK = load_task('push_t')
SEED_PARAMS = yaml.safe_load((SEED / 'policy.yaml').read_text())['params']
SEARCHED = ('push_gain', 'max_step_px')
EXP = 'two-hosts'


def _host_agent(home: Path, store: ExperimentStore, i: int, lines: list[str]) -> BuiltinAgent:
    """Fleet agent ``i`` as a host of its own runs it: its revisions and git workspace under
    its own ``home``, its trials on ``cell_<i>``, the store shared."""
    config = fleet_agent_config(BuiltinAgentConfig(
        experiment=EXP, budget_min=60.0, goal_consecutive=3, stages=(4, 8, 12),
        eval_min_trials=8, n_startup_trials=2, max_candidates=2,
        search_overrides={k: None for k in SEED_PARAMS if k not in SEARCHED}), i)
    clock = FakeClock()

    def wall() -> float:
        return FAKE_START_S + clock.now_s()
    port = FakeTrialsPort(store, lambda params, seed: params != SEED_PARAMS,
                          evaluation_seeds=TASK.evaluation_seeds, clock=clock, trial_s=10.0,
                          cell=config.cell, wall=wall)
    return BuiltinAgent(config, store, RevisionStore(home / 'revisions'),
                        PolicyWorkspace(home / 'workspace' / 'push_t'), port, home=home,
                        seed_policy=SEED, clock=clock, wall=wall, log=lines.append, task=TASK,
                        validate=load_policy_manifest,
                        study_name=f'{config.experiment_id}.{config.agent_id}')


def test_an_agent_on_a_second_host_builds_on_the_baseline_the_first_host_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    with ExperimentStore(f'sqlite:///{tmp_path / "fleet.db"}') as store:
        # Two hosts never commit the seed at the same second: their seed commits differ.
        for i, date in enumerate(('2025-01-01T00:00:00+0000', '2025-01-01T00:00:07+0000')):
            monkeypatch.setenv('GIT_AUTHOR_DATE', date)
            monkeypatch.setenv('GIT_COMMITTER_DATE', date)
            result = _host_agent(tmp_path / f'host_{i}', store, i, lines).run()
            assert result.stop_reason == 'max_candidates', lines[-5:]
        cells = {t.cell for t in store.trials_for(EXP)}
    assert cells == {'cell_0', 'cell_1'}


def test_a_worktree_takes_a_snapshots_files_when_its_commit_is_on_another_host(
        tmp_path: Path) -> None:
    import os
    import shutil

    ws = PolicyWorkspace(tmp_path / 'ws')
    ws.init(SEED, message='seed')
    tree = ws.worktree_for('builtin', 'agent-0', base=ws.main_branch)
    assert ws.has_commit(ws.head(ws.main_branch))
    assert not ws.has_commit('0' * 40) and not ws.has_commit('')
    snapshot = tmp_path / 'snapshot'        # a read-only revision snapshot, one file changed
    shutil.copytree(SEED, snapshot)
    (snapshot / 'policy.yaml').write_text('name: other\n')
    (snapshot / 'tools').mkdir()
    (snapshot / 'tools' / 'run.sh').write_text('#!/bin/sh\n')
    (snapshot / 'tools' / 'run.sh').chmod(0o555)
    for f in snapshot.rglob('*'):
        if f.is_file():
            f.chmod(f.stat().st_mode & 0o555)
    (tree / 'scratch.txt').write_text('an edit of the agent, not in the snapshot')
    ws.checkout_files(tree, snapshot)
    ws.commit(tree, 'revert: to the snapshot')
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob('*')
                   if p.is_file() and '.git' not in p.parts)
    assert files == sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob('*')
                           if p.is_file())
    assert (tree / 'policy.yaml').read_text() == 'name: other\n'
    assert os.access(tree / 'tools' / 'run.sh', os.X_OK)
    assert os.access(tree / 'policy.yaml', os.W_OK)     # the agent edits it next
    assert ws.git('status', '--porcelain', cwd=tree) == ''
