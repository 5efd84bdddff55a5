"""Fixtures shared by the system tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope='module')
def sim_cell(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One lockstep sim cell (``cell_0``) for the module, in a private ENPIRE_HOME.

    A TrialsSession (policy directories are submitted and trials recorded in the store, as
    ``enpire trial run`` does) with a ``home`` attribute; the launch is torn down after the
    module.
    """
    from enpire_bringup.testing import trials_session

    with trials_session(tmp_path_factory.mktemp('enpire_home')) as session:
        yield session
