"""Write config/foxglove/<task>.json: a Foxglove layout per task, built with foxglove-sdk's own
layout types (so the format is the app's, not a guess).

    python scripts/gen_foxglove_layouts.py            # every task under config/tasks/
    python scripts/gen_foxglove_layouts.py --check    # fail when a checked-in file is stale

Each layout shows the task's cameras (``artifacts.views``), the cell's state vector and
commands, the verifier's verdicts, safety events and alerts; an arm task adds a 3D panel
(robot description + TF). Topics are for ``cell_0``: Foxglove's topic picker changes them.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--check', action='store_true', help='compare, write nothing')
    args = ap.parse_args(argv)
    out_dir = ROOT / 'config' / 'foxglove'
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = []
    for task_dir in sorted((ROOT / 'config' / 'tasks').iterdir()):
        if not (task_dir / 'task.yaml').is_file():
            continue
        text = json.dumps(layout_for(task_dir.name), indent=2, sort_keys=True) + '\n'
        path = out_dir / f'{task_dir.name}.json'
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f'wrote {path.relative_to(ROOT)}', file=sys.stderr)
    if stale:
        print(f'stale Foxglove layouts: {", ".join(stale)} (run this script)', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
