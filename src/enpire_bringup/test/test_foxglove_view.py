"""Viewer pieces that need no cell: schemas, the checked-in Foxglove layouts and rviz configs,
and the ``rviz`` launcher without rviz2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from enpire_bringup.foxglove_view import ros2msg_schema

ROOT = Path(__file__).resolve().parents[3]


def test_schemas_carry_their_dependencies_as_mcap_and_foxglove_expect():
    text = ros2msg_schema('enpire_interfaces/msg/StateVector')
    assert text.startswith('std_msgs/Header header\n')
    assert 'MSG: builtin_interfaces/Time' in text     # dependencies appended
    assert 'MSG: std_msgs/Header' in ros2msg_schema('enpire_interfaces/msg/Alert')
    assert ros2msg_schema('no_pkg/msg/Nothing') is None


def test_the_viewer_configs_are_fresh_and_name_each_task_s_cameras():
    import yaml

    spec = importlib.util.spec_from_file_location('gen', ROOT / 'scripts' /
                                                  'gen_viz_configs.py')
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.main(['--check']) == 0, 'run scripts/gen_viz_configs.py'
    rviz = yaml.safe_load((ROOT / 'config' / 'rviz' / 'zip_tie.rviz').read_text())
    displays = {d['Name']: d for d in rviz['Visualization Manager']['Displays']}
    assert displays['Markers']['Topic']['Value'] == '/cell_0/markers'
    assert displays['Arms']['Description Topic']['Value'] == '/cell_0/robot_description'
    assert 'verifier overlay side' in displays and 'camera right_wrist' in displays
    assert rviz['Visualization Manager']['Global Options']['Fixed Frame'] == 'cell_0/world'
    text = (ROOT / 'config' / 'foxglove' / 'pin_insertion.json').read_text()
    for view in ('task_top', 'side', 'right_wrist'):
        assert f'/cell_0/camera/{view}/image_raw' in text
    layout = json.loads(text)
    assert '"panelType": "ThreeDee"' in json.dumps(layout)    # the arms in 3D


def test_rviz_without_rviz2_says_what_to_use_and_lets_the_launch_go_on(capsys, monkeypatch):
    from enpire_bringup.ros import rviz

    monkeypatch.setattr(rviz.shutil, 'which', lambda _name: None)
    assert rviz.main(['--task', 'pin_insertion', '--cell', 'cell_3']) == 0
    err = capsys.readouterr().err
    assert 'rviz2 is not installed' in err and 'enpire view --cell cell_3' in err
    assert rviz.main(['--task', 'no_such_task']) == 2
    text = rviz.config_path('push_t').read_text()
    assert '/cell_3/markers' in rviz.for_cell(text, 'cell_3')
