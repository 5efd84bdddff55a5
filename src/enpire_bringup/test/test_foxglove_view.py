"""``enpire view`` pieces that need no cell: schemas and the checked-in Foxglove layouts."""

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


def test_the_foxglove_layouts_are_fresh_and_name_each_task_s_cameras():
    spec = importlib.util.spec_from_file_location('gen', ROOT / 'scripts' /
                                                  'gen_foxglove_layouts.py')
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.main(['--check']) == 0, 'run scripts/gen_foxglove_layouts.py'
    text = (ROOT / 'config' / 'foxglove' / 'pin_insertion.json').read_text()
    for view in ('task_top', 'side', 'right_wrist'):
        assert f'/cell_0/camera/{view}/image_raw' in text
    layout = json.loads(text)
    assert '"panelType": "ThreeDee"' in json.dumps(layout)    # the arms in 3D
