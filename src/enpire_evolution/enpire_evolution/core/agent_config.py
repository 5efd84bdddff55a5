"""Config of the built-in search agent (``enpire improve --agent builtin``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from enpire_common.config import require
from enpire_common.tasks import DEFAULT_TASK


@dataclass(frozen=True)
class BuiltinAgentConfig:
    """What the built-in agent searches, how it spends trials, and when it stops.

    Attributes:
        task: task name (``config/tasks/<task>``).
        experiment: experiment id; empty means ``improve-<task>``.
        agent_id: the agent's id in the store.
        branch: its branch (store name; the git branch is ``<experiment>/<branch>``).
        cell: the cell recorded on the agent row.
        cells: cells the trials port runs on (evaluation batches this many seeds at once).
        budget_min: wall-clock budget of one ``run`` (the agent stops starting work after it).
        goal_consecutive: consecutive held-out evaluation successes that meet the goal.
        stages: successive-halving trial counts on the common tuning seed block; the first
            stage screens, later stages are compared with :func:`core.compare.compare`.
        promising_slack: after the first stage a candidate goes on only if its successes are
            at least the best's on the same seeds minus this.
        eval_min_trials: tuning trials the best needs before a held-out evaluation.
        eval_min_ci_low: Wilson lower bound of the best's tuning success rate needed too.
        max_eval_attempts: held-out evaluations per revision (1: a revision that broke its
            streak must be beaten in tuning before the next evaluation; no seed shopping).
        score_weight: objective told to optuna = success rate + score_weight * mean score
            (the task score, e.g. coverage, guides the search while successes are rare).
        sampler_seed: seed of the TPE sampler.
        n_startup_trials: random proposals before TPE models the space.
        sig_digits: significant digits of sampled floats written to policy.yaml.
        max_candidates: stop after this many candidates in one run (0 = no limit).
        search_overrides: per-param overrides of the derived search space (see
            :mod:`core.search_space`).
        study_url: optuna storage: empty = a journal file under ENPIRE_HOME/optuna/, or an
            RDB URL (e.g. the fleet's PostgreSQL) for optuna's RDBStorage.
        max_stalls: consecutive trial runs that record nothing before the agent gives up.
        pipeline: prepare (ask, write, validate, snapshot) the next candidate in a background
            thread while the current one's trials run, so the cell does not wait for the
            agent (see :mod:`core.prefetch`); False = strictly one step after another.
        escalate_after: this many finished candidates in a row without a keep make the agent
            try the other regimes (tool calling, BC, residual RL; :mod:`core.escalation`),
            each once; 0 = never.
        bc_min_episodes: successful recorded episodes of the best revision BC needs.
        bc_epochs: training epochs of the BC escalation.
        rl_rounds, rl_episodes: the residual RL escalation's rounds and trials per round
            (even: antithetic pairs), run on seeds at the top of the tuning range.
    """

    task: str = DEFAULT_TASK
    experiment: str = ''
    agent_id: str = 'builtin'
    branch: str = 'agent-0'
    cell: str = 'cell_0'
    cells: int = 1
    budget_min: float = 30.0
    goal_consecutive: int = 50
    stages: tuple[int, ...] = (6, 20, 40)
    promising_slack: int = 1
    eval_min_trials: int = 20
    eval_min_ci_low: float = 0.8
    max_eval_attempts: int = 1
    score_weight: float = 0.1
    sampler_seed: int = 0
    n_startup_trials: int = 8
    sig_digits: int = 3
    max_candidates: int = 0
    search_overrides: Mapping[str, Any] = field(default_factory=dict)
    study_url: str = ''
    max_stalls: int = 2
    pipeline: bool = True
    escalate_after: int = 6
    bc_min_episodes: int = 5
    bc_epochs: int = 30
    rl_rounds: int = 3
    rl_episodes: int = 8

    def __post_init__(self) -> None:
        require(bool(self.task), 'task', self.task, 'must name a task')
        require(self.cells >= 1, 'cells', self.cells, 'must be >= 1')
        require(self.budget_min > 0, 'budget_min', self.budget_min, 'must be > 0 minutes')
        require(self.goal_consecutive >= 1, 'goal_consecutive', self.goal_consecutive,
                'must be >= 1')
        stages = tuple(self.stages)
        require(len(stages) >= 2 and all(a < b for a, b in zip(stages, stages[1:], strict=False))
                and stages[0] >= 1, 'stages', self.stages,
                'must be >= 2 strictly increasing trial counts, e.g. (6, 20, 40)')
        require(self.promising_slack >= 0, 'promising_slack', self.promising_slack,
                'must be >= 0')
        require(1 <= self.eval_min_trials <= stages[-1], 'eval_min_trials',
                self.eval_min_trials, f'must be in [1, last stage {stages[-1]}]')
        require(0.0 <= self.eval_min_ci_low < 1.0, 'eval_min_ci_low', self.eval_min_ci_low,
                'must be in [0, 1)')
        require(self.max_eval_attempts >= 1, 'max_eval_attempts', self.max_eval_attempts,
                'must be >= 1')
        require(self.score_weight >= 0, 'score_weight', self.score_weight, 'must be >= 0')
        require(self.n_startup_trials >= 0, 'n_startup_trials', self.n_startup_trials,
                'must be >= 0')
        require(1 <= self.sig_digits <= 12, 'sig_digits', self.sig_digits, 'must be in [1, 12]')
        require(self.max_candidates >= 0, 'max_candidates', self.max_candidates,
                'must be >= 0 (0 = no limit)')
        require(self.max_stalls >= 1, 'max_stalls', self.max_stalls, 'must be >= 1')
        require(self.escalate_after >= 0, 'escalate_after', self.escalate_after,
                'must be >= 0 (0 = never)')
        require(self.bc_min_episodes >= 1, 'bc_min_episodes', self.bc_min_episodes,
                'must be >= 1')
        require(self.bc_epochs >= 1, 'bc_epochs', self.bc_epochs, 'must be >= 1')
        require(self.rl_rounds >= 1, 'rl_rounds', self.rl_rounds, 'must be >= 1')
        require(self.rl_episodes >= 2 and self.rl_episodes % 2 == 0, 'rl_episodes',
                self.rl_episodes, 'must be an even number >= 2 (antithetic pairs)')

    @property
    def experiment_id(self) -> str:
        return self.experiment or f'improve-{self.task}'

    @property
    def budget_s(self) -> float:
        return self.budget_min * 60.0

    @property
    def git_branch(self) -> str:
        return f'{self.experiment_id}/{self.branch}'
