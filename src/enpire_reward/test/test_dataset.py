"""``enpire verify dataset``: auto-labelled, randomised renders in the Ultralytics format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from enpire_common.errors import ConfigError
from enpire_reward.core.dataset import (
    Randomisation,
    label_lines,
    mask_polygon,
    randomise,
    write_dataset,
)


def _polygons(path):
    out = []
    for line in path.read_text().splitlines():
        v = line.split()
        out.append((int(v[0]), np.asarray(v[1:], dtype=float).reshape(-1, 2)))
    return out


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def test_push_t_dataset_is_ultralytics_shaped_and_labels_the_block(task, tmp_path):
    rep = write_dataset(task, tmp_path / 'ds', 10, seed=2, randomisation=Randomisation.off())
    assert (rep.images, rep.train, rep.val, rep.written) == (10, 8, 2, 10)
    data = (tmp_path / 'ds' / 'data.yaml').read_text()
    assert 'train: images/train' in data and 'val: images/val' in data and '0: tblock' in data
    manifest = json.loads((tmp_path / 'ds' / 'manifest.json').read_text())
    assert manifest['complete'] and len(manifest['frames']) == 10
    import cv2

    from enpire_tasks.push_t.geometry import t_polygons

    for frame in manifest['frames']:
        split, name = frame['split'], frame['name']
        img = cv2.imread(str(tmp_path / 'ds' / 'images' / split / f'{name}.png'))
        assert img.shape == (480, 480, 3)
        (cid, poly), = _polygons(tmp_path / 'ds' / 'labels' / split / f'{name}.txt')
        assert cid == 0 and poly.min() >= 0.0 and poly.max() <= 1.0
        # the label's area is the T's (two rectangles, 0.9375 px per workspace px, plus the
        # border), less what the pusher hides
        t_area = sum(_area(p) for p in t_polygons((0.0, 0.0, 0.0))) * 0.9375 ** 2
        assert 0.8 * t_area < _area(poly * 480) < 1.3 * t_area
        # the block's grey pixels lie inside the polygon
        mask = np.zeros((480, 480), np.uint8)
        cv2.fillPoly(mask, [np.rint(poly * 480 - 0.5).astype(np.int32)], 1)
        b, g, r = (img[:, :, k].astype(int) for k in range(3))
        grey = (abs(r - g) < 20) & (abs(g - b) < 40) & (r > 90) & (r < 190)
        assert (mask.astype(bool) & grey).sum() >= 0.97 * grey.sum()


def test_a_stopped_dataset_resumes_and_a_finished_one_is_kept(task, tmp_path):
    out = tmp_path / 'ds'
    write_dataset(task, out, 8, seed=1)
    first = {p.name: p.read_bytes() for p in (out / 'images').rglob('*.png')}
    # as if the run had stopped after 3 images: the manifest is the last one it saved
    manifest = json.loads((out / 'manifest.json').read_text())
    manifest['complete'] = False
    manifest['frames'] = manifest['frames'][:3]
    (out / 'manifest.json').write_text(json.dumps(manifest))
    (out / 'images' / 'train' / '000005_top.png').unlink()
    rep = write_dataset(task, out, 8, seed=1)
    assert rep.images == 8 and rep.written == 5
    again = {p.name: p.read_bytes() for p in (out / 'images').rglob('*.png')}
    assert again == first                     # the same images: a function of (seed, index)
    assert write_dataset(task, out, 8, seed=1).written == 0
    with pytest.raises(ConfigError, match='holds another dataset'):
        write_dataset(task, out, 8, seed=2)
    (out / 'manifest.json').write_text('{not json')
    with pytest.raises(ConfigError, match='unreadable'):
        write_dataset(task, out, 8, seed=1)


def test_bad_requests_are_config_errors(task, tmp_path):
    with pytest.raises(ConfigError, match='--images=0'):
        write_dataset(task, tmp_path, 0)


def test_randomisation_moves_masks_with_the_image_and_occludes_them():
    img = np.full((120, 160, 3), 90, np.uint8)
    img[40:80, 60:100] = (230, 51, 26)
    mask = np.zeros((120, 160), bool)
    mask[40:80, 60:100] = True
    cfg = Randomisation(max_distractors=0, noise_sigma=(0.0, 0.0), blur_sigma_px=(0.0, 0.0),
                        exposure=0.0, jpeg_quality=(0, 0), white_balance=0.0, gradient=0.0,
                        rotate_deg=10.0, shift_frac=0.1)
    for k in range(5):
        out, masks, drawn = randomise(img, {'part': mask}, np.random.default_rng(k), cfg)
        red = (out[:, :, 0] > 200) & (out[:, :, 1] < 80)
        inside = masks['part']
        assert drawn['pose']['rotate_deg'] != 0.0
        assert (red & inside).sum() >= 0.97 * red.sum()         # the label followed the part
        assert (red & inside).sum() >= 0.9 * inside.sum()
    # distractors hide what they cover: the mask loses exactly those pixels
    cfg = Randomisation.off()
    cfg = Randomisation(**{**cfg.__dict__, 'max_distractors': 3, 'distractor_frac': (0.5, 0.6)})
    for k in range(10):
        out, masks, drawn = randomise(img, {'part': mask}, np.random.default_rng(k), cfg)
        if drawn.get('distractors'):
            red = (out[:, :, 0] == 230) & (out[:, :, 1] == 51)
            assert np.array_equal(red, masks['part'])
            break
    else:
        pytest.fail('no distractor drawn in 10 frames')


def test_label_lines_skip_tiny_and_absent_parts():
    m = np.zeros((50, 100), bool)
    m[10:30, 20:60] = True
    tiny = np.zeros((50, 100), bool)
    tiny[5, 5] = True
    lines = label_lines({'a': m, 'b': tiny}, ('a', 'b', 'c'))
    assert len(lines) == 1 and lines[0].startswith('0 ')
    xy = np.asarray(lines[0].split()[1:], dtype=float).reshape(-1, 2)
    assert xy[:, 0].min() == pytest.approx(0.2, abs=0.011)
    assert xy[:, 0].max() == pytest.approx(0.6, abs=0.011)
    assert mask_polygon(tiny) is None
