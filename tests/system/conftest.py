"""Fixtures shared by the system tests."""

from __future__ import annotations

import os
from typing import Any

import pytest


@pytest.fixture(scope='module')
def sim_cell(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One lockstep sim cell (``cell_0``) for the module, in a private ENPIRE_HOME.

    A TrialsSession (policy directories are submitted and trials recorded in the store, as
    ``enpire trial run`` does) with a ``home`` attribute; the launch is torn down after the
    module.
    """
    from enpire_evolution.ros.trials_port import TrialsSession

    home = tmp_path_factory.mktemp('enpire_home')
    old = os.environ.get('ENPIRE_HOME')
    os.environ['ENPIRE_HOME'] = str(home)
    session = None
    try:
        session = TrialsSession(home=home, cell='cell_0', probe_s=1.0, ready_timeout_s=120.0)
        session.home = home
        yield session
    finally:
        if session is not None:
            session.close()
        if old is None:
            os.environ.pop('ENPIRE_HOME', None)
        else:
            os.environ['ENPIRE_HOME'] = old
