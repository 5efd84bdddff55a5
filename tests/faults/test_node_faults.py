"""Fault injection into every node of a live sim cell, mid-trial.

For each node of a Push-T cell and each fault (SIGKILL; SIGSTOP then SIGCONT after 3 s),
three scripted trials run and the fault hits the second one at tick 20. Each case asserts:
- recovery: the launch starts a killed node again, and the trial after the fault is a normal
  one (success or failure, judged by the verifier);
- what is recorded: the hit trial ends with an outcome and, when it is not a normal one, a
  reason;
- nothing lost or corrupted: every trial of the run is on disk, none left open, each
  trial.json readable, each file's hash as recorded, each bag read by two readers
  (enpire_bringup.faults.check_experiment).

A killed rollout node takes the run's action goal with it: the client says so at once
(CellUnavailableError), the launch restarts the node, and the next run on the same
experiment closes the open trial (``aborted``) and runs normally.

CI runs the cases in FAST (scripts/test.sh); the rest carry the ``nightly`` marker
(``scripts/test.sh -m nightly`` runs them). With ENPIRE_FAULTS_REPORT=<file> each case
appends its row (fault, outcomes, reasons, recovery) as a JSON line: the faults x outcome
table.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from enpire_bringup.faults import (
    FAULTS,
    NODES,
    check_experiment,
    inject,
    node_process,
    wait_respawned,
)

pytestmark = [pytest.mark.faults, pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
CELL = 'cell_0'
PUSH_T_NODES = [n for n in NODES if n != 'arm_cell']
#: The cases CI runs; the others are nightly.
FAST = {('policy_host', 'kill'), ('recorder', 'kill'), ('push_t_cell', 'kill'),
        ('verifier', 'stop')}
NORMAL = ('success', 'failure')
#: A node whose death ends the episode it is part of (the scene, the policy, the bag).
MUST_ABORT = ('push_t_cell', 'policy_host', 'recorder')


def _cases() -> list[Any]:
    return [pytest.param(node, fault, id=f'{fault}-{node}',
                         marks=() if (node, fault) in FAST else (pytest.mark.nightly,))
            for node in PUSH_T_NODES for fault in FAULTS]


def _report(row: dict[str, Any]) -> None:
    path = os.environ.get('ENPIRE_FAULTS_REPORT')
    if path:
        with open(path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(row, sort_keys=True) + '\n')


def _intact(cell: Any, experiment: str) -> list[dict[str, Any]]:
    checked = check_experiment(Path(cell.home) / experiment)
    assert checked['problems'] == {}, checked['problems']
    return checked['records']


@pytest.mark.parametrize(('node', 'fault'), _cases())
def test_a_fault_costs_at_most_the_trial_it_hits(fault_cell: Any, fault_runner: Any, node: str,
                                                 fault: str) -> None:
    cell = fault_cell
    launch = cell.stack.proc.pid
    experiment = f'fault-{fault}-{node}-{uuid.uuid4().hex[:6]}'.replace('_', '-')
    assert node_process(launch, node) is not None, f'no {node} under the launch'
    result, pid, error = fault_runner(cell, experiment, lambda: inject(launch, node, fault))
    row: dict[str, Any] = {'node': node, 'fault': fault,
                           'error': f'{type(error).__name__}: {error}'[:160] if error else ''}
    if fault == 'kill':
        wait_respawned(launch, node, pid)
        row['respawned'] = True
    if node == 'rollout' and fault == 'kill':
        from enpire_common.errors import CellUnavailableError

        _report(row)
        assert isinstance(error, CellUnavailableError), repr(error)
        assert cell.client.client.wait_ready(60.0), 'the restarted rollout never answered'
        # The next run on the experiment closes the open trial and runs normally.
        after = cell.client.run_trials(count=1, policy_dir=str(SCRIPTED), seeds=[8],
                                       experiment_id=experiment, max_episode_steps=60,
                                       timeout_s=240.0)
        assert after.trials[0].outcome in NORMAL, after.trials[0].reason
        records = _intact(cell, experiment)
        outcomes = [r['outcome'] for r in records]
        row.update(outcomes=outcomes, reasons=[str(r.get('reason', ''))[:100] for r in records])
        _report(row)
        assert outcomes[-1] in NORMAL and 'aborted' in outcomes, outcomes
        return
    if result is not None:
        row.update(outcomes=[t.outcome for t in result.trials],
                   reasons=[t.reason[:100] for t in result.trials])
    _report(row)
    assert error is None, f'the run failed: {error!r}'
    trials = result.trials
    outcomes = [t.outcome for t in trials]
    assert len(trials) == 3, outcomes
    assert outcomes[0] in NORMAL, trials[0].reason
    assert outcomes[2] in NORMAL, (outcomes, trials[2].reason)
    if outcomes[1] not in NORMAL:
        assert trials[1].reason, f'trial 2 ended {outcomes[1]} without a reason'
    if fault == 'kill' and node in MUST_ABORT:
        # its episode cannot have gone on as it started: never recorded as a normal trial
        assert outcomes[1] == 'aborted', (outcomes, trials[1].reason)
    assert [r['outcome'] for r in _intact(cell, experiment)] == outcomes
    if fault == 'stop':
        proc = node_process(launch, node)
        assert proc is not None and proc.pid == pid, f'{node} was replaced after a SIGSTOP'
