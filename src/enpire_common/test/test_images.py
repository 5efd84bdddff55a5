"""sensor_msgs/CompressedImage <-> RGB: compressed_image_transport's format both ways, and
bytes from an untrusted bag refused with a clear error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from enpire_common.errors import BadImageError, UnknownNameError
from enpire_common.images import compressed_from_rgb, rgb_from_compressed

RGB = np.zeros((8, 12, 3), np.uint8)
RGB[:, :6] = (250, 10, 10)      # red left half, blue right half: a channel swap shows
RGB[:, 6:] = (10, 10, 250)


def _png(pixels: np.ndarray) -> np.ndarray:
    return cv2.imencode('.png', pixels)[1].reshape(-1)


@pytest.mark.parametrize('codec', ['jpeg', 'png'])
def test_a_frame_round_trips_in_compressed_image_transports_format(codec):
    fmt, data = compressed_from_rgb(RGB, codec)
    assert fmt == f'rgb8; {codec} compressed bgr8'
    # The file holds BGR, as that plugin writes it: OpenCV's own reader sees the right colours.
    np.testing.assert_allclose(cv2.imdecode(data, cv2.IMREAD_COLOR)[0, 0], (10, 10, 250),
                               atol=12)
    back = rgb_from_compressed(fmt, data)
    assert back.dtype == np.uint8 and back.shape == RGB.shape and back.flags.c_contiguous
    if codec == 'png':
        np.testing.assert_array_equal(back, RGB)
    else:   # lossy, most at the colour edge (chroma subsampling); the halves keep their colour
        assert np.abs(back.astype(int) - RGB)[:, [0, 1, 2, 9, 10, 11]].max() <= 12


@pytest.mark.parametrize(('fmt', 'stored'), [
    ('png', 'bgr'),                               # older plugins: no encoding, BGR
    ('bgr8; png compressed bgr8', 'bgr'),
    ('rgb8; png compressed rgb8', 'rgb'),         # "compressed" without bgr: RGB as stored
    ('rgb8; png compressed ', 'rgb'),
])
def test_the_pixel_order_follows_the_format_as_image_transport_decodes_it(fmt, stored):
    data = _png(RGB[..., ::-1] if stored == 'bgr' else RGB)
    np.testing.assert_array_equal(rgb_from_compressed(fmt, data), RGB)


def test_a_mono_frame_decodes_to_three_equal_channels():
    grey = np.arange(96, dtype=np.uint8).reshape(8, 12)
    out = rgb_from_compressed('mono8; png compressed ', _png(grey))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize(('fmt', 'data', 'match'), [
    ('16UC1; compressedDepth png', b'', "format '16UC1; compressedDepth png' is not supported"),
    ('rgb8; tiff compressed bgr8', b'', 'is not supported'),
    ('', b'', "format '' is not supported"),
    ('rgb8; jpeg compressed bgr8', b'', r'\(.*, 0 bytes\) is not jpeg data'),
    ('rgb8; png compressed bgr8', b'GIF89a....', r"is not png data: it starts with b'GIF89a"),
    ('rgb8; jpeg compressed bgr8', b'\xff\xd8\xff\xe0' + b'\0' * 40,
     r"\('rgb8; jpeg compressed bgr8', 44 bytes\) does not decode as jpeg"),
    ('rgb8; png compressed bgr8', bytes(_png(RGB)[:40]), 'does not decode as png'),
])
def test_unknown_formats_and_undecodable_bytes_are_refused_with_what_was_wrong(fmt, data,
                                                                               match):
    with pytest.raises(BadImageError, match=match):
        rgb_from_compressed(fmt, data)


def test_the_encoder_refuses_an_unknown_codec_and_a_frame_that_is_not_rgb():
    with pytest.raises(UnknownNameError, match="unknown image codec 'jpg'; did you mean"):
        compressed_from_rgb(RGB, 'jpg')
    with pytest.raises(BadImageError, match=r'shape \(8, 12\); expected H x W x 3'):
        compressed_from_rgb(RGB[..., 0])
