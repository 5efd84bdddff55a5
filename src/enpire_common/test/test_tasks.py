from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from enpire_common.errors import ConfigError, ContractMismatchError, UnknownNameError
from enpire_common.tasks import (
    available_tasks,
    contract_hash,
    load_task,
    lock_contract,
    parse_task,
    verify_contract,
)


def test_push_t_is_registered_and_loads_its_contract():
    assert 'push_t' in available_tasks()
    task = load_task('push_t')
    assert task.id == 'push_t-v1'
    assert task.action.shape == (2,) and task.action.rate_hz == 10.0
    assert task.action.deadline_s == pytest.approx(0.08)
    assert task.views['top'].width_px == 480
    assert task.goal_pose[:2] == (256.0, 256.0)
    assert task.safety.mode == 'clamp'
    assert task.tuning_seeds[1] < task.evaluation_seeds[0]


def test_unknown_task_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="did you mean 'push_t'"):
        load_task('pusht')


def test_view_scaling_scales_the_workspace_to_pixel_map():
    view = load_task('push_t').views['top'].scaled(96, 96)
    assert view.workspace_to_pixel[0][0] == pytest.approx(96 / 512)
    assert view.workspace_to_pixel[1][1] == pytest.approx(96 / 512)


@pytest.fixture
def task_copy(tmp_path: Path) -> Path:
    src = load_task('push_t').directory
    dst = tmp_path / 'tasks' / 'push_t'
    shutil.copytree(src, dst)
    # Hash only the files in the copy: code modules belong to the real workspace.
    text = (dst / 'task.yaml').read_text()
    (dst / 'task.yaml').write_text(text.split('contract:')[0] + 'contract:\n'
                                   '  files: [task.yaml, safety.yaml]\n')
    return dst


def test_contract_verification_refuses_an_edited_contract(task_copy: Path, tmp_path: Path):
    home = tmp_path / 'home'
    task = parse_task(task_copy)
    digest = lock_contract(task, home)
    assert verify_contract(task, home) == digest
    safety = task_copy / 'safety.yaml'
    safety.write_text(safety.read_text().replace('max_step_px: 120.0', 'max_step_px: 500.0'))
    with pytest.raises(ContractMismatchError, match='contract changed since it was locked'):
        verify_contract(parse_task(task_copy), home)


def test_contract_hash_covers_the_code_modules():
    task = load_task('push_t')
    assert len(contract_hash(task)) == 64
    assert 'enpire_reward.core' in task.section('contract')['code_modules']


@pytest.mark.parametrize(('edit', 'message'), [
    (('rate_hz: 10.0', 'rate_hz: 0.0'), r'action.rate_hz=0.0 is invalid'),
    (('fusion: all', 'fusion: most'), r'success.fusion=.most. is invalid'),
    (('evaluation: [100000, 100999]', 'evaluation: [5000, 6000]'), r'must not overlap'),
    (('goal_pose: [256.0, 256.0', 'goal_pose: [.nan, 256.0'), r'goal_pose must be finite'),
])
def test_invalid_contracts_are_rejected_with_the_field_named(task_copy, edit, message):
    f = task_copy / 'task.yaml'
    f.write_text(f.read_text().replace(*edit))
    with pytest.raises(ConfigError, match=message):
        parse_task(task_copy)
