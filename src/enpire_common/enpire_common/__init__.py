"""enpire_common."""
