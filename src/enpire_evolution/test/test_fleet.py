"""The fleet: one built-in agent per cell sharing ideas through a bare git remote (fake ports)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from enpire_agent_bridge.core.contract import load_policy_manifest
from enpire_agent_bridge.core.revisions import RevisionStore
from enpire_common.clock import FakeClock
from enpire_common.errors import CellUnavailableError, ConfigError
from enpire_common.tasks import load_task
from enpire_evolution.core.agent import CANDIDATE_DONE, CANDIDATE_STARTED
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.fakes import FAKE_START_S
from enpire_evolution.core.fleet import (
    Fleet,
    GpuSampler,
    LockedWorkspace,
    fleet_agent_config,
    fleet_mru,
)
from enpire_evolution.core.report import build_report
from enpire_evolution.core.store import ExperimentStore, Revision, Trial
from enpire_evolution.core.trials_port import FakeTrialsPort, peaked_success_model

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
TASK = load_task('push_t')
SEED_PARAMS = yaml.safe_load((SEED / 'policy.yaml').read_text())['params']
SEARCHED = ('push_gain', 'max_step_px')
OVERRIDES = {k: None for k in SEED_PARAMS if k not in SEARCHED}
EXP = 'fleet-test'


def manifest_validator(policy_dir: Path) -> None:
    load_policy_manifest(policy_dir)


def anything_but_the_seed(params, seed) -> bool:
    """Every change of the seed's params solves every start; the seed solves none."""
    return any(params.get(k) != SEED_PARAMS[k] for k in SEARCHED)


class LostCellPort(FakeTrialsPort):
    """A fake cell whose rollout dies after ``lose_after`` trials."""

    def __init__(self, *args, lose_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lose_after = lose_after

    def run(self, **kwargs):
        if self.recorded >= self.lose_after:
            raise CellUnavailableError('/cell_1/run_trials left the graph during a run')
        return super().run(**kwargs)


class DeadSimPort(FakeTrialsPort):
    """A fake cell whose sim node dies after ``die_after`` trials and never comes back: the
    rollout still answers, but every trial after that ends ``aborted`` (a stalled cell)."""

    def __init__(self, *args, die_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.die_after = die_after

    def run(self, *, experiment_id, revision_id, revision_dir, seeds, max_wall_time_s=0.0,
            on_trial=None):
        from enpire_evolution.core.store import Trial
        from enpire_evolution.core.trials_port import TrialOutcome

        if self.recorded < self.die_after:
            seeds = list(seeds)[:self.die_after - self.recorded]
            return super().run(experiment_id=experiment_id, revision_id=revision_id,
                               revision_dir=revision_dir, seeds=seeds,
                               max_wall_time_s=max_wall_time_s, on_trial=on_trial)
        out = []
        for seed in seeds:
            started = self.wall()
            self.clock.advance(self.trial_s)
            reason = 'cell stalled: no new state for 15 s at step 40'
            trial = Trial(
                trial_id=f'{experiment_id}-{self.cell}-{revision_id[:12]}-s{seed}-{started}',
                experiment=experiment_id, revision=revision_id,
                branch=self.store.revision(experiment_id, revision_id).branch, cell=self.cell,
                seed=int(seed), outcome='aborted', success=False, score=0.0, steps=40,
                started_at=started, ended_at=started + self.trial_s, duration_s=self.trial_s,
                reset_s=0.0, reason=reason, is_eval=False)
            self.store.record_trial(trial)
            self.recorded += 1
            o = TrialOutcome(trial.trial_id, int(seed), 'aborted', False, 0.0, 40,
                             self.trial_s, reason)
            out.append(o)
            if on_trial is not None:
                on_trial(o)
        return out


def make_fleet(home: Path, store: ExperimentStore, *, n: int = 2, model=anything_but_the_seed,
               ports=None, clocks=None, **cfg) -> tuple[Fleet, list[str]]:
    """A fleet of ``n`` fake cells, each agent's budget on its cell's clock (``clocks``, or
    new ones)."""
    config = BuiltinAgentConfig(**{
        'experiment': EXP, 'budget_min': 60.0, 'goal_consecutive': 3, 'stages': (4, 8, 12),
        'eval_min_trials': 8, 'search_overrides': OVERRIDES, 'n_startup_trials': 2, **cfg})
    clocks = list(clocks or [FakeClock() for _ in range(n)])
    walls = [lambda c=c: FAKE_START_S + c.now_s() for c in clocks]
    ports = ports or [FakeTrialsPort(store, model, evaluation_seeds=TASK.evaluation_seeds,
                                     clock=c, trial_s=10.0, cell=f'cell_{i}', wall=w)
                      for i, (c, w) in enumerate(zip(clocks, walls, strict=True))]
    lines: list[str] = []
    fleet = Fleet(config, store, RevisionStore(home / 'revisions'),
                  LockedWorkspace(home / 'workspace' / 'push_t'), ports, home=home,
                  seed_policy=SEED, clocks=clocks, walls=walls, log=lines.append,
                  task=TASK, validate=manifest_validator)
    return fleet, lines


@pytest.fixture
def store(tmp_path: Path):
    s = ExperimentStore.open(tmp_path)
    yield s
    s.close()


def remote_branches(home: Path) -> list[str]:
    out = subprocess.run(['git', '--git-dir', str(home / 'remote.git'), 'for-each-ref',
                          '--format=%(refname:short)', 'refs/heads'],
                         capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def test_agent_i_gets_its_own_id_branch_cell_and_sampler_seed() -> None:
    base = BuiltinAgentConfig(sampler_seed=7, cells=3)
    cfg = fleet_agent_config(base, 2)
    assert (cfg.agent_id, cfg.branch, cfg.cell, cfg.cells, cfg.sampler_seed) == (
        'builtin-2', 'agent-2', 'cell_2', 1, 9)


def test_a_fleet_needs_at_least_one_cell(tmp_path: Path, store: ExperimentStore) -> None:
    with pytest.raises(ConfigError, match='at least 1 cell.*got 0'):
        Fleet(BuiltinAgentConfig(experiment=EXP), store, RevisionStore(tmp_path / 'revisions'),
              LockedWorkspace(tmp_path / 'workspace' / 'push_t'), [], home=tmp_path,
              seed_policy=SEED, task=TASK, validate=manifest_validator)


def test_eight_agents_run_on_eight_cells_like_the_paper(tmp_path: Path,
                                                        store: ExperimentStore) -> None:
    fleet, lines = make_fleet(tmp_path, store, n=8, max_candidates=1)  # the shared baseline
    result = fleet.run()
    cells = [f'cell_{i}' for i in range(8)]
    assert [(a['cell'], a['branch'], a['stop_reason']) for a in result.agents] == [
        (c, f'agent-{i}', 'max_candidates') for i, c in enumerate(cells)]
    assert {a.id for a in store.agents(EXP)} == {f'builtin-{i}' for i in range(8)}
    assert {b.name for b in store.branches(EXP)} == {f'agent-{i}' for i in range(8)}
    assert all((tmp_path / 'optuna' / f'{EXP}.builtin-{i}.journal').is_file() for i in range(8))
    # Which cell runs which trial depends on thread timing (a shared revision's seeds go to
    # whichever cell gets there first); every cell is measured.
    assert {t.cell for t in store.trials_for(EXP)} <= set(cells)
    assert set(result.mru['per_cell']) == set(cells)
    assert [c['status'] for c in result.cells] == ['ok'] * 8
    assert all(any(line.startswith(f'[agent-{i}@cell_{i}]') for line in lines)
               for i in range(8))


def test_a_peers_better_revision_is_cherry_picked_with_its_origin_and_retried_here(
        tmp_path: Path, store: ExperimentStore) -> None:
    fleet, lines = make_fleet(tmp_path, store, max_candidates=2)
    fleet.prepare()
    a0, a1 = fleet.agents
    r0 = a0.run()  # agent 0 alone: its baseline, then one change that is kept
    peer_best = a0.ledger.best()
    assert peer_best is not None and peer_best.branch == 'agent-0' and not peer_best.origin
    assert 'improve' not in remote_branches(tmp_path)
    assert f'{EXP}/agent-0' in remote_branches(tmp_path)  # pushed after its keep
    r1 = a1.run()  # agent 1: the same baseline (trials re-used), then borrows agent 0's best
    baselines = [a.ledger.events(CANDIDATE_DONE)[0].data['revision'] for a in (a0, a1)]
    assert baselines[0] == baselines[1]  # one policy, one id, wherever its worktree is
    assert {t.cell for t in store.trials_for(EXP, revision=baselines[0])} == {'cell_0'}
    best = a1.ledger.best()
    assert best.branch == 'agent-1' and best.status == 'kept'
    assert best.origin == f'borrowed from agent builtin-0 revision {peer_best.id}'
    assert best.params == peer_best.params and best.parent != peer_best.id
    started = [e.data for e in a1.ledger.events(CANDIDATE_STARTED) if 'borrowed_from' in e.data]
    assert started[0]['borrowed_from']['method'] == 'cherry-pick'
    # Re-tried on agent 1's own cell, not taken on the peer's word.
    cells = {t.cell for t in store.trials_for(EXP, revision=best.id)}
    assert cells == {'cell_1'}
    # Git: a cherry-pick on agent 1's branch, both branches on the shared remote.
    ws = fleet.workspace
    message = ws.git('log', '-1', '--format=%B', best.commit)
    assert f'(cherry picked from commit {peer_best.commit})' in message
    assert ws.git('merge-base', '--is-ancestor', best.commit, f'{EXP}/agent-1',
                  check=False) == ''
    assert remote_branches(tmp_path) == [f'{EXP}/agent-0', f'{EXP}/agent-1', 'main']
    # The report's idea tree draws the borrowed edge from the parent, labelled by origin.
    report = build_report(store, EXP)
    node = next(n for n in report['idea_tree']['nodes'] if n['id'] == best.id)
    assert node['origin'] == best.origin
    assert any(e['kind'] == 'borrowed' for e in report['idea_tree']['edges'])
    assert r0.stop_reason == r1.stop_reason == 'max_candidates'


def test_an_agent_does_not_borrow_what_is_not_better_on_the_same_seeds(
        tmp_path: Path, store: ExperimentStore) -> None:
    nothing_works = peaked_success_model({'push_gain': 1e6}, floor=0.0, peak=0.0)
    fleet, _ = make_fleet(tmp_path, store, model=nothing_works, max_candidates=2)
    fleet.prepare()
    fleet.agents[0].run()
    fleet.agents[1].run()
    assert not [r for r in store.revisions(EXP) if r.origin]


def test_parallel_agents_share_one_experiment_on_separate_branches_studies_and_cells(
        tmp_path: Path, store: ExperimentStore) -> None:
    fleet, lines = make_fleet(tmp_path, store, budget_min=8.0,
                              model=peaked_success_model({'push_gain': 0.5,
                                                          'max_step_px': 30.0}))
    result = fleet.run()
    assert [a['stop_reason'] for a in result.agents] == ['budget', 'budget']
    assert {b.name for b in store.branches(EXP)} == {'agent-0', 'agent-1'}
    assert {a.id for a in store.agents(EXP)} == {'builtin-0', 'builtin-1'}
    assert (tmp_path / 'optuna' / f'{EXP}.builtin-0.journal').is_file()
    assert (tmp_path / 'optuna' / f'{EXP}.builtin-1.journal').is_file()
    assert {t.cell for t in store.trials_for(EXP)} == {'cell_0', 'cell_1'}
    # 8 simulated minutes of 10 s trials on each cell, back to back: both cells ~busy.
    assert set(result.mru['per_cell']) == {'cell_0', 'cell_1'}
    assert all(v > 0.9 for v in result.mru['per_cell'].values())
    assert result.mru['mean'] == pytest.approx(sum(result.mru['per_cell'].values()) / 2)
    assert any(line.startswith('[agent-1@cell_1]') for line in lines)


def healthy_and_failing_cell(store: ExperimentStore, failing: type, **failing_kw
                              ) -> tuple[list[FakeTrialsPort], tuple[FakeClock, FakeClock]]:
    """cell_0 a plain fake cell, cell_1 a ``failing`` one; each on its own fake clock."""
    clock0, clock1 = FakeClock(), FakeClock()
    model = peaked_success_model({'push_gain': 0.5, 'max_step_px': 30.0})
    ports = [FakeTrialsPort(store, model, evaluation_seeds=TASK.evaluation_seeds,
                            clock=clock0, trial_s=10.0, cell='cell_0',
                            wall=lambda: FAKE_START_S + clock0.now_s()),
             failing(store, model, evaluation_seeds=TASK.evaluation_seeds, clock=clock1,
                     trial_s=10.0, cell='cell_1',
                     wall=lambda: FAKE_START_S + clock1.now_s(), **failing_kw)]
    return ports, (clock0, clock1)


def test_a_lost_cell_stops_only_its_agent_and_stores_its_open_trial_as_aborted(
        tmp_path: Path, store: ExperimentStore) -> None:
    ports, (clock0, clock1) = healthy_and_failing_cell(store, LostCellPort, lose_after=4)
    fleet, lines = make_fleet(tmp_path, store, ports=ports, clocks=(clock0, clock1),
                              budget_min=4.0)
    result = fleet.run()
    a0, a1 = result.agents
    assert a0['stop_reason'] == 'budget' and not a0['error']
    assert a1['stop_reason'] == 'cell_lost'
    assert 'left the graph' in a1['error']
    aborted = [t for t in store.trials_for(EXP) if t.outcome == 'aborted']
    assert [t.cell for t in aborted] == ['cell_1']
    assert 'cell cell_1 lost' in aborted[0].reason
    assert any('STOPPED (cell_lost)' in line and 'the other agents go on' in line
               for line in lines)
    # Agent 0 kept going after agent 1 was lost.
    assert max(t.ended_at for t in store.trials_for(EXP) if t.cell == 'cell_0') > \
        aborted[0].ended_at


def test_fleet_mru_is_each_cells_busy_fraction_of_the_span_and_their_mean(
        store: ExperimentStore) -> None:
    store.create_experiment(EXP, 'push_t', 0.0, {})
    store.add_branch(EXP, 'b', created_at=0.0)
    store.add_revision(Revision(EXP, 'r' * 64, 'b'))
    for i, (cell, start, end) in enumerate([('cell_0', 0, 40), ('cell_0', 30, 60),
                                            ('cell_1', 50, 75), ('cell_1', 90, 200)]):
        store.record_trial(Trial(
            trial_id=f't{i}', experiment=EXP, revision='r' * 64, branch='b', cell=cell,
            seed=i, outcome='success', success=True, score=1.0, steps=1, started_at=start,
            ended_at=end, duration_s=end - start, reset_s=0.0, record_dir='', reason='',
            is_eval=False))
    m = fleet_mru(store, EXP, ['cell_0', 'cell_1', 'cell_2'], 0.0, 100.0)
    assert m['per_cell'] == {'cell_0': 0.6, 'cell_1': 0.35, 'cell_2': 0.0}
    assert m['mean'] == pytest.approx(0.95 / 3)
    assert m['trials_per_cell'] == {'cell_0': 2, 'cell_1': 2, 'cell_2': 0}


def test_gpu_utilisation_is_unavailable_without_nvidia_ml_py(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, 'pynvml', None)
    stats = GpuSampler().start().stop()
    assert stats == {'available': False, 'reason': 'nvidia-ml-py not installed'}


def test_running_the_same_fleet_again_resumes_each_agent_from_its_own_events(
        tmp_path: Path, store: ExperimentStore) -> None:
    model = peaked_success_model({'push_gain': 0.5, 'max_step_px': 30.0})
    first, _ = make_fleet(tmp_path, store, budget_min=3.0, model=model)
    first.run()
    n_before = {a.config.agent_id: len(a.ledger.events(CANDIDATE_DONE)) for a in first.agents}
    again, lines = make_fleet(tmp_path, store, budget_min=3.0, model=model)
    result = again.run()
    assert any(line.startswith('[agent-0@cell_0]') and 'resuming experiment' in line
               for line in lines)
    for a in again.agents:
        assert len(a.ledger.events(CANDIDATE_DONE)) > n_before[a.config.agent_id]
        assert all(e.data['agent'] == a.config.agent_id
                   for e in a.ledger.events(CANDIDATE_DONE))
    assert [a['stop_reason'] for a in result.agents] == ['budget', 'budget']


def test_a_cell_whose_trials_keep_ending_void_is_lost_and_only_its_agent_stops(
        tmp_path: Path, store: ExperimentStore) -> None:
    ports, clocks = healthy_and_failing_cell(store, DeadSimPort, die_after=3)
    fleet, lines = make_fleet(tmp_path, store, ports=ports, clocks=clocks, budget_min=4.0)
    result = fleet.run()
    a0, a1 = result.agents
    assert a0['stop_reason'] == 'budget' and not a0['error']
    assert a1['stop_reason'] == 'cell_lost'
    m = re.match(r'cell cell_1 lost: its last (\d+) trials ended void \(aborted; last: cell '
                 r'stalled', a1['error'])
    assert m and int(m.group(1)) >= 4, a1['error']
    # The result names the dead cell and its aborted trials.
    cells = {c['cell']: c for c in result.cells}
    assert cells['cell_1']['status'] == 'lost' and cells['cell_0']['status'] == 'ok'
    assert cells['cell_1']['aborted'] == int(m.group(1)) and cells['cell_0']['aborted'] == 0
    assert 'cell stalled' in cells['cell_1']['last_aborted_reason']


def test_one_void_trial_does_not_lose_a_cell() -> None:
    from enpire_evolution.core.fleet import GuardedTrialsPort
    from enpire_evolution.core.trials_port import TrialOutcome

    class Port:
        def __init__(self, outcomes):
            self.outcomes = list(outcomes)

        def run(self, *, seeds, on_trial=None, **_kw):
            out = [TrialOutcome(f't{s}', s, self.outcomes.pop(0), False, 0.0, 1, 1.0, 'x')
                   for s in seeds]
            for o in out:
                on_trial(o)
            return out

    # A respawned sim node costs one aborted trial; trials that finish reset the count.
    guard = GuardedTrialsPort(Port(['aborted', 'failure', 'aborted', 'aborted', 'timeout']),
                              store=None, cell='cell_1', max_void_trials=3)
    out = guard.run(experiment_id='e', revision_id='r', revision_dir=Path('.'),
                    seeds=[1, 2, 3, 4, 5], on_trial=lambda _t: None)
    assert len(out) == 5
    with pytest.raises(ConfigError, match='max_void_trials=-1'):
        GuardedTrialsPort(Port([]), store=None, cell='cell_1', max_void_trials=-1)


def test_the_fleet_splits_the_shared_baseline_between_its_cells(
        tmp_path: Path, store: ExperimentStore) -> None:
    fleet, _ = make_fleet(tmp_path, store, n=2, max_candidates=1)
    result = fleet.run()
    baseline = next(e.data['revision'] for e in store.events(EXP, CANDIDATE_DONE)
                    if e.data.get('baseline'))
    seeds = list(fleet.agents[0].tuning_seeds[:8])
    # Each agent's first baseline run asks only for its own half of the 8 stage-2 seeds (a
    # fast agent then helps with what its peer has not run yet: how much depends on thread
    # timing, so only the first call is pinned here).
    for rank, agent in enumerate(fleet.agents):
        calls = agent.runner.trials.port.calls    # the fake port inside GuardedTrialsPort
        first = next((s for rev, s, *_ in calls if rev == baseline), ())
        assert set(first) <= set(seeds[rank * 4:(rank + 1) * 4]), (rank, first)
    trials = store.trials_for(EXP, revision=baseline)
    assert {int(t.seed) for t in trials} >= set(seeds)
    assert sum(Counter(t.cell for t in trials).values()) < 16
    assert all(a['stop_reason'] == 'max_candidates' for a in result.agents)


def test_each_fleet_run_stores_its_mru_per_cell_and_the_report_shows_it(
        tmp_path: Path, store: ExperimentStore) -> None:
    fleet, _ = make_fleet(tmp_path, store, n=2, max_candidates=2)
    result = fleet.run()
    report = build_report(store, EXP)
    (run,) = report['mru']['fleet_runs']
    assert set(run['per_cell']) == {'cell_0', 'cell_1'}
    assert run['mean'] == pytest.approx(result.mru['mean'])
    assert 'started_at..ended_at' in run['how'] and 'mean over cells' in run['how']
    assert [c['status'] for c in run['cells']] == ['ok', 'ok']
