"""enpire_tasks: one directory per task, and the registry that finds them (see registry.py)."""
