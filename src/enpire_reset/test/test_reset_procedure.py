from __future__ import annotations

import pytest

from enpire_common.clock import FakeClock
from enpire_common.errors import (
    CancelledError,
    CellUnavailableError,
    ConfigError,
    EnpireTimeoutError,
    ResetFailedError,
    UnknownNameError,
)
from enpire_common.tasks import load_task
from enpire_reset.core import (
    PHASE_PLACING,
    PHASE_RETRYING,
    PHASE_SETTLING,
    PHASE_VERIFYING,
    ResetConfig,
    ResetNotVerifiedError,
    ResetProcedure,
    available_strategies,
    derive_seed,
    make_strategy,
    resolve_strategy_id,
)
from enpire_reset.core.fakes import FakeSim, FakeVerifier


def make(verifier_kwargs=None, sim=None, **cfg):
    sim = sim or FakeSim()
    verifier = FakeVerifier(sim, **(verifier_kwargs or {}))
    clock = FakeClock()
    proc = ResetProcedure(make_strategy('sim_place', sim, 'push_t'), verifier,
                          ResetConfig(**cfg), clock)
    return proc, sim, verifier, clock


def test_a_matching_unsolved_start_is_verified_on_the_first_attempt():
    proc, sim, verifier, _ = make()
    phases = []
    out = proc.run(7, on_feedback=lambda p, a, f: phases.append((p, a, f)))
    assert out.success and out.attempts == 1 and out.seed == 7
    assert out.placement.object_pose == sim.pose_of(7)
    assert verifier.calls == [sim.pose_of(7)]
    assert [p for p, _, _ in phases] == [PHASE_PLACING, PHASE_SETTLING, PHASE_VERIFYING,
                                         PHASE_VERIFYING]
    assert phases[-1][2] == 1.0


def test_same_seed_twice_gives_the_same_start():
    proc, _, _, _ = make()
    assert proc.run(7).placement == proc.run(7).placement


def test_settling_waits_on_the_injected_clock():
    proc, _, _, clock = make(settle_s=0.5, retry_backoff_s=0.0)
    out = proc.run(1)
    assert clock.now_s() == pytest.approx(0.5)
    assert out.duration_s == pytest.approx(0.5)


def test_an_already_solved_start_is_re_reset_with_a_derived_seed():
    proc, sim, _, _ = make({'solved_seeds': {7}})
    phases = []
    out = proc.run(7, on_feedback=lambda p, a, f: phases.append(p))
    assert out.success and out.attempts == 2
    assert sim.placed == [7, derive_seed(7, 1)] and out.seed == derive_seed(7, 1)
    assert PHASE_RETRYING in phases
    assert 'already solved' in out.reasons[0]


def test_a_pose_mismatch_is_placed_again_with_the_same_seed():
    proc, sim, _, _ = make({'offsets': {0: (20.0, 0.0, 0.0)}})
    out = proc.run(3)
    assert out.success and out.attempts == 2 and sim.placed == [3, 3]
    assert 'off by 20 px' in out.reasons[0]


def test_angle_error_beyond_tolerance_is_a_mismatch_and_wraps_around_pi():
    proc, _, _, _ = make({'offsets': {0: (0.0, 0.0, 0.5)}})
    assert proc.run(3).attempts == 2
    proc, _, _, _ = make({'offsets': {0: (0.0, 0.0, 6.283185307179586)}})
    # a full turn is the same pose, but the fake calls it a mismatch: trust our own check
    out = proc.run(3)
    assert out.attempts == 2 and 'verifier refused' in out.reasons[0]


def test_a_verifier_that_always_says_solved_fails_after_max_attempts():
    proc, sim, verifier, _ = make({'always_solved': True}, max_attempts=3)
    with pytest.raises(ResetFailedError, match=r'not verified after 3 attempt\(s\).*already '
                                               r'solved') as info:
        proc.run(9)
    assert isinstance(info.value, ResetNotVerifiedError)
    assert info.value.code == 202
    assert info.value.outcome.attempts == 3 and len(sim.placed) == 3
    assert len(set(sim.placed)) == 3   # each re-reset used a new derived seed


def test_verifier_errors_are_retried_then_fail():
    proc, _, _, _ = make({'error_code': 501}, max_attempts=2)
    with pytest.raises(ResetNotVerifiedError, match='verifier error 501'):
        proc.run(1)


def test_a_camera_without_fresh_frames_is_waited_for_without_placing_again():
    # Six answers of "no fresh frame" (a camera silenced for ~3 s), then the frame arrives.
    proc, sim, verifier, clock = make({'unavailable_calls': 6}, max_attempts=2,
                                      retry_backoff_s=0.5, settle_s=0.0, timeout_s=10.0)
    t0 = clock.now_s()
    out = proc.run(4)
    assert out.success and out.attempts == 1
    assert len(sim.placed) == 1 and len(verifier.calls) == 7
    assert clock.now_s() - t0 == pytest.approx(3.0)


def test_a_camera_that_never_comes_back_ends_the_reset_at_its_budget_naming_the_camera():
    proc, sim, _, _ = make({'unavailable_calls': 10**6}, max_attempts=3, retry_backoff_s=0.5,
                           settle_s=0.0, timeout_s=4.0)
    with pytest.raises(EnpireTimeoutError, match=r'4.0 s budget.*verifier error 502: latest '
                       r'camera/top image is 3.0 s old'):
        proc.run(4)
    assert len(sim.placed) == 1      # the wait is not spent on placing again


def test_goal_overrides_of_attempts_and_budget_apply():
    proc, sim, _, _ = make({'always_solved': True}, max_attempts=3)
    with pytest.raises(ResetNotVerifiedError):
        proc.run(1, max_attempts=1)
    assert len(sim.placed) == 1


def test_the_budget_bounds_the_whole_reset():
    proc, _, _, _ = make({'always_solved': True}, max_attempts=10, settle_s=1.0,
                         timeout_s=2.5)
    with pytest.raises(EnpireTimeoutError, match=r'ran past its 2.5 s budget'):
        proc.run(1)


def test_cancellation_stops_the_reset():
    proc, _, _, _ = make()
    with pytest.raises(CancelledError, match='cancelled'):
        proc.run(1, cancelled=lambda: True)


def test_an_unavailable_cell_propagates():
    proc, _, _, _ = make(sim=FakeSim(unavailable=True))
    with pytest.raises(CellUnavailableError):
        proc.run(1)


def test_strategy_aliases_resolve_to_the_latest_version():
    assert resolve_strategy_id('sim_place', 'push_t') == 'sim_place-v1'
    assert resolve_strategy_id('sim_place-v1', 'push_t') == 'sim_place-v1'
    assert 'sim_place' in available_strategies('push_t')


def test_unknown_strategy_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match=r"unknown reset strategy 'sim_plac'; did you "
                                                r"mean 'sim_place'"):
        make_strategy('sim_plac', FakeSim(), 'push_t')


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(7, 1) == derive_seed(7, 1)
    assert len({derive_seed(7, k) for k in range(1, 20)}) == 19


def test_reset_config_comes_from_the_task_with_overrides():
    cfg = ResetConfig.from_task(load_task('push_t'), max_attempts=5, timeout_s=0.0)
    assert cfg.strategy == 'sim_place' and cfg.max_attempts == 5
    assert cfg.timeout_s == 10.0 and cfg.pose_tolerance_px == 6.0


def test_invalid_reset_config_names_the_field():
    with pytest.raises(ConfigError, match=r'max_attempts=0 is invalid: must be >= 1'):
        ResetConfig(max_attempts=0)


def test_each_retry_waits_the_backoff_on_the_injected_clock():
    proc, _, _, clock = make({'offsets': {0: (20.0, 0.0, 0.0)}}, settle_s=0.0,
                             retry_backoff_s=0.5)
    assert proc.run(3).attempts == 2
    assert clock.now_s() == pytest.approx(0.5)


def test_strategies_come_from_the_task_plugin():
    from enpire_tasks import registry

    assert set(registry.get('push_t').reset_strategies) <= set(available_strategies('push_t'))
    with pytest.raises(UnknownNameError, match="unknown reset strategy 'sim_place'"):
        resolve_strategy_id('sim_place')  # no task: no task's strategies


class _FailingRobot:
    """A robot placement that fails ``fail`` times (a missed grasp), then places."""

    id = 'robot-v1'

    def __init__(self, sim, fail: int) -> None:
        self.sim, self.fail, self.calls = sim, fail, 0

    def place(self, seed, timeout_s):
        self.calls += 1
        if self.calls <= self.fail:
            raise ResetFailedError('missed the pin: the gripper closed on nothing')
        p = self.sim.place(seed, timeout_s)
        return type(p)(p.object_pose, p.agent_pos, p.seed, 'robot')


def test_a_failed_robot_placement_is_an_attempt_and_the_fallback_is_recorded():
    from enpire_reset.core.strategies import make_strategy as make_s

    sim = FakeSim()
    verifier = FakeVerifier(sim)
    # one miss, then the robot places it: verified at attempt 2, method robot
    robot = _FailingRobot(sim, fail=1)
    out = ResetProcedure(robot, verifier, ResetConfig(retry_backoff_s=0.0), FakeClock()).run(4)
    assert out.success and out.attempts == 2 and out.method == 'robot'
    assert 'placing failed: missed the pin' in out.reasons[0]
    # every robot attempt fails: the fallback places it, and says so
    robot = _FailingRobot(sim, fail=99)
    fallback = make_s('sim_place', sim, 'push_t')
    proc = ResetProcedure(robot, verifier, ResetConfig(retry_backoff_s=0.0, max_attempts=3),
                          FakeClock(), fallback=fallback)
    out = proc.run(5)
    assert out.success and robot.calls == 3 and out.attempts == 4
    assert out.method == 'sim_place-v1 (fallback)'
    # without a fallback the reset fails, with every reason
    proc = ResetProcedure(_FailingRobot(sim, fail=99), verifier,
                          ResetConfig(retry_backoff_s=0.0, max_attempts=2), FakeClock())
    with pytest.raises(ResetNotVerifiedError, match='placing failed'):
        proc.run(6)
