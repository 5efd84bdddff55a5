"""Tests of the pure parts of enpire graph / topic echo / doctor, plus one live graph read."""

from __future__ import annotations

import json

import pytest
from std_msgs.msg import String

from enpire_bringup import cli
from enpire_bringup.introspect import (
    derive_actions,
    import_message,
    message_to_dict,
    read_graph,
)
from enpire_common.errors import ConfigError


def test_actions_are_derived_from_hidden_action_topics_and_services():
    topics = {'/cell_0/reset_cell/_action/feedback':
              ['enpire_interfaces/action/ResetCell_FeedbackMessage'],
              '/cell_0/reset_cell/_action/status': ['action_msgs/msg/GoalStatusArray'],
              '/chatter': ['std_msgs/msg/String']}
    services = {'/cell_0/reset_cell/_action/send_goal':
                ['enpire_interfaces/action/ResetCell_SendGoal']}
    assert derive_actions(topics, services) == {
        '/cell_0/reset_cell': 'enpire_interfaces/action/ResetCell'}


def test_message_types_import_from_their_names():
    assert import_message('std_msgs/msg/String') is String
    assert import_message('std_msgs/String') is String
    with pytest.raises(ConfigError, match="cannot import message type 'nope_msgs/msg/X'"):
        import_message('nope_msgs/msg/X')


def test_messages_convert_to_json_data():
    from builtin_interfaces.msg import Time

    assert message_to_dict(String(data='hi')) == {'data': 'hi'}
    assert message_to_dict(Time(sec=3, nanosec=4)) == {'sec': 3, 'nanosec': 4}


def test_doctor_prints_one_json_object(capsys):
    assert cli.main(['doctor', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['ros']['source'] == 'wheels'
    assert report['ros']['launch_importable'] is False
    assert 'torch' in report['libraries']


@pytest.mark.ros
def test_graph_lists_a_running_node_and_its_topic(ros):
    ros.node('graph_subject', namespace='cell_7').create_publisher(String, 'beat', 10)
    graph = read_graph(wait_s=3.0)
    assert '/cell_7/graph_subject' in [n['fqn'] for n in graph['nodes']]
    assert {'name': '/cell_7/beat', 'types': ['std_msgs/msg/String']} in graph['topics']
