"""The learned verifier backends' plumbing: the task rules over masks (with oracle masks from
the sim's own labels), torchvision's NMS beside a CPU torch, the task lock's verifier records,
and a YOLO verifier trained, recorded, loaded and refused when tampered with."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from enpire_common.errors import ConfigError
from enpire_tasks.estimation import InstanceMask


class _Oracle:
    """An InstanceSegmenter whose 'tblock' mask is the sim's label, coarsened by a pixel."""

    backend_id = 'oracle'
    classes = ('tblock',)

    def __init__(self, task) -> None:  # noqa: ANN001
        self.task, self.gt = task, None

    def masks(self, image, view):  # noqa: ANN001, ANN202
        import cv2

        from enpire_tasks.push_t.labels import block_mask

        m = block_mask(self.task, view.name, self.gt.object_pose, self.gt.agent_pos)
        m = cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8))    # a learned edge
        rows, cols = np.nonzero(m)
        return {'tblock': InstanceMask(m.astype(np.float32), 0.9,
                                       (cols.min(), rows.min(), cols.max() + 1,
                                        rows.max() + 1))}


def test_push_t_rule_over_masks_recovers_the_pose_under_camera_effects(task, frames):
    """A mask a pixel too fat still gives the block's pose to a fraction of a pixel: the
    edges come from the image (unmixed), not from the mask."""
    from enpire_reward.core.verifier import VisionVerifier
    from enpire_tasks import registry
    from enpire_tasks.sensor import PERTURBATIONS, frame_rng

    oracle = _Oracle(task)
    verifier = VisionVerifier(task, registry.get(task).mask_rule(task, oracle))
    assert verifier.backend_id == 'oracle'
    errs, scores = [], []
    for i, (img, gt) in enumerate(frames):
        oracle.gt = gt
        seen = PERTURBATIONS['all'].apply(img, frame_rng(0, i, 'all'))
        v = verifier.verify({'top': seen}).verdicts[0]
        errs.append(math.hypot(v.object_pose[0] - gt.object_pose[0],
                               v.object_pose[1] - gt.object_pose[1]))
        scores.append(abs(v.score - gt.coverage))
    assert max(errs) < 0.6 and max(scores) < 0.01, (errs, scores)


def test_a_segmenter_without_the_rule_s_class_is_refused(task):
    from enpire_tasks import registry

    class Other(_Oracle):
        classes = ('pin',)

    with pytest.raises(ConfigError, match="no class 'tblock'"):
        registry.get(task).mask_rule(task, Other(task))


def test_an_arm_view_whose_segmenter_finds_nothing_is_invalid_and_says_so():
    from enpire_common.tasks import load_task
    from enpire_reward.core.verifier import VisionVerifier
    from enpire_tasks import registry

    class Blind:
        backend_id, classes = 'blind', ('pin', 'fixture', 'rack')

        def masks(self, image, view):  # noqa: ANN001, ANN202
            return {}

    pin = load_task('pin_insertion')
    verifier = VisionVerifier(pin, registry.get(pin).mask_rule(pin, Blind()))
    images = {name: np.full((v.height_px, v.width_px, 3), 90, np.uint8) + np.arange(
        v.width_px, dtype=np.uint8)[None, :, None] for name, v in pin.views.items()}
    res = verifier.verify({k: images[k] for k in verifier.views})
    assert res.invalid and not res.success
    assert 'blind found no pin instance' in res.verdicts[0].detail


def test_a_learned_mask_keeps_the_part_s_own_colour_when_it_has_it():
    from enpire_common.tasks import ViewSpec
    from enpire_tasks.arm import PartFinder

    class Loose:
        """A learned mask: ``box``, a pixel or two off the part's edges."""

        backend_id, classes = 'loose', ('pin',)

        def __init__(self, box) -> None:  # noqa: ANN001
            self.box = box

        def masks(self, image, view):  # noqa: ANN001, ANN202
            x0, y0, x1, y1 = self.box
            m = np.zeros(image.shape[:2], np.float32)
            m[y0:y1, x0:x1] = 1.0
            return {'pin': InstanceMask(m, 0.6, (x0, y0, x1, y1))}

    view = ViewSpec(name='top', width_px=40, height_px=30, encoding='rgb8',
                    workspace_to_pixel=None)
    img = np.full((30, 40, 3), 200, np.uint8)        # a light rim round the part
    img[10:20, 15:25] = (230, 51, 26)                 # the part, in its colour
    blob = PartFinder((230, 51, 26), Loose((13, 8, 27, 22)), 'pin').find(img, view)
    assert blob is not None and int(blob.mask.sum()) == 100
    assert (blob.left, blob.top) == (15, 10)
    # a mask a row short of the part's bottom still gives the part's last row
    blob = PartFinder((230, 51, 26), Loose((15, 10, 25, 19)), 'pin').find(img, view)
    assert blob is not None and (blob.top, blob.bottom) == (10, 19)
    # a mask with none of the part's hue in it (its colour washed out) is taken as it is
    grey = np.full((30, 40, 3), 120, np.uint8)
    blob = PartFinder((230, 51, 26), Loose((13, 8, 27, 22)), 'pin').find(grey, view)
    assert blob is not None and int(blob.mask.sum()) == 14 * 14


def test_reference_nms_keeps_torchvision_s_contract():
    import torch

    from enpire_reward.core.torch_compat import nms_reference

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9.]])
    scores = torch.tensor([0.5, 0.9, 0.7, 0.6])
    assert nms_reference(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms_reference(boxes, scores, 0.99).tolist() == [1, 2, 3, 0]
    assert nms_reference(boxes[:0], scores[:0], 0.5).numel() == 0


def test_torchvision_imports_and_its_nms_runs_after_the_compat_step():
    """In a fresh interpreter (torchvision's import state is per process)."""
    code = ('from enpire_reward.core.torch_compat import ensure_torchvision_ops\n'
            'state = ensure_torchvision_ops()\n'
            'import torch, torchvision\n'
            'b = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.]])\n'
            'keep = torchvision.ops.nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()\n'
            'print(state, keep)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    state, keep = out.stdout.split(' ', 1)
    assert state in ('native', 'reference-nms') and keep.strip() == '[0, 2]'


def test_the_task_lock_records_verifiers_and_drops_them_when_the_contract_changes(
        task, tmp_path):
    import dataclasses

    from enpire_common.tasks import (
        lock_contract,
        lock_path,
        locked_verifier,
        record_verifier,
    )

    assert locked_verifier(task, tmp_path, 'yolo') is None
    record_verifier(task, tmp_path, 'yolo', {'version': 'v1', 'weights_sha256': 'ab'})
    entry = locked_verifier(task, tmp_path, 'yolo')
    assert entry['version'] == 'v1' and len(entry['contract_sha256']) == 64
    lock_contract(task, tmp_path)                     # the same contract: kept
    assert locked_verifier(task, tmp_path, 'yolo')['version'] == 'v1'
    other = dataclasses.replace(task, raw={**task.raw, 'contract': {
        **(task.raw.get('contract') or {}), 'files': ['task.yaml']}})
    lock_contract(other, tmp_path)                    # another contract: dropped
    assert locked_verifier(other, tmp_path, 'yolo') is None
    lock_path(tmp_path, task.name).write_text('{broken')
    with pytest.raises(ConfigError, match='unreadable'):
        locked_verifier(task, tmp_path, 'yolo')


def test_no_yolo_verifier_in_the_lock_says_how_to_train_one(task, tmp_path, monkeypatch):
    from enpire_reward.core import make_verifier

    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path))
    with pytest.raises(ConfigError, match='enpire verify train --task push_t --backend yolo'):
        make_verifier('yolo', task)


@pytest.mark.timeout(600)
def test_a_yolo_verifier_is_trained_recorded_loaded_and_checked(task, frames, tmp_path,
                                                                 monkeypatch):
    """Plumbing only (a tiny model trained for one epoch judges nothing well): the artifact,
    the lock's record, the backend built from it, and a tampered weights file refused."""
    pytest.importorskip('ultralytics', reason='the yolo backend needs ultralytics')
    from enpire_reward.core import make_verifier
    from enpire_reward.core.dataset import Randomisation, write_dataset
    from enpire_reward.core.yolo import train_yolo

    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path / 'home'))
    ds = tmp_path / 'ds'
    write_dataset(task, ds, 10, seed=3, randomisation=Randomisation.off())
    lines: list[str] = []
    art = train_yolo(task, ds, epochs=1, imgsz=64, batch=4, home=tmp_path / 'home',
                     progress=lines.append)
    assert any('epoch 1/1' in line for line in lines)
    meta = json.loads((art.path / 'artifact.json').read_text())
    assert meta['classes'] == ['tblock'] and meta['imgsz'] == 64
    lock = json.loads((tmp_path / 'home' / 'contracts' / 'push_t.lock.json').read_text())
    assert lock['verifiers']['yolo']['weights_sha256'] == meta['weights_sha256']
    verifier = make_verifier('yolo', task)
    assert verifier.backend_id == 'yolo'
    v = verifier.verify({'top': frames[0][0]}).verdicts[0]   # an untrained model finds little

    assert v.success in (True, False)
    with open(art.weights, 'ab') as f:
        f.write(b'tampered')
    with pytest.raises(ConfigError, match='sha256 differs'):
        make_verifier('yolo', task)
    with pytest.raises(ConfigError, match="dataset of task 'push_t'"):
        from enpire_common.tasks import load_task

        train_yolo(load_task('pin_insertion'), ds, epochs=1, home=tmp_path / 'home')


def test_calibration_scores_every_camera_effect_and_is_recorded(task, tmp_path):
    from enpire_common.tasks import locked_verifier
    from enpire_reward.core.calibration import Gate, calibrate, require_calibrated
    from enpire_tasks.sensor import PERTURBATIONS

    out = calibrate(task, 'opencv-v1', states=20, seed=5, home=tmp_path)
    assert list(out['per_kind']) == list(PERTURBATIONS)
    assert out['camera'] == 'real' and out['states'] == 20
    rec = locked_verifier(task, tmp_path, 'opencv-v1')['calibration']
    assert rec['passed'] == out['passed'] and rec['per_kind'] == out['per_kind']
    # an impossible gate fails, is recorded, and then refuses the backend with its numbers
    strict = Gate(min_agreement=1.01)
    assert not calibrate(task, 'opencv-v1', states=20, seed=5, home=tmp_path,
                         gate=strict)['passed']
    with pytest.raises(ConfigError, match=r"failed its calibration.*agreement") as info:
        require_calibrated(task, 'opencv-v1', tmp_path)
    assert info.value.code == 106


def test_a_learned_backend_without_calibration_is_refused(task, tmp_path):
    from enpire_common.errors import VerifierUncalibratedError
    from enpire_common.tasks import record_verifier
    from enpire_reward.core.calibration import require_calibrated

    with pytest.raises(VerifierUncalibratedError, match='enpire verify calibrate'):
        require_calibrated(task, 'yolo', tmp_path)
    require_calibrated(task, 'opencv-v1', tmp_path)   # built in, never calibrated: allowed
    # a passing record of other weights than the recorded ones does not count
    record_verifier(task, tmp_path, 'yolo', {'weights_sha256': 'new', 'calibration': {
        'passed': True, 'weights_sha256': 'old'}})
    with pytest.raises(VerifierUncalibratedError, match='other weights'):
        require_calibrated(task, 'yolo', tmp_path)
    record_verifier(task, tmp_path, 'yolo', {'weights_sha256': 'new', 'calibration': {
        'passed': True, 'weights_sha256': 'new'}})
    require_calibrated(task, 'yolo', tmp_path)


def test_trials_refuse_an_uncalibrated_backend_before_anything_starts(tmp_path):
    from pathlib import Path

    policy = Path(__file__).resolve().parents[3] / 'examples' / 'policies' / 'push_t' / \
        'scripted'
    env = {**__import__('os').environ, 'ENPIRE_HOME': str(tmp_path)}
    out = subprocess.run([sys.executable, '-m', 'enpire_bringup.cli', '--json', 'trial', 'run',
                          '--policy', str(policy), '--trials', '1', '--no-start',
                          '--verifier-backend', 'yolo'],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    err = json.loads(out.stdout)
    assert err['error'] == 'VERIFIER_UNCALIBRATED' and 'calibrate' in err['message']


@pytest.mark.timeout(600)
def test_a_verifier_trained_on_another_task_fails_the_gate(task, tmp_path, monkeypatch):
    """A pin model recorded as Push-T's yolo verifier: calibration cannot even build it (its
    classes are the pin task's), records the failure, and the gate refuses it."""
    pytest.importorskip('ultralytics', reason='the yolo backend needs ultralytics')
    from enpire_common.errors import VerifierUncalibratedError
    from enpire_common.tasks import load_task, record_verifier
    from enpire_reward.core.calibration import calibrate, require_calibrated
    from enpire_reward.core.dataset import Randomisation, write_dataset
    from enpire_reward.core.yolo import train_yolo

    pin = load_task('pin_insertion')
    home = tmp_path / 'home'
    monkeypatch.setenv('ENPIRE_HOME', str(home))
    write_dataset(pin, tmp_path / 'ds', 6, seed=1, randomisation=Randomisation.off())
    art = train_yolo(pin, tmp_path / 'ds', epochs=1, imgsz=64, batch=4, home=home,
                     progress=lambda _line: None)
    record_verifier(task, home, 'yolo', art.lock_entry())          # the wrong task's model
    out = calibrate(task, 'yolo', states=20, home=home)
    assert not out['passed'] and "no class 'tblock'" in out['failures'][0]
    with pytest.raises(VerifierUncalibratedError, match='failed its calibration'):
        require_calibrated(task, 'yolo', home)


@pytest.mark.timeout(600)
def test_sam2_loads_a_checkpoint_file_and_masks_the_prompted_box(task, frames, tmp_path,
                                                                 monkeypatch):
    """Plumbing on a model built from its config (random weights: says nothing of SAM2's
    quality): the checkpoint file round trip, the registration in the lock, box prompts,
    and a checkpoint of the wrong shape refused."""
    pytest.importorskip('sam2', reason='the sam2 backend needs sam2 (requirements.txt)')
    import torch

    from enpire_common.tasks import locked_verifier
    from enpire_reward.core.sam2_backend import Sam2Segmenter, build_model, register_checkpoint

    model = build_model('sam2.1_hiera_t')
    ckpt = tmp_path / 'sam2_random.pt'
    torch.save({'model': model.state_dict()}, ckpt)
    entry = register_checkpoint(task, ckpt, home=tmp_path)
    assert locked_verifier(task, tmp_path, 'sam2')['weights_sha256'] == entry['weights_sha256']
    oracle = _Oracle(task)
    img, gt = frames[0]
    oracle.gt = gt
    seg = Sam2Segmenter(build_model('sam2.1_hiera_t', ckpt), oracle)
    out = seg.masks(img, task.views['top'])
    assert set(out) == {'tblock'}
    assert out['tblock'].mask.shape == img.shape[:2] and 0.0 <= out['tblock'].confidence <= 1
    bad = tmp_path / 'bad.pt'
    torch.save({'model': {'nothing': torch.zeros(1)}}, bad)
    with pytest.raises(ConfigError, match='does not load into sam2.1_hiera_t'):
        build_model('sam2.1_hiera_t', bad)
    with pytest.raises(ConfigError, match='does not exist'):
        register_checkpoint(task, tmp_path / 'missing.pt', home=tmp_path)
    monkeypatch.setenv('ENPIRE_HOME', str(tmp_path / 'other'))
    from enpire_reward.core import make_verifier

    with pytest.raises(ConfigError, match='enpire verify register'):
        make_verifier('sam2', task)


def test_opencv_unmix_holds_where_a_camera_perturbs_the_image(task):
    """opencv-unmix-v1 (the colour mask, unmixed edges, the exact coverage fit) on perturbed
    images with no forward model: 99.3% agreement on every kind over 300 held-out states
    (README); a small sample here."""
    from enpire_reward.core import make_verifier
    from enpire_reward.core.crosscheck import crosscheck_matrix
    from enpire_tasks.camera_models import with_camera_model

    real = with_camera_model(task, 'top', 'none')
    out = crosscheck_matrix([make_verifier('opencv-unmix-v1', real)], real, 40, seed=7919,
                            perturbations=('clean', 'all'))['opencv-unmix-v1']
    for kind, rep in out.items():
        assert rep.label_agreement >= 0.95, (kind, rep)
        assert rep.score_mae <= 0.005, (kind, rep)


def test_training_against_a_changed_contract_fails_before_it_trains(task, tmp_path):
    from enpire_common.errors import ContractMismatchError
    from enpire_common.tasks import lock_path
    from enpire_reward.core.dataset import Randomisation, write_dataset
    from enpire_reward.core.yolo import train_yolo

    write_dataset(task, tmp_path / 'ds', 10, seed=3, randomisation=Randomisation.off())
    lock = lock_path(tmp_path / 'home', task.name)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({'task': task.name, 'id': task.id, 'sha256': '0' * 64}))
    with pytest.raises(ContractMismatchError, match='contract changed'):
        train_yolo(task, tmp_path / 'ds', epochs=1, home=tmp_path / 'home')
    assert not (tmp_path / 'home' / 'verifiers').exists()
