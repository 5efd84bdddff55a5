"""The built-in agent's time budget, and the one way it gets trials run: ``ensure``.

:meth:`TrialRunner.ensure` makes the store hold a trial of a revision on every given seed,
asking the trials port only for the seeds the store lacks (so a resumed run repeats nothing),
and gives up with :class:`TrialsStalledError` when the port keeps recording nothing. A fleet
splits the trials of a revision every agent runs through the ``batch`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from enpire_common.clock import Clock
from enpire_common.errors import BudgetExhaustedError
from enpire_evolution.core.ledger import Ledger
from enpire_evolution.core.trials_port import TrialOutcome, TrialsPort

LogFn = Callable[[str], None]
#: ``batch(revision, seeds, missing) -> seeds to run now`` (a subset of ``missing``).
BatchFn = Callable[[str, Sequence[int], list[int]], list[int]]


class TrialsStalledError(BudgetExhaustedError):
    """The trials port returned without recording the requested trials, repeatedly."""


class OutOfBudget(Exception):  # noqa: N818 - control flow, never escapes BuiltinAgent.run()
    """The budget is spent: the agent stops starting work."""


class Stopped(Exception):  # noqa: N818 - control flow, never escapes BuiltinAgent.run()
    """The agent was told to stop (a fleet peer met the goal)."""


def run_all(_revision: str, _seeds: Sequence[int], missing: list[int]) -> list[int]:
    """The batch of an agent alone: every missing seed at once."""
    return missing


class Budget:
    """Wall-clock budget of one run, on an injected clock.

    Args:
        clock: monotonic clock.
        budget_s: how long one run may start work.
        stopped: whether to stop starting work now (besides the budget).
    """

    def __init__(self, clock: Clock, budget_s: float,
                 stopped: Callable[[], bool] = lambda: False) -> None:
        self.clock = clock
        self.budget_s = budget_s
        self.stopped = stopped
        self._start_s = 0.0

    def start(self) -> None:
        self._start_s = self.clock.now_s()

    def elapsed_s(self) -> float:
        return self.clock.now_s() - self._start_s

    def remaining_s(self) -> float:
        return self.budget_s - self.elapsed_s()

    def check(self) -> None:
        """Raises OutOfBudget when the budget is spent, Stopped when told to stop."""
        if self.remaining_s() <= 0:
            raise OutOfBudget
        if self.stopped():
            raise Stopped


class TrialRunner:
    """Gets trials recorded in the store through the trials port, within the budget.

    Args:
        ledger: the agent's view of the store (what is recorded already).
        trials: the trials port (it records each trial itself).
        revision_dir: a revision id -> its snapshot directory.
        budget: the run's budget (checked before each batch, passed on to the port).
        say: one progress line per trial.
        max_stalls: consecutive runs that record nothing before TrialsStalledError.
        batch: which missing seeds to run now (default all of them).
    """

    def __init__(self, ledger: Ledger, trials: TrialsPort, revision_dir: Callable[[str], Path],
                 budget: Budget, say: LogFn, *, max_stalls: int,
                 batch: BatchFn = run_all) -> None:
        self.ledger = ledger
        self.trials = trials
        self.revision_dir = revision_dir
        self.budget = budget
        self.say = say
        self.max_stalls = max_stalls
        self.batch = batch
        self._stalls = 0

    def _missing(self, revision: str, seeds: Sequence[int], is_eval: bool) -> list[int]:
        done = self.ledger.seeds_done(revision, is_eval)
        return [s for s in seeds if s not in done]

    def ensure(self, revision: str, seeds: Sequence[int], *, is_eval: bool = False) -> None:
        """Make the store hold a trial of ``revision`` on every seed (runs only the missing
        ones).

        Raises:
            OutOfBudget: time ran out first.
            Stopped: the agent was told to stop first.
            TrialsStalledError: the port recorded nothing ``max_stalls`` times in a row.
        """
        while True:
            missing = self._missing(revision, seeds, is_eval)
            if not missing:
                self._stalls = 0
                return
            self.budget.check()
            before = len(missing)
            missing = self.batch(revision, seeds, missing)
            self.trials.run(experiment_id=self.ledger.experiment, revision_id=revision,
                            revision_dir=self.revision_dir(revision), seeds=missing,
                            max_wall_time_s=max(0.0, self.budget.remaining_s()),
                            on_trial=self._progress(revision, len(missing), is_eval))
            after = len(self._missing(revision, seeds, is_eval))
            if after >= before and self.budget.remaining_s() > 0:
                self._stalls += 1
                if self._stalls >= self.max_stalls:
                    raise TrialsStalledError(
                        f'the trials port recorded none of {before} trial(s) of revision '
                        f'{revision[:12]} in {self._stalls} attempts; check the rollout node '
                        'and the cells (enpire doctor), then run the same command to resume')

    def _progress(self, revision: str, n_missing: int,
                  is_eval: bool) -> Callable[[TrialOutcome], None]:
        """One line per trial: a candidate's trials can take minutes on a real cell."""
        done = {'n': 0, 'ok': 0}
        kind = 'eval' if is_eval else 'tune'

        def on_trial(t: Any) -> None:
            done['n'] += 1
            done['ok'] += bool(t.success)
            self.say(f"  {revision[:12]} trial {done['n']}/{n_missing} seed {t.seed} "
                     f"{kind}: {t.outcome} (score {t.score:.2f}) | {done['ok']}/{done['n']}")

        return on_trial
