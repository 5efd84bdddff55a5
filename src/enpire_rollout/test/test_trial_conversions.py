"""The one trial record and its one mapper to and from TrialResult."""

from __future__ import annotations

import pytest

from enpire_rollout.core.trial_record import TrialRecord
from enpire_rollout.ros.conversions import trial_from_msg, trial_to_msg

VERDICTS = [
    {'view': 'top', 'backend': 'opencv-v1', 'success': True, 'invalid': False, 'score': 0.97,
     'threshold': 0.95, 'confidence': 0.9, 'object_pose': [256.0, 256.0, 0.78], 'latency_s': 0.01,
     'evidence_path': '/runs/e/top.png', 'detail': 'covered'},
    {'view': 'fused', 'backend': 'all', 'success': True, 'invalid': False, 'score': 0.97,
     'threshold': 0.95, 'confidence': 1.0, 'object_pose': [], 'latency_s': 0.0,
     'evidence_path': '', 'detail': 'all views'},
]


def record(**kw) -> TrialRecord:
    base = dict(experiment_id='exp', trial_id='cell_0-s7-ab12', revision_id='f' * 64,
                cell_id='cell_0', task='push_t', seed=7, index=3, outcome='success',
                reason='attempt 2/3: verified success', success=True, score=0.97, steps=140,
                duration_s=14.25, reset_s=1.5, started_at=1700000000.5,
                ended_at=1700000016.25, verdicts=VERDICTS, record_dir='/runs/exp/trials/t',
                attempts=[{'retry_index': 0, 'outcome': 'failure', 'success': False},
                          {'retry_index': 1, 'outcome': 'success', 'success': True}],
                controller={'late_acts': 2}, sandbox={'confinement': 'landlock'})
    base.update(kw)
    return TrialRecord(**base)


def test_a_record_survives_the_round_trip_through_its_message():
    r = record()
    back = trial_from_msg(trial_to_msg(r))
    for name in ('experiment_id', 'trial_id', 'revision_id', 'cell_id', 'task', 'seed',
                 'outcome', 'reason', 'success', 'score', 'steps', 'duration_s', 'reset_s',
                 'started_at', 'ended_at', 'verdicts', 'record_dir', 'error_code', 'error_msg'):
        assert getattr(back, name) == getattr(r, name), name
    assert (back.n_attempts, back.solved_attempt) == (2, 2)
    assert trial_to_msg(back) == trial_to_msg(r)


@pytest.mark.parametrize(('attempts', 'success', 'expected'), [
    ([], False, (1, 0)),                              # never reached its episode
    ([], True, (1, 1)),
    ([{'success': False}] * 3, False, (3, 0)),
    ([{'success': False}, {'success': True}], True, (2, 2)),
])
def test_the_message_counts_attempts_and_the_solving_one(attempts, success, expected):
    msg = trial_to_msg(record(attempts=attempts, success=success))
    assert (msg.attempts, msg.solved_attempt) == expected
    back = trial_from_msg(msg)
    assert (back.n_attempts, back.solved_attempt) == expected


def test_the_summary_is_what_the_cli_printed_for_a_message():
    from enpire_rollout.client import trial_to_dict

    msg = trial_to_msg(record(score=0.123456789, duration_s=1.23456, reset_s=0.98765))
    assert trial_to_dict(msg) == {
        'trial_id': 'cell_0-s7-ab12', 'revision_id': 'f' * 64, 'cell_id': 'cell_0', 'seed': 7,
        'outcome': 'success', 'reason': 'attempt 2/3: verified success', 'success': True,
        'score': 0.123457, 'steps': 140, 'duration_s': 1.235, 'attempts': 2,
        'solved_attempt': 2, 'reset_s': 0.988, 'record_dir': '/runs/exp/trials/t',
        'error_code': 0, 'error_msg': ''}


def test_long_error_messages_are_cut_but_reasons_are_kept_whole():
    msg = trial_to_msg(record(reason='r' * 5000, error_msg='e' * 5000))
    assert len(msg.reason) == 5000 and len(msg.error_msg) == 2000
