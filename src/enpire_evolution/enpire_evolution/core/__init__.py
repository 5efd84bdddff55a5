"""Pure logic of enpire_evolution (no rclpy imports)."""
