from setuptools import find_packages, setup

package_name = 'enpire_tasks'

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
    description='Task plugins (one directory per task) and the task registry.',
    license='Apache-2.0',
    entry_points={
        # Out-of-tree tasks register here: '<task> = <module>:<TaskPlugin object>'. The tasks
        # of this package are found by directory (enpire_tasks/<task>/, see registry.py).
        'enpire.tasks': [],
    },
)
