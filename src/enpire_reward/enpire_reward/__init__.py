"""enpire_reward."""
