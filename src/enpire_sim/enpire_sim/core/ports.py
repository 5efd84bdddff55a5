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


def validate_action(action: object, low: Sequence[float], high: Sequence[float], *,
                    form: str = '', unit: str = '') -> np.ndarray:
    """Check a command against shape, finiteness and bounds; return it as float64.

    ``form`` names the command's layout and ``unit`` its unit in the messages.

    Raises:
        InvalidCommandError: (a CommandRejectedError) with ``kind`` SHAPE, NAN or BOUNDS.
    """
    send = f'; send {form}' if form else ''
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidCommandError('SHAPE', f'command {action!r} is not numeric{send}') \
            from None
    if arr.shape != (len(low),):
        raise InvalidCommandError(
            'SHAPE', f'command has shape {arr.shape}, expected ({len(low)},)'
                     f'{f" = {form}" if form else ""}')
    if not np.all(np.isfinite(arr)):
        raise InvalidCommandError('NAN', f'command {arr.tolist()} has non-finite values')
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if np.any(arr < lo - 1e-9) or np.any(arr > hi + 1e-9):
        raise InvalidCommandError(
            'BOUNDS', f'command {arr.tolist()} is outside the safety bounds low={lo.tolist()} '
                      f'high={hi.tolist()}{unit}; clamp it into the envelope')
    return arr


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
