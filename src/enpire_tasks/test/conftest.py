from __future__ import annotations

import pytest

from enpire_common.tasks import load_task


@pytest.fixture(scope='session')
def task():
    return load_task('push_t')
