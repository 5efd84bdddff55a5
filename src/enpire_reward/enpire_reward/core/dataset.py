"""Auto-labelled training data for the learned verifier backends, from a task's own sim cell.

``enpire verify dataset --task T --images N --out DIR`` draws states with the task's
crosscheck sampler (the same mix of near-goal, random and failure states the crosscheck
judges), renders every view the verifier reads, labels each image with the task's instance
masks (:class:`enpire_tasks.plugin.LabelSpec`: MuJoCo's segmentation render for the arm tasks,
the scene geometry for Push-T) and randomises what a real cell would vary:

- **camera pose**: a small in-plane rotation, scale and shift of the whole view (image and
  masks warped alike);
- **lighting**: the frame's white balance (a gain per channel) and a smooth brightness
  gradient across it;
- **distractors**: up to three shapes of random colour dropped on the scene; an object they
  cover loses those pixels from its mask;
- **the camera itself** (:mod:`enpire_tasks.sensor`): exposure, blur, noise and JPEG at
  strengths drawn per frame.

It writes the Ultralytics dataset format: ``images/{train,val}/*.png``,
``labels/{train,val}/*.txt`` (one ``class x1 y1 x2 y2 ...`` polygon per instance, normalised
to the image) and ``data.yaml`` (``path``, ``train``, ``val``, ``names``), plus
``manifest.json``: the task, the seed, the settings, and per image its view, state, ground
truth score and success, and the perturbations drawn (so a held-out split is also a labelled
calibration set). Everything is a function of (task, seed, index): a run that was stopped
starts again where the finished images end, and a finished one is left as it is.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from enpire_common.errors import ConfigError
from enpire_common.files import atomic_write_bytes
from enpire_common.tasks import TaskSpec
from enpire_tasks import registry as tasks

FORMAT = 'enpire-verifier-dataset-v1'
#: An instance whose visible mask has fewer pixels than this is not labelled (out of view
#: or hidden).
MIN_PIXELS = 12
#: Every VAL_EVERY-th state goes to the validation split (all of its views); with fewer
#: states than that, the last one does (a training run needs both splits).
VAL_EVERY = 5


def split_of(state: int, n_states: int) -> str:
    """The split of state ``state`` of ``n_states`` ('train' or 'val')."""
    if state % VAL_EVERY == VAL_EVERY - 1 or (n_states < VAL_EVERY and state == n_states - 1):
        return 'val'
    return 'train'


@dataclass(frozen=True)
class Randomisation:
    """The ranges each frame's randomisation is drawn from (see the module doc)."""

    rotate_deg: float = 1.5
    scale: float = 0.02
    shift_frac: float = 0.02
    white_balance: float = 0.08
    gradient: float = 0.10
    max_distractors: int = 3
    distractor_frac: tuple[float, float] = (0.03, 0.10)
    noise_sigma: tuple[float, float] = (0.0, 5.0)
    blur_sigma_px: tuple[float, float] = (0.0, 1.2)
    exposure: float = 0.15
    jpeg_quality: tuple[int, int] = (70, 100)    # drawn per frame; half the frames: no JPEG

    @classmethod
    def off(cls) -> Randomisation:
        return cls(rotate_deg=0.0, scale=0.0, shift_frac=0.0, white_balance=0.0,
                   gradient=0.0, max_distractors=0, noise_sigma=(0.0, 0.0),
                   blur_sigma_px=(0.0, 0.0), exposure=0.0, jpeg_quality=(0, 0))


def randomise(image: np.ndarray, masks: Mapping[str, np.ndarray], rng: np.random.Generator,
              cfg: Randomisation) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """One frame as a real cell might show it: (image, masks, what was drawn)."""
    import cv2

    from enpire_tasks.sensor import SensorModel

    h, w = image.shape[:2]
    drawn: dict[str, Any] = {}
    img = image.astype(np.float32)
    out = {k: np.asarray(m, dtype=bool) for k, m in masks.items()}
    # camera pose: rotation about the centre, scale, shift
    if cfg.rotate_deg or cfg.scale or cfg.shift_frac:
        ang = float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
        sc = float(rng.uniform(1.0 - cfg.scale, 1.0 + cfg.scale))
        dx, dy = (float(v) for v in rng.uniform(-cfg.shift_frac, cfg.shift_frac, 2) * (w, h))
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), ang, sc)
        m[:, 2] += (dx, dy)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        out = {k: cv2.warpAffine(v.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
               for k, v in out.items()}
        drawn['pose'] = {'rotate_deg': round(ang, 3), 'scale': round(sc, 4),
                         'shift_px': [round(dx, 2), round(dy, 2)]}
    # distractors: filled shapes of random colour, over the objects
    n_d = int(rng.integers(0, cfg.max_distractors + 1)) if cfg.max_distractors else 0
    if n_d:
        cover = np.zeros((h, w), np.uint8)
        for _ in range(n_d):
            size = float(rng.uniform(*cfg.distractor_frac)) * min(h, w)
            centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            hsv = np.uint8([[[rng.integers(0, 180), rng.integers(60, 256),
                              rng.integers(60, 256)]]])
            colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(float).tolist()
            shape = np.zeros((h, w), np.uint8)
            if rng.random() < 0.5:
                axes = (max(1, int(size / 2)), max(1, int(size * rng.uniform(0.3, 0.6))))
                cv2.ellipse(shape, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            else:
                half = size / 2
                box = cv2.boxPoints((centre, (2 * half, half * rng.uniform(0.5, 1.5)),
                                     float(rng.uniform(0, 180))))
                cv2.fillPoly(shape, [np.rint(box).astype(np.int32)], 1)
            img[shape.astype(bool)] = colour
            cover |= shape
        out = {k: v & ~cover.astype(bool) for k, v in out.items()}
        drawn['distractors'] = n_d
    # lighting: white balance and a smooth gradient
    if cfg.white_balance or cfg.gradient:
        gains = rng.uniform(1.0 - cfg.white_balance, 1.0 + cfg.white_balance, 3)
        g = float(rng.uniform(-cfg.gradient, cfg.gradient))
        direction = rng.uniform(-np.pi, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xx - w / 2) * np.cos(direction) + (yy - h / 2) * np.sin(direction)) / max(h, w)
        img = img * (1.0 + 2.0 * g * ramp)[:, :, None] * gains.astype(np.float32)
        drawn['lighting'] = {'white_balance': [round(float(x), 3) for x in gains],
                             'gradient': round(g, 3)}
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    # the camera
    jpeg = 0
    if cfg.jpeg_quality[1] and rng.random() < 0.5:
        jpeg = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    sensor = SensorModel(noise_sigma=float(rng.uniform(*cfg.noise_sigma)),
                         blur_sigma_px=float(rng.uniform(*cfg.blur_sigma_px)),
                         exposure=cfg.exposure, jpeg_quality=jpeg)
    img = sensor.apply(img, rng)
    drawn['sensor'] = {k: round(float(v), 3) for k, v in asdict(sensor).items()}
    return img, out, drawn


def mask_polygon(mask: np.ndarray, epsilon_px: float = 0.7) -> np.ndarray | None:
    """The outline of a mask's largest region as a (k, 2) polygon of pixel corners (x, y),
    simplified to ``epsilon_px``; None when it has fewer than MIN_PIXELS pixels or the
    outline has fewer than 3 points. (Ultralytics' segment labels hold one polygon per
    instance; the pieces of an occluded part past the largest are left out.)"""
    import cv2

    if int(mask.sum()) < MIN_PIXELS:
        return None
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    big = max(contours, key=cv2.contourArea)
    if cv2.contourArea(big) < MIN_PIXELS / 2:
        return None
    poly = cv2.approxPolyDP(big, epsilon_px, True).reshape(-1, 2).astype(np.float64)
    return poly if len(poly) >= 3 else None


def label_lines(masks: Mapping[str, np.ndarray], classes: tuple[str, ...]) -> list[str]:
    """Ultralytics segment label lines for ``masks`` (class id, then the polygon normalised
    to the image's width and height)."""
    lines = []
    for cid, name in enumerate(classes):
        m = masks.get(name)
        if m is None:
            continue
        poly = mask_polygon(m)
        if poly is None:
            continue
        h, w = m.shape
        # pixel centres at integers: a pixel spans [u - 0.5, u + 0.5)
        xy = np.clip((poly + 0.5) / (w, h), 0.0, 1.0)
        lines.append(' '.join([str(cid), *(f'{v:.6f}' for v in xy.reshape(-1))]))
    return lines


@dataclass
class DatasetReport:
    """What :func:`write_dataset` wrote."""

    out: str
    task: str
    images: int
    train: int
    val: int
    instances: dict[str, int] = field(default_factory=dict)
    written: int = 0          # images rendered by this run (0: it was already complete)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_dir(home: Path, task: str, seed: int, images: int) -> Path:
    """Where ``enpire verify dataset`` and ``enpire verify train`` keep a dataset by default."""
    return home / 'datasets' / f'{task}-s{seed}-n{images}'


def _summary(frames: list[dict[str, Any]], counts: dict[str, int]) -> dict[str, Any]:
    """The manifest's summary (and the report's counts) of the frames written so far."""
    return {'images': len(frames), 'train': sum(f['split'] == 'train' for f in frames),
            'val': sum(f['split'] == 'val' for f in frames), 'instances': counts}


def _views(task: TaskSpec) -> list[str]:
    return list(task.section('success').get('views') or list(task.views))


def write_dataset(task: TaskSpec, out: Path | str, images: int, seed: int = 0, *,
                  randomisation: Randomisation | None = None,
                  progress: Callable[[int, int], None] | None = None) -> DatasetReport:
    """Render, label and write ``images`` images of ``task`` (see the module doc) to ``out``.

    Raises:
        ConfigError: ``images`` < 1, the task cannot label its renders or has no sim cell,
            or ``out`` holds another dataset (another task, seed or settings).
    """
    import cv2

    if images < 1:
        raise ConfigError(f'--images={images} is invalid: must be >= 1')
    plugin = tasks.get(task)
    if plugin.labels is None or plugin.crosscheck is None:
        raise ConfigError(f"task '{task.name}' cannot label its renders (its plugin has no "
                          'labels or no crosscheck sampler)')
    cfg = randomisation or Randomisation()
    out = Path(out)
    views = _views(task)
    settings = {'format': FORMAT, 'task': task.name, 'task_id': task.id, 'seed': int(seed),
                'images': int(images), 'views': views, 'classes': list(plugin.labels.classes),
                'randomisation': asdict(cfg)}
    settings = json.loads(json.dumps(settings))      # as the manifest holds it (lists)
    manifest_path = out / 'manifest.json'
    done: dict[str, Any] = {}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f'{manifest_path} is unreadable ({exc}); remove it or choose '
                              'another --out') from None
        if old.get('settings') != settings:
            raise ConfigError(f'{out} holds another dataset (its manifest differs: task, '
                              'seed, images or randomisation); choose another --out')
        if old.get('complete'):
            return DatasetReport(str(out), task.name, **old['summary'], written=0)
        done = {f['name']: f for f in old.get('frames', [])}
    for split in ('train', 'val'):
        (out / 'images' / split).mkdir(parents=True, exist_ok=True)
        (out / 'labels' / split).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    n_states = -(-images // len(views))
    frames: list[dict[str, Any]] = []
    counts = dict.fromkeys(plugin.labels.classes, 0)
    written = 0

    def save_manifest(complete: bool) -> None:
        atomic_write_bytes(manifest_path, json.dumps(
            {'settings': settings, 'complete': complete, 'summary': _summary(frames, counts),
             'frames': frames}, indent=1).encode())

    cell = tasks.make_sim_cell(task)
    try:
        sampler = plugin.crosscheck.sample_states(task, cell, n_states, seed)
        for i, (image, gt) in enumerate(sampler):
            split = split_of(i, n_states)
            by_view = image if isinstance(image, dict) else {views[0]: image}
            for view in views:
                if len(frames) >= images:
                    break
                name = f'{i:06d}_{view}'
                if name in done and (out / 'images' / split / f'{name}.png').exists() and \
                        (out / 'labels' / split / f'{name}.txt').exists():
                    frames.append(done[name])
                    for c in done[name]['instances']:
                        counts[c] += 1
                    continue
                masks = plugin.labels.instance_masks(task, cell, view, gt)
                rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, i,
                                             *(ord(c) for c in view)])
                img, masks, drawn = randomise(by_view[view], masks, rng, cfg)
                lines = label_lines(masks, plugin.labels.classes)
                ok, png = cv2.imencode('.png', np.ascontiguousarray(img[:, :, ::-1]))
                if not ok:      # pragma: no cover - OpenCV encodes any uint8 image
                    raise ConfigError(f'could not encode image {name}')
                atomic_write_bytes(out / 'labels' / split / f'{name}.txt',
                              ('\n'.join(lines) + '\n' if lines else '').encode())
                atomic_write_bytes(out / 'images' / split / f'{name}.png', png.tobytes())
                present = [plugin.labels.classes[int(ln.split()[0])] for ln in lines]
                for c in present:
                    counts[c] += 1
                frames.append({'name': name, 'split': split, 'state': i, 'view': view,
                               'score': float(gt.coverage), 'success': bool(gt.success),
                               'instances': present, 'randomisation': drawn})
                written += 1
                if written % 25 == 0:       # a crash loses at most the last 25
                    save_manifest(False)
            if progress is not None:
                progress(len(frames), images)
    finally:
        cell.close()
    names = dict(enumerate(plugin.labels.classes))
    yaml_text = (f'# {FORMAT}: {task.name}, seed {seed} (enpire verify dataset)\n'
                 f'path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n'
                 + ''.join(f'  {k}: {v}\n' for k, v in names.items()))
    atomic_write_bytes(out / 'data.yaml', yaml_text.encode())
    save_manifest(True)
    return DatasetReport(str(out), task.name, **_summary(frames, counts), written=written,
                         seconds=round(time.monotonic() - t0, 2))


def stderr_progress(every: int = 50) -> Callable[[int, int], None]:
    """A progress callback printing ``i/n images`` every ``every`` images."""
    last = [0]

    def progress(i: int, n: int) -> None:
        if i - last[0] >= every or i == n:
            last[0] = i
            print(f'  {i}/{n} images', file=sys.stderr, flush=True)

    return progress


__all__ = ['FORMAT', 'DatasetReport', 'Randomisation', 'default_dir', 'label_lines',
           'mask_polygon',
           'randomise', 'stderr_progress', 'write_dataset']
