"""Moved to :mod:`enpire_tasks.push_t.render` (the task plugin owns the camera forward model).

A re-export for callers not yet switched (benchmarks/sim_steps.py); import from the plugin.
"""

from enpire_tasks.push_t.render import *  # noqa: F403
from enpire_tasks.push_t.render import __all__  # noqa: F401
