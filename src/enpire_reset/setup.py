from setuptools import find_packages, setup

package_name = 'enpire_reset'

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
    description='Reset action servers with per-task strategies and camera-verified resets.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'reset_server = enpire_reset.ros.reset_server_node:main',
        ],
    },
)
