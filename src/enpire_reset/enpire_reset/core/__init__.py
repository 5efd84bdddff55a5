"""Pure logic of enpire_reset (no rclpy imports)."""
