"""The fault-injection suite's cell: one Push-T sim cell per module (lockstep,
``on_cell_exit:=respawn``: every node comes back after it dies) in a private ENPIRE_HOME."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
CELL = 'cell_0'


@pytest.fixture(scope='module')
def fault_cell(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A TrialsSession on ``cell_0`` with a ``home`` attribute; torn down after the module."""
    from enpire_bringup.testing import trials_session

    with trials_session(tmp_path_factory.mktemp('enpire_home'),
                        launch_args={'on_cell_exit': 'respawn'}) as session:
        yield session


@pytest.fixture
def fault_runner() -> Callable[..., tuple[Any, int, Exception | None]]:
    """:func:`run_with_fault`."""
    return run_with_fault


def run_with_fault(cell: Any, experiment: str, fault: Callable[[], int], *, count: int = 3,
                   timeout_s: float = 240.0, max_episode_steps: int = 60
                   ) -> tuple[Any, int, Exception | None]:
    """Run ``count`` scripted trials; call ``fault`` once the second trial has stepped 20 ticks.
    Returns (the run's result or None, the pid hit, the run's error or None).

    The watcher reads the cell's ``state`` stream alone: its ``tick`` restarts at 0 on every
    reset, so each drop of the tick starts the next trial's episode. Its subscription is
    matched before the run starts (a fresh participant took ~3 s to match here, as long as
    two 60-step trials).
    """
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from enpire_common.testing import RosHarness, wait_until
    from enpire_interfaces.msg import StateVector

    state = {'episode': 0, 'last': -1, 'fired': False, 'pid': 0}
    fired = threading.Event()
    lock = threading.Lock()

    def on_state(msg: StateVector) -> None:
        tick = int(msg.tick)
        with lock:
            if state['episode'] == 0 or tick < state['last']:
                state['episode'] += 1
            state['last'] = tick
            due = state['episode'] == 2 and tick >= 20 and not state['fired']
            if due:
                state['fired'] = True
        if due:
            state['pid'] = fault()
            fired.set()

    harness = RosHarness(num_threads=1)
    result, error = None, None
    try:
        node = harness.node('fault_watch', namespace=f'/{CELL}')
        # Best effort, depth for more than a trial's ticks: a stalled test thread loses none
        # of a reset's tick drop.
        sub = node.create_subscription(StateVector, 'state', on_state, QoSProfile(
            depth=200, reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE))
        wait_until(lambda: sub.get_publisher_count() >= 1, 30.0,
                   f'the watcher to match /{CELL}/state')
        try:
            result = cell.client.run_trials(
                count=count, policy_dir=str(SCRIPTED), seeds=list(range(5, 5 + count)),
                experiment_id=experiment, max_episode_steps=max_episode_steps,
                max_consecutive_faults=0, timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - the test asserts what it expects
            error = exc
    finally:
        harness.close()
    with lock:
        seen = dict(state)
    assert fired.is_set(), (
        f'the second trial never reached tick 20 (watcher: {seen}; result: '
        f'{result and [(t.outcome, int(t.steps), t.reason[:80]) for t in result.trials]}; '
        f'error: {error!r})')
    return result, int(seen['pid']), error


