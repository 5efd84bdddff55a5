"""Reset strategies that several tasks' plugins share (a task names them in its plugin), and
the start-pose error that both the reset procedure and the verifier's reset goal judge.

A strategy puts a cell into the start state of a seed; ``enpire_reset`` runs it and verifies
the result with the cameras. Strategies talk to the reset server's cell port (``place(seed,
timeout_s) -> Placement``) by duck typing, so this module imports nothing of enpire_reset.
"""

from __future__ import annotations

import math
from typing import Any


class SimPlaceStrategy:
    """Simulated cells: ask the simulator to place the start of ``seed`` (PlaceStart)."""

    id = 'sim_place-v1'
    method = ''     # the cell's default (a simulated cell's: sim_place)

    def __init__(self, sim: Any) -> None:
        self._sim = sim

    def place(self, seed: int, timeout_s: float, stage: str = '') -> Any:
        if not self.method and not stage:
            return self._sim.place(seed, timeout_s)
        return self._sim.place(seed, timeout_s, method=self.method, stage=stage)


class RobotPlaceStrategy(SimPlaceStrategy):
    """Arm cells: the robot takes the object from wherever it is and puts it at the start
    of ``seed`` (PlaceStart with method ``robot``; the cell runs the task's reset skill from
    its cameras). The reset server verifies the result as for any placement."""

    id = 'robot-v1'
    method = 'robot'


__all__ = ['RobotPlaceStrategy', 'SimPlaceStrategy']


def pose_error(expected: tuple[float, ...], observed: tuple[float, ...]
               ) -> tuple[float, float]:
    """(position error px, |angle error| rad wrapped to [0, pi]) between two poses."""
    dxy = math.hypot(observed[0] - expected[0], observed[1] - expected[1])
    if len(expected) < 3 or len(observed) < 3:
        return dxy, 0.0
    dth = (observed[2] - expected[2] + math.pi) % (2 * math.pi) - math.pi
    return dxy, abs(dth)
