"""The lockstep stepping rule every simulated cell follows (Push-T's and the arm cells')."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LockstepGate:
    """A lockstep cell steps once per tick, on the command for the tick it shows.

    A message can be lost (or a DDS reader stall) after a peer dies, and a lockstep loop then
    waits forever. So the controller re-sends its last command when no new tick comes: a
    command for the current tick (the first one was lost) steps, a second one for the tick
    just applied means our newest state never reached it, so the current observation is
    published again. Any other tick is stale and ignored.
    """

    def __init__(self, logger: Any) -> None:
        self._log = logger
        self.republished = 0        # observations published again on a re-send
        self.ignored_commands = 0   # commands for a tick the cell is not at

    def accepts(self, tick: int, step: int, republish: Callable[[], None]) -> bool:
        """Whether a command for ``tick`` steps a cell at ``step`` (calls ``republish`` for
        a re-sent command of the tick just applied)."""
        if tick == step:
            return True
        # A lockstep cell steps only on an applied command, so step - 1 (>= 0 since a
        # reset) is the tick of the last command applied.
        if tick == step - 1:
            self.republished += 1
            self._log.warning(
                f'command for tick {tick} again (the controller missed tick {step}): '
                'publishing the current observation again', throttle_duration_sec=1.0)
            republish()
        else:
            self.ignored_commands += 1
            self._log.warning(
                f'command for tick {tick} ignored: the cell is at tick {step} and steps '
                'only on a command for it', throttle_duration_sec=1.0)
        return False
