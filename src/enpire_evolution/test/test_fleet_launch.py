"""launch/fleet_sim.launch.yaml as the embedded launcher reads it (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from enpire_bringup.launcher import load_plan
from enpire_common.errors import LaunchError

ROOT = Path(__file__).resolve().parents[3]
FLEET = ROOT / 'launch' / 'fleet_sim.launch.yaml'
NODES = {'push_t_cell', 'verifier', 'reset_server', 'safety_supervisor', 'recorder', 'rollout'}


@pytest.mark.parametrize('cells', [1, 2, 3, 4])
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


def test_a_second_host_can_name_its_cells() -> None:
    plan = load_plan(FLEET, {'cells': '2', 'name_0': 'cell_2', 'name_1': 'cell_3'})
    assert {n.namespace for n in plan.nodes} == {'/cell_2', '/cell_3'}


@pytest.mark.parametrize('cells', ['0', '5'])
def test_cells_outside_one_to_four_fail_before_anything_starts(cells: str) -> None:
    with pytest.raises(LaunchError, match='cells_must_be_1_to_4'):
        load_plan(FLEET, {'cells': cells})
