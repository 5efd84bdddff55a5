"""The ``yolo`` verifier backend: an Ultralytics YOLO-seg model trained here, on the task's own
labelled renders, under the task's geometric rule.

- **Training** (:func:`train_yolo`, ``enpire verify train --backend yolo``): the model is built
  from its yaml (:data:`DEFAULT_MODEL`: no pretrained weights are downloaded), trained on an
  ``enpire verify dataset`` directory, and its best weights become a versioned *verifier
  artifact*: ``$ENPIRE_HOME/verifiers/<task>/yolo/<version>/`` with ``weights.pt`` and
  ``artifact.json`` (task, classes, image size, dataset, epochs, device, time, validation
  metrics, the weights' sha256). The task lock records it (``verifiers.yolo``), so a trial
  names exactly which weights judged it.
- **Inference** (:class:`YoloSegmenter`): the best instance of each class per image, its mask
  at the image's resolution. The task plugin's ``mask_rule`` turns the masks into a pose and
  a score with the same per-view rule as its classic backend (Push-T: the block's pose fit and
  coverage; pin: the head's ray and the depth from the side; GPU: the cooler's).
- **Loading** (:func:`make_yolo_estimator`, the registry's ``yolo`` factory): the artifact the
  task lock records, its weights checked against the recorded sha256.

Ultralytics is imported only here, and only when the backend is used; torchvision's ops are
made importable first (:mod:`enpire_reward.core.torch_compat`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.files import sha256_file
from enpire_common.tasks import TaskSpec, ViewSpec
from enpire_tasks.estimation import InstanceMask

BACKEND_ID = 'yolo'
#: The model a new verifier is built from (an Ultralytics yaml: the architecture, no
#: weights): YOLOv8-seg at half the 'n' width (``enpire_reward/models/enpire-seg.yaml``).
#: Ultralytics' own names work too (``yolov8n-seg.yaml``).
DEFAULT_MODEL = str(Path(__file__).resolve().parents[1] / 'models' / 'enpire-seg.yaml')
DEFAULT_IMGSZ = 320
#: Detections under this score are not instances.
DEFAULT_CONF = 0.25
#: Training's random rescale (+-): a verifier's cameras are fixed and calibrated, so a part
#: keeps its image size; Ultralytics' default (+-50%) spends the narrow net on sizes it will
#: never see, and shrinks a seated pin's 10 px head to 5.
TRAIN_SCALE_JITTER = 0.2


def _ultralytics() -> Any:
    """Import ultralytics (offline, its settings file in the temp dir), torchvision made
    importable first."""
    from enpire_reward.core.torch_compat import ensure_torchvision_ops

    # its settings file: somewhere writable that outlives any one ENPIRE_HOME
    os.environ.setdefault('YOLO_CONFIG_DIR', str(Path(tempfile.gettempdir()) /
                                                 f'enpire-ultralytics-{os.getuid()}'))
    os.environ.setdefault('YOLO_OFFLINE', '1')
    ensure_torchvision_ops()
    try:
        import ultralytics
    except ImportError:
        raise ConfigError('the yolo backend needs ultralytics (requirements.txt: bash '
                          'scripts/setup.sh)') from None
    return ultralytics


class YoloSegmenter:
    """The best instance of each class in an image (implements
    :class:`enpire_tasks.estimation.InstanceSegmenter`)."""

    backend_id = BACKEND_ID

    def __init__(self, weights: Path | str, classes: tuple[str, ...], imgsz: int,
                 device: str = 'cpu', conf: float = DEFAULT_CONF) -> None:
        _ultralytics()
        from ultralytics import YOLO

        self.weights = Path(weights)
        self.classes = tuple(classes)
        self.imgsz, self.device, self.conf = int(imgsz), device, float(conf)
        self.model = YOLO(str(self.weights), task='segment')
        names = self.model.names
        model_classes = tuple(names[k] for k in sorted(names))
        if model_classes != self.classes:
            raise ConfigError(f'{self.weights}: the model\'s classes {model_classes} are not '
                              f'the artifact\'s {self.classes}')

    def masks(self, image: np.ndarray, view: ViewSpec) -> dict[str, InstanceMask]:
        """Per class, its highest-scoring instance: mask (HxW float32, the image's size),
        score and box."""
        # Ultralytics takes numpy images as OpenCV does (BGR); the contract's are RGB.
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        res = self.model.predict(bgr, imgsz=self.imgsz, conf=self.conf, device=self.device,
                                 retina_masks=True, verbose=False)[0]
        out: dict[str, InstanceMask] = {}
        if res.masks is not None and res.boxes is not None and len(res.boxes):
            cls = res.boxes.cls.cpu().numpy().astype(int)
            score = res.boxes.conf.cpu().numpy()
            boxes = res.boxes.xyxy.cpu().numpy()
            data = res.masks.data.cpu().numpy()
            for c in np.unique(cls):
                k = int(np.flatnonzero(cls == c)[np.argmax(score[cls == c])])
                out[self.classes[int(c)]] = InstanceMask(
                    data[k].astype(np.float32), float(score[k]),
                    tuple(float(v) for v in boxes[k]))
        return out


# --- artifacts --------------------------------------------------------------------------------
def artifacts_dir(home: Path, task: str) -> Path:
    return home / 'verifiers' / task / BACKEND_ID


@dataclass(frozen=True)
class Artifact:
    """A trained verifier: where it is and what ``artifact.json`` says of it."""

    path: Path
    meta: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.path / 'weights.pt'

    def lock_entry(self) -> dict[str, Any]:
        m = self.meta
        return {'version': m['version'], 'path': str(self.path),
                'weights_sha256': m['weights_sha256'], 'classes': m['classes'],
                'imgsz': m['imgsz'], 'calibration': None}


def load_artifact(path: Path | str) -> Artifact:
    """Read a verifier artifact directory.

    Raises:
        ConfigError: it is missing, unreadable or its weights are not the recorded ones.
    """
    path = Path(path)
    try:
        meta = json.loads((path / 'artifact.json').read_text())
    except FileNotFoundError:
        raise ConfigError(f'{path}: no verifier artifact here (artifact.json is missing)') \
            from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f'{path}/artifact.json is unreadable ({exc})') from None
    art = Artifact(path, meta)
    if not art.weights.is_file():
        raise ConfigError(f'{art.weights} is missing')
    if sha256_file(art.weights) != meta.get('weights_sha256'):
        raise ConfigError(f'{art.weights} is not the weights the artifact records (sha256 '
                          'differs): the file was changed or replaced')
    return art


def make_yolo_segmenter(task: TaskSpec) -> YoloSegmenter:
    """The segmenter of the yolo artifact the task lock records.

    Raises:
        ConfigError: the lock records no yolo verifier, or its artifact fails
            :func:`load_artifact`.
    """
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import locked_verifier

    entry = locked_verifier(task, enpire_home(), BACKEND_ID)
    if entry is None:
        raise ConfigError(f"no yolo verifier is recorded in the task lock of '{task.name}'; "
                          f'train one: enpire verify train --task {task.name} --backend yolo')
    art = load_artifact(entry['path'])
    if art.meta['weights_sha256'] != entry.get('weights_sha256'):
        raise ConfigError(f"{art.path} is not the yolo verifier the task lock of "
                          f"'{task.name}' records (another version's weights)")
    return YoloSegmenter(art.weights, tuple(art.meta['classes']), int(art.meta['imgsz']),
                         device=os.environ.get('ENPIRE_VERIFIER_DEVICE', 'cpu'))


def make_yolo_estimator(task: TaskSpec) -> Any:
    """The registry's ``yolo`` factory: the artifact the task lock records, under the task's
    rule (its plugin's ``mask_rule``).

    Raises:
        ConfigError: the task has no rule over masks, or :func:`make_yolo_segmenter` fails.
    """
    from enpire_tasks import registry

    plugin = registry.get(task)
    if plugin.mask_rule is None:
        raise ConfigError(f"task '{task.name}' has no rule over learned masks (its plugin's "
                          'mask_rule); the yolo backend cannot judge it')
    return plugin.mask_rule(task, make_yolo_segmenter(task))


def adopt_artifact(task: TaskSpec, path: Path | str, home: Path | None = None) -> Artifact:
    """Record an existing yolo artifact in the task lock under the current contract (a
    contract change drops the lock's verifiers; the weights did not change). Its calibration
    starts empty: the gate wants it measured again under the new contract.

    Raises:
        ConfigError: not an artifact (or its weights changed), of another task or class
            list, or the contract is not the locked one.
    """
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import record_verifier, verify_contract
    from enpire_tasks import registry

    home = home or enpire_home()
    art = load_artifact(path)
    plugin = registry.get(task)
    classes = list(plugin.labels.classes) if plugin.labels else []
    if art.meta.get('task') != task.name or list(art.meta.get('classes') or []) != classes:
        raise ConfigError(f"{art.path} is a verifier of task '{art.meta.get('task')}' with "
                          f"classes {art.meta.get('classes')}, not of '{task.name}' "
                          f'({", ".join(classes)})')
    verify_contract(task, home)
    record_verifier(task, home, BACKEND_ID, art.lock_entry())
    return art


# --- training ---------------------------------------------------------------------------------
def train_yolo(task: TaskSpec, dataset: Path | str, *, epochs: int = 30,
               imgsz: int = DEFAULT_IMGSZ, device: str = 'cpu', batch: int = 16,
               seed: int = 0, model: str = DEFAULT_MODEL, home: Path | None = None,
               progress: Callable[[str], None] | None = None) -> Artifact:
    """Train a YOLO-seg verifier on ``dataset`` (``enpire verify dataset``'s directory),
    store it as a new artifact version and record it in the task lock.

    Raises:
        ConfigError: bad arguments, a dataset of another task or class list, or no
            ultralytics.
    """
    from enpire_common.paths import enpire_home
    from enpire_common.tasks import record_verifier
    from enpire_tasks import registry

    if epochs < 1 or imgsz < 32 or batch < 1:
        raise ConfigError(f'epochs={epochs}, imgsz={imgsz}, batch={batch}: each must be '
                          'positive (imgsz >= 32)')
    if device not in ('cpu', 'cuda') and not device.startswith('cuda:'):
        raise ConfigError(f"--device {device!r}: use cpu, cuda or cuda:N")
    plugin = registry.get(task)
    classes = tuple(plugin.labels.classes) if plugin.labels else ()
    dataset = Path(dataset)
    try:
        manifest = json.loads((dataset / 'manifest.json').read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f'{dataset} is not a finished enpire verify dataset ({exc})') \
            from None
    settings = manifest.get('settings') or {}
    if settings.get('task') != task.name or tuple(settings.get('classes') or ()) != classes:
        raise ConfigError(f"{dataset} is a dataset of task '{settings.get('task')}' with "
                          f"classes {settings.get('classes')}, not of '{task.name}' "
                          f'({", ".join(classes)})')
    if not manifest.get('complete'):
        raise ConfigError(f'{dataset} is not finished (run enpire verify dataset again to '
                          'complete it)')
    summary = manifest.get('summary') or {}
    if not summary.get('train') or not summary.get('val'):
        raise ConfigError(f"{dataset} has {summary.get('train', 0)} training and "
                          f"{summary.get('val', 0)} validation images; training needs both "
                          '(render more images)')
    home = home or enpire_home()
    # fail before an hour of training, not after it: the artifact is recorded against the
    # locked contract
    from enpire_common.tasks import verify_contract

    verify_contract(task, home)
    ul = _ultralytics()
    from ultralytics import YOLO

    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    t0 = time.monotonic()
    net = YOLO(model, task='segment')

    def on_epoch(trainer: Any) -> None:
        if trainer.epoch >= trainer.epochs:         # the final validation, not an epoch
            return
        m = getattr(trainer, 'metrics', {}) or {}
        mask = m.get('metrics/mAP50-95(M)')
        box = m.get('metrics/mAP50-95(B)')
        scores = ''.join(f', {k} mAP50-95 {v:.3f}' for k, v in (('box', box), ('mask', mask))
                         if v is not None)
        say(f'  epoch {trainer.epoch + 1}/{trainer.epochs}: {time.monotonic() - t0:.0f} s'
            f'{scores}')

    net.add_callback('on_fit_epoch_end', on_epoch)
    say(f'training {model} on {dataset} ({settings.get("images")} images, classes '
        f'{", ".join(classes)}) for {epochs} epochs at {imgsz} px on {device}')
    # Ultralytics logs to stdout: keep stdout for the command's own output (--json)
    with tempfile.TemporaryDirectory(prefix='enpire-yolo-') as tmp, \
            contextlib.redirect_stdout(sys.stderr):
        results = net.train(data=str(dataset / 'data.yaml'), epochs=epochs, imgsz=imgsz,
                            batch=batch, workers=0, device=device, project=tmp, name='run',
                            exist_ok=True, plots=False, verbose=False, amp=device != 'cpu',
                            pretrained=False, seed=seed, deterministic=True, val=True,
                            scale=TRAIN_SCALE_JITTER)
        best = Path(tmp) / 'run' / 'weights' / 'best.pt'
        if not best.is_file():
            best = Path(tmp) / 'run' / 'weights' / 'last.pt'
        metrics = {k: round(float(v), 4) for k, v in
                   (getattr(results, 'results_dict', None) or {}).items()}
        root = artifacts_dir(home, task.name)
        root.mkdir(parents=True, exist_ok=True)
        version = time.strftime('%Y%m%dT%H%M%S') + f'-{os.getpid()}'
        staging = root / f'.{version}.tmp'
        staging.mkdir()
        shutil.copy2(best, staging / 'weights.pt')
        digest = sha256_file(staging / 'weights.pt')
        meta = {'backend': BACKEND_ID, 'version': version, 'task': task.name,
                'task_id': task.id, 'classes': list(classes), 'imgsz': imgsz,
                'model': Path(model).name, 'epochs': epochs, 'batch': batch, 'device': device,
                'seed': seed, 'train_seconds': round(time.monotonic() - t0, 1),
                'dataset': {'path': str(dataset.resolve()), 'images': settings.get('images'),
                            'seed': settings.get('seed'),
                            'manifest_sha256': sha256_file(dataset / 'manifest.json')},
                'metrics': metrics, 'weights_sha256': digest,
                'ultralytics': getattr(ul, '__version__', '')}
        (staging / 'artifact.json').write_text(json.dumps(meta, indent=2))
        os.replace(staging, root / version)
    art = Artifact(root / version, meta)
    try:
        record_verifier(task, home, BACKEND_ID, art.lock_entry())
    except ConfigError as exc:       # the contract changed while it trained
        raise ConfigError(f'{exc}; the trained verifier is kept at {art.path} but not '
                          'recorded in the task lock') from None
    say(f'verifier artifact {art.path} ({meta["train_seconds"]:.0f} s), recorded in the task '
        'lock')
    return art


__all__ = ['BACKEND_ID', 'Artifact', 'YoloSegmenter', 'adopt_artifact', 'artifacts_dir',
           'load_artifact',
           'make_yolo_estimator', 'make_yolo_segmenter', 'train_yolo']
