"""enpire_sim."""
