"""Cell messages -> a policy's observation, and the built-in hold action: one place for both.

Both nodes that host policies (``policy_host`` and ``agent_bridge``) pair a state tick with a
camera frame and build the observation here, and the bridge's hold action is here too. The
task plugins (``enpire_tasks``: an observation builder driven by the contract's observation
``source`` fields, and a hold action per task) replace :func:`build_observation` and
:func:`hold_action` in this one module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from enpire_agent_bridge.ros import conversions as conv
from enpire_common.errors import EnpireError
from enpire_interfaces.msg import StateVector

#: The topics an observation is built from (the push_t contract's ``source`` fields).
IMAGE_TOPIC = 'camera/top/image_raw'
STATE_TOPIC = 'state'


def build_observation(state: StateVector, image: np.ndarray,
                      retry_index: int = 0) -> dict[str, Any]:
    """The observation of one state tick with its camera frame (names of the obs spec).

    Raises CellError when the state vector lacks a field.
    """
    pos, vel = conv.state_parts(state)
    return {'image_top': image, 'agent_pos': pos, 'agent_vel': vel, 'step': int(state.tick),
            'retry_index': retry_index}


def hold_action(low: Sequence[float], high: Sequence[float]
                ) -> Callable[[Mapping[str, Any]], np.ndarray]:
    """The built-in hold (no policy code): command the agent position, within the bounds."""
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    return lambda obs: np.clip(np.asarray(obs['agent_pos'], dtype=np.float64), lo, hi)


class CameraFrames:
    """The newest camera frame, and whether it is recent enough for a state tick.

    Not thread-safe: the node serialises calls.

    Args:
        max_image_age_s: A state is served with a frame at most this much older (stamps);
            0 = the frame of the same tick.
    """

    def __init__(self, max_image_age_s: float) -> None:
        self.max_image_age_s = max_image_age_s
        self._frame: tuple[float, np.ndarray] | None = None

    def update(self, msg: Image) -> None:
        """Keep ``msg`` as the newest frame. Raises BadImageError (not rgb8, not packed)."""
        self._frame = (conv.stamp_s(msg.header.stamp), conv.image_to_array(msg))

    def receive(self, msg: Image, logger: Any) -> bool:
        """:meth:`update` for a subscription: a bad frame is logged (throttled), not raised.

        Returns whether ``msg`` is the newest frame now.
        """
        try:
            self.update(msg)
        except EnpireError as exc:
            logger.error(str(exc), throttle_duration_sec=5.0)
            return False
        return True

    def for_state(self, state: StateVector) -> np.ndarray | None:
        """The frame to serve ``state`` with; None: wait for a newer frame."""
        frame = self._frame
        if frame is None or frame[0] < conv.stamp_s(state.header.stamp) - \
                self.max_image_age_s - 1e-9:
            return None
        return frame[1]
