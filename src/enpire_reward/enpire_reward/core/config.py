"""Configuration of the verifier node."""

from __future__ import annotations

from dataclasses import dataclass

from enpire_common.config import require
from enpire_common.tasks import DEFAULT_TASK
from enpire_reward.core.fusion import FUSION_RULES


@dataclass(frozen=True)
class VerifierConfig:
    """Parameters of the ``verifier`` node (ROS parameters of the same names).

    Attributes:
        task: task contract name (config/tasks/<task>).
        backend: verifier backend id (see ``enpire_reward.core.registry``); '' = the task
            plugin's first (Push-T: ``opencv-unmix-v1``).
        views: camera views to subscribe to and judge; empty = the task's success views.
        fusion: ``all`` | ``any`` | ``mean``; empty = the task's ``success.fusion``.
        max_image_age_s: a frame older than this (node clock) is VIEW_UNAVAILABLE.
        evidence_dir: default directory for evidence images; empty = ``$ENPIRE_HOME/evidence``.
        image_qos: camera subscription QoS: ``latched`` (reliable, transient local: the sim
            cell and latched drivers; no frame lost), ``reliable`` (reliable, volatile) or
            ``sensor_data`` (best effort: most real camera drivers).
    """

    task: str = DEFAULT_TASK
    backend: str = ''
    views: tuple[str, ...] = ()
    fusion: str = ''
    max_image_age_s: float = 2.0
    evidence_dir: str = ''
    image_qos: str = 'latched'

    def __post_init__(self) -> None:
        require(self.image_qos in ('latched', 'reliable', 'sensor_data'), 'image_qos',
                self.image_qos, 'must be latched, reliable or sensor_data')
        require(bool(self.task), 'task', self.task, 'must name a task')
        require(self.fusion in ('', *FUSION_RULES), 'fusion', self.fusion,
                "must be '' (task default), all, any or mean")
        require(self.max_image_age_s > 0, 'max_image_age_s', self.max_image_age_s,
                'must be > 0 s')
