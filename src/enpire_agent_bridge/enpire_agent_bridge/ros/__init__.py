"""ROS 2 nodes of enpire_agent_bridge."""
