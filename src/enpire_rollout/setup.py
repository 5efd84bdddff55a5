from setuptools import find_packages, setup

package_name = 'enpire_rollout'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['py.typed']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='ENPIRE-ROS developers',
    maintainer_email='dev@enpire-ros.org',
    description='Budgeted trials, safety supervisor, recorder and replay.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'rollout = enpire_rollout.ros.rollout_node:main',
            'safety_supervisor = enpire_rollout.ros.safety_supervisor_node:main',
            'recorder = enpire_rollout.ros.recorder_node:main',
            'markers = enpire_rollout.ros.markers_node:main',
        ],
    },
)
