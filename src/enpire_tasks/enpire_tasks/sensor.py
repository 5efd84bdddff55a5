"""What a real camera does to an image that a simulator's renderer does not: a sensor model.

A renderer's image is exact: the same scene gives the same pixels, with no noise, no blur, no
exposure drift and no compression. A real camera's never is, and a verifier tuned to exact
images can fail on the first real frame. This module perturbs an image the way a camera does,
seeded, so that the crosscheck (``enpire verify crosscheck --camera real``) and the training
datasets (``enpire verify dataset``) can measure and train a verifier under those conditions.

The stages, in the order a camera applies them:

1. ``exposure``: a gain drawn uniformly in ``1 +- exposure`` for the whole frame (auto
   exposure hunting, lighting changes), clipped to the sensor's range;
2. ``blur``: a Gaussian point spread of ``blur_sigma_px`` (focus, motion, optics);
3. ``noise``: zero-mean Gaussian noise of ``noise_sigma`` grey levels per pixel and channel
   (shot and read noise of an 8-bit sensor);
4. ``jpeg``: an encode and decode at ``jpeg_quality`` (a camera driver or image transport
   that compresses).

:data:`PERTURBATIONS` names the kinds the crosscheck reports on, one stage at a time and all
of them mild together; :data:`DEFAULT_SENSOR` is the camera the simulated cells wear by
default (``camera.sensor: default``; ``none`` for exact renders), applied per frame by
:class:`SensorStream`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from enpire_common.errors import ConfigError, UnknownNameError


def _checked(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f'sensor model: expected an HxW or HxWxC uint8 image, got '
                         f'{img.dtype} {img.shape}')
    return img


@dataclass(frozen=True)
class SensorModel:
    """A camera's effect on an image (see the module doc); all zero: the image unchanged."""

    noise_sigma: float = 0.0        # grey levels (8-bit), per pixel and channel
    blur_sigma_px: float = 0.0      # Gaussian point spread, pixels
    exposure: float = 0.0           # the frame's gain is drawn in 1 +- exposure
    jpeg_quality: int = 0           # 1..100; 0: no compression

    def __post_init__(self) -> None:
        for name in ('noise_sigma', 'blur_sigma_px', 'exposure'):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value < 0.0:
                raise ConfigError(f'sensor model: {name}={value} must be finite and >= 0')
        if self.exposure >= 1.0:
            raise ConfigError(f'sensor model: exposure={self.exposure} must be < 1 (a gain '
                              'of 1 +- exposure)')
        if not 0 <= int(self.jpeg_quality) <= 100:
            raise ConfigError(f'sensor model: jpeg_quality={self.jpeg_quality} must be in '
                              '0..100 (0: off)')

    @property
    def identity(self) -> bool:
        return not (self.noise_sigma or self.blur_sigma_px or self.exposure or
                    self.jpeg_quality)

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``image`` (HxWx3 or HxW, uint8) as this camera would deliver it: a new uint8
        array (the input is never changed); the same ``rng`` state gives the same result."""
        img = _checked(image)
        if self.identity:
            return img.copy()
        out = img.astype(np.float32)
        if self.exposure:
            out *= float(rng.uniform(1.0 - self.exposure, 1.0 + self.exposure))
        if self.blur_sigma_px:
            import cv2

            out = cv2.GaussianBlur(out, (0, 0), float(self.blur_sigma_px),
                                   borderType=cv2.BORDER_REFLECT)
        if self.noise_sigma:
            out += rng.normal(0.0, float(self.noise_sigma), size=out.shape).astype(np.float32)
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if self.jpeg_quality:
            out = jpeg_roundtrip(out, int(self.jpeg_quality))
        return out


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (RGB or grey uint8) encoded as JPEG at ``quality`` and decoded again."""
    import cv2

    bgr = image[:, :, ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode('.jpg', np.ascontiguousarray(bgr),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:      # pragma: no cover - OpenCV encodes any uint8 image
        raise ValueError('JPEG encoding failed')
    flag = cv2.IMREAD_COLOR if image.ndim == 3 else cv2.IMREAD_GRAYSCALE
    out = cv2.imdecode(buf, flag)
    return np.ascontiguousarray(out[:, :, ::-1]) if image.ndim == 3 else out


#: The perturbation kinds a verifier is measured on: each camera effect alone at a strength a
#: real camera reaches, and all of them, milder, together (issue 11's table).
PERTURBATIONS: dict[str, SensorModel] = {
    'clean': SensorModel(),
    'noise': SensorModel(noise_sigma=4.0),
    'blur': SensorModel(blur_sigma_px=1.0),
    'exposure': SensorModel(exposure=0.15),
    'jpeg': SensorModel(jpeg_quality=85),
    'all': SensorModel(noise_sigma=2.0, blur_sigma_px=0.6, exposure=0.08, jpeg_quality=90),
}

#: The camera a simulated cell wears when its contract asks for ``sensor: default``.
DEFAULT_SENSOR = PERTURBATIONS['all']


def perturbation(kind: str) -> SensorModel:
    """The sensor model of perturbation ``kind``.

    Raises:
        UnknownNameError: ``kind`` is not a key of :data:`PERTURBATIONS`.
    """
    if kind not in PERTURBATIONS:
        raise UnknownNameError('camera perturbation', kind, PERTURBATIONS)
    return PERTURBATIONS[kind]


def perturbation_kinds(spec: str) -> tuple[str, ...]:
    """``'all-kinds'`` or a comma list of kinds -> the kinds, in :data:`PERTURBATIONS` order
    for the former and as given for the latter.

    Raises:
        UnknownNameError: a kind is not known.
    """
    if spec in ('', 'all-kinds'):
        return tuple(PERTURBATIONS)
    kinds = tuple(k.strip() for k in spec.split(',') if k.strip())
    for k in kinds:
        perturbation(k)
    return kinds


def frame_rng(seed: int, index: int, kind: str, view: str = '') -> np.random.Generator:
    """The generator for one frame's perturbation: the same (seed, frame, kind, view) always
    perturbs the same way, and no two of them share a stream."""
    salt = [ord(c) for c in f'{kind}/{view}']
    return np.random.default_rng([int(seed) & 0x7FFFFFFF, int(index), *salt])


#: ``camera.sensor`` values of the simulated cells: the camera they wear.
SENSORS: dict[str, SensorModel] = {'default': DEFAULT_SENSOR, 'none': PERTURBATIONS['clean']}


def sensor_named(name: str) -> SensorModel:
    """The sensor model of a sim cell's ``camera.sensor`` (``default`` | ``none``).

    Raises:
        UnknownNameError: another name.
    """
    if name not in SENSORS:
        raise UnknownNameError('camera.sensor', name, SENSORS)
    return SENSORS[name]


class SensorStream:
    """A simulated camera's sensor over a stream of frames: :class:`SensorModel`'s stages at
    a cost a cell can pay at its frame rate (a few ms per 480 x 480 frame), seeded.

    - exposure: the gain hunts slowly (a sine of ~10 s at 20 fps, its phase from the seed)
      within ``1 +- exposure``, as auto exposure does, instead of flickering per frame;
    - blur: as :class:`SensorModel`;
    - noise: a window of one pre-drawn Gaussian field, at an offset drawn per frame (the
      field is drawn once per image size; per-frame draws cost ~8 ms a frame);
    - JPEG: as :class:`SensorModel`.

    The same ``(seed, view, episode, frame index)`` gives the same pixels (replays are
    exact).
    """

    PAD = 64            # the noise field's margin: offsets drawn in [0, PAD)
    PERIOD = 200        # frames per exposure cycle

    def __init__(self, model: SensorModel, seed: int = 0, view: str = '') -> None:
        self.model, self.seed, self.view = model, int(seed), view
        rng = frame_rng(self.seed, 0, 'stream', view)
        self._phase = float(rng.uniform(0.0, 2.0 * np.pi))
        self._fields: dict[tuple[int, ...], np.ndarray] = {}

    def _field(self, shape: tuple[int, ...]) -> np.ndarray:
        field = self._fields.get(shape)
        if field is None:
            rng = frame_rng(self.seed, len(shape), 'noise-field', self.view)
            big = (shape[0] + self.PAD, shape[1] + self.PAD, *shape[2:])
            field = rng.standard_normal(big, dtype=np.float32) * np.float32(
                self.model.noise_sigma)
            self._fields = {shape: field}      # one size at a time
        return field

    def apply(self, image: np.ndarray, index: int, episode: int = 0) -> np.ndarray:
        """Frame ``index`` of episode ``episode`` as this camera delivers it (a new uint8
        array). A cell passes its reset seed and the tick since the reset: a trial's frames
        depend on its seed alone, not on what the cell did before it."""
        m = self.model
        img = _checked(image)
        if m.identity:
            return img.copy()
        import cv2

        out = img
        if m.blur_sigma_px:
            out = cv2.GaussianBlur(out, (0, 0), float(m.blur_sigma_px),
                                   borderType=cv2.BORDER_REFLECT)
        out = out.astype(np.float32)
        if m.exposure:
            out *= np.float32(1.0 + m.exposure * np.sin(
                2.0 * np.pi * int(index) / self.PERIOD + self._phase + 2.4 * int(episode)))
        if m.noise_sigma:
            dy, dx = frame_rng(self.seed, index, f'offset/{int(episode)}',
                               self.view).integers(0, self.PAD, 2)
            h, w = out.shape[:2]
            out += self._field(out.shape)[dy:dy + h, dx:dx + w]
        out = np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)
        if m.jpeg_quality:
            out = jpeg_roundtrip(out, int(m.jpeg_quality))
        return out


__all__ = ['DEFAULT_SENSOR', 'PERTURBATIONS', 'SENSORS', 'SensorModel', 'SensorStream',
           'frame_rng', 'jpeg_roundtrip', 'perturbation', 'perturbation_kinds', 'sensor_named']
