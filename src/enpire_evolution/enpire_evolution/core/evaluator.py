"""The built-in agent's evaluator: held-out evaluation of the best, and the goal.

When the best reaches a high tuning rate (Wilson lower bound >= ``eval_min_ci_low`` over
>= ``eval_min_trials``), it is evaluated on fresh held-out evaluation seeds, consumed in order
across the whole experiment (no seed is used twice, no seed shopping), one batch at a time,
stopping at the first failure. The goal is met when an evaluation reaches
``goal_consecutive`` consecutive successes. A revision gets ``max_eval_attempts`` attempts.

Events ``evaluation_started`` / ``evaluation_done`` (key ``attempt``) delimit an attempt; one
started but not done is finished on restart by running only the seeds the store lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from enpire_evolution.core.agent_config import BuiltinAgentConfig
from enpire_evolution.core.judge import TrialSummary
from enpire_evolution.core.ledger import EVALUATION_DONE, EVALUATION_STARTED, Ledger
from enpire_evolution.core.metrics import time_to_success, wilson_interval
from enpire_evolution.core.store import Revision, Trial
from enpire_evolution.core.trial_runner import TrialRunner
from enpire_evolution.core.trials_port import VOID_OUTCOMES


class SeedsExhausted(Exception):  # noqa: N818 - control flow, never escapes BuiltinAgent.run()
    """The task's evaluation seed range is used up."""


@dataclass(frozen=True)
class EvalAttempt:
    """One held-out evaluation of a revision, from ``first_seed`` on."""

    attempt: int
    revision: str
    first_seed: int
    goal: int

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> EvalAttempt:
        return cls(data['attempt'], data['revision'], data['first_seed'], data.get('goal', 0))

    def data(self) -> dict[str, Any]:
        return {'attempt': self.attempt, 'revision': self.revision,
                'first_seed': self.first_seed, 'goal': self.goal}


@dataclass(frozen=True)
class Streak:
    """Consecutive successes of an attempt in seed order, and whether a failure ended it."""

    length: int
    broken: bool
    trials: list[Trial]


class Evaluator:
    """Decides when the best is evaluated, runs the attempt and says whether the goal is met.

    Args:
        config: the agent's config (goal and gate thresholds, cells per batch).
        ledger: the agent's events and the experiment's trials.
        runner: gets the evaluation and gate trials run.
        evaluation_seeds: the task's held-out seed range (inclusive).
        tuning_seeds: the common tuning seed block (the gate may extend the best's trials).
        say: progress lines.
    """

    def __init__(self, config: BuiltinAgentConfig, ledger: Ledger, runner: TrialRunner,
                 evaluation_seeds: tuple[int, int], tuning_seeds: Sequence[int],
                 say: Callable[[str], None]) -> None:
        self.config = config
        self.ledger = ledger
        self.runner = runner
        self.evaluation_seeds = evaluation_seeds
        self.tuning_seeds = tuple(tuning_seeds)
        self.say = say

    def gate(self, best: Revision) -> bool:
        """Whether the best has earned a held-out evaluation (extending its tuning trials
        first when its rate is high but it has too few of them)."""
        cfg = self.config
        attempts = [e for e in self.ledger.events(EVALUATION_STARTED)
                    if e.data['revision'] == best.id]
        if len(attempts) >= cfg.max_eval_attempts:
            return False
        s = TrialSummary.of(list(self.ledger.tuning(best.id).values()))
        if s.n < cfg.eval_min_trials and s.n and s.success_rate >= cfg.eval_min_ci_low:
            self.runner.ensure(best.id, self.tuning_seeds[:cfg.eval_min_trials])
            s = TrialSummary.of(list(self.ledger.tuning(best.id).values()))
        low, _ = wilson_interval(s.successes, s.n)
        return s.n >= cfg.eval_min_trials and low >= cfg.eval_min_ci_low

    def unfinished(self) -> EvalAttempt | None:
        """An attempt started but not done (the agent was killed during it)."""
        done = {e.data['attempt'] for e in self.ledger.events(EVALUATION_DONE)}
        for e in self.ledger.events(EVALUATION_STARTED):
            if e.data['attempt'] not in done:
                return EvalAttempt.from_event(e.data)
        return None

    def used_seeds(self) -> set[int]:
        return {int(t.seed) for t in self.ledger.eval_trials()}

    def start(self, best: Revision) -> EvalAttempt:
        """Open an attempt on the next unused held-out seeds."""
        lo, _hi = self.evaluation_seeds
        used = self.used_seeds()
        attempt = EvalAttempt(len(self.ledger.events(EVALUATION_STARTED)) + 1, best.id,
                              max(used) + 1 if used else lo, self.config.goal_consecutive)
        self.ledger.add(EVALUATION_STARTED, attempt.data())
        self.say(f'evaluation #{attempt.attempt} of {best.id[:12]} on held-out seeds from '
                 f'{attempt.first_seed} (goal {self.config.goal_consecutive} in a row)')
        return attempt

    def streak(self, revision: str, first_seed: int) -> Streak:
        """The attempt's valid trials from ``first_seed`` and their run of successes."""
        trials = sorted((t for t in self.ledger.store.trials_for(
                            self.ledger.experiment, revision=revision, is_eval=True)
                         if t.seed >= first_seed and t.outcome not in VOID_OUTCOMES),
                        key=lambda t: t.seed)
        length = 0
        for t in trials:
            if not t.success:
                return Streak(length, True, trials)
            length += 1
        return Streak(length, False, trials)

    def run(self, attempt: EvalAttempt) -> None:
        """Run the attempt until its streak breaks or meets the goal.

        Raises:
            SeedsExhausted: no unused evaluation seed is left (the attempt is closed).
            OutOfBudget, Stopped, TrialsStalledError: from the trial runner (the attempt
                stays open for a resumed run).
        """
        cfg = self.config
        _lo, hi = self.evaluation_seeds
        while True:
            s = self.streak(attempt.revision, attempt.first_seed)
            if s.broken or s.length >= cfg.goal_consecutive:
                break
            used = self.used_seeds()
            batch: list[int] = []
            seed = attempt.first_seed
            while len(batch) < min(cfg.cells, cfg.goal_consecutive - s.length) and seed <= hi:
                if seed not in used:
                    batch.append(seed)
                seed += 1
            if not batch:
                self._finish(attempt, s, False, exhausted=True)
                raise SeedsExhausted
            self.runner.ensure(attempt.revision, batch, is_eval=True)
        self._finish(attempt, s, s.length >= cfg.goal_consecutive)

    def _finish(self, attempt: EvalAttempt, s: Streak, goal_met: bool, *,
                exhausted: bool = False) -> None:
        seeds = [t.seed for t in s.trials]
        self.ledger.add(EVALUATION_DONE, {
            'attempt': attempt.attempt, 'revision': attempt.revision, 'streak': s.length,
            'n': len(s.trials), 'first_seed': attempt.first_seed,
            'last_seed': max(seeds) if seeds else None, 'goal_met': goal_met,
            'seeds_exhausted': exhausted})
        verdict = 'GOAL MET' if goal_met else ('seeds exhausted' if exhausted else
                                               'streak broken')
        self.say(f'evaluation #{attempt.attempt} of {attempt.revision[:12]}: {s.length} '
                 f'consecutive / goal {self.config.goal_consecutive} over {len(s.trials)} '
                 f'held-out seed(s): {verdict}')

    def goal_met(self) -> bool:
        return any(e.data.get('goal_met') for e in self.ledger.events(EVALUATION_DONE))

    def time_to_success_s(self, start_s: float) -> float | None:
        """From ``start_s`` to the trial that completed the first goal-meeting streak."""
        for e in self.ledger.events(EVALUATION_DONE):
            if e.data.get('goal_met'):
                trials = self.streak(e.data['revision'], int(e.data['first_seed'])).trials
                return time_to_success([(t.ended_at, t.success) for t in trials],
                                       consecutive=self.config.goal_consecutive,
                                       start_s=start_s)
        return None
