from setuptools import find_packages, setup

package_name = 'enpire_agent_bridge'

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
    description='Policy contract, sandboxed policy host, revision store, hot swap, agent CLI/MCP.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'policy_host = enpire_agent_bridge.ros.policy_host_node:main',
            'agent_bridge = enpire_agent_bridge.ros.agent_bridge_node:main',
        ],
    },
)
