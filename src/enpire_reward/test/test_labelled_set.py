"""The human-labelled image set: its file format (crash-safe appends, untrusted reads), its
score as the calibration's ``human`` kind, and the web labeller's one POST."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from enpire_common.errors import ConfigError
from enpire_reward.core.labelled_set import (
    FrameToLabel,
    load_labelled_set,
    open_labelled_set,
)


@pytest.fixture(scope='module')
def push_t():
    """Push-T as its contract says (no forward camera model), as calibration builds it."""
    from enpire_common.tasks import load_task

    return load_task('push_t')


@pytest.fixture(scope='module')
def renders(push_t):
    """A few Push-T sim renders (image, ground truth)."""
    from enpire_reward.core.crosscheck import sample_states

    return list(sample_states(push_t, 6, seed=3))


def frame(i: int, image: np.ndarray | None = None, task: str = 'push_t') -> FrameToLabel:
    if image is None:
        image = np.full((8, 8, 3), i, dtype=np.uint8)
    return FrameToLabel(task=task, view='top', trial_id=f't{i}', trial_dir=f'/runs/t{i}',
                        stamp_ns=1000 + i, source='bag', image=image,
                        recorded={'outcome': 'success', 'score': 0.97,
                                  'verdicts': [{'view': 'top', 'success': True, 'score': 0.97}]})


def write_set(path, labels, images=None):  # noqa: ANN001, ANN201
    lset = open_labelled_set(path)
    for i, label in enumerate(labels):
        lset.append(frame(i, None if images is None else images[i]), label, labeller='ana',
                    labelled_at_s=1.7e9 + i)
    return lset


def test_a_labelled_set_round_trips_with_its_images_copied_and_hashed(tmp_path):
    write_set(tmp_path / 'set', ['success', 'failure', 'invalid'])
    lset = load_labelled_set(tmp_path / 'set', 'push_t')
    assert [lab.label for lab in lset.labels] == ['success', 'failure', 'invalid']
    assert [lab.line for lab in lset.labels] == [1, 2, 3]
    first = lset.labels[0]
    assert (first.trial_id, first.view, first.stamp_ns, first.labeller) == \
        ('t0', 'top', 1000, 'ana')
    assert first.labelled_at == '2023-11-14T22:13:20Z'
    png = (tmp_path / 'set' / 'frames' / first.image).read_bytes()
    assert hashlib.sha256(png).hexdigest() == first.sha256
    assert (lset.read_image(lset.labels[2]) == 2).all()
    assert lset.counts() == {'success': 1, 'failure': 1, 'invalid': 1}
    # a frame labelled again: the later line wins
    lset.append(frame(0), 'failure', labeller='bo', labelled_at_s=1.8e9)
    again = load_labelled_set(tmp_path / 'set')
    assert len(again.labels) == 4 and len(again.latest()) == 3
    assert again.counts() == {'success': 0, 'failure': 2, 'invalid': 1}
    assert again.summary()['labels_sha256'] == hashlib.sha256(
        (tmp_path / 'set' / 'labels.jsonl').read_bytes()).hexdigest()


def test_a_last_line_cut_short_by_a_crash_is_ignored_with_a_warning_and_cut_on_append(
        tmp_path):
    write_set(tmp_path / 'set', ['success', 'failure'])
    path = tmp_path / 'set' / 'labels.jsonl'
    with open(path, 'ab') as stream:
        stream.write(b'{"schema": "enpire.label/1", "image": "t9-top')     # the crash
    lset = open_labelled_set(tmp_path / 'set')
    assert [lab.label for lab in lset.labels] == ['success', 'failure']
    assert len(lset.warnings) == 1 and 'labels.jsonl:3: ignored a last line cut short' in \
        lset.warnings[0]
    added = lset.append(frame(5), 'invalid', labeller='ana', labelled_at_s=1.7e9)
    assert added.line == 3
    reread = load_labelled_set(tmp_path / 'set')
    assert reread.warnings == [] and [lab.line for lab in reread.labels] == [1, 2, 3]
    assert path.read_bytes().count(b'\n') == 3


@pytest.mark.parametrize(('edit', 'message'), [
    (lambda obj: {**obj, 'image': '../../escape.png'}, r'labels.jsonl:2: image .* plain'),
    (lambda obj: {**obj, 'image': '/etc/passwd.png'}, r'labels.jsonl:2: image .* plain'),
    (lambda obj: {**obj, 'label': 'maybe'}, r"labels.jsonl:2: label 'maybe' is not one of"),
    (lambda obj: {**obj, 'stamp_ns': '12'}, r'labels.jsonl:2: stamp_ns must be an integer'),
    (lambda obj: {k: v for k, v in obj.items() if k != 'view'},
     r'labels.jsonl:2: missing field\(s\) view'),
    (lambda obj: [obj], r'labels.jsonl:2: a label line must be a JSON object'),
    (lambda obj: {**obj, 'task': 'pin_insertion'}, r"labels.jsonl:2: a label of task "
                                                   r"'pin_insertion'"),
])
def test_a_bad_label_line_is_refused_naming_its_file_and_line(tmp_path, edit, message):
    write_set(tmp_path / 'set', ['success', 'failure', 'success'])
    path = tmp_path / 'set' / 'labels.jsonl'
    lines = path.read_text().splitlines()
    lines[1] = json.dumps(edit(json.loads(lines[1])))
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ConfigError, match=message):
        load_labelled_set(tmp_path / 'set', 'push_t')


def test_bad_json_before_the_last_line_is_an_error_not_a_crash_to_forgive(tmp_path):
    write_set(tmp_path / 'set', ['success', 'failure'])
    path = tmp_path / 'set' / 'labels.jsonl'
    lines = path.read_text().splitlines()
    path.write_text('\n'.join([lines[0][:30], lines[1]]) + '\n')
    with pytest.raises(ConfigError, match=r'labels.jsonl:1: not a JSON line'):
        load_labelled_set(tmp_path / 'set')


def test_an_altered_missing_or_escaping_image_is_refused(tmp_path):
    write_set(tmp_path / 'set', ['success', 'failure'])
    lset = load_labelled_set(tmp_path / 'set')
    image = tmp_path / 'set' / 'frames' / lset.labels[1].image
    image.write_bytes(image.read_bytes() + b'\0')
    with pytest.raises(ConfigError, match=r'labels.jsonl:2: image frames/.* does not match its '
                                          r'sha256'):
        load_labelled_set(tmp_path / 'set')
    image.unlink()
    with pytest.raises(ConfigError, match=r'labels.jsonl:2: image frames/.* is missing'):
        load_labelled_set(tmp_path / 'set')
    outside = tmp_path / 'outside.png'
    outside.write_bytes(b'x')
    image.symlink_to(outside)
    with pytest.raises(ConfigError, match=r'labels.jsonl:2: .* resolves outside frames/'):
        load_labelled_set(tmp_path / 'set')


def test_a_set_read_for_a_task_checks_views_and_image_sizes(push_t, tmp_path):
    write_set(tmp_path / 'set', ['success'])               # 8 x 8 px frames
    with pytest.raises(ConfigError, match=r"labels.jsonl:1: .* is 8x8 px; view 'top' of task "
                                          r"'push_t' is 480x480"):
        load_labelled_set(tmp_path / 'set', push_t)
    with pytest.raises(ConfigError, match='no labels.jsonl'):
        load_labelled_set(tmp_path / 'none')


def _own_verdicts(task, renders):  # noqa: ANN001, ANN202
    """What opencv-v1 (as calibrated: no forward camera model) says of each render."""
    from enpire_reward.core import make_verifier
    from enpire_tasks.camera_models import without_camera_models

    verifier = make_verifier('opencv-v1', without_camera_models(task))
    return [verifier.verify({'top': img}).success for img, _gt in renders]


def test_calibration_scores_the_human_set_as_its_own_kind_and_all_wrong_labels_fail(
        push_t, renders, tmp_path, capsys, monkeypatch):
    """Labels that agree with the backend pass the ``human`` kind; an invalid frame it calls
    a success is a false success; labels that all contradict it fail the gate (via the CLI)."""
    from enpire_bringup.cli import main
    from enpire_common.errors import VerifierUncalibratedError
    from enpire_common.tasks import locked_verifier
    from enpire_reward.core.calibration import calibrate, require_calibrated

    said = _own_verdicts(push_t, renders)
    assert any(said) and not all(said)
    images = [img for img, _gt in renders]
    right = ['success' if s else 'failure' for s in said]
    right[said.index(True)] = 'invalid'        # the person cannot tell; the backend says yes
    home = tmp_path / 'home'
    lset = write_set(tmp_path / 'right', right, images)
    out = calibrate(push_t, 'opencv-v1', states=20, seed=5, home=home,
                    labelled=load_labelled_set(lset.path, push_t))
    human = out['per_kind']['human']
    assert human['label_agreement'] == 1.0 and human['false_negative_rate'] == 0.0
    assert human['invalid_false_successes'] == 1 and human['false_positives'] == 1
    negatives = right.count('failure') + 1
    assert human['false_positive_rate'] == pytest.approx(1 / negatives)
    assert any(f.startswith('human: FPR') for f in out['failures'])
    rec = locked_verifier(push_t, home, 'opencv-v1')['calibration']
    assert rec['per_kind']['human'] == human
    assert rec['labels']['labels_sha256'] == lset.labels_sha256()
    assert rec['labels']['counts'] == {'success': right.count('success'),
                                       'failure': right.count('failure'), 'invalid': 1}

    wrong = write_set(tmp_path / 'wrong', ['failure' if s else 'success' for s in said],
                      images)
    monkeypatch.setenv('ENPIRE_HOME', str(home))
    code = main(['verify', 'calibrate', '--task', 'push_t', '--backend', 'opencv-v1',
                 '--states', '20', '--seed', '5', '--labels', str(wrong.path), '--json'])
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and not out['passed']
    assert out['per_kind']['human']['label_agreement'] == 0.0
    assert any(f.startswith('human: agreement 0.00%') for f in out['failures'])
    assert out['labels']['path'] == str(wrong.path.resolve())
    with pytest.raises(VerifierUncalibratedError, match='human: agreement'):
        require_calibrated(push_t, 'opencv-v1', home)


def test_a_set_without_success_or_failure_labels_cannot_calibrate(push_t, renders,
                                                                   tmp_path):
    from enpire_reward.core.calibration import calibrate

    lset = write_set(tmp_path / 'set', ['invalid'], [renders[0][0]])
    with pytest.raises(ConfigError, match='no success or failure label'):
        calibrate(push_t, 'opencv-v1', states=20, home=tmp_path, labelled=lset)


def test_the_web_labeller_stores_one_posted_label_and_refuses_a_foreign_post(tmp_path):
    from enpire_reward.labeller import WebLabeller

    lset = open_labelled_set(tmp_path / 'set')
    web = WebLabeller(lset, [frame(1), frame(2)], labeller='ana', port=0,
                      wall_s=lambda: 1.7e9)
    url = web.start()
    try:
        assert url.startswith('http://127.0.0.1:') and not url.endswith(':0/')
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert '0/2 labelled' in page and 'trial <b>t1</b>' in page and 'top success' in page
        token = re.search(r'name="token" value="([^"]+)"', page).group(1)
        seq = re.search(r'name="seq" value="(\d+)"', page).group(1)
        png = urllib.request.urlopen(f'{url}frame.png?seq={seq}', timeout=10).read()
        assert png.startswith(b'\x89PNG')

        def post(**fields: str) -> urllib.request.Request:
            return urllib.request.Request(f'{url}label', method='POST',
                                          data=urllib.parse.urlencode(fields).encode())

        with pytest.raises(urllib.error.HTTPError, match='403'):
            urllib.request.urlopen(post(token='guess', seq=seq, label='success'), timeout=10)
        after = urllib.request.urlopen(post(token=token, seq=seq, label='success'),
                                       timeout=10).read().decode()    # 303 -> the next frame
        assert '1/2 labelled' in after and 'trial <b>t2</b>' in after
        with pytest.raises(urllib.error.HTTPError, match='409'):       # the same form again
            urllib.request.urlopen(post(token=token, seq=seq, label='failure'), timeout=10)
    finally:
        result = web.stop()
    assert result['labelled'] == 1 and result['quit']
    stored = load_labelled_set(tmp_path / 'set')
    assert [(lab.trial_id, lab.label, lab.labeller) for lab in stored.labels] == \
        [('t1', 'success', 'ana')]


def test_a_multi_view_backend_judges_each_labelled_frame_in_its_own_view(tmp_path):
    """A frame of one camera is judged in that view alone; a view the backend does not read
    is counted, not judged."""
    from enpire_reward.core import Verdict, VerifyResult
    from enpire_reward.core.labelled_set import score_labelled

    class TwoViews:
        backend_id, views = 'fake', ('top', 'side')

        def __init__(self) -> None:
            self.calls: list[tuple[tuple[str, ...], tuple[str, ...]]] = []

        def verify(self, images, goal='success', expected_pose=None, *,  # noqa: ANN001
                   views=None, **_kw) -> VerifyResult:  # noqa: ANN001
            self.calls.append((tuple(images), tuple(views or ())))
            bright = bool(images[views[0]].mean() > 1)
            v = Verdict(view=views[0], backend='fake', success=bright, score=float(bright),
                        threshold=0.5, confidence=1.0, latency_s=0.002)
            return VerifyResult(success=bright, score=v.score, fusion='all', goal=goal,
                                verdicts=(v, v))

    lset = write_set(tmp_path / 'set', ['failure', 'failure', 'success', 'success'])
    side = FrameToLabel(task='push_t', view='wrist', trial_id='t9', trial_dir='', stamp_ns=1,
                        source='mp4', image=np.zeros((8, 8, 3), np.uint8))
    lset.append(side, 'success', labeller='ana', labelled_at_s=1.7e9)
    fake = TwoViews()
    rep = score_labelled(fake, lset)
    assert fake.calls == [(('top',), ('top',))] * 4
    assert rep['not_judged'] == 1 and rep['frames'] == 4
    # frames 0..3 are flat grey 0..3: 0 and 1 are dark (failure), 2 and 3 bright (success)
    assert rep['label_agreement'] == 1.0 and rep['false_positive_rate'] == 0.0
    assert rep['latency_p95_s'] == pytest.approx(0.002)
