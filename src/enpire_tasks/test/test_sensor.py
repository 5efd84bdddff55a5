"""The camera sensor model: what each perturbation does, seeded, never in place."""

from __future__ import annotations

import numpy as np
import pytest

from enpire_common.errors import ConfigError, UnknownNameError
from enpire_tasks.sensor import (
    PERTURBATIONS,
    SensorModel,
    frame_rng,
    perturbation,
    perturbation_kinds,
)


@pytest.fixture
def image() -> np.ndarray:
    img = np.full((60, 80, 3), 120, np.uint8)
    img[20:40, 30:50] = (230, 51, 26)       # a sharp-edged red square
    return img


def test_clean_is_an_exact_copy(image):
    out = PERTURBATIONS['clean'].apply(image, frame_rng(0, 0, 'clean'))
    assert np.array_equal(out, image) and out is not image


def test_noise_has_its_sigma_and_no_bias(image):
    flat = np.full((200, 200, 3), 128, np.uint8)
    out = perturbation('noise').apply(flat, frame_rng(0, 0, 'noise')).astype(float) - 128
    assert abs(out.mean()) < 0.1
    assert out.std() == pytest.approx(4.0, rel=0.05)


def test_blur_softens_an_edge_and_keeps_flat_regions(image):
    out = perturbation('blur').apply(image, frame_rng(0, 0, 'blur'))
    assert np.array_equal(out[:5, :5], image[:5, :5])               # flat stays flat
    edge = out[30, 28:33, 0].astype(int)                            # across the square's edge
    assert 120 < edge[2] < 230 and np.all(np.diff(edge) >= 0)


def test_exposure_scales_the_whole_frame_by_one_gain(image):
    model = perturbation('exposure')
    gains = []
    for i in range(20):
        out = model.apply(image, frame_rng(3, i, 'exposure')).astype(float)
        gains.append(out[0, 0, 0] / 120.0)
        assert out[30, 40, 1] == pytest.approx(51 * gains[-1], abs=1.0)  # same gain inside
    assert min(gains) >= 0.85 - 0.01 and max(gains) <= 1.15 + 0.01
    assert max(gains) - min(gains) > 0.1                            # it does vary by frame


def test_jpeg_is_lossy_but_close(image):
    out = perturbation('jpeg').apply(image, frame_rng(0, 0, 'jpeg'))
    diff = np.abs(out.astype(int) - image.astype(int))
    assert diff.max() > 0 and diff.mean() < 3.0


def test_same_frame_same_pixels_and_streams_differ(image):
    model = PERTURBATIONS['all']
    a = model.apply(image, frame_rng(5, 7, 'all', 'top'))
    assert np.array_equal(a, model.apply(image, frame_rng(5, 7, 'all', 'top')))
    assert not np.array_equal(a, model.apply(image, frame_rng(5, 8, 'all', 'top')))
    assert not np.array_equal(a, model.apply(image, frame_rng(5, 7, 'all', 'side')))
    assert np.array_equal(image[0, 0], (120, 120, 120))               # input untouched


def test_grey_images_are_perturbed_too():
    grey = np.full((40, 40), 100, np.uint8)
    out = PERTURBATIONS['all'].apply(grey, frame_rng(0, 0, 'all'))
    assert out.shape == grey.shape and out.dtype == np.uint8


@pytest.mark.parametrize('kwargs', [{'noise_sigma': -1.0}, {'exposure': 1.0},
                                    {'blur_sigma_px': float('nan')}, {'jpeg_quality': 101}])
def test_bad_sensor_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match='sensor model'):
        SensorModel(**kwargs)


def test_bad_images_and_kinds_are_named(image):
    with pytest.raises(ValueError, match='uint8'):
        PERTURBATIONS['noise'].apply(image.astype(np.float32), frame_rng(0, 0, 'noise'))
    with pytest.raises(UnknownNameError, match='nosie'):
        perturbation_kinds('clean,nosie')
    assert perturbation_kinds('all-kinds') == tuple(PERTURBATIONS)
    assert perturbation_kinds('jpeg, blur') == ('jpeg', 'blur')


def test_a_sensor_stream_is_seeded_per_frame_and_costs_little():
    from enpire_tasks.sensor import DEFAULT_SENSOR, SensorStream, sensor_named

    img = np.full((96, 120, 3), 128, np.uint8)
    img[30:60, 40:90] = (200, 60, 40)
    a, b = SensorStream(DEFAULT_SENSOR, 5, 'top'), SensorStream(DEFAULT_SENSOR, 5, 'top')
    # the same (seed, view, frame) gives the same pixels, in any order
    f3 = a.apply(img, 3)
    assert not np.array_equal(a.apply(img, 3, episode=1), f3)      # episodes differ
    assert np.array_equal(b.apply(img, 7), a.apply(img, 7))
    assert np.array_equal(b.apply(img, 3), f3)
    assert not np.array_equal(a.apply(img, 4), f3)                       # frames differ
    assert not np.array_equal(SensorStream(DEFAULT_SENSOR, 6, 'top').apply(img, 3), f3)
    assert not np.array_equal(SensorStream(DEFAULT_SENSOR, 5, 'side').apply(img, 3), f3)
    # a mild camera: the image stays close to the render; 'none' is the render
    assert f3.dtype == np.uint8 and f3.shape == img.shape
    assert 0.5 < np.abs(f3.astype(int) - img).mean() < 12
    assert np.array_equal(SensorStream(sensor_named('none'), 5).apply(img, 3), img)
    with pytest.raises(UnknownNameError, match='camera.sensor'):
        sensor_named('noisy')
