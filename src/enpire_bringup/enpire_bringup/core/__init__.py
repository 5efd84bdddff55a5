"""Pure logic of enpire_bringup (no rclpy imports)."""
