"""Point the ROS 2 wheels' CMake export files at this venv's Python and numpy include dirs.

The PyPI ``ros-jazzy-*`` wheels were built on a host whose Python lived elsewhere; their
``share/*/cmake/*Export.cmake`` files name that host's include directories, and CMake then
refuses the imported targets ("includes non-existent path"). This rewrites those paths to the
venv's own, in place and idempotently. Usage: ``python patch_ros_wheels.py <venv>``.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

# Any absolute path that ends in a Python include dir or numpy's include dir.
_PY_INCLUDE = re.compile(r'(?<![\w/])/[^;"\s]*?/include/python3\.\d+')
_NP_INCLUDE = re.compile(r'(?<![\w/])/[^;"\s]*?/numpy/(?:_core|core)/include')


def patch(venv: Path) -> int:
    py_inc = sysconfig.get_paths()['include']
    np_inc = numpy.get_include()
    changed = 0
    for path in sorted((venv / 'share').glob('*/cmake/*.cmake')):
        text = path.read_text(encoding='utf-8', errors='surrogateescape')
        new = _PY_INCLUDE.sub(py_inc, text)
        new = _NP_INCLUDE.sub(np_inc, new)
        if new != text:
            path.write_text(new, encoding='utf-8', errors='surrogateescape')
            changed += 1
    return changed


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print('usage: patch_ros_wheels.py <venv>', file=sys.stderr)
        return 2
    n = patch(Path(argv[0]))
    if n:
        print(f'[setup] patched {n} ROS CMake export file(s) for this venv', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
