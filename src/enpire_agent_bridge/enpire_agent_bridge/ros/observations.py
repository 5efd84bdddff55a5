"""Cell messages -> a policy's observation, and the hold action: one place for both nodes.

Both nodes that host policies (``policy_host`` and ``agent_bridge``) pair a state tick with
its camera frames and build the observation with :class:`TaskObservations`: the task's plugin
(``enpire_tasks``) builds it from the contract's observation ``source`` fields, and gives
the hold action. No task is named here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
        task: the task contract; its observation names the camera topics (``image_topics``)
            the nodes subscribe to, one :class:`CameraFrames` slot each.

    Raises:
        ConfigError: the contract's observation has no camera.
    """

    def __init__(self, task: TaskSpec) -> None:
        self.task = task
        self.plugin = registry.get(task.name)
        self.image_topics = sorted(set(camera_sources(task).values()))
        if not self.image_topics:
            raise ConfigError(f"task '{task.name}': the contract's observation has no camera "
                              '(a field with source camera/<view>/image_raw)')
        self._last_state: dict[str, float] = {}

    @property
    def image_topic(self) -> str:
        """The first camera topic (the only one of a one-camera task)."""
        return self.image_topics[0]

    def build(self, state: StateVector, images: Mapping[str, np.ndarray] | np.ndarray,
              retry_index: int = 0) -> dict[str, Any]:
        """The observation of one state tick with its camera frames (by topic; one array
        for a one-camera task), keyed by the names of the obs spec.

        Raises CellError when the state vector lacks a value the spec needs.
        """
        values = state_values(state)
        if isinstance(images, np.ndarray):
            images = {self.image_topic: images}
        reading = CellReading(images=dict(images), state=values, tick=int(state.tick),
                              rollout={'retry_index': retry_index})
        obs = self.plugin.build_observation(self.task, reading)
        self._last_state = values
        return obs

    def hold(self, _obs: Mapping[str, Any]) -> np.ndarray:
        """The built-in hold (no policy code) at the state of the last :meth:`build`."""
        return self.plugin.hold_action(self.task, self._last_state)


class CameraFrames:
    """The newest frame of each camera topic, and whether all are recent enough for a tick.

    Not thread-safe: the node serialises calls.

    Args:
        max_image_age_s: A state is served with frames at most this much older (stamps);
            0 = the frames of the same tick.
        topics: the camera topics an observation needs (one frame each).
    """

    def __init__(self, max_image_age_s: float, topics: Sequence[str] = ('image',)) -> None:
        self.max_image_age_s = max_image_age_s
        self.topics = tuple(topics)
        self._frames: dict[str, tuple[float, np.ndarray]] = {}

    def update(self, msg: Image, topic: str | None = None) -> None:
        """Keep ``msg`` as the newest frame of ``topic`` (default: the first topic).

        Raises BadImageError (not rgb8, not packed)."""
        self._frames[topic or self.topics[0]] = (conv.stamp_s(msg.header.stamp),
                                                 image_to_rgb(msg))

    def receive(self, msg: Image, logger: Any, topic: str | None = None) -> bool:
        """:meth:`update` for a subscription: a bad frame is logged (throttled), not raised.

        Returns whether ``msg`` is the newest frame of its topic now.
        """
        try:
            self.update(msg, topic)
        except EnpireError as exc:
            logger.error(str(exc), throttle_duration_sec=5.0)
            return False
        return True

    def for_state(self, state: StateVector) -> dict[str, np.ndarray] | None:
        """The frames (by topic) to serve ``state`` with; None: wait for newer frames."""
        oldest = conv.stamp_s(state.header.stamp) - self.max_image_age_s - 1e-9
        out = {}
        for topic in self.topics:
            frame = self._frames.get(topic)
            if frame is None or frame[0] < oldest:
                return None
            out[topic] = frame[1]
        return out
