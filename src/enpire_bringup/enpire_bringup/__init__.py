"""enpire_bringup."""
