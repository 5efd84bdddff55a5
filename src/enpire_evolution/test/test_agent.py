"""The built-in search agent against the fake trials port (no ROS, simulated time)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from enpire_agent_bridge.core.contract import load_policy_manifest
from enpire_agent_bridge.core.revisions import RevisionStore
from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError, PolicyRejectedError
from enpire_common.tasks import load_task
from enpire_evolution.core.agent import (
    CANDIDATE_DONE,
    CANDIDATE_STARTED,
    EVALUATION_DONE,
    BuiltinAgent,
)
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.branches import PolicyWorkspace
from enpire_evolution.core.fakes import FAKE_START_S
from enpire_evolution.core.search_space import derive_search_space, round_sig
from enpire_evolution.core.store import ExperimentStore, Revision
from enpire_evolution.core.trials_port import (
    FakeTrialsPort,
    SimulatedKill,
    peaked_success_model,
    seed_difficulty,
)

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
TASK = load_task('push_t')
EVAL_LO, EVAL_HI = TASK.evaluation_seeds
# A small world: two searched params (the rest held fixed), success peaking inside the space.
OPTIMUM = {'push_gain': 0.5, 'max_step_px': 30.0}
SEARCHED = ('push_gain', 'max_step_px')
OVERRIDES = {k: None for k in yaml.safe_load((SEED / 'policy.yaml').read_text())['params']
             if k not in SEARCHED}
MODEL = peaked_success_model(OPTIMUM, peak=0.999, floor=0.05, width=0.6)


def manifest_validator(policy_dir: Path) -> None:
    """A fast stand-in for check_policy: the manifest must load."""
    load_policy_manifest(policy_dir)


class World:
    """One ENPIRE_HOME: store, revision store, workspace and fake time, reopened per agent."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.clock = FakeClock()
        self.store = ExperimentStore.open(home)
        self.lines: list[str] = []

    def agent(self, *, kill_after: int | None = None, kill_on_seed: int | None = None,
              validate=manifest_validator, success_model=MODEL,
              **cfg) -> tuple[BuiltinAgent, FakeTrialsPort]:
        config = BuiltinAgentConfig(**{'budget_min': 60.0, 'goal_consecutive': 5,
                                       'search_overrides': OVERRIDES, 'n_startup_trials': 4,
                                       **cfg})
        port = FakeTrialsPort(self.store, success_model, evaluation_seeds=TASK.evaluation_seeds,
                              clock=self.clock, trial_s=10.0, kill_after=kill_after,
                              kill_on_seed=kill_on_seed)
        agent = BuiltinAgent(config, self.store, RevisionStore(self.home / 'revisions'),
                             PolicyWorkspace(self.home / 'workspace' / 'push_t'), port,
                             home=self.home, task=TASK, seed_policy=SEED, clock=self.clock,
                             wall=lambda: FAKE_START_S + self.clock.now_s(),
                             log=self.lines.append, validate=validate)
        return agent, port

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path / 'runs')
    yield w
    w.close()


def test_the_agent_improves_on_the_seed_policy_and_meets_a_small_goal(world):
    agent, _ = world.agent()
    result = agent.run()
    assert result.goal_met and result.stop_reason == 'goal'
    exp = result.experiment
    assert exp == 'improve-push_t'
    best = world.store.revision(exp, result.best_revision)
    baseline = next(e.data for e in world.store.events(exp, CANDIDATE_DONE)
                    if e.data.get('baseline'))
    assert result.best_tuning['success_rate'] > baseline['successes'] / baseline['n']
    assert MODEL.probability(best.params) > MODEL.probability(agent.space.defaults)
    assert result.best_eval_streak >= 5 and result.time_to_success_s is not None
    assert world.store.experiment(exp).status == 'done'
    # The kept revision is a real policy revision on the agent's branch, with its lineage.
    assert best.branch == 'agent-0' and best.status == 'kept' and best.parent
    manifest = load_policy_manifest(agent.revisions.get(best.id).path)
    assert manifest.parent == best.parent and manifest.version >= 2
    assert dict(manifest.params) == best.params and 'trial' in manifest.hypothesis
    log = agent.workspace.log(agent.config.git_branch)
    assert any(e.subject.startswith('revert: ') and ' vs best ' in e.subject for e in log)
    assert any(e.sha == best.commit for e in log)
    assert Path(result.recipe_path).is_file()
    assert any(best.id[:12] in line for line in world.lines)
    assert result.n_trials == world.store.count_trials(exp)


def test_evaluation_seeds_are_held_out_fresh_and_consumed_in_order_across_a_kill(world):
    agent, _ = world.agent(goal_consecutive=6, kill_on_seed=EVAL_LO + 1)
    with pytest.raises(SimulatedKill):
        agent.run()  # killed in the middle of the first evaluation
    exp = agent.exp
    assert [t.seed for t in world.store.trials_for(exp, is_eval=True)] == [EVAL_LO,
                                                                           EVAL_LO + 1]
    agent, port = world.agent(goal_consecutive=6)
    assert agent.run().experiment == exp
    assert any('resuming' in line for line in world.lines)
    first_eval_call = next(seeds for _rev, seeds in port.calls if seeds[0] >= EVAL_LO)
    assert first_eval_call == (EVAL_LO + 2,), 'the evaluation did not continue where it died'
    tuning = world.store.trials_for(exp, is_eval=False)
    evals = world.store.trials_for(exp, is_eval=True)
    assert tuning and evals
    assert all(t.seed < EVAL_LO or t.seed > EVAL_HI for t in tuning)
    assert {t.seed for t in tuning} <= set(agent.tuning_seeds)
    seeds = [t.seed for t in evals]
    assert len(seeds) == len(set(seeds)), 'an evaluation seed was used twice'
    assert sorted(seeds) == list(range(EVAL_LO, EVAL_LO + len(seeds)))
    attempts = world.store.events(exp, EVALUATION_DONE)
    for a, b in zip(attempts, attempts[1:], strict=False):
        assert b.data['first_seed'] == a.data['last_seed'] + 1
    evaluated = [e.data['revision'] for e in attempts]
    assert len(evaluated) == len(set(evaluated)), 'a revision was evaluated twice'


def test_rejected_candidates_are_logged_and_skipped_without_crashing(world):
    def picky(policy_dir: Path) -> None:
        params = load_policy_manifest(policy_dir).params
        if params['push_gain'] > 0.4:
            raise PolicyRejectedError(f"push_gain={params['push_gain']} makes it fault")

    agent, _ = world.agent(validate=picky, max_candidates=6, goal_consecutive=50)
    result = agent.run()
    exp = result.experiment
    done = [e.data for e in world.store.events(exp, CANDIDATE_DONE)]
    rejected = [d for d in done if d['decision'] == 'rejected']
    assert rejected and 'push_gain=' in rejected[0]['reason']
    for d in rejected:
        rev = world.store.revision(exp, d['revision'])
        assert rev.status == 'rejected' and rev.params['push_gain'] > 0.4
        assert not world.store.trials_for(exp, revision=rev.id)
    assert result.stop_reason == 'max_candidates' and result.n_candidates == len(done)
    assert any('REJECTED' in line for line in world.lines)
    # The worktree is back on the best's files after a rejection.
    best = world.store.revision(exp, result.best_revision)
    wt = yaml.safe_load((agent.worktree / 'policy.yaml').read_text())
    assert wt['params'] == best.params


def test_the_seed_policy_failing_validation_stops_the_agent_with_a_clear_error(world):
    def reject_all(_dir: Path) -> None:
        raise PolicyRejectedError('act() returned NaN')

    agent, _ = world.agent(validate=reject_all)
    with pytest.raises(PolicyRejectedError, match='seed policy .* rejected.*NaN'):
        agent.run()


def test_the_budget_stops_the_agent_and_a_rerun_continues_the_same_experiment(world):
    agent, _ = world.agent(budget_min=4.0, goal_consecutive=50)  # 24 trials of 10 s
    result = agent.run()
    assert result.stop_reason == 'budget' and not result.goal_met
    assert result.wall_time_s == pytest.approx(240.0)
    assert result.n_trials == 24
    assert world.store.experiment(result.experiment).status == 'stopped'
    agent2, _ = world.agent(budget_min=2.0, goal_consecutive=50)
    result2 = agent2.run()
    assert result2.n_trials == 36 and result2.stop_reason == 'budget'


@pytest.mark.parametrize('kill_points', [(7, 23), (13,) * 60],
                         ids=['in-baseline-and-first-candidate', 'every-13-trials'])
def test_a_killed_agent_resumes_without_losing_or_repeating_trials(world, kill_points):
    exp = 'improve-push_t'
    seen_pairs: set[tuple[str, int]] = set()
    result = None
    for k in kill_points:
        agent, port = world.agent(kill_after=k, goal_consecutive=4)
        try:
            result = agent.run()
            break
        except SimulatedKill:
            pass
        pairs = {(t.revision, t.seed) for t in world.store.trials_for(exp)}
        assert pairs >= seen_pairs, 'a restart lost trials'
        seen_pairs = pairs
    if result is None:
        agent, port = world.agent(goal_consecutive=4)
        result = agent.run()
    assert result.goal_met
    trials = world.store.trials_for(exp)
    assert {(t.revision, t.seed) for t in trials} >= seen_pairs
    counts = Counter((t.revision, t.seed) for t in trials)
    assert max(counts.values()) == 1, 'a seed of a revision ran twice'
    # The resumed run asked the port only for seeds the store lacked.
    asked = Counter((rev, s) for rev, seeds in port.calls for s in seeds)
    assert all((rev, s) not in seen_pairs for rev, s in asked)
    started = [e.data for e in world.store.events(exp, CANDIDATE_STARTED)]
    done = [e.data for e in world.store.events(exp, CANDIDATE_DONE)]
    assert len({d['optuna_trial'] for d in started}) == len(started)
    tried = [d['revision'] for d in done if d['decision'] in ('keep', 'revert')]
    assert len(tried) == len(set(tried)), 'a revision was tried twice'
    study = agent.study.get_trials(deepcopy=False)
    assert len(study) == result.optuna_trials
    complete = [t for t in study if t.state == TrialState.COMPLETE]
    # Optuna's proposals only: a regime escalation's candidate ('regime:...') is not one.
    proposals = [d for d in done if isinstance(d['optuna_trial'], int)]
    assert len(complete) == len(proposals)
    assert sorted(d['optuna_trial'] for d in proposals) == sorted(t.number for t in complete)
    # Pipelining may leave at most one proposal asked ahead and never started (a later run
    # re-uses its params).
    ahead = [t for t in study if t.state != TrialState.COMPLETE]
    assert len(ahead) <= 1 and all(t.state == TrialState.RUNNING for t in ahead)
    assert not {t.number for t in ahead} & {d['optuna_trial'] for d in started}


def test_identical_proposals_reuse_the_stored_revision_instead_of_rerunning(world):
    only_gain = {**OVERRIDES, 'max_step_px': None, 'push_gain': {'choices': [0.3, 0.6]}}
    agent, _ = world.agent(search_overrides=only_gain, max_candidates=6, goal_consecutive=50)
    result = agent.run()
    exp = result.experiment
    revisions = world.store.revisions(exp)
    assert {r.params['push_gain'] for r in revisions} == {0.3, 0.6}
    assert len(revisions) == 2
    decisions = Counter(e.data['decision'] for e in world.store.events(exp, CANDIDATE_DONE))
    assert decisions['duplicate'] >= 1
    counts = Counter((t.revision, t.seed) for t in world.store.trials_for(exp))
    assert max(counts.values()) == 1


def test_the_fake_port_refuses_a_revision_the_store_does_not_hold(world, tmp_path):
    port = FakeTrialsPort(world.store, MODEL)
    world.store.create_experiment('e', 'push_t', 0.0)
    with pytest.raises(ConfigError, match='add_revision before running'):
        port.run(experiment_id='e', revision_id='ab' * 32, revision_dir=tmp_path, seeds=[1])


def test_the_fake_port_records_trials_with_the_revision_branch_and_eval_flag(world):
    world.store.create_experiment('e', 'push_t', 0.0)
    world.store.add_revision(Revision('e', 'cd' * 32, 'agent-7', params={}))
    port = FakeTrialsPort(world.store, MODEL, clock=world.clock)
    out = port.run(experiment_id='e', revision_id='cd' * 32, revision_dir=SEED,
                   seeds=[3, EVAL_LO], max_wall_time_s=0.0)
    trials = world.store.trials_for('e')
    assert [t.seed for t in trials] == [3, EVAL_LO] == [o.seed for o in out]
    assert [t.is_eval for t in trials] == [False, True]
    assert {t.branch for t in trials} == {'agent-7'}
    assert world.clock.now_s() == 20.0
    # Same seed, same difficulty: a better policy solves a superset of the starts.
    assert seed_difficulty(3) == seed_difficulty(3)


def test_the_search_space_follows_the_documented_table():
    space = derive_search_space({'gain': 0.3, 'neg': -2.0, 'n': 40, 'flag': True, 'zero': 0.0,
                                 'name': 'x', 'k': 0})
    d = space.distributions
    assert d['gain'] == FloatDistribution(0.15, 0.6, log=True)
    assert d['neg'] == FloatDistribution(-4.0, -1.0)
    assert d['n'] == IntDistribution(20, 80)
    assert d['flag'] == CategoricalDistribution([False, True])
    assert set(space.fixed) == {'zero', 'name', 'k'}
    params = space.materialise({'gain': 0.123456, 'n': 33, 'flag': False, 'neg': -1.5})
    assert params == {'gain': 0.123, 'neg': -1.5, 'n': 33, 'flag': False, 'zero': 0.0,
                      'name': 'x', 'k': 0}
    assert round_sig(12345.0, 3) == 12300.0
    with pytest.raises(ConfigError, match="unknown param.*'gian'"):
        derive_search_space({'gain': 0.3}, {'gian': (0.1, 1.0)})
    with pytest.raises(ConfigError, match='low must be < high'):
        derive_search_space({'gain': 0.3}, {'gain': (1.0, 0.1)})
    with pytest.raises(ConfigError, match="give \\[low, high\\], \\{'choices'"):
        derive_search_space({'gain': 0.3}, {'gain': [0.1, 0.2, 0.3]})
    assert derive_search_space({'g': 0.3}, {'g': {'choices': [0.1, 0.3]}}).distributions['g'] \
        == CategoricalDistribution([0.1, 0.3])
    with pytest.raises(ConfigError, match='no searchable params'):
        derive_search_space({'name': 'x'})


def test_agent_config_rejects_bad_stages():
    with pytest.raises(ConfigError, match='stages'):
        BuiltinAgentConfig(stages=(20, 6))
    assert BuiltinAgentConfig(task='push_t').experiment_id == 'improve-push_t'


def test_the_next_candidate_is_validated_while_the_current_ones_trials_run(world):
    from enpire_agent_bridge.core.revisions import content_id

    in_run = {'flag': False}
    validated: list[tuple[str, bool]] = []

    def validate(policy_dir: Path) -> None:
        validated.append((content_id(policy_dir)[0], in_run['flag']))
        manifest_validator(policy_dir)

    agent, port = world.agent(validate=validate, max_candidates=8, goal_consecutive=50)
    real_run = port.run

    def run(**kw):
        in_run['flag'] = True
        try:
            # The fake port takes no real time: let the background preparation finish inside
            # the run, as it would while a real cell runs trials.
            agent.prefetcher.wait(10.0)
            return real_run(**kw)
        finally:
            in_run['flag'] = False

    port.run = run
    result = agent.run()
    exp = result.experiment
    assert result.n_candidates >= 6
    # Every candidate after the first proposal was validated while the cell ran trials, and
    # no content was validated twice (the foreground found the prepared snapshot).
    ahead = [rid for rid, during in validated if during]
    assert len(ahead) >= result.n_candidates - 2, validated
    assert len({rid for rid, _ in validated}) == len(validated)
    # Each candidate was built on the best of the moment it started (a prepared proposal
    # whose base was replaced by a kept candidate was rebuilt).
    best = None
    for e in world.store.events(exp):
        if e.kind == CANDIDATE_STARTED and 'borrowed_from' not in e.data:
            assert e.data.get('parent') == best, e.data
        if e.kind == CANDIDATE_DONE and e.data['decision'] == 'keep':
            best = e.data['revision']


def test_without_pipelining_the_agent_validates_only_between_trials(world):
    in_run = {'flag': False}
    during: list[bool] = []

    def validate(policy_dir: Path) -> None:
        during.append(in_run['flag'])
        manifest_validator(policy_dir)

    agent, port = world.agent(validate=validate, max_candidates=4, goal_consecutive=50,
                              pipeline=False)
    real_run = port.run

    def run(**kw):
        in_run['flag'] = True
        try:
            return real_run(**kw)
        finally:
            in_run['flag'] = False

    port.run = run
    agent.run()
    assert during and not any(during)


def test_a_stalled_search_escalates_to_the_other_regimes_each_once_and_records_them(world):
    """No candidate can beat the seed (flat success model): after escalate_after reverts the
    agent writes the planar_push idea and the tool-calling variant of its best and judges
    each like any candidate; BC is recorded as skipped with its reason (no recorded
    successes here); residual RL runs its rounds in their own experiment and its learned
    residual is judged as the next candidate; the search then goes on."""
    from enpire_agent_bridge.core.contract import load_policy_manifest
    from enpire_evolution.core.escalation import ESCALATION

    flat = peaked_success_model(OPTIMUM, peak=0.1, floor=0.1, width=0.6)
    agent, _ = world.agent(success_model=flat, escalate_after=3, max_candidates=8)
    agent.run()
    exp = agent.exp
    steps = [e.data for e in world.store.events(exp, ESCALATION)]
    assert [(s['regime'], s['outcome']) for s in steps] == \
        [('idea:planar_push', 'built'), ('tool_calling', 'built'), ('bc', 'skipped'),
         ('residual_rl', 'built')]
    assert 'recorded successes' in steps[2]['reason']
    rl = world.store.revision(exp, steps[3]['revision'])
    assert rl.regime == 'online_rl' and rl.parent == steps[3]['from']
    rl_exp = f"{exp}-rl-{steps[3]['from'][:12]}"
    rounds = [e.data for e in world.store.events(rl_exp, 'rl_round')]
    assert [r['round'] for r in rounds] == [0, 1, 2] and all(r['n'] == 8 for r in rounds)
    assert world.store.experiment(rl_exp).status == 'done'
    rl_tree = Path(agent.revisions.get(rl.id).path)
    assert (rl_tree / 'policy_base.py').is_file()
    residual = json.loads((rl_tree / 'residual.json').read_text())
    assert residual['explore'] is False and residual['round'] == 3
    assert any(d.data['optuna_trial'] == 'regime:residual_rl'
               for d in world.store.events(exp, CANDIDATE_DONE))
    steps = steps[1:]
    done = [e.data for e in world.store.events(exp, CANDIDATE_DONE)]
    decisions = [d['decision'] for d in done]
    at = next(i for i, d in enumerate(done) if d['optuna_trial'] == 'regime:tool_calling')
    assert at >= 4 and all(d in ('revert', 'rejected', 'duplicate', 'inconclusive')
                           for d in decisions[at - 3:at])
    assert at < len(done) - 1, 'the search did not go on after the escalation'
    variant = world.store.revision(exp, steps[0]['revision'])
    assert variant.regime == 'tool_calling' and variant.parent == steps[0]['from']
    tree = Path(agent.revisions.get(variant.id).path)
    assert (tree / 'policy_base.py').read_text() == (SEED / 'policy.py').read_text()
    assert 'tools.estimate_pose' in (tree / 'policy.py').read_text()
    assert load_policy_manifest(tree).regime == 'tool_calling'


def _record_push_t_trial(trial_dir: Path, n: int, seed: int) -> None:
    """A recorded Push-T trial (bag, MP4, trial.json) of n steps at trial_dir; its frames the
    simulator's render of seed's start, so the pose tool finds the block in them."""
    from enpire_common.tasks import load_task
    from enpire_rollout.core.config import RecorderConfig
    from enpire_rollout.core.recorder import EpisodeRecorder, TrialMeta
    from enpire_sim.core.push_t import PushTSim

    sim = PushTSim(load_task('push_t'))
    sim.reset(seed=seed)
    frame = sim.render()
    sim.close()
    h, w = frame.shape[:2]
    clock = FakeClock(10.0)
    rec = EpisodeRecorder(RecorderConfig(), clock=clock, wall_clock=FakeClock(1.7e9 + seed))
    rec.open(trial_dir, TrialMeta('x', trial_dir.name, 'r', 'cell_0', 'push_t', seed=seed))
    for i in range(n + 1):
        ns = int(round(clock.now_s() * 1e9))
        head = {'stamp': {'sec': ns // 10**9, 'nanosec': ns % 10**9}, 'frame_id': ''}
        rec.write('/cell_0/camera/top/image_raw', 'sensor_msgs/msg/Image', ns,
                  {'header': head, 'height': h, 'width': w, 'encoding': 'rgb8',
                   'step': 3 * w, 'data': frame.tobytes()})
        rec.write_frame('top', ns, frame)
        rec.write('/cell_0/state', 'enpire_interfaces/msg/StateVector', ns,
                  {'header': head, 'tick': i, 'names': ['x', 'y', 'vx', 'vy'],
                   'values': [100.0 + i, 200.0, 0.0, 0.0]})
        rec.write('/cell_0/command', 'enpire_interfaces/msg/Command', ns,
                  {'header': head, 'tick': i, 'revision_id': 'r', 'action': [110.0 + i, 200.0]})
        clock.advance(0.1)
    rec.close('success', reason='r', success=True, score=0.97, steps=n)


def test_the_bc_escalation_clones_the_best_revision_s_recorded_successes(world, monkeypatch):
    import dataclasses

    pytest.importorskip('torch')
    pytest.importorskip('pyarrow')
    half = peaked_success_model(OPTIMUM, peak=0.5, floor=0.5, width=0.6)
    agent, _ = world.agent(success_model=half, max_candidates=1, bc_min_episodes=3,
                           bc_epochs=1)
    agent.run()                                    # the baseline, judged and kept
    best = agent.ledger.best()
    # The fake port records no files: give its trials the records live trials would leave
    # (relative to ENPIRE_HOME, as the store may hold them).
    tuning = {seed: dataclasses.replace(t, record_dir=f'{agent.exp}/trials/{t.trial_id}')
              for seed, t in agent.ledger.tuning(best.id).items()}
    monkeypatch.setattr(agent.ledger, 'tuning', lambda _rev: tuning)
    wins = [t for t in tuning.values() if t.success]
    assert len(wins) >= 3
    for t in wins:
        _record_push_t_trial(world.home / t.record_dir, 12, t.seed)
    cand = agent.escalation._bc(best)
    rev = world.store.revision(agent.exp, cand.revision)
    assert rev.regime == 'bc' and rev.parent == best.id
    tree = Path(agent.revisions.get(cand.revision).path)
    # Push-T offers the pose tool and a planar goal: the clone is the nearest-neighbour one.
    assert {'policy.py', 'policy.yaml', 'memory.npz', 'train.json'} <= \
        {p.name for p in tree.iterdir()}
    manifest = load_policy_manifest(tree)
    assert manifest.regime == 'bc' and manifest.parent == best.id
    assert manifest.params['model']['arch'] == 'knn'
    assert manifest.params['model']['entries'] == 2 * 12 * len(wins)   # mirrored
    assert f'{len(wins)} successful tuning episodes' in manifest.hypothesis
    started = world.store.events(agent.exp, CANDIDATE_STARTED)[-1].data
    assert started['optuna_trial'] == 'regime:bc' and started['bc']['episodes'] == len(wins)


def test_a_stalled_search_tries_an_idea_keeps_it_and_searches_its_own_params(world):
    """The seed's params cannot do better than 10% here; the planar_push idea's policy (its
    params carry 'rho') succeeds 90% of the time. After escalate_after reverts the agent
    writes the idea, keeps it, and its later proposals are over the idea's params, the first
    of them its own values (a duplicate, re-used without trials)."""
    from enpire_evolution.core.escalation import ESCALATION
    from enpire_evolution.ideas import PLANAR_PUSH

    idea_params = set(PLANAR_PUSH.defaults())
    flat = peaked_success_model(OPTIMUM, peak=0.1, floor=0.1, width=0.6)
    good = peaked_success_model({'rho': 55.0}, peak=0.9, floor=0.5, width=2.0)

    def model(params, seed):
        return good(params, seed) if 'rho' in params else flat(params, seed)

    agent, _ = world.agent(success_model=model, escalate_after=3, max_candidates=8)
    agent.run()
    steps = [e.data for e in world.store.events(agent.exp, ESCALATION)]
    assert (steps[0]['regime'], steps[0]['outcome']) == ('idea:planar_push', 'built')
    done = [e.data for e in world.store.events(agent.exp, CANDIDATE_DONE)]
    at = next(i for i, d in enumerate(done) if d['optuna_trial'] == 'regime:idea:planar_push')
    assert done[at]['decision'] == 'keep'
    kept = world.store.revision(agent.exp, done[at]['revision'])
    assert kept.regime == 'tool_calling' and set(kept.params) == idea_params
    tree = Path(agent.revisions.get(kept.id).path)
    assert (tree / 'policy.py').read_bytes() == \
        (Path(PLANAR_PUSH.defaults.__code__.co_filename).parent / PLANAR_PUSH.source).read_bytes()
    after = done[at + 1:]
    assert after, 'the search did not go on after the kept idea'
    assert after[0]['decision'] == 'duplicate' and after[0]['revision'] == kept.id
    for d in after[1:]:
        rev = world.store.revision(agent.exp, d['revision'])
        assert set(rev.params) == idea_params, d
    assert set(agent.proposer.space.defaults) == idea_params
    # A resumed agent searches the idea's params too.
    again, _ = world.agent(success_model=model, escalate_after=3, max_candidates=1)
    again._setup()
    assert set(again.proposer.space.defaults) == idea_params
