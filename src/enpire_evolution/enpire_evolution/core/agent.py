"""The built-in search agent: propose, write, judge, keep or revert, evaluate; a short loop.

One candidate at a time (DESIGN section 7, the agent with no LLM), each responsibility one
component, driven by the short loop of :meth:`BuiltinAgent.run`:

* proposer (core.proposer): optuna's TPE over the seed policy's params (a seeded sampler;
  the seed policy is its first trial, the baseline) and the hypothesis of each proposal;
* candidate writer (core.candidate_writer): the candidate's files and manifest, its git
  commit on the agent's branch, validation, the revision and experiment stores, reverts;
* prefetcher (core.prefetch): the next proposal prepared while the cell runs trials;
* judge (core.judge): successive halving against the best on common tuning seeds, returning
  a typed :class:`~enpire_evolution.core.judge.Judgement`;
* evaluator (core.evaluator): the gate, held-out evaluation attempts, the goal;
* trial runner (core.trial_runner): trials of a revision on the seeds the store lacks,
  within the budget; ledger (core.ledger): this agent's events and trials in the store;
* behaviour (core.behaviour): how the agent works with others: alone, or a fleet's
  (core.fleet_behaviour) that splits the shared baseline, borrows peers' better ideas and
  stops with the fleet.

The loop (:meth:`BuiltinAgent.run`): finish an open evaluation or candidate (resume), else
evaluate the best if it earned it, else try a peer's better idea or a new proposal; until the
goal, the budget, ``max_candidates`` or the evaluation seeds run out. After each candidate
is judged, it is kept (store status 'kept': the new best) or the worktree goes back to the best
with a ``revert: ...`` commit, and optuna is told the candidate's objective.

Resume: every decision derives from the store (trials, revisions, events), the optuna study
and git. Events ``candidate_started`` / ``candidate_done`` (key ``optuna_trial``) and
``evaluation_started`` / ``evaluation_done`` (key ``attempt``) delimit units of work; a unit
started but not done is finished on restart by running only the seeds the store lacks. An
optuna trial asked but never started is re-used with its params; identical content maps to the
same revision id, whose stored trials are re-used, so no revision is tried twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import ConfigError, PolicyRejectedError
from enpire_common.paths import enpire_home
from enpire_common.tasks import TaskSpec, load_task
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.behaviour import AgentBehaviour, SoloBehaviour
from enpire_evolution.core.branches import PolicyWorkspace
from enpire_evolution.core.candidate_writer import (
    Candidate,
    CandidateWriter,
    Rejection,
    Validator,
    first_line,
    read_manifest,
)
from enpire_evolution.core.config import CompareConfig
from enpire_evolution.core.escalation import Escalation
from enpire_evolution.core.evaluator import EvalAttempt, Evaluator, SeedsExhausted
from enpire_evolution.core.judge import Judge, Judgement, TrialSummary
from enpire_evolution.core.ledger import (
    AGENT_STARTED,
    AGENT_STOPPED,
    CANDIDATE_DONE,
    CANDIDATE_STARTED,
    EVALUATION_DONE,
    EVALUATION_STARTED,
    Ledger,
)
from enpire_evolution.core.prefetch import Prefetcher
from enpire_evolution.core.proposer import Proposer
from enpire_evolution.core.recipes import write_recipe
from enpire_evolution.core.store import ExperimentStore, Revision
from enpire_evolution.core.trial_runner import (
    Budget,
    OutOfBudget,
    Stopped,
    TrialRunner,
    TrialsStalledError,
)
from enpire_evolution.core.trials_port import TrialsPort

LogFn = Callable[[str], None]

__all__ = [
    'AGENT_STARTED', 'AGENT_STOPPED', 'CANDIDATE_DONE', 'CANDIDATE_STARTED', 'EVALUATION_DONE',
    'EVALUATION_STARTED', 'AgentBehaviour', 'AgentResult', 'BuiltinAgent', 'Candidate',
    'LogFn', 'SoloBehaviour', 'TrialsStalledError', 'Validator', 'default_seed_policy',
    'default_validator', 'repo_root']


def repo_root() -> Path:
    """The workspace checkout (``$ENPIRE_ROOT``, else the one this file lives in)."""
    if os.environ.get('ENPIRE_ROOT'):
        return Path(os.environ['ENPIRE_ROOT'])
    return Path(__file__).resolve().parents[4]


def default_seed_policy(task: str) -> Path:
    """``examples/policies/<task>/scripted`` of the workspace checkout."""
    return repo_root() / 'examples' / 'policies' / task / 'scripted'


def default_validator(task: TaskSpec) -> Validator:
    """``check_policy`` against the task's policy spec on a few synthetic observations."""

    def validate(policy_dir: Path) -> None:
        import numpy as np

        from enpire_agent_bridge.core.checker import check_policy
        from enpire_agent_bridge.core.contract import ContractError, PolicySpec

        try:
            spec = PolicySpec.from_task_contract(task.raw)
        except ContractError as exc:
            raise ConfigError(f'task {task.name}: {exc}') from None
        lo, hi = np.asarray(spec.action_low), np.asarray(spec.action_high)
        observations = [spec.example_observation(agent_pos=lo + (hi - lo) * f, step=i)
                        for i, f in enumerate((0.25, 0.5, 0.75))
                        if 'agent_pos' in spec.observation and spec.action_shape == (2,)]
        check_policy(policy_dir, spec, observations or [spec.example_observation()])

    return validate


@dataclass(frozen=True)
class AgentResult:
    """What one ``run`` achieved (cumulative over resumed runs of the experiment)."""

    experiment: str
    task: str
    goal_met: bool
    stop_reason: str
    best_revision: str | None
    best_tuning: dict[str, Any]
    best_eval_streak: int
    goal_consecutive: int
    eval_seeds_used: int
    last_eval_seed: int | None
    wall_time_s: float
    time_to_success_s: float | None
    n_candidates: int
    n_trials: int
    optuna_trials: int
    recipe_path: str = ''
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BuiltinAgent:
    """Parameter search over a policy family with optuna, run as a resumable hill climber.

    Args:
        config: what to search and how long.
        store: the experiment store (source of truth for trials).
        revisions: the content-addressed revision store.
        workspace: the git workspace of policies (created from ``seed_policy`` if absent).
        trials: the trials port (records trials in ``store`` itself).
        home: runtime directory (optuna journal, recipes); default ``$ENPIRE_HOME``.
        task: the loaded task (default ``load_task(config.task)``).
        seed_policy: policy directory seeding the workspace (default the scripted example).
        clock: monotonic clock of the budget.
        wall: epoch seconds for store timestamps.
        log: receives one progress line per candidate / evaluation.
        validate: raises PolicyRejectedError for a bad candidate (default check_policy).
        compare_config: the keep/revert rule.
        behaviour: how it works with other agents (default :class:`SoloBehaviour`).
        study_name: its optuna study (default the experiment id).
    """

    def __init__(self, config: BuiltinAgentConfig, store: ExperimentStore, revisions: Any,
                 workspace: PolicyWorkspace, trials: TrialsPort, *,
                 home: str | Path | None = None, task: TaskSpec | None = None,
                 seed_policy: str | Path | None = None, clock: Clock | None = None,
                 wall: Callable[[], float] = time.time, log: LogFn | None = None,
                 validate: Validator | None = None,
                 compare_config: CompareConfig | None = None,
                 behaviour: AgentBehaviour | None = None, study_name: str = '') -> None:
        self.config = config
        self.store = store
        self.revisions = revisions
        self.workspace = workspace
        self.trials = trials
        self.home = enpire_home(home)
        self.task = task or load_task(config.task)
        self.seed_policy = Path(seed_policy) if seed_policy else default_seed_policy(
            config.task)
        self.clock = clock or SystemClock()
        self.wall = wall
        self.log = log or (lambda _line: None)
        self.validate = validate if validate is not None else default_validator(self.task)
        self.compare_config = compare_config or CompareConfig()
        self.exp = config.experiment_id
        lo, hi = self.task.tuning_seeds
        n = config.stages[-1]
        if hi - lo + 1 < n:
            raise ConfigError(f'tuning seed range {lo}-{hi} of task {self.task.name} holds '
                              f'{hi - lo + 1} seeds; stages need {n}')
        #: The common tuning seed block (common random numbers for every candidate).
        self.tuning_seeds = tuple(range(lo, lo + n))
        self.behaviour: AgentBehaviour = behaviour or SoloBehaviour()
        self.budget = Budget(self.clock, config.budget_s, self.behaviour.stopped)
        self.ledger = Ledger(store, self.exp, config.agent_id, wall)
        self.proposer = Proposer(config, self.ledger, self.home, study_name or self.exp)
        self.writer = CandidateWriter(config, self.ledger, revisions, workspace, self.validate,
                                      self.home)
        self.prefetcher = Prefetcher(config, self.proposer, self.ledger, self.writer, self.say)
        self.runner = TrialRunner(self.ledger, trials, self.writer.revision_dir, self.budget,
                                  self.say, max_stalls=config.max_stalls,
                                  batch=self.behaviour.batch)
        self.judge = Judge(config, self.ledger, self.runner, self.tuning_seeds,
                           self.compare_config)
        self.evaluator = Evaluator(config, self.ledger, self.runner,
                                   self.task.evaluation_seeds, self.tuning_seeds, self.say)
        self._n_run = 0
        self.escalation = Escalation(self)
        self.behaviour.bind(self)

    @property
    def study(self) -> Any:
        """The optuna study (None before ``run``)."""
        return self.proposer.study

    @property
    def space(self) -> Any:
        """The search space (None before ``run``)."""
        return self.proposer.space

    @property
    def worktree(self) -> Path | None:
        """The agent's git worktree (None before ``run``)."""
        return self.writer.worktree

    def say(self, text: str) -> None:
        self.log(f'[{self.budget.elapsed_s():7.0f}s/{self.config.budget_s:.0f}s] {text}')

    def _setup(self) -> None:
        cfg = self.config
        if not (self.seed_policy / 'policy.yaml').is_file():
            raise ConfigError(f'seed policy {self.seed_policy} has no policy.yaml; pass an '
                              'existing policy directory')
        self.store.create_experiment(self.exp, cfg.task, self.wall(), {
            'agent': 'builtin', 'config': _jsonable(asdict(cfg)),
            'seed_policy': str(self.seed_policy)})
        self.store.set_experiment_status(self.exp, 'running')  # a resumed run is running again
        self.store.add_agent(self.exp, cfg.agent_id, 'builtin', cfg.cell)
        self.store.add_branch(self.exp, cfg.branch, agent=cfg.agent_id, created_at=self.wall())
        self.writer.open(self.seed_policy)
        self.proposer.open(read_manifest(self.seed_policy / 'policy.yaml').get('params') or {})
        # A kept structural rewrite (an idea) brought params of its own: search those.
        for done in self.ledger.events(CANDIDATE_DONE):
            if done.data.get('decision') == 'keep':
                kept = self.ledger.revision(str(done.data.get('revision')))
                if kept is not None:
                    self.proposer.retarget(kept.params)

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> AgentResult:
        """Search until the goal is met or the budget is spent; resumable (module docstring).

        Returns:
            The cumulative result of the experiment; the recipe is written too.

        Raises:
            TrialsStalledError: the trials port stopped recording trials.
            PolicyRejectedError: the seed policy itself fails validation.
        """
        self.budget.start()
        self._setup()
        resumed = bool(self.ledger.events(CANDIDATE_STARTED)
                       or self.ledger.events(EVALUATION_STARTED))
        self.ledger.add(AGENT_STARTED, {'budget_s': self.config.budget_s, 'resumed': resumed})
        if resumed:
            self.say(f'resuming experiment {self.exp} from the store')
        self._n_run = 0
        try:
            stop = self._loop()
        except OutOfBudget:
            stop = 'budget'
        except SeedsExhausted:
            stop = 'eval_seeds_exhausted'
        except Stopped:
            stop = 'stopped'
        finally:
            # A prepared but unstarted proposal stays an asked optuna trial: a resumed run
            # re-uses its params (Proposer.next).
            self.prefetcher.join()
        self.ledger.add(AGENT_STOPPED, {'stop_reason': stop})
        # 'stopped' (budget, seeds, signal) is resumable: the same command continues it.
        self.store.set_experiment_status(self.exp, 'done' if stop == 'goal' else 'stopped')
        recipe = write_recipe(self.store, self.exp, self.config.task, self.home / 'recipes',
                              self.compare_config)
        result = self.result(stop, recipe)
        self.say(f"stopped ({stop}): best {(result.best_revision or '-')[:12]} tuning "
                 f"{result.best_tuning.get('successes', 0)}/{result.best_tuning.get('n', 0)}, "
                 f'best evaluation streak {result.best_eval_streak}/'
                 f'{self.config.goal_consecutive}, {result.n_candidates} candidates, '
                 f'{result.n_trials} trials')
        return result

    def _loop(self) -> str:
        """One unit of work per turn until a stop reason (or a control-flow exception)."""
        while True:
            if self.evaluator.goal_met():
                return 'goal'
            self.budget.check()
            attempt = self.evaluator.unfinished()
            if attempt is not None:
                self._evaluate(attempt)
                continue
            cand = self.writer.unfinished()
            if cand is not None:
                self.say(f'resuming candidate #{cand.number} {cand.revision[:12]}')
                self._try(cand)
                continue
            best = self.ledger.best()
            if best is not None and self.evaluator.gate(best):
                self._evaluate(self.evaluator.start(best))
                continue
            if self.config.max_candidates and self._n_run >= self.config.max_candidates:
                return 'max_candidates'
            self._n_run += 1
            cand = (self.behaviour.borrow(best) or self.escalation.next(best)
                    or self._propose(best))
            if cand is not None:
                self._try(cand)

    def _evaluate(self, attempt: EvalAttempt) -> None:
        # A failed evaluation goes back to the search: its next proposal is made meanwhile.
        self.prefetcher.start(self.ledger.best(), self._n_run)
        self.evaluator.run(attempt)

    def _propose(self, best: Revision | None) -> Candidate | None:
        """Turn the next proposal into a stored revision; None if it was settled without
        trials (a rejected or duplicate candidate)."""
        prep = self.prefetcher.claim(best)
        if prep is not None:
            number, params, hypothesis = prep.number, dict(prep.params), prep.hypothesis
        else:
            number, sampled = self.proposer.next()
            params, hypothesis = self.proposer.params(sampled, best), ''
        if best is not None:
            dup = self.ledger.duplicate_of(params)
            if dup is not None:
                self._done(number, dup['revision'], 'duplicate', float(dup.get('value', 0.0)),
                           {'reason': f"same params as revision {dup['revision'][:12]}"})
                self.say(f"#{number} duplicate of {dup['revision'][:12]}: re-used its result")
                return None
            hypothesis = hypothesis or self.proposer.hypothesis(
                number, best, params, self.ledger.tally(best.id))
        try:
            out = self.writer.write(number, best, params, hypothesis)
        except PolicyRejectedError as exc:  # only the baseline's rejection propagates
            raise PolicyRejectedError(f'the seed policy {self.seed_policy} was rejected, so '
                                      f'there is no baseline to improve: {exc}') from None
        if isinstance(out, Rejection):
            self._done(number, out.revision, 'rejected', 0.0, {'reason': out.reason})
            self.say(f'#{number} {out.revision[:12]} REJECTED {first_line(out.reason)[:120]}')
            return None
        return out

    def _try(self, cand: Candidate) -> None:
        """Judge the candidate, keep or revert it, and settle its optuna trial."""
        best = self.ledger.revision(cand.parent) if cand.parent else None
        self.behaviour.on_try(cand)
        # The next proposal is prepared while this candidate's trials run (pipelining). The
        # baseline is always kept, so the one after it is built on the baseline itself.
        self.prefetcher.start(best if best is not None else self.ledger.revision(cand.revision),
                              self._n_run)
        judgement = self.judge.judge(cand, best)
        self.prefetcher.join()  # optuna is told below: the ask of the next one comes first
        self._settle(cand, best, judgement)

    def _settle(self, cand: Candidate, best: Revision | None, judgement: Judgement) -> None:
        decision, cmp = judgement.decision, judgement.comparison
        b, c = cmp.best, cmp.candidate
        if decision in ('keep', 'baseline'):
            self.ledger.set_status(cand.revision, 'kept')
            self.behaviour.on_kept(cand)
            if self.proposer.retarget(cand.params):
                self.say(f'#{cand.number} brought its own params: the search goes on over '
                         f'{", ".join(sorted(self.proposer.space.distributions))}')
        else:
            assert best is not None
            self.writer.revert(best, f'revert: {first_line(cand.hypothesis)} '
                                            f'({c.successes}/{c.n} vs best {b.successes}/'
                                            f'{b.n}, p={cmp.p_value:.3g})')
            self.ledger.set_status(cand.revision, 'reverted')
        stored = 'keep' if decision == 'baseline' else decision
        self._done(cand.number, cand.revision, stored, float(cmp.value), {
            'reason': judgement.reason, 'successes': c.successes, 'n': c.n,
            'best': best.id if best else None, 'best_successes': b.successes,
            'best_n': b.n, 'p_value': cmp.p_value, 'baseline': best is None})
        now_best = self.ledger.best()
        nb_ok, nb_n = self.ledger.tally(now_best.id) if now_best else (0, 0)
        self.say(f'#{cand.number} {cand.revision[:12]} {decision.upper():8} '
                 f'{c.successes}/{c.n}  best {now_best.id[:8] if now_best else "-"} '
                 f'{nb_ok}/{nb_n}  {first_line(cand.hypothesis)[:110]}')

    def _done(self, number: int | str, revision: str, decision: str, value: float,
              data: Mapping[str, Any]) -> None:
        self.ledger.candidate_done(number, revision, decision, value, data)
        self.proposer.tell(number, value)

    def result(self, stop_reason: str = '', recipe: Path | None = None) -> AgentResult:
        """The experiment's result as the store holds it now."""
        exp = self.store.experiment(self.exp)
        best = self.ledger.best()
        tuning = (asdict(TrialSummary.of(list(self.ledger.tuning(best.id).values())))
                  if best else {})
        evals = self.ledger.events(EVALUATION_DONE)
        eval_trials = self.ledger.eval_trials()
        done = self.ledger.events(CANDIDATE_DONE)
        return AgentResult(
            experiment=self.exp, task=self.config.task, goal_met=self.evaluator.goal_met(),
            stop_reason=stop_reason, best_revision=best.id if best else None,
            best_tuning=tuning, best_eval_streak=max((e.data['streak'] for e in evals),
                                                     default=0),
            goal_consecutive=self.config.goal_consecutive,
            eval_seeds_used=len({t.seed for t in eval_trials}),
            last_eval_seed=max((int(t.seed) for t in eval_trials), default=None),
            wall_time_s=self.budget.elapsed_s(),
            time_to_success_s=self.evaluator.time_to_success_s(exp.created_at),
            n_candidates=len(done), n_trials=self.store.count_trials(self.exp),
            optuna_trials=self.proposer.n_trials(), recipe_path=str(recipe or ''),
            extra={'decisions': _count(e.data.get('decision', '') for e in done),
                   'tuning_seeds': [self.tuning_seeds[0], self.tuning_seeds[-1]],
                   'evaluation_attempts': len(evals)})


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
