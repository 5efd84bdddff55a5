"""The ``sam2`` verifier backend: SAM2 masks prompted with the ``yolo`` backend's boxes.

SAM2 segments whatever a box points at, with no training on the task: the YOLO verifier of
the task finds each part's box, SAM2 draws its mask, and the task's rule
(its plugin's ``mask_rule``) judges, as for ``yolo``. It is slow on a CPU (~3 s per frame on
2 cores: the image encoder), so it suits an occasional final verdict, not every step.

**Weights.** SAM2's weights cannot be downloaded here. ``enpire verify register --task T
--backend sam2 --checkpoint FILE [--sam2-config sam2.1_hiera_t]`` takes a checkpoint a user
supplies (the official ``.pt`` files: ``{"model": state_dict}``), checks that it loads into
the named architecture, and records its path and sha256 in the task lock. Its quality is
measured only where real weights are supplied: the tests here run the loading and prompting
code on a model built from its config with random weights, which says nothing about its
masks. The calibration gate (``enpire verify calibrate --backend sam2``) applies as for any
learned backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks.estimation import InstanceMask, InstanceSegmenter

BACKEND_ID = 'sam2'
#: The architectures sam2 1.1 ships configs for (name -> its hydra config).
CONFIGS = {name: f'configs/sam2.1/{name}.yaml' for name in (
    'sam2.1_hiera_t', 'sam2.1_hiera_s', 'sam2.1_hiera_b+', 'sam2.1_hiera_l')}
DEFAULT_CONFIG = 'sam2.1_hiera_t'


def build_model(config: str = DEFAULT_CONFIG, checkpoint: Path | str | None = None,
                device: str = 'cpu') -> Any:
    """A SAM2 model of architecture ``config``, with ``checkpoint``'s weights (None: the
    config's random initialisation: plumbing tests only).

    Raises:
        ConfigError: sam2 is not installed, the config is unknown, or the checkpoint is
            missing or does not fit the architecture.
    """
    from enpire_reward.core.torch_compat import ensure_torchvision_ops

    if config not in CONFIGS:
        raise ConfigError(f"SAM2 config '{config}' is unknown (known: {', '.join(CONFIGS)})")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ConfigError(f'SAM2 checkpoint {checkpoint} does not exist')
    ensure_torchvision_ops()
    try:
        from sam2.build_sam import build_sam2
    except ImportError:
        raise ConfigError('the sam2 backend needs sam2 (requirements.txt; built with '
                          'SAM2_BUILD_CUDA=0 by scripts/setup.sh)') from None
    try:
        return build_sam2(CONFIGS[config], ckpt_path=None if checkpoint is None
                          else str(checkpoint), device=device)
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        # sam2 logs the missing / unexpected keys and raises a bare RuntimeError
        raise ConfigError(f'SAM2 checkpoint {checkpoint} does not load into {config} '
                          f'({type(exc).__name__}: {exc or "missing or unexpected keys"}); '
                          'is it a SAM2 checkpoint of that size?') from None


class Sam2Segmenter:
    """Per class, SAM2's mask inside the box that ``boxes`` finds (implements
    :class:`enpire_tasks.estimation.InstanceSegmenter`)."""

    backend_id = BACKEND_ID

    def __init__(self, model: Any, boxes: InstanceSegmenter) -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.predictor = SAM2ImagePredictor(model)
        self.boxes = boxes
        self.classes = tuple(boxes.classes)

    def masks(self, image: np.ndarray, view: ViewSpec) -> dict[str, InstanceMask]:
        import torch

        found = self.boxes.masks(image, view)
        if not found:
            return {}
        out: dict[str, InstanceMask] = {}
        with torch.inference_mode():
            self.predictor.set_image(np.ascontiguousarray(image))     # RGB, HxWx3 uint8
            for cls, inst in found.items():
                masks, scores, _ = self.predictor.predict(
                    box=np.asarray(inst.box, dtype=np.float32), multimask_output=False)
                out[cls] = InstanceMask(np.asarray(masks[0], dtype=np.float32),
                                        float(scores[0]), inst.box)
        return out


def make_sam2_estimator(task: TaskSpec) -> Any:
    """The registry's ``sam2`` factory: the checkpoint the task lock records, prompted by
    the task's recorded ``yolo`` verifier, under the task's rule.

    Raises:
        ConfigError: no checkpoint or no yolo verifier recorded, the checkpoint changed
            since it was recorded, or it does not load.
    """
    from enpire_common.files import sha256_file
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import locked_verifier
    from enpire_reward.core.yolo import make_yolo_segmenter
    from enpire_tasks import registry

    plugin = registry.get(task)
    if plugin.mask_rule is None:
        raise ConfigError(f"task '{task.name}' has no rule over learned masks; the sam2 "
                          'backend cannot judge it')
    entry = locked_verifier(task, enpire_home(), BACKEND_ID)
    if entry is None:
        raise ConfigError(f"no SAM2 checkpoint is recorded for '{task.name}'; supply one: "
                          f'enpire verify register --task {task.name} --backend sam2 '
                          '--checkpoint FILE')
    ckpt = Path(entry['checkpoint'])
    if not ckpt.is_file() or sha256_file(ckpt) != entry.get('weights_sha256'):
        raise ConfigError(f'{ckpt} is missing or not the checkpoint recorded for '
                          f"'{task.name}' (sha256 differs); register it again")
    device = os.environ.get('ENPIRE_VERIFIER_DEVICE', 'cpu')
    seg = Sam2Segmenter(build_model(entry.get('config', DEFAULT_CONFIG), ckpt, device),
                        make_yolo_segmenter(task))
    return plugin.mask_rule(task, seg)


def register_checkpoint(task: TaskSpec, checkpoint: Path | str, config: str = DEFAULT_CONFIG,
                        home: Path | None = None) -> dict[str, Any]:
    """Check that ``checkpoint`` loads into ``config`` and record it in the task lock.

    Raises:
        ConfigError: it does not exist or does not load.
    """
    from enpire_common.files import sha256_file
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import record_verifier

    path = Path(checkpoint).resolve()
    build_model(config, path)
    digest = sha256_file(path)
    entry = {'checkpoint': str(path), 'config': config, 'weights_sha256': digest,
             'version': digest[:12], 'calibration': None}
    record_verifier(task, home or enpire_home(), BACKEND_ID, entry)
    return entry


__all__ = ['BACKEND_ID', 'CONFIGS', 'DEFAULT_CONFIG', 'Sam2Segmenter', 'build_model',
           'make_sam2_estimator', 'register_checkpoint']
