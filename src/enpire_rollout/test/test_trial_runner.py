from __future__ import annotations

import pytest

from enpire_common.clock import FakeClock
from enpire_common.errors import ConfigError
from enpire_rollout.core.fakes import FakeCell, FakeController, FakeVerifier, ListRecorder
from enpire_rollout.core.trial import BudgetConfig, TrialRunner, seed_sequence


def make_runner(clock=None, cancel_after=None, **controller_kw):
    clock = clock or FakeClock()
    controller = FakeController(clock, **controller_kw)
    cell = FakeCell()
    verifier = FakeVerifier(controller)
    recorder = ListRecorder()
    finished = []

    def cancelled():
        return cancel_after is not None and len(finished) >= cancel_after

    runner = TrialRunner(cell=cell, controller=controller, verifier=verifier, recorder=recorder,
                         clock=clock, control_rate_hz=10.0, on_trial=finished.append,
                         cancelled=cancelled, trial_id_factory=lambda c, s: f'{c}-{s}')
    return runner, cell, controller, verifier, recorder


def run(runner, seeds, **budget):
    return runner.run(experiment_id='e', revision_id='r', cell_id='cell_0', task='push_t',
                      seeds=seeds, budget=BudgetConfig(**budget))


def test_a_policy_that_solves_every_seed_succeeds_every_trial():
    runner, cell, controller, verifier, recorder = make_runner(solve_steps=lambda s: 12)
    summary = run(runner, [1, 2, 3])
    assert [t.outcome for t in summary.trials] == ['success'] * 3
    assert summary.success_rate == 1.0 and summary.stop_reason == 'completed'
    assert cell.resets == [1, 2, 3] and cell.safe_calls == 3
    assert [t.record_dir for t in recorder.finished] == ['/records/cell_0-1', '/records/cell_0-2',
                                                         '/records/cell_0-3']
    # verify period 0.5 s at 10 Hz = every 5 steps: success seen at step 15
    assert summary.trials[0].steps == 15


def test_the_controller_holds_at_each_verdict_and_goes_on_only_after_a_failing_one():
    # A lockstep cell stands still on the tick a verdict judges: the runner names those
    # ticks (every verify period, and the step limit), releases the cell after each verdict
    # that is not a success, and never after the one that ends the episode.
    runner, _, controller, verifier, _ = make_runner(solve_steps=lambda s: 12)
    (trial,) = run(runner, [1], max_episode_steps=40).trials
    assert trial.outcome == 'success' and trial.steps == 15
    assert (controller.checkpoints.every, controller.checkpoints.last) == (5, 40)
    # verdicts at steps 5, 10 (resumed after each), 15 (success: held), then the final one
    assert verifier.calls == 4 and controller.resumes == 2
    runner, _, controller, verifier, _ = make_runner(solve_steps=lambda s: None)
    (trial,) = run(runner, [1], max_episode_steps=12).trials
    assert trial.outcome == 'failure' and trial.steps == 12
    assert controller.resumes == 2    # after steps 5 and 10, not after the step limit


def test_an_unsolved_episode_ends_as_failure_at_the_step_limit():
    runner, *_ = make_runner(solve_steps=lambda s: None)
    summary = run(runner, [4], max_episode_steps=30)
    (trial,) = summary.trials
    assert trial.outcome == 'failure' and trial.steps == 30
    assert 'step limit 30' in trial.reason and trial.score == 0.4


def test_a_stuck_cell_ends_as_timeout_on_the_episode_time_limit():
    runner, *_ = make_runner(solve_steps=lambda s: None, step_time_s=2.0)
    (trial,) = run(runner, [4], max_episode_time_s=5.0).trials
    assert trial.outcome == 'timeout' and trial.steps == 3


def test_faults_and_aborts_are_recorded_with_their_reasons():
    runner, *_ = make_runner(fault_seeds={1}, abort_seeds={2}, start_fault_seeds={3})
    trials = run(runner, [1, 2, 3, 4], max_consecutive_faults=0).trials
    assert [t.outcome for t in trials] == ['policy_fault', 'safety_abort', 'policy_fault',
                                           'success']
    assert trials[0].reason == 'act() returned NaN' and trials[0].error_code == 0
    assert 'outside bounds' in trials[1].reason
    assert trials[2].error_code == 402


def test_budget_stops_after_three_consecutive_faults():
    runner, *_ = make_runner(fault_seeds={1, 2, 3, 4})
    summary = run(runner, [1, 2, 3, 4, 5], max_consecutive_faults=3)
    assert len(summary.trials) == 3 and summary.stop_reason == 'consecutive_faults'


def test_a_success_between_faults_resets_the_consecutive_count():
    runner, *_ = make_runner(fault_seeds={1, 2, 4, 5})
    summary = run(runner, [1, 2, 3, 4, 5, 6], max_consecutive_faults=3)
    assert len(summary.trials) == 6 and summary.stop_reason == 'completed'


def test_reset_failures_are_trials_with_outcome_reset_failed():
    clock = FakeClock()
    controller = FakeController(clock)
    runner = TrialRunner(cell=FakeCell(failing_seeds={2}), controller=controller,
                         verifier=FakeVerifier(controller), recorder=None, clock=clock,
                         control_rate_hz=10.0)
    trials = run(runner, [1, 2, 3]).trials
    assert [t.outcome for t in trials] == ['success', 'reset_failed', 'success']
    assert trials[1].error_code == 202 and controller.episodes == [1, 3]


def test_a_cell_that_paused_itself_ends_the_run_at_once():
    """The reset server paused the cell (CELL_PAUSED, an alert): the trial is reset_failed
    and no further trial is asked of a cell that waits for a person."""
    from enpire_common.errors import CellPausedError

    class PausingCell(FakeCell):
        def reset(self, seed, timeout_s):
            if seed == 2:
                self.resets.append(seed)
                raise CellPausedError('cell paused after 6 consecutive failed reset attempts')
            return super().reset(seed, timeout_s)

    clock = FakeClock()
    controller = FakeController(clock)
    cell = PausingCell()
    runner = TrialRunner(cell=cell, controller=controller, verifier=FakeVerifier(controller),
                         recorder=None, clock=clock, control_rate_hz=10.0)
    summary = run(runner, [1, 2, 3, 4], max_consecutive_faults=3)
    assert [t.outcome for t in summary.trials] == ['success', 'reset_failed']
    assert summary.stop_reason == 'cell_paused' and summary.trials[1].error_code == 206
    assert cell.resets == [1, 2]


def test_a_reset_that_times_out_fails_only_its_trial_and_dead_cells_hit_the_fault_budget():
    clock = FakeClock()
    controller = FakeController(clock)
    runner = TrialRunner(cell=FakeCell(timeout_seeds={2, 4, 5, 6}), controller=controller,
                         verifier=FakeVerifier(controller), recorder=None, clock=clock,
                         control_rate_hz=10.0)
    summary = run(runner, [1, 2, 3, 4, 5, 6, 7], max_consecutive_faults=3)
    assert [t.outcome for t in summary.trials] == ['success', 'reset_failed', 'success',
                                                   'reset_failed', 'reset_failed',
                                                   'reset_failed']
    assert 'reset timed out: reset_cell did not answer' in summary.trials[1].reason
    assert summary.stop_reason != 'completed' and controller.episodes == [1, 3]


def test_wall_time_budget_stops_before_starting_another_trial():
    runner, *_ = make_runner(solve_steps=lambda s: 50)
    summary = run(runner, range(100), max_wall_time_s=12.0)
    # each trial takes 5 s of (fake) time: 50 steps at 10 Hz
    assert len(summary.trials) == 3 and summary.stop_reason == 'budget_wall_time'


def test_cancel_stops_cleanly_and_leaves_the_cell_safe():
    runner, cell, *_ = make_runner(cancel_after=2)
    summary = run(runner, [1, 2, 3, 4])
    assert len(summary.trials) == 2 and summary.stop_reason == 'cancelled'
    assert cell.safe_calls == 2


@pytest.mark.parametrize(('field', 'value', 'message'), [
    ('max_episode_steps', 0, 'budget.max_episode_steps=0 is invalid'),
    ('verify_period_s', -1.0, 'budget.verify_period_s=-1.0 is invalid'),
    ('max_wall_time_s', -5.0, 'must be >= 0 seconds'),
])
def test_invalid_budgets_are_rejected(field, value, message):
    with pytest.raises(ConfigError, match=message):
        BudgetConfig(**{field: value})


def test_seed_sequence_uses_explicit_seeds_or_counts_from_the_start():
    assert list(seed_sequence([5, 9, 11], 0, 2)) == [5, 9]
    assert list(seed_sequence(None, 100, 3)) == [100, 101, 102]


def test_episode_ticks_flag_a_cell_that_restarted_but_not_a_late_reset_tick():
    from enpire_rollout.core.trial import EpisodeTicks

    ticks = EpisodeTicks()
    # The previous episode's last tick, then the reset's tick 0 arriving late: a rebase.
    assert [ticks.observe(t) for t in (300, 0, 1, 2, 2, 3)] == [''] * 6
    reason = ticks.observe(0)       # the node restarted: a fresh scene at tick 0
    assert 'cell restarted mid-episode: state tick went from 3 back to 0' in reason
    ticks.start()                    # a new episode (after a reset) starts clean
    assert [ticks.observe(t) for t in (0, 1, 2)] == ['', '', '']



def test_an_unreadable_final_verdict_ends_the_trial_invalid_never_success_and_not_retried():
    clock = FakeClock()
    controller = FakeController(clock)      # solves every seed: only the camera stands in the way
    runner = TrialRunner(cell=FakeCell(), controller=controller,
                         verifier=FakeVerifier(controller, unreadable_seeds={2, 3, 4}),
                         recorder=None, clock=clock, control_rate_hz=10.0)
    summary = run(runner, [1, 2, 3, 4, 5], max_episode_steps=20, attempts=2,
                  max_consecutive_faults=3)
    assert [t.outcome for t in summary.trials] == ['success', 'invalid', 'invalid', 'invalid']
    bad = summary.trials[1]
    assert not bad.success and 'could not be read from the cameras' in bad.reason
    assert bad.verdicts[-1]['invalid'] and len(bad.attempts) == 1
    # a camera that cannot read the scene trial after trial stops the run like a dead cell
    assert summary.stop_reason == 'consecutive_faults'
    assert summary.to_dict()['outcomes'] == {'success': 1, 'invalid': 3}


def test_the_stages_a_verdict_showed_stay_reached_per_trial_and_per_attempt():
    """Partial success: a stage seen once counts (a tie grasped, then dropped, was grasped),
    in the contract's order, with each attempt's own stages; a task without stages has none."""
    clock = FakeClock()
    controller = FakeController(clock, solve_steps=lambda s: None)
    # steps 5-9 show grasp_head; from step 10 on, align only (not grasp_tail: out of order)
    def shown(steps):
        return ('grasp_head',) if 5 <= steps < 10 else ('align',) if steps >= 10 else ()

    recorder = ListRecorder()
    runner = TrialRunner(cell=FakeCell(), controller=controller,
                         verifier=FakeVerifier(controller, stages=shown), recorder=recorder,
                         clock=clock, control_rate_hz=10.0,
                         stages=('grasp_head', 'grasp_tail', 'align'))
    (trial,) = runner.run(experiment_id='e', revision_id='r', cell_id='c', task='zip_tie',
                          seeds=[1], budget=BudgetConfig(max_episode_steps=20,
                                                         attempts=2)).trials
    assert trial.outcome == 'failure'
    assert trial.stages == {'grasp_head': True, 'grasp_tail': False, 'align': True}
    assert list(trial.stages) == ['grasp_head', 'grasp_tail', 'align']
    assert [a['stages'] for a in trial.attempts] == [['grasp_head', 'align'],
                                                     ['grasp_head', 'align']]
    assert trial.summary()['stages'] == ['grasp_head', 'align']
    assert recorder.finished[0].stages == trial.stages
    (plain,) = run(make_runner(solve_steps=lambda s: 12)[0], [1]).trials
    assert plain.stages == {} and 'stages' not in plain.summary()


def test_why_a_reset_fell_back_is_in_the_record():
    """A start the robot could not lay (a zip tie found threaded, which a real cell cuts and
    replaces) and the simulator's fallback did: the record says both."""
    from enpire_rollout.core.trial import ResetInfo

    class FallbackCell(FakeCell):
        def reset(self, seed, timeout_s, **_kw):
            super().reset(seed, timeout_s)
            return ResetInfo((0.0, 0.5, 0.0), (0.0, 0.5, 0.0), 4, 'sim_place (fallback)',
                             ('attempt 1 (seed 3): placing failed: threaded',))

    clock = FakeClock()
    controller = FakeController(clock, solve_steps=lambda s: 12)
    runner = TrialRunner(cell=FallbackCell(), controller=controller,
                         verifier=FakeVerifier(controller), recorder=ListRecorder(),
                         clock=clock, control_rate_hz=10.0)
    (trial,) = run(runner, [3]).trials
    assert trial.reset['method'] == 'sim_place (fallback)'
    assert trial.reset['retried_after'] == ['attempt 1 (seed 3): placing failed: threaded']
    (plain,) = run(make_runner(solve_steps=lambda s: 12)[0], [3]).trials
    assert 'retried_after' not in plain.reset


def test_a_verifier_that_does_not_answer_aborts_only_its_trial_and_the_run_goes_on():
    from enpire_common.errors import EnpireTimeoutError

    clock = FakeClock()
    controller = FakeController(clock)

    class DeadOnce(FakeVerifier):
        def verify(self, not_before_s=None):
            if controller.seed == 2:    # the verifier was SIGKILLed during this trial
                raise EnpireTimeoutError('verify_success did not answer within 10.0 s')
            return super().verify(not_before_s)

    runner = TrialRunner(cell=FakeCell(), controller=controller, verifier=DeadOnce(controller),
                         recorder=None, clock=clock, control_rate_hz=10.0)
    summary = run(runner, [1, 2, 3], max_episode_steps=20)
    assert [t.outcome for t in summary.trials] == ['success', 'aborted', 'success']
    assert summary.trials[1].reason.startswith('final verification failed: verify_success')
    assert summary.stop_reason == 'completed'


def test_a_wall_clock_jump_moves_no_budget_and_no_duration():
    """Budgets and durations run on the monotonic clock: a wall clock stepped back an hour
    (NTP, a person) mid-run changes only the recorded timestamps."""
    clock = FakeClock()
    wall = {'t': 1.8e9}

    def wall_time() -> float:
        wall['t'] += 1.0
        if wall['t'] > 1.8e9 + 6:       # the wall clock steps back an hour after a few calls
            wall['t'] -= 3600.0 if wall['t'] > 1.8e9 else 0.0
        return wall['t']

    controller = FakeController(clock, solve_steps=lambda s: 50)
    runner = TrialRunner(cell=FakeCell(), controller=controller, verifier=FakeVerifier(controller),
                         recorder=None, clock=clock, control_rate_hz=10.0, wall_time=wall_time)
    summary = run(runner, range(100), max_wall_time_s=12.0)
    # as without a jump (test_wall_time_budget_stops_before_starting_another_trial)
    assert len(summary.trials) == 3 and summary.stop_reason == 'budget_wall_time'
    assert all(t.duration_s == pytest.approx(5.0, abs=0.2) for t in summary.trials)
    assert all(t.outcome == 'success' for t in summary.trials)
