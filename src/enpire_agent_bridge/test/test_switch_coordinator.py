"""The switch coordinator without ROS or processes: fake hosts, a fake clock, a list of commands.

Each test drives ticks by hand, so the tick a switch lands on is exact. A switch that waits
for a tick (the first activation, a next-tick switch) runs on a thread while the test ticks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enpire_agent_bridge.core.config import home_target
from enpire_agent_bridge.core.fakes import FakeHosts
from enpire_agent_bridge.core.pool import HostPool
from enpire_agent_bridge.core.swap import HOLD, Strictness
from enpire_agent_bridge.core.switching import (
    HOME,
    SwitchCoordinator,
    SwitchRequest,
    SwitchResult,
    Tick,
)
from enpire_common.clock import FakeClock
from enpire_common.errors import CellBusyError, ConfigError, SwitchFailedError

ACT_S = 0.002       # what one fake act takes on the fake clock
JOIN_S = 10.0       # real-time bound of a switch thread once its tick came


class Cell:
    """A coordinator over fake hosts; records every command as (tick, revision, action)."""

    def __init__(self, *, within_tick: bool = True, standby_max: int = 2,
                 **hosts: Any) -> None:
        self.clock = FakeClock(1000.0)
        self.hosts = FakeHosts(clock=self.clock, act_s=ACT_S, **hosts)
        self.pool = HostPool(self.hosts, standby_max=standby_max, clock=self.clock)
        self.commands: list[tuple[int, str, list[float]]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.coord = SwitchCoordinator(
            self.pool, publish=self._publish, hold=lambda obs: np.asarray(obs['agent_pos']),
            lookup=lambda rid: (rid, Path('/revisions') / rid),
            example_obs={'agent_pos': np.zeros(2)}, clock=self.clock, warmup_ticks=3,
            switch_timeout_s=5.0, within_tick=within_tick,
            on_event=lambda e, x: self.events.append((e, x)))
        self.n = 0
        self.pos = [120.0, 340.0]

    def _publish(self, tick: Tick, revision: str, action: np.ndarray) -> None:
        self.commands.append((tick.tick, revision, [float(a) for a in action]))

    def tick(self, count: int = 1, *, number: int | None = None) -> None:
        for _ in range(count):
            self.n = self.n + 1 if number is None else number
            self.coord.on_tick(Tick(self.n, {'agent_pos': np.array(self.pos)}))

    def switch(self, revision: str, **kw: Any) -> SwitchResult:
        return self.coord.switch(SwitchRequest(revision, **kw))

    def switch_over_ticks(self, revision: str, **kw: Any) -> SwitchResult:
        """Switch on a thread while the cell ticks, until it returns."""
        out: dict[str, Any] = {}

        def run() -> None:
            try:
                out['result'] = self.switch(revision, **kw)
            except Exception as exc:  # noqa: BLE001 - handed to the test thread
                out['error'] = exc

        t = threading.Thread(target=run)
        t.start()
        for _ in range(200):
            self.tick()
            t.join(0.02)
            if not t.is_alive():
                break
        t.join(JOIN_S)
        assert not t.is_alive(), 'the switch did not return'
        if 'error' in out:
            raise out['error']
        return out['result']

    def revisions(self, since: int = 0) -> list[str]:
        return [r for _, r, _ in self.commands[since:]]


def started(revision: str = 'a', **kw: Any) -> Cell:
    cell = Cell(**kw)
    cell.switch_over_ticks(revision)
    cell.tick(2)
    return cell


def test_the_first_activation_drives_the_cell_from_the_next_tick():
    cell = Cell()
    res = cell.switch_over_ticks('a')
    assert res.revision == 'a' and cell.coord.active == 'a'
    tick, revision, action = cell.commands[0]
    assert revision == 'a' and action == [120.0, 340.0]
    assert cell.coord.status()['phase'] == 'active'
    host = cell.hosts.last('a')
    assert host.started and host.resets == 1 and len(host.acts) == 2   # first act + tick


def test_a_within_tick_switch_replaces_the_current_command_and_no_old_one_follows():
    cell = started('a', offsets={'b': 3.0})
    n, last_tick = len(cell.commands), cell.n
    res = cell.switch('b')
    # b's first command answers the tick a already answered: it replaces a's.
    assert cell.commands[n] == (last_tick, 'b', [123.0, 343.0])
    assert res.latency_s == pytest.approx(2 * ACT_S)    # first act + warm-up act
    cell.tick(3)
    assert cell.revisions(n) == ['b'] * 4
    s = cell.coord.status()
    assert (s['active'], s['last_good'], s['standby'], s['switches']) == ('b', 'a', ['a'], 1)
    assert s['last_switch']['switch_tick'] == last_tick


def test_a_next_tick_switch_answers_the_next_tick_only_with_the_new_revision():
    cell = started('a', within_tick=False)
    n, last_tick = len(cell.commands), cell.n
    cell.switch_over_ticks('b')
    assert cell.commands[n][:2] == (last_tick + 1, 'b')
    assert all(t > last_tick for t, r, _ in cell.commands if r == 'b')
    assert all(t <= last_tick for t, r, _ in cell.commands if r == 'a')


def test_switching_back_takes_the_parked_host_without_starting_another():
    cell = started('a')
    cell.switch('b')
    cell.tick()
    cell.switch('a')
    cell.tick()
    assert len(cell.hosts.made['a']) == 1 and cell.revisions()[-1] == 'a'
    assert cell.coord.status()['standby'] == ['b']


def test_the_standby_is_bounded_and_its_oldest_host_is_closed():
    cell = started('a', standby_max=1)
    for revision in ('b', 'c'):
        cell.switch(revision)
        cell.tick()
    assert cell.coord.status()['standby'] == ['b']
    assert cell.hosts.last('a').closed and not cell.hosts.last('b').closed


def test_a_strict_switch_to_a_host_that_fails_to_start_keeps_the_old_revision():
    cell = started('a', start_errors={'bad': 'RuntimeError in importing policy.py'})
    with pytest.raises(SwitchFailedError,
                       match='switch to bad failed, a stays active: RuntimeError in import'):
        cell.switch('bad')
    n = len(cell.commands)
    cell.tick(2)
    assert cell.revisions(n) == ['a', 'a'] and cell.hosts.last('bad').closed
    assert cell.events[-1] == ('staging_failed', {'reason': 'RuntimeError in importing '
                                                            'policy.py'})


def test_a_best_effort_switch_that_fails_falls_back_to_hold():
    cell = started('a', start_errors={'bad': 'boom'})
    with pytest.raises(SwitchFailedError, match='switch to bad failed, fell back to hold'):
        cell.switch('bad', strictness=Strictness.BEST_EFFORT)
    n = len(cell.commands)
    cell.tick()
    assert cell.commands[n] == (cell.n, HOLD, [120.0, 340.0])
    assert cell.coord.status()['last_good'] == 'a'


def test_a_warm_up_fault_keeps_the_old_revision_and_closes_the_new_host():
    cell = started('a', fail_at_act={'b': 2})        # the first act passes, the warm-up not
    n = len(cell.commands)
    with pytest.raises(SwitchFailedError, match='b failed, a stays active: b: non-finite'):
        cell.switch('b')
    cell.tick()
    assert cell.revisions(n) == ['a'] and cell.coord.status()['standby'] == []
    assert not cell.hosts.last('b').alive


def test_a_fault_after_activation_answers_the_same_tick_with_hold_and_restore_works():
    cell = started('a')
    cell.switch('f')
    cell.tick()
    cell.hosts.last('f').fail_next_act()
    cell.pos = [450.0, 300.0]
    n = len(cell.commands)
    cell.tick()
    assert cell.commands[n:] == [(cell.n, HOLD, [450.0, 300.0])]
    s = cell.coord.status()
    assert (s['active'], s['last_good']) == (HOLD, 'a')
    assert 'non-finite action' in s['faults'][-1] and ('fault', {'reason': 'f: non-finite '
                                                       'action [nan, nan]'}) in cell.events
    res = cell.switch('last_good')
    assert res.revision == 'a' and cell.coord.active == 'a'
    assert len(cell.hosts.made['a']) == 1, 'restored from the warm standby'


def test_restore_without_an_earlier_good_revision_is_refused():
    cell = started('a')
    with pytest.raises(SwitchFailedError, match='no earlier good revision to restore'):
        cell.switch('restore')


def test_a_first_command_that_never_comes_fails_the_switch_when_the_budget_runs_out():
    cell = Cell()
    out: dict[str, Any] = {}

    def run() -> None:
        with pytest.raises(SwitchFailedError) as info:
            cell.switch('a')
        out['error'] = info.value

    t = threading.Thread(target=run)
    t.start()
    # No tick comes; only the (fake) clock moves past the 5 s budget.
    for _ in range(500):
        if cell.coord.status()['active'] == 'a':
            break
        t.join(0.01)
    cell.clock.advance(6.0)
    t.join(JOIN_S)
    assert not t.is_alive()
    assert 'no command of a was published within 5.0 s' in str(out['error'])
    assert cell.coord.active == HOLD


def test_a_second_switch_while_one_waits_is_refused():
    cell = Cell()
    t = threading.Thread(target=lambda: cell.switch('a'))
    t.start()
    for _ in range(500):
        if cell.coord.status()['active'] == 'a':
            break
        t.join(0.01)
    with pytest.raises(SwitchFailedError, match='another switch is in progress'):
        cell.switch('b')
    cell.tick()
    t.join(JOIN_S)
    assert not t.is_alive()


def test_the_same_revision_again_is_a_no_op():
    cell = started('a')
    assert cell.switch('a') == SwitchResult('a', 0.0)
    assert len(cell.hosts.made['a']) == 1


def test_pause_stops_commands_home_holds_a_target_and_resume_returns():
    cell = started('a')
    assert cell.coord.cell_verb('pause') == 'paused: no commands are published'
    n = len(cell.commands)
    cell.tick(2)
    assert len(cell.commands) == n
    with pytest.raises(CellBusyError, match='the cell is paused; resume it first'):
        cell.switch('b')
    assert cell.coord.cell_verb('home') == 'homing to [120.0, 340.0]'
    cell.pos = [200.0, 200.0]
    cell.tick(2)
    assert cell.commands[n:] == [(cell.n - 1, HOME, [120.0, 340.0]),
                                 (cell.n, HOME, [120.0, 340.0])]
    assert cell.coord.cell_verb('resume') == 'resumed a'
    cell.tick()
    assert cell.revisions()[-1] == 'a' and cell.coord.status()['mode'] == 'running'


def test_a_new_episode_resets_the_active_host_and_lost_ticks_are_counted():
    cell = started('a')
    resets = cell.hosts.last('a').resets
    cell.tick(number=1)                 # the cell was reset: ticks count from 1 again
    assert cell.hosts.last('a').resets == resets + 1
    cell.tick(number=5)                 # 2..4 never arrived
    assert cell.coord.status()['skipped_ticks'] == 3
    cell.tick(number=5)                 # a tick seen twice gets one command
    assert [t for t, _, _ in cell.commands].count(5) == 1


@pytest.mark.parametrize(('text', 'contract', 'expected'), [
    ('10,20', None, [10.0, 20.0]),
    ('', [256.0, 256.0], [256.0, 256.0]),
    ('', None, None),
])
def test_the_home_target_comes_from_the_parameter_then_the_contract(text, contract, expected):
    low, high = np.zeros(2), np.full(2, 512.0)
    home = home_target(text, contract, low, high)
    assert (home if home is None else home.tolist()) == expected


def test_a_home_target_outside_the_action_bounds_is_a_config_error():
    with pytest.raises(ConfigError, match=r'home_position=\[600.0, 1.0\] is invalid: must '
                                          r'have shape \[2\] within the action bounds'):
        home_target('600,1', None, np.zeros(2), np.full(2, 512.0))
