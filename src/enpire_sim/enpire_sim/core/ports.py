"""Ports of enpire_sim: what any simulated cell offers (checked by ``check_cell``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from enpire_common.errors import CommandRejectedError


class InvalidCommandError(CommandRejectedError):
    """A command a simulated cell refuses. ``kind`` names the SafetyEvent kind: ``'SHAPE'``,
    ``'NAN'``, ``'BOUNDS'`` or, for an arm cell's end-effector target, ``'IK'``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@runtime_checkable
class CellPort(Protocol):
    """A simulated cell in one process.

    ``reset`` and ``step`` return the agent state vector; ``step`` raises
    CommandRejectedError on a malformed or out-of-envelope action and leaves the scene as it
    was. ``ground_truth`` returns an object with ``object_pose``, ``agent_pos``, ``coverage``,
    ``success``, ``step`` and ``seed``.
    """

    low: Sequence[float]
    high: Sequence[float]

    def reset(self, seed: int | None = None, object_pose: Sequence[float] | None = None,
              agent_pos: Sequence[float] | None = None) -> np.ndarray: ...

    def step(self, action: Sequence[float]) -> np.ndarray: ...

    def render(self) -> np.ndarray: ...

    def ground_truth(self) -> Any: ...

    def agent_state(self) -> np.ndarray: ...
