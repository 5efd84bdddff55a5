"""Reset strategies that several tasks' plugins share (a task names them in its plugin).

A strategy puts a cell into the start state of a seed; ``enpire_reset`` runs it and verifies
the result with the cameras. Strategies talk to the reset server's cell port (``place(seed,
timeout_s) -> Placement``) by duck typing, so this module imports nothing of enpire_reset.
"""

from __future__ import annotations

from typing import Any


class SimPlaceStrategy:
    """Simulated cells: ask the simulator to place the start of ``seed`` (PlaceStart)."""

    id = 'sim_place-v1'

    def __init__(self, sim: Any) -> None:
        self._sim = sim

    def place(self, seed: int, timeout_s: float) -> Any:
        return self._sim.place(seed, timeout_s)


__all__ = ['SimPlaceStrategy']
