"""The fleet behaviour a built-in agent composes: baseline split, stopping, borrowing rules."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from enpire_common.errors import ConfigError
from enpire_evolution.core.behaviour import SoloBehaviour
from enpire_evolution.core.candidate_writer import Candidate
from enpire_evolution.core.fleet_behaviour import FleetBehaviour, share_of

BASELINE = 'a' * 64


def cand(revision: str, parent: str | None) -> Candidate:
    return Candidate(0, revision, Path('.'), parent, '', {})


@pytest.mark.parametrize('team_size', [2, 4, 8])
def test_each_agent_first_runs_its_own_share_of_the_baseline(team_size):
    seeds = list(range(1, 21))
    firsts = [share_of(seeds, seeds, rank, team_size) for rank in range(team_size)]
    share = -(-len(seeds) // team_size)
    for rank, first in enumerate(firsts):
        own = seeds[rank * share:(rank + 1) * share]
        assert first == own if own else len(first) == 1  # no share left: help one at a time
    covered = [s for f in firsts for s in f]
    assert set(covered) == set(seeds)


def test_eight_agents_share_eight_seeds_one_each():
    seeds = list(range(10, 18))
    assert [share_of(seeds, seeds, r, 8) for r in range(8)] == [[s] for s in seeds]


def test_after_its_share_an_agent_helps_one_seed_at_a_time_from_the_next_peers_end():
    seeds = list(range(1, 9))
    assert share_of(seeds, [5, 6, 7, 8], rank=0, team_size=2) == [8]
    assert share_of(seeds, [5, 6, 7], rank=0, team_size=2) == [7]
    assert share_of(seeds, [1, 2], rank=1, team_size=2) == [2]


def test_only_the_baseline_every_agent_runs_is_split():
    fb = FleetBehaviour('builtin-1', peers=['builtin-0', 'builtin-1', 'builtin-2'])
    assert (fb.rank, fb.team_size, fb.peers) == (1, 3, ('builtin-0', 'builtin-2'))
    seeds = list(range(1, 10))
    assert fb.batch(BASELINE, seeds, seeds) == seeds  # not known as shared yet
    fb.on_try(cand('b' * 64, parent=BASELINE))
    fb.on_try(cand(BASELINE, parent=None))
    assert fb.shared == {BASELINE}
    assert fb.batch(BASELINE, seeds, seeds) == [4, 5, 6]
    assert fb.batch('b' * 64, seeds, seeds) == seeds
    alone = FleetBehaviour('builtin-0', peers=['builtin-0'])
    alone.on_try(cand(BASELINE, parent=None))
    assert alone.batch(BASELINE, seeds, seeds) == seeds


def test_the_fleet_stop_event_stops_every_agent_that_shares_it():
    stop = threading.Event()
    agents = [FleetBehaviour(f'builtin-{i}', stop_event=stop) for i in range(8)]
    assert not any(a.stopped() for a in agents)
    stop.set()
    assert all(a.stopped() for a in agents)


def test_a_tie_is_no_reason_to_borrow():
    with pytest.raises(ConfigError, match='borrow_margin=0: must be >= 1 success'):
        FleetBehaviour('builtin-0', borrow_margin=0)
    assert FleetBehaviour('builtin-0').borrow(None) is None  # nothing to improve on yet


def test_an_agent_alone_runs_every_missing_seed_and_borrows_nothing():
    solo = SoloBehaviour()
    assert solo.batch(BASELINE, [1, 2, 3], [2, 3]) == [2, 3]
    assert not solo.stopped() and solo.borrow(None) is None
