"""The built-in search agent: propose, write, validate, try, compare, keep or revert, evaluate.

One candidate at a time (DESIGN section 7, the agent with no LLM):

1. Optuna's TPE sampler proposes ``params`` over a space derived from the seed policy
   (:mod:`core.search_space`); the study lives in ``ENPIRE_HOME/optuna/<experiment>.journal``
   (or an RDB URL), and its first trial is the seed policy itself (the baseline).
2. The candidate is the best revision's files with the new ``params:``, ``version`` + 1,
   ``parent`` = the best's id and a ``hypothesis`` naming the changes; it is committed on the
   agent's git branch (message = hypothesis), validated (``check_policy`` by default; a
   rejected candidate is logged and skipped) and snapshotted in the revision store.
3. It is added to the experiment store BEFORE its trials run (the trials port records each
   trial itself), then tried on the common tuning seed block with successive halving
   (``stages``, e.g. 6 then 20 then 40 seeds; the best is run on the same seeds: common random
   numbers), and compared with the best (:func:`core.compare.compare`): keep -> new best;
   revert -> the worktree goes back to the best's commit with a ``revert: ...`` commit.
4. When the best reaches a high tuning rate (Wilson lower bound >= ``eval_min_ci_low`` over
   >= ``eval_min_trials``), it is evaluated on fresh held-out evaluation seeds, consumed in
   order, one batch at a time, stopping at the first failure. The goal is met when an
   evaluation reaches ``goal_consecutive`` consecutive successes.

Pipelining (``config.pipeline``, on by default): while a candidate's trials run, a background
thread asks optuna for the NEXT proposal, writes it on top of the current best into a scratch
directory and validates + snapshots it in the revision store, so the cell does not wait for the
agent's thinking between candidates. The revision store is content-addressed: when the agent
then writes the same files into its worktree and commits them, the submit finds the snapshot
(and a rejection is remembered by content id), so nothing is validated twice. A prepared
proposal is used only if the best is still the one it was built on; otherwise (the running
candidate was kept) the same optuna trial is rebuilt on the new best in the foreground. The
search itself changes in one way: optuna proposes candidate k+1 before it is told candidate
k's result (a one-candidate lag; TPE ignores running trials). The order of asks and tells is
fixed by construction (the ask for k+1 always falls between the start of k and the tell of
k), so a run is as deterministic as before for a given sampler seed and trial outcomes.

Resume: every decision derives from the store (trials, revisions, events), the optuna study
and git. Events ``candidate_started`` / ``candidate_done`` (key ``optuna_trial``) and
``evaluation_started`` / ``evaluation_done`` (key ``attempt``) delimit units of work; a unit
started but not done is finished on restart by running only the seeds the store lacks. An
optuna trial asked but never started is re-used with its params; identical content maps to the
same revision id, whose stored trials are re-used, so no revision is tried twice.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from enpire_common.clock import Clock, SystemClock
from enpire_common.errors import BudgetExhaustedError, ConfigError, PolicyRejectedError
from enpire_common.tasks import TaskSpec, load_task
from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.branches import PolicyWorkspace
from enpire_evolution.core.compare import compare, summarise
from enpire_evolution.core.config import CompareConfig, enpire_home
from enpire_evolution.core.metrics import time_to_success, wilson_interval
from enpire_evolution.core.recipes import param_diff, write_recipe
from enpire_evolution.core.search_space import SearchSpace, derive_search_space
from enpire_evolution.core.store import Event, ExperimentStore, Revision, Trial
from enpire_evolution.core.trials_port import VOID_OUTCOMES, TrialsPort

LogFn = Callable[[str], None]
Validator = Callable[[Path], None]

CANDIDATE_STARTED = 'candidate_started'
CANDIDATE_DONE = 'candidate_done'
EVALUATION_STARTED = 'evaluation_started'
EVALUATION_DONE = 'evaluation_done'
AGENT_STARTED = 'agent_started'
AGENT_STOPPED = 'agent_stopped'


class TrialsStalledError(BudgetExhaustedError):
    """The trials port returned without recording the requested trials, repeatedly."""


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


@dataclass
class _Prepared:
    """A proposal made ahead of time (pipelining): its optuna trial, params and manifest."""

    number: int
    params: dict[str, Any]
    parent: str | None
    hypothesis: str = ''
    duplicate: bool = False


@dataclass
class _Candidate:
    number: int | str  # the optuna trial, or 'borrow:<revision>' for a peer's idea (fleet)
    revision: str
    path: Path
    parent: str | None
    hypothesis: str
    params: dict[str, Any]


class _OutOfBudget(Exception):  # noqa: N818 - control flow, never escapes run()
    pass


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
    """

    def __init__(self, config: BuiltinAgentConfig, store: ExperimentStore, revisions: Any,
                 workspace: PolicyWorkspace, trials: TrialsPort, *,
                 home: str | Path | None = None, task: TaskSpec | None = None,
                 seed_policy: str | Path | None = None, clock: Clock | None = None,
                 wall: Callable[[], float] = time.time, log: LogFn | None = None,
                 validate: Validator | None = None,
                 compare_config: CompareConfig | None = None) -> None:
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
        self._start_s = 0.0
        self._stalls = 0
        self._n_run = 0
        self._study: Any = None
        self.space: SearchSpace | None = None
        self.worktree: Path | None = None
        self._prepared: _Prepared | None = None
        self._prefetch: threading.Thread | None = None
        self._rejections: dict[str, PolicyRejectedError] = {}
        lo, hi = self.task.tuning_seeds
        n = config.stages[-1]
        if hi - lo + 1 < n:
            raise ConfigError(f'tuning seed range {lo}-{hi} of task {self.task.name} holds '
                              f'{hi - lo + 1} seeds; stages need {n}')
        #: The common tuning seed block (common random numbers for every candidate).
        self.tuning_seeds = tuple(range(lo, lo + n))

    # --- setup ---------------------------------------------------------------------------
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
        self.workspace.init(self.seed_policy, message=f'seed policy {self.seed_policy.name}')
        self.worktree = self.workspace.worktree_for(cfg.agent_id, cfg.git_branch,
                                                    base=self.workspace.main_branch)
        seed_yaml = _read_yaml(self.seed_policy / 'policy.yaml')
        self.space = derive_search_space(seed_yaml.get('params') or {}, cfg.search_overrides,
                                         sig_digits=cfg.sig_digits)
        self._study = self._open_study()

    def _open_study(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.config.study_url:
            storage: Any = optuna.storages.RDBStorage(self.config.study_url)
        else:
            from optuna.storages.journal import JournalFileBackend

            path = self.home / 'optuna' / f'{self.study_name}.journal'
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        sampler = optuna.samplers.TPESampler(seed=self.config.sampler_seed,
                                             n_startup_trials=self.config.n_startup_trials)
        study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=sampler,
                                    direction='maximize', load_if_exists=True)
        if not study.get_trials(deepcopy=False):
            # The seed policy is the first trial: the baseline every candidate must beat.
            assert self.space is not None
            study.enqueue_trial(self.space.searched_defaults(), skip_if_exists=True)
        return study

    @property
    def study(self) -> Any:
        return self._study

    @property
    def study_name(self) -> str:
        """The optuna study (one per agent: a fleet's agents do not share a sampler)."""
        return self.exp

    # --- time ----------------------------------------------------------------------------
    def _elapsed_s(self) -> float:
        return self.clock.now_s() - self._start_s

    def _remaining_s(self) -> float:
        return self.config.budget_s - self._elapsed_s()

    def _check_budget(self) -> None:
        if self._remaining_s() <= 0:
            raise _OutOfBudget
        if self._stopped():
            raise _Stopped

    def _say(self, text: str) -> None:
        self.log(f'[{self._elapsed_s():7.0f}s/{self.config.budget_s:.0f}s] {text}')

    # --- derived state -------------------------------------------------------------------
    def _events(self, kind: str) -> list[Event]:
        """This agent's events of ``kind`` (several agents may share an experiment; events
        written before events named their agent belong to the default agent 'builtin')."""
        me = self.config.agent_id
        return [e for e in self.store.events(self.exp, kind)
                if e.data.get('agent', 'builtin') == me]

    def _event(self, kind: str, data: Mapping[str, Any]) -> None:
        self.store.add_event(self.exp, kind, self.wall(), {**data, 'agent': self.config.agent_id})

    def _best(self) -> Revision | None:
        """The last kept revision (events are in decision order)."""
        kept = [e.data['revision'] for e in self._events(CANDIDATE_DONE)
                if e.data.get('decision') == 'keep']
        return self.store.revision(self.exp, kept[-1]) if kept else None

    def _tuning(self, revision: str) -> dict[int, Trial]:
        """Valid tuning trials of a revision by seed (the first one of each seed)."""
        out: dict[int, Trial] = {}
        for t in self.store.trials_for(self.exp, revision=revision, is_eval=False):
            if t.outcome not in VOID_OUTCOMES:
                out.setdefault(int(t.seed), t)
        return out

    def _seeds_done(self, revision: str, is_eval: bool) -> set[int]:
        return {int(t.seed) for t in self.store.trials_for(self.exp, revision=revision,
                                                            is_eval=is_eval)}

    def _revision_dir(self, revision: str) -> Path:
        return Path(self.revisions.get(revision).path)

    # --- running trials ------------------------------------------------------------------
    def _ensure(self, revision: str, seeds: Sequence[int], *, is_eval: bool = False) -> None:
        """Make the store hold a trial of ``revision`` on every seed (runs only the missing
        ones); raises _OutOfBudget when time runs out first."""
        while True:
            missing = [s for s in seeds if s not in self._seeds_done(revision, is_eval)]
            if not missing:
                self._stalls = 0
                return
            self._check_budget()
            before = len(missing)
            missing = self._batch(revision, seeds, missing)
            done = {'n': 0, 'ok': 0}

            def on_trial(t: Any, n_missing: int = len(missing), done: dict = done) -> None:
                # One line per trial: a candidate's trials can take minutes on a real cell.
                done['n'] += 1
                done['ok'] += bool(t.success)
                kind = 'eval' if is_eval else 'tune'
                self._say(f"  {revision[:12]} trial {done['n']}/{n_missing} seed {t.seed} "
                          f"{kind}: {t.outcome} (score {t.score:.2f}) | "
                          f"{done['ok']}/{done['n']}")

            self.trials.run(experiment_id=self.exp, revision_id=revision,
                            revision_dir=self._revision_dir(revision), seeds=missing,
                            max_wall_time_s=max(0.0, self._remaining_s()), on_trial=on_trial)
            after = len([s for s in seeds if s not in self._seeds_done(revision, is_eval)])
            if after >= before and self._remaining_s() > 0:
                self._stalls += 1
                if self._stalls >= self.config.max_stalls:
                    raise TrialsStalledError(
                        f'the trials port recorded none of {before} trial(s) of revision '
                        f'{revision[:12]} in {self._stalls} attempts; check the rollout node '
                        'and the cells (enpire doctor), then run the same command to resume')

    # --- candidates ----------------------------------------------------------------------
    def _next_proposal(self) -> tuple[int, dict[str, Any]]:
        """An optuna trial to work on: one asked earlier but never started, else a new one."""
        from optuna.trial import TrialState

        assert self.space is not None
        done = {e.data['optuna_trial']: e.data for e in self._events(CANDIDATE_DONE)}
        started = {e.data['optuna_trial'] for e in self._events(CANDIDATE_STARTED)}
        for ft in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if ft.number in done:  # killed between the done event and tell
                self.study.tell(ft.number, float(done[ft.number].get('value', 0.0)),
                                skip_if_finished=True)
                continue
            if ft.number in started:  # the candidate on the cell right now (pipelining)
                continue
            return ft.number, dict(ft.params)
        trial = self.study.ask(dict(self.space.distributions))
        return trial.number, dict(trial.params)

    def _restore_best_tree(self, best: Revision | None) -> None:
        """Make the worktree's files exactly the best's commit (or the seed), uncommitted."""
        assert self.worktree is not None
        sha = best.commit if best is not None else self.workspace.head(
            self.workspace.main_branch)
        self.workspace.git('read-tree', '-u', '--reset', sha, cwd=self.worktree)
        self.workspace.git('clean', '-fdq', cwd=self.worktree)

    def _best_tally(self, best: Revision) -> tuple[int, int]:
        """(successes, valid tuning trials) of the best as the store holds them now."""
        bt = self._tuning(best.id)
        return sum(t.success for t in bt.values()), len(bt)

    def _hypothesis(self, number: int, best: Revision, params: Mapping[str, Any],
                    tally: tuple[int, int] | None = None) -> str:
        diff = param_diff(best.params, params)
        diff.sort(key=lambda d: -abs(_log_ratio(d[1], d[2])))
        shown = [f'{k} {_fmt(old)} -> {_fmt(new)}' for k, old, new in diff[:4]]
        more = f' and {len(diff) - 4} more' if len(diff) > 4 else ''
        b_ok, b_n = tally if tally is not None else self._best_tally(best)
        finished = len(self._events(CANDIDATE_DONE))
        why = (f"optuna's TPE model of {finished} finished candidate(s) expects a higher "
               'tuning success rate here' if number >= self.config.n_startup_trials else
               f'random start-up sample {number}/{self.config.n_startup_trials - 1} (TPE '
               'needs a spread of results before it models the space)')
        return (f"trial {number}: {', '.join(shown) or 'no change'}{more}. Why: {why}, "
                f'against the best {best.id[:12]} ({b_ok}/{b_n} tuning successes).')

    def _write_manifest(self, tree: Path, number: int, best: Revision | None,
                        params: dict[str, Any], hypothesis: str = '') -> str:
        """Turn ``tree`` (a copy of the best's files) into the candidate; returns its
        hypothesis. The same inputs give the same bytes (pipelining relies on it)."""
        manifest_path = tree / 'policy.yaml'
        manifest = _read_yaml(manifest_path)
        if best is None:  # the baseline: the seed policy as it is
            return str(manifest.get('hypothesis', '')).strip() or 'seed policy'
        hypothesis = hypothesis or self._hypothesis(number, best, params)
        manifest['version'] = int(manifest.get('version', 0) or 0) + 1
        manifest['hypothesis'] = hypothesis
        manifest['parent'] = best.id
        manifest['params'] = params
        manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False, width=1000),
                                 encoding='utf-8')
        return hypothesis

    def _write_candidate(self, number: int, best: Revision | None,
                         params: dict[str, Any], hypothesis: str = '') -> tuple[str, str]:
        """Write the candidate into the worktree and commit it; returns (hypothesis, sha)."""
        assert self.worktree is not None
        self._restore_best_tree(best)
        hypothesis = self._write_manifest(self.worktree, number, best, params, hypothesis)
        sha = self.workspace.commit(self.worktree, hypothesis)
        return hypothesis, sha

    # --- pipelining: the next proposal is prepared while the cell runs trials -----------------
    def _start_prefetch(self, best: Revision | None) -> None:
        """Prepare the next proposal on top of ``best`` in a background thread (if enabled
        and none is prepared or being prepared)."""
        if (not self.config.pipeline or best is None or self._prefetch is not None
                or (self._prepared is not None and self._prepared.parent == best.id)):
            return
        if self.config.max_candidates and self._n_run >= self.config.max_candidates:
            return
        # The best's tally is read here, in the foreground: the thread would read it while
        # this candidate's stages add trials of the best, and the hypothesis (part of the
        # revision's content, so its id) would depend on thread timing.
        self._prefetch = threading.Thread(target=self._prefetch_safely,
                                          args=(best, self._best_tally(best)),
                                          name=f'prefetch-{self.config.agent_id}',
                                          daemon=True)
        self._prefetch.start()

    def _prefetch_safely(self, best: Revision, tally: tuple[int, int]) -> None:
        try:
            self._prepared = self._prepare(best, tally)
        except Exception as exc:  # noqa: BLE001 - a failed prefetch only costs the overlap
            self._prepared = None
            self._say(f'preparing the next candidate ahead failed ({exc!r}); it will be made '
                      'when needed')

    def _join_prefetch(self) -> None:
        """Wait for the background preparation (before optuna is told, or it is used)."""
        th, self._prefetch = self._prefetch, None
        if th is not None:
            th.join()

    def _prepare(self, best: Revision, tally: tuple[int, int]) -> _Prepared:
        """Ask optuna, write the candidate into a scratch copy of the best's files, validate
        and snapshot it (rejections are remembered by content id). No git, no store events:
        the foreground commits and starts it (or drops it when the best changed)."""
        from enpire_agent_bridge.core.revisions import content_id

        assert self.space is not None
        number, sampled = self._next_proposal()
        params = self.space.materialise(sampled)
        if self._duplicate_of(params) is not None:
            return _Prepared(number, params, best.id, duplicate=True)
        hypothesis = self._hypothesis(number, best, params, tally)
        scratch = Path(tempfile.mkdtemp(prefix=f'.prepare-{self.config.agent_id}-',
                                        dir=self.home))
        try:
            tree = scratch / 'policy'
            shutil.copytree(self._revision_dir(best.id), tree)
            self._write_manifest(tree, number, best, params, hypothesis)
            try:
                self.revisions.submit(tree, parent=best.id, now_s=self.wall(),
                                      validate=self.validate)
            except PolicyRejectedError as exc:
                self._rejections[content_id(tree)[0]] = exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return _Prepared(number, params, best.id, hypothesis)

    def _claim_prepared(self, best: Revision | None) -> _Prepared | None:
        """The prepared proposal if it was built on ``best`` (else its optuna trial is
        re-used by _next_proposal and rebuilt on the new best)."""
        self._join_prefetch()
        prep, self._prepared = self._prepared, None
        if prep is None or best is None or prep.parent != best.id:
            return None
        return prep

    def _validate_once(self, snapshot: Path) -> None:
        """The validator, but a content already rejected ahead of time is not run again."""
        from enpire_agent_bridge.core.revisions import content_id

        known = self._rejections.get(content_id(snapshot)[0])
        if known is not None:
            raise known
        self.validate(snapshot)

    def _propose(self, best: Revision | None) -> _Candidate | None:
        """Turn the next optuna proposal into a stored revision; None if it was settled
        without trials (a rejected or duplicate candidate)."""
        from enpire_agent_bridge.core.revisions import content_id

        assert self.space is not None and self.worktree is not None
        prep = self._claim_prepared(best)
        hypothesis = ''
        if prep is not None:
            number, params, hypothesis = prep.number, dict(prep.params), prep.hypothesis
        else:
            number, sampled = self._next_proposal()
            params = (dict(self.space.defaults) if best is None
                      else self.space.materialise(sampled))
        if best is not None:
            dup = self._duplicate_of(params)
            if dup is not None:
                self._done(number, dup['revision'], 'duplicate', float(dup.get('value', 0.0)),
                           {'reason': f"same params as revision {dup['revision'][:12]}"})
                self._say(f"#{number} duplicate of {dup['revision'][:12]}: re-used its result")
                return None
        hypothesis, sha = self._write_candidate(number, best, params, hypothesis)
        parent = best.id if best is not None else None
        regime = str(_read_yaml(self.worktree / 'policy.yaml').get('regime') or 'heuristic')
        try:
            rev, _created = self.revisions.submit(self.worktree, parent=parent or '',
                                                  now_s=self.wall(),
                                                  validate=self._validate_once)
        except PolicyRejectedError as exc:
            if best is None:
                raise PolicyRejectedError(f'the seed policy {self.seed_policy} was rejected, so '
                                          f'there is no baseline to improve: {exc}') from None
            rid = content_id(self.worktree)[0]
            self.store.add_revision(Revision(
                self.exp, rid, self.config.branch, parent, sha, hypothesis, regime,
                self.wall(), params, status='rejected'))
            self.store.set_revision_status(self.exp, rid, 'rejected')
            self.workspace.revert_to(self.worktree, best.commit,
                                     f'revert: {_first_line(hypothesis)} (rejected: '
                                     f'{_first_line(str(exc))[:200]})')
            self._done(number, rid, 'rejected', 0.0, {'reason': str(exc)})
            self._say(f'#{number} {rid[:12]} REJECTED {_first_line(str(exc))[:120]}')
            return None
        self.store.add_revision(Revision(
            self.exp, rev.id, self.config.branch, parent, sha, hypothesis, regime,
            self.wall(), params, status='running'))
        self._event(CANDIDATE_STARTED, {
            'optuna_trial': number, 'revision': rev.id, 'parent': parent, 'commit': sha,
            'params': params, 'hypothesis': hypothesis})
        return _Candidate(number, rev.id, Path(rev.path), parent, hypothesis, params)

    # --- hooks of a fleet agent (core.fleet.FleetAgent) ---------------------------------------
    def _batch(self, revision: str, seeds: Sequence[int], missing: list[int]) -> list[int]:
        """Which of the ``missing`` seeds of ``revision`` to run now (all of them alone; a
        fleet splits the revisions every agent runs, the baseline, between the cells)."""
        return missing

    def _on_kept(self, cand: _Candidate) -> None:
        """Called when a candidate becomes the best (a fleet agent pushes its branch)."""

    def _borrow(self, best: Revision | None) -> _Candidate | None:
        """A peer's better idea to try next instead of a new proposal (none alone)."""
        return None

    def _stopped(self) -> bool:
        """Whether to stop starting work now (a fleet stops all agents at the goal)."""
        return False

    def _duplicate_of(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        for e in self._events(CANDIDATE_DONE):
            if e.data.get('decision') in ('keep', 'revert', 'baseline'):
                rev = self.store.revision(self.exp, e.data['revision'])
                if dict(rev.params) == dict(params):
                    return e.data
        return None

    def _open_candidate(self) -> _Candidate | None:
        """A candidate started but not done (the agent was killed while trying it)."""
        done = {e.data['optuna_trial'] for e in self._events(CANDIDATE_DONE)}
        for e in self._events(CANDIDATE_STARTED):
            d = e.data
            if d['optuna_trial'] not in done:
                return _Candidate(d['optuna_trial'], d['revision'],
                                  self._revision_dir(d['revision']), d.get('parent'),
                                  d.get('hypothesis', ''), dict(d.get('params') or {}))
        return None

    def _try(self, cand: _Candidate) -> None:
        """Run the stages, decide, keep or revert, and settle the optuna trial."""
        cfg = self.config
        best = self.store.revision(self.exp, cand.parent) if cand.parent else None
        stages = cfg.stages
        result: dict[str, Any] = {}
        decision = 'revert'
        # The next proposal is prepared while this candidate's trials run (pipelining). The
        # baseline is always kept, so the one after it is built on the baseline itself.
        self._start_prefetch(best if best is not None
                             else self.store.revision(self.exp, cand.revision))
        if best is None:
            seeds = self.tuning_seeds[:stages[1]]
            self._ensure(cand.revision, seeds)
            decision, result = 'baseline', self._compare(None, cand.revision, seeds)
        else:
            for i, n in enumerate(stages):
                seeds = self.tuning_seeds[:n]
                self._ensure(cand.revision, seeds)
                self._ensure(best.id, seeds)
                result = self._compare(best.id, cand.revision, seeds)
                b, c = result['a'], result['b']
                if i == 0:
                    if c['successes'] < b['successes'] - cfg.promising_slack:
                        decision = 'revert'
                        result['reason'] = (f"screened out after {n} seeds: {c['successes']} "
                                            f"vs best {b['successes']} (slack "
                                            f'{cfg.promising_slack})')
                        break
                    continue
                if result['decision'] in ('keep', 'revert'):
                    decision = result['decision']
                    break
                delta = result['rate_delta']
                go_on = delta > 0 or (delta == 0 and c['success_rate'] >= cfg.eval_min_ci_low)
                if i + 1 < len(stages) and go_on:
                    continue
                decision = 'revert'
                break
        self._join_prefetch()  # optuna is told below: the ask of the next one comes first
        self._settle(cand, best, decision, result)

    def _compare(self, best: str | None, cand: str, seeds: Sequence[int]) -> dict[str, Any]:
        c_trials = [t for s, t in sorted(self._tuning(cand).items()) if s in set(seeds)]
        b_trials = ([t for s, t in sorted(self._tuning(best).items()) if s in set(seeds)]
                    if best else [])
        result = compare(b_trials, c_trials, self.compare_config)
        if best is None:
            result['reason'] = 'baseline: the seed policy'
        score = result['b']['mean_score'] or 0.0
        result['value'] = result['b']['success_rate'] + self.config.score_weight * score
        return result

    def _settle(self, cand: _Candidate, best: Revision | None, decision: str,
                result: dict[str, Any]) -> None:
        assert self.worktree is not None
        b, c = result['a'], result['b']
        if decision in ('keep', 'baseline'):
            self.store.set_revision_status(self.exp, cand.revision, 'kept')
            self._on_kept(cand)
        else:
            assert best is not None
            self.workspace.revert_to(
                self.worktree, best.commit,
                f"revert: {_first_line(cand.hypothesis)} ({c['successes']}/{c['n']} vs best "
                f"{b['successes']}/{b['n']}, p={result['p_value']:.3g})")
            self.store.set_revision_status(self.exp, cand.revision, 'reverted')
        stored = 'keep' if decision == 'baseline' else decision
        self._done(cand.number, cand.revision, stored, float(result['value']), {
            'reason': result['reason'], 'successes': c['successes'], 'n': c['n'],
            'best': best.id if best else None, 'best_successes': b['successes'],
            'best_n': b['n'], 'p_value': result['p_value'], 'baseline': best is None})
        now_best = self._best()
        nb = self._tuning(now_best.id) if now_best else {}
        nb_ok = sum(t.success for t in nb.values())
        self._say(f"#{cand.number} {cand.revision[:12]} {decision.upper():8} "
                  f"{c['successes']}/{c['n']}  best {now_best.id[:8] if now_best else '-'} "
                  f'{nb_ok}/{len(nb)}  {_first_line(cand.hypothesis)[:110]}')

    def _done(self, number: int | str, revision: str, decision: str, value: float,
              data: Mapping[str, Any]) -> None:
        self._event(CANDIDATE_DONE, {
            **data, 'optuna_trial': number, 'revision': revision, 'decision': decision,
            'value': value})
        if isinstance(number, int):  # a borrowed idea (fleet) has no optuna trial
            self.study.tell(number, value, skip_if_finished=True)

    # --- evaluation ----------------------------------------------------------------------
    def _gate(self, best: Revision) -> bool:
        """Whether the best has earned a held-out evaluation (extending its tuning trials
        first when its rate is high but it has too few of them)."""
        cfg = self.config
        attempts = [e for e in self._events(EVALUATION_STARTED)
                    if e.data['revision'] == best.id]
        if len(attempts) >= cfg.max_eval_attempts:
            return False
        trials = list(self._tuning(best.id).values())
        s = summarise(trials)
        if s['n'] < cfg.eval_min_trials and s['n'] and s['success_rate'] >= cfg.eval_min_ci_low:
            self._ensure(best.id, self.tuning_seeds[:cfg.eval_min_trials])
            s = summarise(list(self._tuning(best.id).values()))
        low, _ = wilson_interval(s['successes'], s['n'])
        return s['n'] >= cfg.eval_min_trials and low >= cfg.eval_min_ci_low

    def _open_evaluation(self) -> dict[str, Any] | None:
        done = {e.data['attempt'] for e in self._events(EVALUATION_DONE)}
        for e in self._events(EVALUATION_STARTED):
            if e.data['attempt'] not in done:
                return e.data
        return None

    def _used_eval_seeds(self) -> set[int]:
        return {int(t.seed) for t in self.store.trials_for(self.exp, is_eval=True)}

    def _start_evaluation(self, best: Revision) -> dict[str, Any]:
        lo, hi = self.task.evaluation_seeds
        used = self._used_eval_seeds()
        first = max(used) + 1 if used else lo
        data = {'attempt': len(self._events(EVALUATION_STARTED)) + 1, 'revision': best.id,
                'first_seed': first, 'goal': self.config.goal_consecutive}
        self._event(EVALUATION_STARTED, data)
        self._say(f"evaluation #{data['attempt']} of {best.id[:12]} on held-out seeds from "
                  f'{first} (goal {self.config.goal_consecutive} in a row)')
        return data

    def _streak(self, revision: str, first_seed: int) -> tuple[int, bool, list[Trial]]:
        """(consecutive successes from ``first_seed`` in seed order, ended by a failure,
        the attempt's valid trials)."""
        trials = sorted((t for t in self.store.trials_for(self.exp, revision=revision,
                                                          is_eval=True)
                         if t.seed >= first_seed and t.outcome not in VOID_OUTCOMES),
                        key=lambda t: t.seed)
        streak = 0
        for t in trials:
            if not t.success:
                return streak, True, trials
            streak += 1
        return streak, False, trials

    def _evaluate(self, data: Mapping[str, Any]) -> None:
        cfg = self.config
        rev, first = data['revision'], int(data['first_seed'])
        lo, hi = self.task.evaluation_seeds
        # A failed evaluation goes back to the search: its next proposal is made meanwhile.
        self._start_prefetch(self._best())
        while True:
            streak, failed, trials = self._streak(rev, first)
            goal_met = streak >= cfg.goal_consecutive
            if failed or goal_met:
                break
            used = self._used_eval_seeds()
            batch: list[int] = []
            seed = first
            while len(batch) < min(cfg.cells, cfg.goal_consecutive - streak) and seed <= hi:
                if seed not in used:
                    batch.append(seed)
                seed += 1
            if not batch:
                self._finish_evaluation(data, streak, trials, False, exhausted=True)
                raise _SeedsExhausted
            self._ensure(rev, batch, is_eval=True)
        self._finish_evaluation(data, streak, trials, goal_met)

    def _finish_evaluation(self, data: Mapping[str, Any], streak: int, trials: list[Trial],
                           goal_met: bool, *, exhausted: bool = False) -> None:
        seeds = [t.seed for t in trials]
        self._event(EVALUATION_DONE, {
            'attempt': data['attempt'], 'revision': data['revision'], 'streak': streak,
            'n': len(trials), 'first_seed': data['first_seed'],
            'last_seed': max(seeds) if seeds else None, 'goal_met': goal_met,
            'seeds_exhausted': exhausted})
        verdict = 'GOAL MET' if goal_met else ('seeds exhausted' if exhausted else
                                               'streak broken')
        self._say(f"evaluation #{data['attempt']} of {data['revision'][:12]}: {streak} "
                  f'consecutive / goal {self.config.goal_consecutive} over {len(trials)} '
                  f'held-out seed(s): {verdict}')

    def _goal_met(self) -> bool:
        return any(e.data.get('goal_met') for e in self._events(EVALUATION_DONE))

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> AgentResult:
        """Search until the goal is met or the budget is spent; resumable (module docstring).

        Returns:
            The cumulative result of the experiment; the recipe is written too.

        Raises:
            TrialsStalledError: the trials port stopped recording trials.
            PolicyRejectedError: the seed policy itself fails validation.
        """
        self._start_s = self.clock.now_s()
        self._setup()
        resumed = bool(self._events(CANDIDATE_STARTED) or self._events(EVALUATION_STARTED))
        self._event(AGENT_STARTED, {
            'budget_s': self.config.budget_s, 'resumed': resumed})
        if resumed:
            self._say(f'resuming experiment {self.exp} from the store')
        self._n_run = 0
        stop = 'budget'
        try:
            while True:
                if self._goal_met():
                    stop = 'goal'
                    break
                self._check_budget()
                open_eval = self._open_evaluation()
                if open_eval is not None:
                    self._evaluate(open_eval)
                    continue
                cand = self._open_candidate()
                if cand is not None:
                    self._say(f'resuming candidate #{cand.number} {cand.revision[:12]}')
                    self._try(cand)
                    continue
                best = self._best()
                if best is not None and self._gate(best):
                    self._evaluate(self._start_evaluation(best))
                    continue
                if self.config.max_candidates and self._n_run >= self.config.max_candidates:
                    stop = 'max_candidates'
                    break
                self._n_run += 1
                cand = self._borrow(best) or self._propose(best)
                if cand is not None:
                    self._try(cand)
        except _OutOfBudget:
            stop = 'budget'
        except _SeedsExhausted:
            stop = 'eval_seeds_exhausted'
        except _Stopped:
            stop = 'stopped'
        finally:
            # A prepared but unstarted proposal stays an asked optuna trial: a resumed run
            # re-uses its params (_next_proposal).
            self._join_prefetch()
        self._event(AGENT_STOPPED, {'stop_reason': stop})
        # 'stopped' (budget, seeds, signal) is resumable: the same command continues it.
        self.store.set_experiment_status(self.exp, 'done' if stop == 'goal' else 'stopped')
        recipe = write_recipe(self.store, self.exp, self.config.task, self.home / 'recipes',
                              self.compare_config)
        result = self.result(stop, recipe)
        self._say(f"stopped ({stop}): best {(result.best_revision or '-')[:12]} tuning "
                  f"{result.best_tuning.get('successes', 0)}/{result.best_tuning.get('n', 0)}, "
                  f'best evaluation streak {result.best_eval_streak}/'
                  f'{self.config.goal_consecutive}, {result.n_candidates} candidates, '
                  f'{result.n_trials} trials')
        return result

    def result(self, stop_reason: str = '', recipe: Path | None = None) -> AgentResult:
        """The experiment's result as the store holds it now."""
        exp = self.store.experiment(self.exp)
        best = self._best()
        tuning = summarise(list(self._tuning(best.id).values())) if best else {}
        evals = self._events(EVALUATION_DONE)
        eval_trials = self.store.trials_for(self.exp, is_eval=True)
        tts = None
        for e in evals:
            if e.data.get('goal_met'):
                _s, _f, trials = self._streak(e.data['revision'], int(e.data['first_seed']))
                tts = time_to_success([(t.ended_at, t.success) for t in trials],
                                      consecutive=self.config.goal_consecutive,
                                      start_s=exp.created_at)
                break
        done = self._events(CANDIDATE_DONE)
        return AgentResult(
            experiment=self.exp, task=self.config.task, goal_met=self._goal_met(),
            stop_reason=stop_reason, best_revision=best.id if best else None,
            best_tuning=tuning, best_eval_streak=max((e.data['streak'] for e in evals),
                                                     default=0),
            goal_consecutive=self.config.goal_consecutive,
            eval_seeds_used=len({t.seed for t in eval_trials}),
            last_eval_seed=max((int(t.seed) for t in eval_trials), default=None),
            wall_time_s=self._elapsed_s(), time_to_success_s=tts,
            n_candidates=len(done), n_trials=self.store.count_trials(self.exp),
            optuna_trials=len(self.study.get_trials(deepcopy=False)) if self.study else 0,
            recipe_path=str(recipe or ''),
            extra={'decisions': _count(e.data.get('decision', '') for e in done),
                   'tuning_seeds': [self.tuning_seeds[0], self.tuning_seeds[-1]],
                   'evaluation_attempts': len(evals)})


class _SeedsExhausted(Exception):  # noqa: N818 - control flow, never escapes run()
    pass


class _Stopped(Exception):  # noqa: N818 - control flow, never escapes run()
    pass


# --- helpers ---------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text(encoding='utf-8')) or {}
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: must be a mapping (name, task, version, params, ...)')
    return data


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ''


def _fmt(x: Any) -> str:
    return f'{x:g}' if isinstance(x, float) else repr(x)


def _log_ratio(old: Any, new: Any) -> float:
    try:
        if float(old) > 0 and float(new) > 0:
            return math.log(float(new) / float(old))
    except (TypeError, ValueError):
        pass
    return 1.0 if old != new else 0.0


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
