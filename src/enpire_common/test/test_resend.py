"""enpire_common.ros.resend_until_answered: a request to a server that died is sent again.

A SIGKILLed server lingers in the DDS graph until its lease ends and answers nothing; the
respawned one answers a resend. Futures here are plain rclpy futures completed by hand.
"""

from __future__ import annotations

import time

import pytest
from rclpy.task import Future

from enpire_common.errors import EnpireTimeoutError
from enpire_common.ros import resend_until_answered


def _server(answer_on: int):
    """send() for a server that answers only its ``answer_on``-th request (1-based)."""
    sent: list[Future] = []

    def send() -> Future:
        f = Future()
        sent.append(f)
        if len(sent) == answer_on:
            f.set_result(f'answer to try {len(sent)}')
        return f

    return send, sent


def test_a_resend_reaches_the_server_that_answers() -> None:
    send, sent = _server(answer_on=3)
    resent, waits = [], []
    result = resend_until_answered(send, per_try_s=0.05, total_s=5.0, what='probe',
                                   before_try=waits.append, on_resend=lambda: resent.append(1))
    assert result == 'answer to try 3'
    assert len(sent) == 3 and len(resent) == 2 and len(waits) == 3
    assert all(f.cancelled() for f in sent[:2])      # the unanswered tries are given up
    assert all(w >= 1.0 for w in waits)              # the server wait never gets under 1 s


def test_no_try_starts_after_the_total_and_the_last_timeout_is_raised() -> None:
    send, sent = _server(answer_on=0)               # never answers
    t0 = time.monotonic()
    with pytest.raises(EnpireTimeoutError, match='probe did not answer within 0.5 s'):
        resend_until_answered(send, per_try_s=0.5, total_s=0.75, what='probe')
    took = time.monotonic() - t0
    # Tries start at 0 and 0.5 s; at 1.0 s the total has passed (0.25 s of slack each way
    # for a loaded machine's late wake-ups).
    assert len(sent) == 2
    assert 1.0 <= took < 3.0


def test_an_answer_on_the_first_try_sends_once() -> None:
    send, sent = _server(answer_on=1)
    resent: list[int] = []
    assert resend_until_answered(send, per_try_s=1.0, total_s=10.0, what='probe',
                                 on_resend=lambda: resent.append(1)) == 'answer to try 1'
    assert len(sent) == 1 and not resent
