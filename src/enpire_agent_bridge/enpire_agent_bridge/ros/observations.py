"""Cell messages -> a policy's observation, and the hold action: one place for both nodes.

Both nodes that host policies (``policy_host`` and ``agent_bridge``) pair a state tick with a
camera frame and build the observation with :class:`TaskObservations`: the task's plugin
(``enpire_tasks``) builds it from the contract's observation ``source`` fields, and gives
the hold action. No task is named here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from enpire_agent_bridge.ros import conversions as conv
from enpire_common.errors import ConfigError, EnpireError
from enpire_common.image_msgs import image_to_rgb
from enpire_common.tasks import TaskSpec
from enpire_interfaces.msg import StateVector
from enpire_tasks import registry
from enpire_tasks.observation import camera_sources
from enpire_tasks.plugin import CellReading

#: The cell's state topic.
STATE_TOPIC = 'state'


def state_values(state: StateVector) -> dict[str, float]:
    """A StateVector as ``{name: value}``."""
    return {str(n): float(v) for n, v in zip(state.names, state.values, strict=False)}


class TaskObservations:
    """One task's observations and hold action, from its plugin.

    Args:
        task: the task contract; its observation names one camera topic (``image_topic``),
            the one the nodes subscribe to. (Several cameras need one CameraFrames each.)

    Raises:
        ConfigError: the contract's observation has no camera or more than one.
    """

    def __init__(self, task: TaskSpec) -> None:
        self.task = task
        self.plugin = registry.get(task.name)
        topics = sorted(set(camera_sources(task).values()))
        if len(topics) != 1:
            raise ConfigError(f"task '{task.name}': the policy hosts serve observations with "
                              f'exactly one camera, the contract has {topics or "none"}')
        self.image_topic = topics[0]
        self._last_state: dict[str, float] = {}

    def build(self, state: StateVector, image: np.ndarray,
              retry_index: int = 0) -> dict[str, Any]:
        """The observation of one state tick with its camera frame (names of the obs spec).

        Raises CellError when the state vector lacks a value the spec needs.
        """
        values = state_values(state)
        reading = CellReading(images={self.image_topic: image}, state=values,
                              tick=int(state.tick), rollout={'retry_index': retry_index})
        obs = self.plugin.build_observation(self.task, reading)
        self._last_state = values
        return obs

    def hold(self, _obs: Mapping[str, Any]) -> np.ndarray:
        """The built-in hold (no policy code) at the state of the last :meth:`build`."""
        return self.plugin.hold_action(self.task, self._last_state)


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
        self._frame = (conv.stamp_s(msg.header.stamp), image_to_rgb(msg))

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
