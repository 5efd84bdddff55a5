from __future__ import annotations

import pytest

from enpire_common.tasks import load_task


@pytest.fixture(scope='session')
def task():
    return load_task('push_t')


@pytest.fixture(scope='session')
def frames(task):
    """A few gym-pusht renders with ground truth: (image, GroundTruth)."""
    from enpire_reward.core.crosscheck import sample_states

    return list(sample_states(task, 6, seed=3))
