"""Reset strategies and their registry (string ids, versioned when behaviour changes).

A task's strategies come from its plugin (``enpire_tasks.<task>``: ``reset_strategies``;
Push-T: ``sim_place-v1``); :func:`register_strategy` adds strategies for every task. Lookups
take the task name of the contract: this package never names a task.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from enpire_common.errors import UnknownNameError
from enpire_reset.core.ports import PlacePort
from enpire_tasks import registry as tasks
from enpire_tasks.plugin import ResetStrategy
from enpire_tasks.reset import SimPlaceStrategy

StrategyFactory = Callable[[PlacePort], ResetStrategy]
_REGISTRY: dict[str, StrategyFactory] = {}
_VERSIONED = re.compile(r'^(?P<base>.+)-v(?P<version>\d+)$')


def register_strategy(strategy_id: str, factory: StrategyFactory) -> None:
    """Register ``factory`` under a versioned id such as ``'sim_place-v1'``."""
    if not _VERSIONED.match(strategy_id):
        raise ValueError(f"strategy id '{strategy_id}' must be versioned, e.g. 'name-v1'")
    _REGISTRY[strategy_id] = factory


def _strategies(task: str | None) -> dict[str, StrategyFactory]:
    """The task plugin's strategies (none without a task) plus the registered ones."""
    plugin = tasks.find(task) if task else None
    return {**_REGISTRY, **(dict(plugin.reset_strategies) if plugin else {})}


def available_strategies(task: str | None = None) -> list[str]:
    """Every id of ``task`` plus the unversioned aliases (which mean the latest version)."""
    known = _strategies(task)
    names = set(known)
    for sid in known:
        names.add(_VERSIONED.match(sid).group('base'))
    return sorted(names)


def resolve_strategy_id(name: str, task: str | None = None) -> str:
    """``'sim_place'`` -> the latest ``'sim_place-vN'`` of ``task``; exact ids pass through.

    Raises:
        UnknownNameError: with a did-you-mean over the known ids and aliases.
    """
    known = _strategies(task)
    if name in known:
        return name
    versions = [(int(m.group('version')), sid) for sid in known
                if (m := _VERSIONED.match(sid)) and m.group('base') == name]
    if not versions:
        raise UnknownNameError('reset strategy', name, available_strategies(task))
    return max(versions)[1]


def make_strategy(name: str, cell: PlacePort, task: str | None = None) -> ResetStrategy:
    """Build the strategy ``name`` (id or alias) of ``task`` over the cell port ``cell``."""
    return _strategies(task)[resolve_strategy_id(name, task)](cell)


__all__ = ['ResetStrategy', 'SimPlaceStrategy', 'StrategyFactory', 'available_strategies',
           'make_strategy', 'register_strategy', 'resolve_strategy_id']
