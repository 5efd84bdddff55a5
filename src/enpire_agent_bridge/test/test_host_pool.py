"""The host pool with fake hosts: take, park, close; and the sandbox host it builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from enpire_agent_bridge.core.config import HostingConfig
from enpire_agent_bridge.core.fakes import FakeHosts
from enpire_agent_bridge.core.host import sandbox_host
from enpire_agent_bridge.core.pool import HostPool
from enpire_common.clock import FakeClock
from enpire_common.errors import PolicyFaultError, SwitchFailedError
from enpire_common.tasks import parse_task

ROOT = Path(__file__).resolve().parents[3]
DIR = Path('/revisions/x')
OBS = {'agent_pos': np.array([1.0, 2.0])}


def pool(standby_max: int = 2, **hosts) -> tuple[HostPool, FakeHosts]:
    factory = FakeHosts(**hosts)
    return HostPool(factory, standby_max=standby_max, clock=FakeClock()), factory


def test_a_fresh_host_is_started_reset_and_acts_once_on_the_first_observation():
    p, hosts = pool()
    slot = p.take('a', DIR, end_s=10.0, first_obs=lambda: OBS)
    host = hosts.last('a')
    assert slot.host is host and host.alive and host.resets == 1 and host.acts == [OBS]
    assert p.get('a') is None, 'not hosted before add()'
    p.add(slot)
    assert p.get('a') is slot and p.directory('a') == DIR


def test_a_host_that_fails_to_start_is_closed_and_the_error_raised():
    p, hosts = pool(start_errors={'a': 'ImportError: no module named torch'})
    with pytest.raises(PolicyFaultError, match='no module named torch'):
        p.take('a', DIR, end_s=10.0, first_obs=lambda: OBS)
    assert hosts.last('a').closed and p.directory('a') is None


def test_a_revision_without_a_directory_or_a_parked_host_cannot_be_taken():
    p, _ = pool()
    with pytest.raises(SwitchFailedError, match='revision a has no known directory'):
        p.take('a', None, end_s=10.0, first_obs=lambda: OBS)


def test_retiring_parks_healthy_hosts_newest_last_and_closes_the_oldest_beyond_the_limit():
    p, hosts = pool(standby_max=2)
    for r in ('a', 'b', 'c'):
        p.add(p.take(r, DIR / r, end_s=10.0, first_obs=lambda: OBS))
        p.retire(r)
    assert p.standby() == ['b', 'c'] and p.get('c') is None
    p.close_all()
    assert all(hosts.last(r).closed for r in 'abc')


def test_a_parked_host_is_taken_again_without_a_start_and_a_dead_one_is_replaced():
    p, hosts = pool()
    p.add(p.take('a', DIR, end_s=10.0, first_obs=lambda: OBS))
    p.retire('a')
    again = p.take('a', None, end_s=10.0, first_obs=lambda: OBS)   # the directory is known
    assert again.host is hosts.last('a') and len(hosts.made['a']) == 1
    p.add(again)
    p.retire('a')
    hosts.last('a').fault_reason = 'crashed'
    fresh = p.take('a', p.directory('a'), end_s=10.0, first_obs=lambda: OBS)
    assert len(hosts.made['a']) == 2 and fresh.host is hosts.last('a')


@pytest.mark.parametrize('why', ['dead', 'condemned', 'no standby'])
def test_a_retired_host_is_closed_not_parked_when(why):
    p, hosts = pool(standby_max=0 if why == 'no standby' else 2)
    p.add(p.take('a', DIR, end_s=10.0, first_obs=lambda: OBS))
    if why == 'dead':
        hosts.last('a').fault_reason = 'crashed'
    elif why == 'condemned':
        p.condemn('a')
    p.retire('a')
    p.close_all()
    assert p.standby() == [] and hosts.last('a').closed


def test_the_sandbox_host_runs_the_revision_under_the_contract_with_the_hard_deadline_rule():
    task = parse_task(ROOT / 'config' / 'tasks' / 'push_t')
    cfg = HostingConfig(deadline_override_s=0.05, hard_deadline_factor=4.0,
                        hard_deadline_min_s=1.0)
    host = sandbox_host(task.raw, ROOT / 'examples' / 'policies' / 'push_t' / 'hold', cfg,
                        Path('/nonexistent-logs'))
    assert host.spec.deadline_s == 0.05 and host.hard_deadline_s == 1.0
    assert not host.alive     # built, not started
