"""Fixtures shared by the system tests."""

from __future__ import annotations

import os
from typing import Any

import pytest


@pytest.fixture(scope='module')
def sim_cell(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One lockstep sim cell (``cell_0``) for the module, in a private ENPIRE_HOME.

    The CellSession gets a ``home`` attribute; the launch is torn down after the module.
    """
    from enpire_rollout.client import CellSession

    home = tmp_path_factory.mktemp('enpire_home')
    old = os.environ.get('ENPIRE_HOME')
    os.environ['ENPIRE_HOME'] = str(home)
    session = None
    try:
        session = CellSession(home=home, cell='cell_0', probe_s=1.0, ready_timeout_s=120.0)
        session.home = home
        yield session
    finally:
        if session is not None:
            session.close()
        if old is None:
            os.environ.pop('ENPIRE_HOME', None)
        else:
            os.environ['ENPIRE_HOME'] = old
