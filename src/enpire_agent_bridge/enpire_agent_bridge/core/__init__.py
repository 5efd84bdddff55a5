"""Pure logic of enpire_agent_bridge (no rclpy imports)."""
