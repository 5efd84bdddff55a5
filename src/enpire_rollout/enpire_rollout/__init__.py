"""enpire_rollout."""
