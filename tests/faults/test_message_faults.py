"""Lost and late messages on a live sim cell (enpire_common.msg_faults).

Every node of a Push-T cell starts with ``ENPIRE_MSG_FAULTS`` set, so each of its
subscriptions (state, command, camera, clock, cell_state, verdicts, ...) loses or delays what
it receives, as a lossy or slow network would. Services and actions are untouched (their
resend loops are tested by the node faults). Each case runs scripted trials and asserts:
- the faults happened (the nodes' own counts in the launch log);
- nothing hangs: every trial ends, each with an outcome and, when not a normal one, a reason;
- a lost message costs at most a trial: most trials are normal ones;
- nothing lost or corrupted on disk (enpire_bringup.faults.check_experiment).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from enpire_bringup.faults import check_experiment

pytestmark = [pytest.mark.faults, pytest.mark.system, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = ROOT / 'examples' / 'policies' / 'push_t' / 'scripted'
NORMAL = ('success', 'failure')
TRIALS = 4

CASES = {
    # 5% of the packets of every message every node receives are lost: DDS resends those of
    # reliable topics (here 0.2 s later), and a keep-last history drops what is superseded
    'drop': '*:drop=0.05',
    # 3% of the control loop's states and commands are lost for good, as if reliability
    # broke: the lockstep resend (enpire_sim.ros.lockstep) must carry the episode on
    'lost': '*/state:drop=0.03,resend=0;*/command:drop=0.03,resend=0',
    # every message arrives 20-60 ms late (in order), and 2% of packets are lost
    'delay': '*:drop=0.02,delay=0.02,jitter=0.04',
}
#: The case CI runs; the others are nightly.
FAST = ('drop',)
COUNTS = re.compile(r'message faults on (\S+): dropped (\d+), delayed (\d+) of (\d+) '
                    r'\(resent (\d+)')


@pytest.mark.parametrize('case', [pytest.param(c, marks=() if c in FAST else (
    pytest.mark.nightly,)) for c in sorted(CASES)])
def test_lost_and_late_messages_cost_at_most_a_trial(tmp_path: Path, case: str) -> None:
    from enpire_bringup.testing import trials_session

    spec = CASES[case]
    experiment = f'msg-{case}-{uuid.uuid4().hex[:6]}'
    env = {'ENPIRE_MSG_FAULTS': spec, 'ENPIRE_MSG_FAULTS_SEED': '11'}
    with trials_session(tmp_path / 'home', env=env) as cell:
        result = cell.client.run_trials(
            count=TRIALS, policy_dir=str(SCRIPTED), seeds=list(range(20, 20 + TRIALS)),
            experiment_id=experiment, max_episode_steps=120, max_consecutive_faults=0,
            timeout_s=300.0)
        log = (cell.home / 'logs' / 'launch-cell_0.log').read_text(errors='replace')
    trials = result.trials
    outcomes = [t.outcome for t in trials]
    row = {'case': case, 'faults': spec, 'outcomes': outcomes,
           'reasons': [t.reason[:100] for t in trials]}
    # the nodes' own counts: the last line per (node, topic) is the total so far
    totals: dict[str, tuple[int, int, int, int]] = {}
    for line in log.splitlines():
        m = COUNTS.search(line)
        if m:
            node = line.split(']', 1)[0].lstrip('[')
            totals[f'{node} {m.group(1)}'] = (int(m.group(2)), int(m.group(3)),
                                              int(m.group(4)), int(m.group(5)))
    row['dropped'] = sum(t[0] for t in totals.values())
    row['delayed'] = sum(t[1] for t in totals.values())
    row['resent'] = sum(t[3] for t in totals.values())
    report = os.environ.get('ENPIRE_FAULTS_REPORT')
    if report:
        with open(report, 'a', encoding='utf-8') as f:
            f.write(json.dumps(row, sort_keys=True) + '\n')

    assert 'message faults on' in log, 'no node applied ENPIRE_MSG_FAULTS'
    assert row['dropped'] + row['delayed'] > 0, f'no message was lost or late: {totals}'
    if 'delay' in spec:
        assert row['delayed'] > 0, f'nothing was delayed: {totals}'
    assert len(trials) == TRIALS, row
    for t in trials:
        assert t.outcome in NORMAL or t.reason, f'{t.outcome} without a reason: {row}'
    assert all(o in NORMAL for o in outcomes), row
    checked = check_experiment(Path(cell.home) / experiment)
    assert checked['problems'] == {}, checked['problems']
    assert [r['outcome'] for r in checked['records']] == outcomes
