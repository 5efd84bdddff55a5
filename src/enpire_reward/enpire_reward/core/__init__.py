"""Pure logic of enpire_reward (no rclpy imports)."""
