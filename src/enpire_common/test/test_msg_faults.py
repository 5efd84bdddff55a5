"""The message fault layer: what a node's subscriptions lose and how late the rest arrive."""

from __future__ import annotations

import re
import time

import pytest

from enpire_common.msg_faults import FaultyCallback, Rule, parse


def test_rules_parse_with_defaults_and_name_what_is_wrong():
    assert parse('policy_host@/cell_0/state:drop=0.1; */camera/*:delay=0.05,jitter=0.02') == [
        Rule('policy_host', '/cell_0/state', drop=0.1),
        Rule('*', '*/camera/*', delay_s=0.05, jitter_s=0.02)]
    assert parse('  ') == []
    for bad, why in (('/state', 'expected'), ('/state:loss=0.1', 'unknown option'),
                     ('/state:drop=x', 'must be a number'), ('/state:drop=1.5', '[0, 1]'),
                     ('/state:delay=-1', '>= 0')):
        with pytest.raises(ValueError, match=r'ENPIRE_MSG_FAULTS rule .*' + re.escape(why)):
            parse(bad)


def test_a_rule_matches_node_and_resolved_topic_globs():
    rule = parse('policy_*@*/camera/*:drop=1')[0]
    assert rule.matches('policy_host', '/cell_0/camera/top/image_raw')
    assert not rule.matches('recorder', '/cell_0/camera/top/image_raw')
    assert not rule.matches('policy_host', '/cell_0/state')


class _Node:
    """What FaultyCallback needs of a node when nothing is delayed."""

    def get_name(self) -> str:
        return 'policy_host'

    def get_logger(self):
        import logging
        return logging.getLogger('test')


def test_drops_are_reproducible_with_a_seed_and_near_the_rate():
    runs = []
    for _ in range(2):
        got: list[int] = []
        cb = FaultyCallback(_Node(), '/cell_0/state', Rule('*', '*', drop=0.3), got.append,
                            seed=7)
        for i in range(2000):
            cb(i)
        runs.append(got)
        assert cb.received == 2000 and cb.dropped == 2000 - len(got)
    assert runs[0] == runs[1]                       # the same seed loses the same messages
    assert 0.25 < 1 - len(runs[0]) / 2000 < 0.35
    assert runs[0] == sorted(runs[0])               # what is kept arrives in order


@pytest.mark.ros
def test_delayed_messages_arrive_late_in_order_from_the_nodes_executor(ros):
    import threading

    from std_msgs.msg import Int32

    node = ros.node('listener')
    got: list[tuple[int, float, str]] = []
    rule = Rule('*', '*', delay_s=0.05, jitter_s=0.05)
    cb = FaultyCallback(node, '/numbers', rule,
                        lambda m: got.append((m.data, time.monotonic(),
                                              threading.current_thread().name)), seed=1)
    sent = {}
    for i in range(40):
        sent[i] = time.monotonic()
        cb(Int32(data=i))
        time.sleep(0.005)
    deadline = time.monotonic() + 5.0
    while len(got) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [d for d, _, _ in got] == list(range(40))           # none lost, none reordered
    assert all(t - sent[d] >= 0.05 for d, t, _ in got)         # each at least delay late
    assert not any(name.startswith('msg-delay') for _, _, name in got)   # executor thread
    assert cb.delayed == 40 and cb.dropped == 0


@pytest.mark.ros
def test_a_lost_packet_of_a_reliable_subscription_comes_again_and_keep_last_trims(ros):
    from std_msgs.msg import Int32

    node = ros.node('listener')
    got: list[int] = []
    rule = Rule('*', '*', drop=0.5, resend_s=0.05)
    cb = FaultyCallback(node, '/numbers', rule, lambda m: got.append(m.data), seed=3,
                        reliable=True)
    for i in range(40):
        cb(Int32(data=i))
    wait = time.monotonic() + 5.0
    while len(got) < 40 and time.monotonic() < wait:
        time.sleep(0.01)
    assert got == list(range(40))                   # reliable: late, in order, none lost
    assert cb.resent > 0 and cb.dropped == 0

    kept: list[int] = []
    last = FaultyCallback(node, '/latest', rule, lambda m: kept.append(m.data), seed=3,
                          reliable=True, depth=1)
    for i in range(40):
        last(Int32(data=i))
    wait = time.monotonic() + 5.0
    while (not kept or kept[-1] != 39) and time.monotonic() < wait:
        time.sleep(0.01)
    assert kept[-1] == 39 and kept == sorted(kept)  # the newest always arrives
    assert last.superseded == 40 - len(kept)        # depth 1: what was overtaken is gone
    lost = FaultyCallback(node, '/gone', Rule('*', '*', drop=1.0, resend_s=0.0), kept.append,
                          reliable=True)
    lost(Int32(data=1))
    assert lost.dropped == 1                        # resend=0: lost even when reliable


@pytest.mark.ros
def test_installed_from_the_environment_every_new_subscription_is_faulty(ros):
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Int32

    from enpire_common import msg_faults
    from enpire_common.ros import make_fast_executor

    assert msg_faults.install_from_env({}) == []
    assert not msg_faults.delays_installed()
    with pytest.raises(ValueError, match='ENPIRE_MSG_FAULTS_SEED'):
        msg_faults.install_from_env({'ENPIRE_MSG_FAULTS': '*:drop=0.1',
                                     'ENPIRE_MSG_FAULTS_SEED': 'x'})
    try:
        rules = msg_faults.install_from_env({'ENPIRE_MSG_FAULTS': 'listener@/numbers:delay=0.01'})
        assert rules == [Rule('listener', '/numbers', delay_s=0.01)]
        node = ros.node('listener')
        faulty = node.create_subscription(Int32, '/numbers', lambda m: None, 10)
        clean = node.create_subscription(Int32, '/other', lambda m: None, 10)
        assert isinstance(faulty.callback, FaultyCallback)
        assert faulty.callback.topic == '/numbers'
        assert not isinstance(clean.callback, FaultyCallback)
        # delayed messages come back by guard condition: no events executor then
        assert msg_faults.delays_installed()
        assert isinstance(make_fast_executor(ros.context), SingleThreadedExecutor)
    finally:
        msg_faults.uninstall()
    assert not isinstance(ros.node('after').create_subscription(
        Int32, '/numbers', lambda m: None, 10).callback, FaultyCallback)
