"""enpire_evolution."""
