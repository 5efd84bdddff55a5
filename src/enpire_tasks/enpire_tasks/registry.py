"""The task registry: task name -> :class:`~enpire_tasks.plugin.TaskPlugin`.

Tasks are discovered, never listed by hand: every sub-package ``enpire_tasks/<task>/`` whose
``PLUGIN`` is a TaskPlugin named ``<task>``, plus out-of-tree plugins registered as entry
points of the group ``enpire.tasks`` (``<task> = <module>:<object>``). Adding a task is adding
a directory (or an entry point), never editing a table.

Simulated cells are found the same way, so that sim-side tools of lower layers (the verifier
crosscheck, calibrations) get a cell without importing the simulator package: a package that
implements a task's cell registers it in the entry point group ``enpire.sim_cells``
(``<task> = <module>:<factory>``, ``factory(task, **options)``).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enpire_common.errors import ConfigError, UnknownNameError
from enpire_tasks.plugin import TaskPlugin

if TYPE_CHECKING:
    from enpire_common.tasks import TaskSpec

TASKS_GROUP = 'enpire.tasks'
SIM_CELLS_GROUP = 'enpire.sim_cells'

_lock = threading.Lock()
_plugins: dict[str, TaskPlugin] | None = None


def _task_name(task: str | TaskSpec) -> str:
    return task if isinstance(task, str) else task.name


def _check(plugin: object, where: str, name: str) -> TaskPlugin:
    if not isinstance(plugin, TaskPlugin):
        raise ConfigError(f'{where}: PLUGIN is {type(plugin).__name__}, expected an '
                          f'enpire_tasks.plugin.TaskPlugin')
    if plugin.name != name:
        raise ConfigError(f"{where}: the plugin is named '{plugin.name}' but registered as "
                          f"'{name}'; name the directory (or entry point) after the task")
    return plugin


def _discover() -> dict[str, TaskPlugin]:
    import enpire_tasks

    found: dict[str, TaskPlugin] = {}
    for info in pkgutil.iter_modules(enpire_tasks.__path__):
        if not info.ispkg or info.name.startswith('_'):
            continue
        module = importlib.import_module(f'enpire_tasks.{info.name}')
        if hasattr(module, 'PLUGIN'):
            found[info.name] = _check(module.PLUGIN, module.__name__, info.name)
    for ep in entry_points(group=TASKS_GROUP):
        if ep.name not in found:
            found[ep.name] = _check(ep.load(), f'entry point {ep.value}', ep.name)
    return dict(sorted(found.items()))


def available() -> dict[str, TaskPlugin]:
    """Every registered task plugin by name (discovered once per process)."""
    global _plugins
    with _lock:
        if _plugins is None:
            _plugins = _discover()
        return dict(_plugins)


def find(task: str | TaskSpec) -> TaskPlugin | None:
    """The plugin of ``task`` (a name or a loaded contract), None when it has none."""
    return available().get(_task_name(task))


def get(task: str | TaskSpec) -> TaskPlugin:
    """The plugin of ``task`` (a name or a loaded contract).

    Raises:
        UnknownNameError: no plugin has that name (with a did-you-mean).
    """
    plugins = available()
    name = _task_name(task)
    if name not in plugins:
        raise UnknownNameError('task plugin', name, plugins)
    return plugins[name]


def example_policies_dir(plugin: TaskPlugin) -> Path | None:
    """The plugin's example policies directory in this workspace (None when absent)."""
    import os

    if not plugin.example_policies:
        return None
    roots = [Path(os.environ['ENPIRE_ROOT'])] if os.environ.get('ENPIRE_ROOT') else []
    roots.append(Path(__file__).resolve().parents[3])  # the checkout holding src/
    for root in roots:
        if (root / plugin.example_policies).is_dir():
            return root / plugin.example_policies
    return None


def make_sim_cell(task: TaskSpec, **options: Any) -> Any:
    """A simulated cell of ``task`` from the ``enpire.sim_cells`` entry points.

    For sim-only tools (crosschecks, calibrations); never on a verification path.

    Raises:
        ConfigError: no installed package registers a simulated cell for the task.
    """
    # A task's own entry, else the cell its contract names (``sim.cell``: one simulated cell
    # serving several tasks, such as the arm cell).
    names = [task.name, str(task.section('sim').get('cell', ''))]
    for name in filter(None, names):
        for ep in entry_points(group=SIM_CELLS_GROUP):
            if ep.name == name:
                return ep.load()(task, **options)
    raise ConfigError(
        f"no simulated cell is registered for task '{task.name}' (entry point group "
        f"'{SIM_CELLS_GROUP}'); build the package that simulates it (enpire_sim: "
        f'bash scripts/setup.sh)')


__all__ = ['SIM_CELLS_GROUP', 'TASKS_GROUP', 'available', 'example_policies_dir', 'find',
           'get', 'make_sim_cell']
