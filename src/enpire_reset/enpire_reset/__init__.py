"""enpire_reset."""
