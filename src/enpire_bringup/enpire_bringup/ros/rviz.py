"""``rviz`` (launch argument ``rviz:=true``): rviz2 with the task's config, or a clear line
saying why not.

rviz2 is not installable from PyPI wheels; a real cell's ROS install has it. Without it this
prints what to use instead and exits 0, so the rest of the cell's launch goes on.

    rviz --task push_t [--cell cell_0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[4] / 'config' / 'rviz'


def config_path(task: str) -> Path:
    """config/rviz/<task>.rviz of the workspace (source tree or installed share)."""
    for base in (CONFIG_DIR, _share_config()):
        if base is not None and (base / f'{task}.rviz').is_file():
            return base / f'{task}.rviz'
    raise FileNotFoundError(f'no rviz config for task {task!r} under config/rviz/')


def _share_config() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory('enpire_bringup')) / 'config' / 'rviz'
    except Exception:  # noqa: BLE001 - not installed: the source tree is used
        return None


def for_cell(text: str, cell: str) -> str:
    """The config with its topics and frames moved from cell_0 to ``cell``."""
    return text.replace('/cell_0/', f'/{cell}/').replace('cell_0/', f'{cell}/')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--task', required=True)
    ap.add_argument('--cell', default='cell_0')
    args, _ros_args = ap.parse_known_args(argv)
    try:
        config = config_path(args.task)
    except FileNotFoundError as exc:
        print(f'rviz: {exc}', file=sys.stderr)
        return 2
    exe = shutil.which('rviz2')
    if exe is None:
        print('rviz: rviz2 is not installed here (it does not come as a PyPI wheel; a ROS 2 '
              f'desktop install has it). Its config is {config}. Without it: `enpire view '
              f'--cell {args.cell}` and the Foxglove app, with config/foxglove/'
              f'{args.task}.json', file=sys.stderr, flush=True)
        return 0
    fd, path = tempfile.mkstemp(prefix=f'enpire-{args.cell}-', suffix='.rviz')
    with os.fdopen(fd, 'w') as f:
        f.write(for_cell(config.read_text(), args.cell))
    os.execv(exe, [exe, '-d', path])
    return 0   # not reached


if __name__ == '__main__':
    sys.exit(main())
