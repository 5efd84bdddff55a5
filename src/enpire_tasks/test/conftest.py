from __future__ import annotations

import pytest

from enpire_common.tasks import load_task


@pytest.fixture(scope='session')
def contract_task():
    """Push-T as its contract says (no forward camera model: see config/tasks/push_t)."""
    return load_task('push_t')


@pytest.fixture(scope='session')
def task(contract_task):
    """Push-T with the sim's exact forward camera model (``pusht-area-v1``), the path of a
    cell with ``camera.sensor: none``."""
    from enpire_tasks.camera_models import with_camera_model

    return with_camera_model(contract_task, 'top', 'pusht-area-v1')
