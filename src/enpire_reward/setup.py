from setuptools import find_packages, setup

package_name = 'enpire_reward'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['py.typed', 'models/*.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='ENPIRE-ROS developers',
    maintainer_email='dev@enpire-ros.org',
    description='Camera-based success verification: backends, per-view verdicts, fusion.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'verifier = enpire_reward.ros.verifier_node:main',
        ],
    },
)
