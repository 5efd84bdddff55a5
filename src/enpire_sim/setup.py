from setuptools import find_packages, setup

package_name = 'enpire_sim'

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
    description='Simulated cells (Push-T on gym-pusht physics, MuJoCo arm cells) speaking the '
                'real cell interfaces.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'push_t_cell = enpire_sim.ros.push_t_cell_node:main',
            'arm_cell = enpire_sim.ros.arm_cell_node:main',
        ],
        # The simulated cell of each task, for sim-side tools of lower layers (the verifier
        # crosscheck): enpire_tasks.registry.make_sim_cell finds it here.
        'enpire.sim_cells': [
            'push_t = enpire_sim.core.push_t:PushTSim',
            # every task whose contract names sim.cell: arm (pin insertion, GPU insertion)
            'arm = enpire_sim.core.arm.cell:make_arm_cell',
        ],
    },
)
