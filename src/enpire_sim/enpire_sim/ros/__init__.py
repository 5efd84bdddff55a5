"""ROS 2 nodes of enpire_sim."""
