"""Image checks shared by every backend: shape, dtype, size vs the view spec, blank frames."""

from __future__ import annotations

import numpy as np

from enpire_common.errors import BadImageError
from enpire_common.tasks import ViewSpec

#: Encodings the verifier accepts (ROS sensor_msgs/Image names); bgr8 is converted to RGB.
ENCODINGS = ('rgb8', 'bgr8')


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """Return ``image`` as RGB; raise BadImageError for encodings other than rgb8/bgr8."""
    if encoding not in ENCODINGS:
        raise BadImageError(
            f"image encoding '{encoding}' is not supported; publish one of "
            f"{', '.join(ENCODINGS)} (3 x uint8)")
    return image[..., ::-1] if encoding == 'bgr8' else image


def validate_image(image: object, view: ViewSpec) -> np.ndarray:
    """Check one RGB frame against its view spec; return it as a contiguous uint8 array.

    Raises:
        BadImageError: not an array, empty, not (H, W, 3) uint8, the wrong size for the view,
            or a uniform frame (a covered or dead camera).
    """
    if not isinstance(image, np.ndarray):
        raise BadImageError(f"view '{view.name}': image is {type(image).__name__}, "
                            'expected a numpy array (H, W, 3) uint8 RGB')
    if image.size == 0:
        raise BadImageError(f"view '{view.name}': image is empty (shape {image.shape}); "
                            'is the camera publishing?')
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BadImageError(
            f"view '{view.name}': image has shape {image.shape} dtype {image.dtype}, "
            'expected (H, W, 3) uint8 RGB (encoding rgb8 or bgr8)')
    h, w = image.shape[:2]
    if (w, h) != (view.width_px, view.height_px):
        raise BadImageError(
            f"view '{view.name}': image is {w}x{h} px, the task expects "
            f'{view.width_px}x{view.height_px}; fix the camera resolution or the task views')
    # A uniform frame (all white, all black) carries no scene at all: a dead or covered camera.
    if image[::8, ::8].min() == image[::8, ::8].max() and image.min() == image.max():
        raise BadImageError(
            f"view '{view.name}': image is uniform (every pixel {image.flat[0]}); "
            'the camera is covered, dead or not rendering')
    return np.ascontiguousarray(image)
