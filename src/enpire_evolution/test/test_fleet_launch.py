"""launch/fleet_sim.launch.yaml as the embedded launcher reads it (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from enpire_bringup.launcher import load_plan
from enpire_common.errors import LaunchError

ROOT = Path(__file__).resolve().parents[3]
FLEET = ROOT / 'launch' / 'fleet_sim.launch.yaml'
NODES = {'push_t_cell', 'verifier', 'reset_server', 'safety_supervisor', 'recorder', 'rollout',
         'markers'}


@pytest.mark.parametrize('cells', [1, 2, 3, 4, 8])
def test_the_fleet_launch_starts_one_full_cell_per_namespace(cells: int) -> None:
    plan = load_plan(FLEET, {'cells': str(cells)})
    by_ns: dict[str, set[str]] = {}
    for node in plan.nodes:
        by_ns.setdefault(node.namespace, set()).add(node.name)
    assert by_ns == {f'/cell_{i}': NODES for i in range(cells)}


def test_each_cell_publishes_and_follows_its_own_clock() -> None:
    plan = load_plan(FLEET, {'cells': '2'})
    # '/clock' -> 'clock' is relative: /cell_0/clock and /cell_1/clock, never one /clock.
    assert {n.remaps for n in plan.nodes} == {(('/clock', 'clock'),)}


def test_a_second_host_numbers_its_cells_on() -> None:
    plan = load_plan(FLEET, {'cells': '2', 'first': '2'})
    assert {n.namespace for n in plan.nodes} == {'/cell_2', '/cell_3'}


@pytest.mark.parametrize('cells', ['0', '17'])
def test_cells_outside_one_to_sixteen_fail_before_anything_starts(cells: str) -> None:
    with pytest.raises(LaunchError, match='cells_must_be_1_to_16'):
        load_plan(FLEET, {'cells': cells})


def test_no_node_of_a_fleet_cell_can_end_the_fleet_launch() -> None:
    plan = load_plan(FLEET, {'cells': '4'})
    assert not [n.label for n in plan.nodes if n.required]
    cells = [n for n in plan.nodes if n.name == 'push_t_cell']
    # A dead cell node stays down inside its own cell (its open trial ends aborted).
    assert len(cells) == 4 and not any(n.respawn for n in cells)


def test_a_fleet_may_ask_for_its_cell_nodes_to_be_respawned() -> None:
    plan = load_plan(FLEET, {'cells': '2', 'on_cell_exit': 'respawn'})
    cells = [n for n in plan.nodes if n.name == 'push_t_cell']
    assert len(cells) == 2 and all(n.respawn and n.respawn_delay_s > 0 for n in cells)
    assert not [n for n in plan.nodes if n.required]


def test_a_lone_cell_launch_still_ends_when_its_cell_node_exits() -> None:
    plan = load_plan(ROOT / 'launch' / 'push_t_sim.launch.yaml', {})
    assert [n.name for n in plan.nodes if n.required] == ['push_t_cell']
    assert [n.name for n in plan.nodes].count('push_t_cell') == 1


def test_the_fleet_can_still_ask_for_the_old_all_or_nothing_behaviour() -> None:
    plan = load_plan(FLEET, {'cells': '2', 'on_cell_exit': 'shutdown'})
    assert sorted(n.label for n in plan.nodes if n.required) == [
        'cell_0/push_t_cell', 'cell_1/push_t_cell']


def test_an_unknown_cell_exit_behaviour_fails_before_anything_starts() -> None:
    with pytest.raises(LaunchError, match='on_cell_exit_must_be_shutdown_none_or_respawn'):
        load_plan(FLEET, {'cells': '1', 'on_cell_exit': 'ignore'})
