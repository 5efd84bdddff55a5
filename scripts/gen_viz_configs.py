"""Write the viewer configs of every task: config/foxglove/<task>.json (a Foxglove layout, built
with foxglove-sdk's own layout types, so the format is the app's) and config/rviz/<task>.rviz.

    python scripts/gen_viz_configs.py            # every task under config/tasks/
    python scripts/gen_viz_configs.py --check    # fail when a checked-in file is stale

A Foxglove layout shows the task's cameras (``artifacts.views``), the cell's state vector and
commands, the verifier's verdicts, safety events and alerts; an arm task adds a 3D panel
(robot description + TF). An rviz config shows the cell's markers, TF, each camera and its
verifier overlay, and an arm task's robot model. Topics are for ``cell_0`` (the ``rviz``
launcher rewrites them for another cell; Foxglove's topic picker changes them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELL = '/cell_0'


def layout_for(task: str) -> dict:
    from foxglove import layouts as fl

    from enpire_common.tasks import load_task

    spec = load_task(task)
    views = list(spec.section('artifacts').get('views') or [])
    arm = spec.section('cell').get('kind', '') == 'arm' or 'right_wrist' in views
    images = [fl.SplitItem(content=fl.ImagePanel(title=v, config=fl.ImageConfig(
        image_mode=fl.ImageModeConfig(image_topic=f'{CELL}/camera/{v}/image_raw',
                                      calibration_topic=f'{CELL}/camera/{v}/camera_info'))))
        for v in views]
    plot = fl.PlotPanel(title='state and command', config=fl.PlotConfig(paths=[
        fl.PlotSeries(value=f'{CELL}/state.values[:]', label='state', enabled=True,
                      timestamp_method='receiveTime'),
        fl.PlotSeries(value=f'{CELL}/command.action[:]', label='command', enabled=True,
                      timestamp_method='receiveTime')]))
    modes = fl.StateTransitionsPanel(title='cell mode', config=fl.StateTransitionsConfig(
        paths=[fl.StateTransitionsSeries(value=f'{CELL}/cell_state.mode', label='mode',
                                         enabled=True, timestamp_method='receiveTime')]))
    raw = [fl.SplitItem(content=fl.RawMessagesPanel(
        title=t, config=fl.RawMessagesConfig(topic_path=f'{CELL}/{t}')))
        for t in ('verdicts', 'safety/events', 'alerts')]
    left: list = images
    if arm:
        left = [fl.SplitItem(proportion=2, content=fl.ThreeDeePanel(
            title='arms (robot_description + TF)', config=fl.ThreeDeeConfig(
                follow_tf=f'{CELL.strip("/")}/world')))] + images
    content = fl.SplitContainer(direction='row', items=[
        fl.SplitItem(proportion=3, content=fl.SplitContainer(direction='column', items=left)),
        fl.SplitItem(proportion=2, content=fl.SplitContainer(direction='column', items=[
            fl.SplitItem(content=plot), fl.SplitItem(content=modes), *raw]))])
    return json.loads(fl.Layout(content=content).to_json())


def _display(cls: str, name: str, **fields: object) -> dict:
    return {'Class': cls, 'Name': name, 'Enabled': True, **fields}


def rviz_for(task: str) -> dict:
    """An rviz2 config (the YAML rviz2 saves) for ``cell_0`` of ``task``."""
    from enpire_common.tasks import load_task

    spec = load_task(task)
    views = list(spec.section('artifacts').get('views') or [])
    arm = 'right_wrist' in views
    cell = CELL.strip('/')
    displays = [
        _display('rviz_default_plugins/Grid', 'Grid', **{
            'Cell Size': 0.1, 'Plane Cell Count': 10, 'Reference Frame': f'{cell}/world'}),
        _display('rviz_default_plugins/TF', 'TF', **{'Show Names': False}),
        _display('rviz_default_plugins/MarkerArray', 'Markers', Topic={
            'Value': f'{CELL}/markers', 'Depth': 5, 'Reliability Policy': 'Reliable',
            'Durability Policy': 'Volatile', 'History Policy': 'Keep Last'}),
    ]
    if arm:
        displays.append(_display('rviz_default_plugins/RobotModel', 'Arms', **{
            'Description Source': 'Topic', 'Description Topic': {
                'Value': f'{CELL}/robot_description', 'Depth': 1,
                'Durability Policy': 'Transient Local', 'Reliability Policy': 'Reliable',
                'History Policy': 'Keep Last'},
            'TF Prefix': cell}))
    for view in views:
        displays.append(_display('rviz_default_plugins/Image', f'camera {view}', Topic={
            'Value': f'{CELL}/camera/{view}/image_raw', 'Depth': 1,
            'Reliability Policy': 'Best Effort', 'Durability Policy': 'Volatile',
            'History Policy': 'Keep Last'}))
        displays.append(_display('rviz_default_plugins/Image', f'verifier overlay {view}',
                                 Topic={'Value': f'{CELL}/verifier/overlay/{view}',
                                        'Depth': 1, 'Reliability Policy': 'Reliable',
                                        'Durability Policy': 'Transient Local',
                                        'History Policy': 'Keep Last'}))
    distance = 1.6 if arm else 0.9
    focal = [0.0, 0.6, 0.1] if arm else [0.256, 0.256, 0.0]
    return {
        'Panels': [{'Class': 'rviz_common/Displays', 'Name': 'Displays'},
                   {'Class': 'rviz_common/Views', 'Name': 'Views'}],
        'Visualization Manager': {
            'Class': '', 'Displays': displays, 'Enabled': True,
            'Global Options': {'Background Color': '48; 48; 48', 'Fixed Frame':
                               f'{cell}/world', 'Frame Rate': 30},
            'Name': 'root',
            'Tools': [{'Class': 'rviz_default_plugins/Interact'},
                      {'Class': 'rviz_default_plugins/MoveCamera'},
                      {'Class': 'rviz_default_plugins/Select'},
                      {'Class': 'rviz_default_plugins/Measure'}],
            'Value': True,
            'Views': {'Current': {
                'Class': 'rviz_default_plugins/Orbit', 'Distance': distance,
                'Focal Point': dict(zip('XYZ', focal, strict=True)), 'Name': 'Current View',
                'Pitch': 0.9, 'Yaw': -1.5708, 'Target Frame': '<Fixed Frame>'},
                'Saved': None},
        },
        'Window Geometry': {'Height': 900, 'Width': 1500},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--check', action='store_true', help='compare, write nothing')
    args = ap.parse_args(argv)
    import yaml

    stale = []
    for task_dir in sorted((ROOT / 'config' / 'tasks').iterdir()):
        if not (task_dir / 'task.yaml').is_file():
            continue
        task = task_dir.name
        files = {
            ROOT / 'config' / 'foxglove' / f'{task}.json':
                json.dumps(layout_for(task), indent=2, sort_keys=True) + '\n',
            ROOT / 'config' / 'rviz' / f'{task}.rviz':
                yaml.safe_dump(rviz_for(task), sort_keys=False, width=99),
        }
        for path, text in files.items():
            if args.check:
                if not path.is_file() or path.read_text() != text:
                    stale.append(str(path.relative_to(ROOT)))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f'wrote {path.relative_to(ROOT)}', file=sys.stderr)
    if stale:
        print(f'stale viewer configs: {", ".join(stale)} (run scripts/gen_viz_configs.py)',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
