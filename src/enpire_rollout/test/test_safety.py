from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from enpire_common.config import from_parameters, to_parameters
from enpire_common.errors import ConfigError
from enpire_rollout.core.config import EnvelopeConfig, ModesConfig, SafetyConfig
from enpire_rollout.core.safety import SafetyAction, SafetyFilter, SafetyKind

K, A = SafetyKind, SafetyAction


def make(bounds='clamp', max_step='clamp', rate='reject', max_step_px=0.0, max_rate_hz=0.0,
         stale_timeout_s=0.0) -> SafetyFilter:
    env = EnvelopeConfig(max_step_px=max_step_px, max_rate_hz=max_rate_hz,
                         stale_timeout_s=stale_timeout_s)
    return SafetyFilter(SafetyConfig(envelope=env, modes=ModesConfig(bounds, max_step, rate)))


@pytest.mark.parametrize(('command', 'applied', 'kinds'), [
    ([100.0, 200.0], [100.0, 200.0], []),
    ([0.0, 512.0], [0.0, 512.0], []),
    ([-5.0, 200.0], [0.0, 200.0], [(K.BOUNDS, A.CLAMPED)]),
    ([600.0, 700.0], [512.0, 512.0], [(K.BOUNDS, A.CLAMPED)]),
    ([float('nan'), 1.0], None, [(K.NAN, A.REJECTED)]),
    ([float('inf'), 1.0], None, [(K.NAN, A.REJECTED)]),
    ([1.0, -float('inf')], None, [(K.NAN, A.REJECTED)]),
    ([1.0], None, [(K.SHAPE, A.REJECTED)]),
    ([1.0, 2.0, 3.0], None, [(K.SHAPE, A.REJECTED)]),
    ([[1.0, 2.0]], None, [(K.SHAPE, A.REJECTED)]),
    ('left', None, [(K.SHAPE, A.REJECTED)]),
    (None, None, [(K.SHAPE, A.REJECTED)]),
])
def test_each_command_gets_the_documented_decision(command, applied, kinds):
    out, decisions = make().filter(command, None, 0.0)
    assert [(d.kind, d.action) for d in decisions] == kinds
    if applied is None:
        assert out is None
    else:
        np.testing.assert_allclose(out, applied)


@pytest.mark.parametrize('bad', [[float('nan'), 1e6], [1e6, float('inf')]])
def test_non_finite_commands_are_rejected_never_clamped_even_in_clamp_mode(bad):
    out, decisions = make(bounds='clamp').filter(bad, [10.0, 10.0], 0.0)
    assert out is None
    assert decisions[0].kind == K.NAN and decisions[0].applied is None


@pytest.mark.parametrize(('mode', 'action'), [('reject', A.REJECTED), ('abort', A.ABORTED)])
def test_out_of_bounds_in_reject_or_abort_mode_drops_the_command(mode, action):
    out, decisions = make(bounds=mode).filter([-1.0, 5.0], None, 0.0)
    assert out is None
    assert [(d.kind, d.action) for d in decisions] == [(K.BOUNDS, action)]
    assert decisions[0].requested == (-1.0, 5.0)


def test_max_step_clamps_along_the_direction_of_the_requested_step():
    out, decisions = make(max_step_px=10.0).filter([130.0, 140.0], [100.0, 100.0], 0.0)
    np.testing.assert_allclose(out, [106.0, 108.0])
    assert [(d.kind, d.action) for d in decisions] == [(K.MAX_STEP, A.CLAMPED)]
    assert 'step 50.0 > max_step_px 10' in decisions[0].detail


def test_max_step_is_skipped_when_there_is_no_reference_position():
    out, decisions = make(max_step_px=10.0).filter([300.0, 300.0], None, 0.0)
    np.testing.assert_allclose(out, [300.0, 300.0])
    assert decisions == []


def test_max_step_from_an_agent_position_outside_the_bounds_still_lands_inside_them():
    out, _ = make(max_step_px=5.0).filter([0.0, 0.0], [-50.0, -50.0], 0.0)
    assert np.all(out >= 0.0)


def test_bounds_and_step_can_both_fire_on_one_command():
    out, decisions = make(max_step_px=10.0).filter([-100.0, 0.0], [20.0, 0.0], 0.0)
    np.testing.assert_allclose(out, [10.0, 0.0])
    assert [d.kind for d in decisions] == [K.BOUNDS, K.MAX_STEP]


@pytest.mark.parametrize(('mode', 'action'), [('reject', A.REJECTED), ('abort', A.ABORTED)])
def test_a_large_step_in_reject_or_abort_mode_drops_the_command(mode, action):
    out, decisions = make(max_step=mode, max_step_px=10.0).filter([50.0, 0.0], [0.0, 0.0], 0.0)
    assert out is None
    assert [(d.kind, d.action) for d in decisions] == [(K.MAX_STEP, action)]


def test_commands_faster_than_max_rate_are_rejected_and_slower_ones_pass():
    f = make(max_rate_hz=10.0)
    assert f.filter([1.0, 1.0], None, 0.0)[0] is not None
    out, decisions = f.filter([1.0, 1.0], None, 0.02)
    assert out is None and [(d.kind, d.action) for d in decisions] == [(K.RATE, A.REJECTED)]
    # 10 Hz with a few ms of jitter still passes a 10 Hz limit.
    assert f.filter([1.0, 1.0], None, 0.095)[0] is not None


def test_a_second_command_for_the_same_tick_replaces_the_first_and_keeps_the_rate():
    f = make(max_rate_hz=10.0)
    assert f.filter([1.0, 1.0], None, 1.0)[0] is not None
    assert f.filter([2.0, 2.0], None, 1.1)[0] is not None
    # The same stamp again: a hot swap's replacement for tick 1.1, judged against 1.0.
    out, decisions = f.filter([3.0, 3.0], None, 1.1)
    assert decisions == [] and out.tolist() == [3.0, 3.0]
    # The next tick is judged against 1.1, as before the replacement.
    assert f.filter([4.0, 4.0], None, 1.2)[0] is not None
    out, decisions = f.filter([5.0, 5.0], None, 1.23)
    assert out is None and [(d.kind, d.action) for d in decisions] == [(K.RATE, A.REJECTED)]


def test_after_an_abort_everything_is_rejected_until_reset():
    f = make(bounds='abort')
    out, decisions = f.filter([600.0, 1.0], None, 0.0)
    assert out is None and decisions[0].action == A.ABORTED and f.aborted
    for t, cmd in enumerate(([10.0, 10.0], [20.0, 20.0])):
        out, decisions = f.filter(cmd, None, 1.0 + t)
        assert out is None
        assert [(d.kind, d.action) for d in decisions] == [(K.BOUNDS, A.REJECTED)]
        assert 'rejected until reset' in decisions[0].detail
    f.reset()
    out, decisions = f.filter([10.0, 10.0], None, 5.0)
    np.testing.assert_allclose(out, [10.0, 10.0])
    assert not f.aborted


def test_a_rate_abort_latches_like_any_other_abort():
    f = make(rate='abort', max_rate_hz=10.0)
    f.filter([1.0, 1.0], None, 0.0)
    assert f.filter([1.0, 1.0], None, 0.01)[1][0].action == A.ABORTED
    assert f.filter([1.0, 1.0], None, 5.0)[0] is None


def test_stale_is_reported_once_per_silence_and_only_after_a_first_command():
    f = make(stale_timeout_s=0.5)
    assert f.check_stale(10.0) is None
    f.filter([1.0, 1.0], None, 0.0)
    assert f.check_stale(0.4) is None
    decision = f.check_stale(0.6)
    assert (decision.kind, decision.action) == (K.STALE, A.REJECTED)
    assert f.check_stale(0.7) is None
    f.filter([1.0, 1.0], None, 1.0)
    assert f.check_stale(1.6) is not None


@pytest.mark.parametrize(('params', 'match'), [
    ({'envelope.low': [0.0], 'envelope.high': [1.0, 2.0]}, 'as many axes'),
    ({'envelope.low': [5.0, 0.0], 'envelope.high': [1.0, 1.0]}, 'greater than low'),
    ({'envelope.max_step_px': -1.0}, 'must be >= 0'),
    ({'modes.bounds': 'explode'}, 'modes.bounds'),
    ({'modes.rate': 'clamp'}, 'modes.rate'),
    ({'envelope.low': [], 'envelope.high': []}, 'at least one axis'),
])
def test_invalid_safety_config_names_the_field(params, match):
    with pytest.raises(ConfigError, match=match):
        from_parameters(SafetyConfig, params)


def test_safety_config_round_trips_through_dotted_parameters():
    cfg = SafetyConfig(envelope=EnvelopeConfig(max_step_px=25.0), modes=ModesConfig('abort'))
    params = to_parameters(cfg)
    assert params['envelope.max_step_px'] == 25.0 and params['modes.bounds'] == 'abort'
    assert from_parameters(SafetyConfig, params) == cfg


@settings(max_examples=300, deadline=None)
@given(
    command=st.one_of(
        hnp.arrays(np.float64, st.integers(0, 4), elements=st.floats(allow_nan=True,
                                                                      allow_infinity=True)),
        hnp.arrays(np.float64, 2, elements=st.floats(-1e308, 1e308)),
        hnp.arrays(np.float32, 2, elements=st.floats(allow_nan=True, width=32)),
    ),
    prev=st.one_of(st.none(), hnp.arrays(np.float64, 2, elements=st.floats(-1e4, 1e4))),
    modes=st.tuples(st.sampled_from(['clamp', 'reject', 'abort']),
                    st.sampled_from(['clamp', 'reject', 'abort'])),
    max_step_px=st.sampled_from([0.0, 1.0, 50.0]),
)
def test_no_input_ever_yields_a_non_finite_or_out_of_bounds_command(command, prev, modes,
                                                                     max_step_px):
    f = make(bounds=modes[0], max_step=modes[1], max_step_px=max_step_px)
    out, decisions = f.filter(command, prev, 0.0)
    if out is not None:
        assert out.shape == (2,)
        assert all(math.isfinite(v) for v in out)
        assert np.all(out >= 0.0) and np.all(out <= 512.0)
    else:
        assert decisions, 'a dropped command must say why'
    for d in decisions:
        assert d.applied is None or all(0.0 <= v <= 512.0 for v in d.applied)


def test_the_task_contract_envelope_replaces_the_defaults():
    from enpire_common.tasks import load_task
    from enpire_rollout.core.config import SafetyConfig

    cfg = SafetyConfig(task='push_t').with_task_envelope(load_task('push_t').safety)
    assert cfg.envelope.low == (10.0, 10.0) and cfg.envelope.high == (502.0, 502.0)
    assert cfg.envelope.max_step_px == 120.0 and cfg.envelope.max_rate_hz == 60.0
    assert (cfg.modes.bounds, cfg.modes.max_step, cfg.modes.rate) == ('clamp', 'clamp', 'reject')
