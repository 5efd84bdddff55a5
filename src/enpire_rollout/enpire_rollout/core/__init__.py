"""Pure logic of enpire_rollout (no rclpy imports)."""
