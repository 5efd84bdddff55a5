from __future__ import annotations

import pytest

from enpire_common.tasks import load_task


@pytest.fixture(scope='session')
def contract_task():
    """Push-T as its contract says: no forward camera model (the sim cell's camera wears a
    sensor model by default, as a real camera does)."""
    return load_task('push_t')


@pytest.fixture(scope='session')
def task(contract_task):
    """Push-T with the sim's exact forward camera model (``pusht-area-v1``): the path of a
    cell with ``camera.sensor: none``, which most verifier tests measure on clean renders."""
    from enpire_tasks.camera_models import with_camera_model

    return with_camera_model(contract_task, 'top', 'pusht-area-v1')


@pytest.fixture(scope='session')
def frames(task):
    """A few gym-pusht renders with ground truth: (image, GroundTruth)."""
    from enpire_reward.core.crosscheck import sample_states

    return list(sample_states(task, 6, seed=3))
