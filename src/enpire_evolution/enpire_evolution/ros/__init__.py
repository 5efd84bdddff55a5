"""ROS 2 nodes of enpire_evolution."""
