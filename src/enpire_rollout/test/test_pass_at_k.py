"""pass@k in the trial runner: in-context retries of a subtask without a reset (fakes)."""

from __future__ import annotations

import pytest

from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError
from enpire_rollout.core.fakes import FakeCell, FakeController, FakeVerifier
from enpire_rollout.core.trial import BudgetConfig, TrialRunner

# Seed s needs 10 * s steps in all; each attempt may take 15 steps.
STEPS = 15


def run(seeds, attempts, solve_steps=lambda s: 10 * s, **controller_kw):
    clock = FakeClock()
    controller = FakeController(clock, solve_steps=solve_steps, **controller_kw)
    cell = FakeCell()
    runner = TrialRunner(cell=cell, controller=controller, verifier=FakeVerifier(controller),
                         recorder=None, clock=clock, control_rate_hz=10.0,
                         trial_id_factory=lambda c, s: f'{c}-{s}')
    summary = runner.run(experiment_id='e', revision_id='r', cell_id='cell_0', task='push_t',
                         seeds=seeds, budget=BudgetConfig(max_episode_steps=STEPS,
                                                          attempts=attempts))
    return summary, cell, controller


def test_failed_subtasks_are_retried_without_a_reset_up_to_k_attempts() -> None:
    # seed 1: 10 steps (first attempt); 2: 20 (second); 3: 30 (second); 5: 50 (never in 3).
    summary, cell, controller = run([1, 2, 3, 5], attempts=3)
    assert cell.resets == [1, 2, 3, 5]  # one reset per subtask, none per retry
    assert [len(t.attempts) for t in summary.trials] == [1, 2, 2, 3]
    assert [t.outcome for t in summary.trials] == ['success', 'success', 'success', 'failure']
    assert controller.retries == [(2, 1), (3, 1), (5, 1), (5, 2)]
    assert [a['retry_index'] for a in summary.trials[3].attempts] == [0, 1, 2]
    assert summary.trials[3].reason == 'attempt 3/3: step limit 15 reached'
    assert summary.trials[1].steps == sum(a['steps'] for a in summary.trials[1].attempts)
    assert summary.pass_at(1) == 0.25 and summary.pass_at(3) == 0.75
    d = summary.to_dict()
    assert (d['pass_at_1'], d['pass_at_k'], d['k']) == (0.25, 0.75, 3)


def test_one_attempt_is_the_old_behaviour_with_no_pass_at_k_in_the_summary() -> None:
    summary, cell, controller = run([1, 2], attempts=1)
    assert [t.outcome for t in summary.trials] == ['success', 'failure']
    assert controller.retries == [] and 'pass_at_k' not in summary.to_dict()
    assert summary.pass_at(1) == 0.5


def test_a_policy_fault_ends_the_subtask_without_more_attempts() -> None:
    summary, _cell, controller = run([2], attempts=4, fault_seeds={2})
    assert [t.outcome for t in summary.trials] == ['policy_fault']
    assert len(summary.trials[0].attempts) == 1 and controller.retries == []


def test_attempts_below_one_are_rejected() -> None:
    with pytest.raises(ConfigError, match='budget.attempts.*must be >= 1'):
        BudgetConfig(attempts=0)


def test_the_controllers_counters_are_summed_over_a_trials_attempts() -> None:
    # seed 2 takes two attempts, seed 1 one: late acts per episode add up per trial.
    summary, _, _ = run([1, 2], attempts=3, late_acts_per_episode=4)
    assert [t.controller for t in summary.trials] == [{'late_acts': 4}, {'late_acts': 8}]
    assert summary.trials[1].to_dict()['controller'] == {'late_acts': 8}
