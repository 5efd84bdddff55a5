import os
from pathlib import Path

from setuptools import find_packages, setup

package_name = 'enpire_bringup'

# The workspace root's launch/ and config/ trees are installed into this package's share
# directory so that $(find-pkg-share enpire_bringup)/launch/... works on any machine.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent.parent


def _tree(name: str) -> list[tuple[str, list[str]]]:
    out = []
    for dirpath, _dirs, files in sorted(os.walk(_ROOT / name)):
        rel = Path(dirpath).relative_to(_ROOT)
        paths = [os.path.relpath(Path(dirpath) / f, _HERE) for f in sorted(files)]
        if paths:
            out.append((str(Path('share', package_name, rel)), paths))
    return out


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['py.typed', 'dashboard/static/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        *_tree('launch'),
        *_tree('config'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='ENPIRE-ROS developers',
    maintainer_email='dev@enpire-ros.org',
    description='The enpire command, the embedded launcher, root launch/ and config/.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'enpire = enpire_bringup.cli:main',
            'heartbeat = enpire_bringup.ros.heartbeat_node:main',
            'rviz = enpire_bringup.ros.rviz:main',
        ],
    },
)
