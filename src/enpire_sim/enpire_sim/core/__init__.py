"""Pure logic of enpire_sim (no rclpy imports)."""
