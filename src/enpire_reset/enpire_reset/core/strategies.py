"""Reset strategies and their registry (string ids, versioned when behaviour changes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from enpire_common.errors import UnknownNameError
from enpire_reset.core.ports import Placement, SimPort


@runtime_checkable
class ResetStrategy(Protocol):
    """Puts the cell into the start state of a seed (one strategy per task / cell kind)."""

    id: str

    def place(self, seed: int, timeout_s: float) -> Placement: ...


class SimPlaceStrategy:
    """Simulated cells: ask the simulator to place the start of ``seed`` (SimReset)."""

    id = 'sim_place-v1'

    def __init__(self, sim: SimPort) -> None:
        self._sim = sim

    def place(self, seed: int, timeout_s: float) -> Placement:
        return self._sim.place(seed, timeout_s)


StrategyFactory = Callable[[SimPort], ResetStrategy]
_REGISTRY: dict[str, StrategyFactory] = {}
_VERSIONED = re.compile(r'^(?P<base>.+)-v(?P<version>\d+)$')


def register_strategy(strategy_id: str, factory: StrategyFactory) -> None:
    """Register ``factory`` under a versioned id such as ``'sim_place-v1'``."""
    if not _VERSIONED.match(strategy_id):
        raise ValueError(f"strategy id '{strategy_id}' must be versioned, e.g. 'name-v1'")
    _REGISTRY[strategy_id] = factory


def available_strategies() -> list[str]:
    """Every registered id plus the unversioned aliases (which mean the latest version)."""
    names = set(_REGISTRY)
    for sid in _REGISTRY:
        names.add(_VERSIONED.match(sid).group('base'))
    return sorted(names)


def resolve_strategy_id(name: str) -> str:
    """``'sim_place'`` -> the latest ``'sim_place-vN'``; exact ids pass through.

    Raises:
        UnknownNameError: with a did-you-mean over the known ids and aliases.
    """
    if name in _REGISTRY:
        return name
    versions = [(int(m.group('version')), sid) for sid in _REGISTRY
                if (m := _VERSIONED.match(sid)) and m.group('base') == name]
    if not versions:
        raise UnknownNameError('reset strategy', name, available_strategies())
    return max(versions)[1]


def make_strategy(name: str, sim: SimPort) -> ResetStrategy:
    """Build the strategy ``name`` (id or alias) over the cell port ``sim``."""
    return _REGISTRY[resolve_strategy_id(name)](sim)


register_strategy(SimPlaceStrategy.id, SimPlaceStrategy)
