from __future__ import annotations

import pytest

from enpire_agent_bridge.core.swap import HOLD, Phase, Strictness, SwapMachine
from enpire_common.errors import ConfigError, SwitchFailedError


@pytest.fixture
def machine():
    retired: list[str] = []
    m = SwapMachine(warmup_ticks=3, on_retire=retired.append)
    m.retired = retired  # type: ignore[attr-defined]
    m.activate('A')
    m.tick(10)
    return m


def test_first_activation_takes_effect_at_once():
    m = SwapMachine()
    assert not m.accepts('A', 0)
    m.request('A')
    assert m.state.phase is Phase.ACTIVE and m.accepts('A', 0)


def test_a_switch_happens_at_the_next_tick_and_no_old_command_passes_after_it(machine):
    machine.request('B')
    assert machine.accepts('A', 10) and not machine.accepts('B', 10)  # B only warms up
    machine.warm_action('B', valid=True)
    assert machine.state.switch_tick == 11
    assert not machine.accepts('A', 11) and not machine.accepts('B', 10)
    assert machine.accepts('B', 11)
    machine.tick(11)
    machine.published('B', 11)
    assert machine.state.phase is Phase.ACTIVE and machine.active == 'B'
    assert machine.retired == ['A'] and machine.state.last_good == 'A'
    assert not machine.accepts('A', 12)


def test_a_warm_action_for_the_current_tick_switches_at_that_tick(machine):
    machine.request('B')
    machine.warm_action('B', valid=True, at_tick=10)    # answers the newest tick: replace
    assert machine.state.switch_tick == 10
    assert machine.accepts('B', 10) and not machine.accepts('A', 10)
    assert machine.retired == []                         # not before B's command is out
    machine.published('B', 10)
    assert machine.state.phase is Phase.ACTIVE and machine.retired == ['A']
    assert 'replaces the current command' in machine.state.log[-2].detail


def test_a_warm_action_for_an_older_tick_switches_at_the_next_one(machine):
    machine.request('B')
    machine.warm_action('B', valid=True, at_tick=9)     # the cell ticked since: stale
    assert machine.state.switch_tick == 11
    assert machine.accepts('A', 10) is False and not machine.accepts('B', 10)


def test_the_old_host_is_retired_only_after_the_new_one_published(machine):
    machine.request('B')
    machine.warm_action('B', valid=True)
    machine.tick(11)
    assert machine.retired == []
    machine.published('B', 11)
    assert machine.retired == ['A']


@pytest.mark.parametrize('failure', ['invalid_warmup', 'start_failure', 'warmup_timeout',
                                     'staged_fault'])
def test_strict_failures_keep_the_previous_revision_active(machine, failure):
    machine.request('B', Strictness.STRICT)
    if failure == 'invalid_warmup':
        machine.warm_action('B', valid=False, detail='NaN in action')
    elif failure == 'start_failure':
        machine.staging_failed('B', 'ImportError: no module named torch2')
    elif failure == 'warmup_timeout':
        for t in range(11, 16):
            machine.tick(t)
    else:
        machine.fault('B', 'process exited with -9')
    assert machine.state.phase is Phase.ACTIVE and machine.active == 'A'
    assert machine.accepts('A', 20) and not machine.accepts('B', 20)
    assert machine.retired == ['B']
    assert machine.state.log[-1].kind == 'staging_failed'


def test_best_effort_failure_falls_back_to_hold(machine):
    machine.request('B', Strictness.BEST_EFFORT)
    machine.staging_failed('B', 'crash')
    assert machine.active == HOLD and machine.accepts(HOLD, 11)
    assert machine.retired == ['B', 'A'] and machine.state.last_good == 'A'


def test_a_fault_at_the_switch_point_rolls_back_under_strict(machine):
    machine.request('B')
    machine.warm_action('B', valid=True)
    machine.fault('B', 'act() raised ZeroDivisionError')
    assert machine.active == 'A' and machine.accepts('A', 11) and machine.retired == ['B']


def test_an_active_revision_that_faults_is_replaced_by_hold_and_can_be_restored(machine):
    machine.request('B')
    machine.warm_action('B', valid=True)
    machine.tick(11)
    machine.published('B', 11)
    machine.fault('B', 'NaN action')
    assert machine.active == HOLD and machine.retired == ['A', 'B']
    assert machine.restore() == 'A'
    machine.warm_action('A', valid=True)
    machine.tick(12)
    machine.published('A', 12)
    assert machine.active == 'A' and machine.state.phase is Phase.ACTIVE


def test_restore_without_a_good_revision_is_an_error():
    m = SwapMachine()
    m.activate('A')
    m.fault('A', 'crash')
    with pytest.raises(SwitchFailedError, match='no earlier good revision'):
        m.restore()


def test_a_second_switch_while_one_is_in_flight_is_refused(machine):
    machine.request('B')
    with pytest.raises(SwitchFailedError, match='in progress'):
        machine.request('C')


def test_switching_to_the_active_revision_is_a_noop(machine):
    machine.request('A')
    assert machine.state.phase is Phase.ACTIVE and machine.state.log[-1].kind == 'noop'


def test_events_for_unrelated_revisions_are_ignored(machine):
    machine.warm_action('Z', valid=True)
    machine.fault('Z', 'crash')
    machine.published('Z', 11)
    assert machine.active == 'A' and machine.state.phase is Phase.ACTIVE


def test_warmup_ticks_must_be_positive():
    with pytest.raises(ConfigError, match='warmup_ticks=0'):
        SwapMachine(warmup_ticks=0)


def test_a_cell_reset_during_a_scheduled_switch_applies_it_at_once():
    m = SwapMachine()
    m.activate('A')
    m.tick(40)
    m.request('B')
    m.warm_action('B', valid=True)
    assert m.state.switch_tick == 41
    m.tick(0)   # the cell was reset: ticks count from 0 again
    assert m.accepts('B', 0) and not m.accepts('A', 0)
    m.published('B', 0)
    assert m.state.phase is Phase.ACTIVE and m.active == 'B'
